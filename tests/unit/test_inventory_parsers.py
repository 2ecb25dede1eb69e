"""The package database parsers and the layer walk on the forms real images have: quoted
os-release values, dpkg stanzas with continuation lines and other states, apk stanzas, Python
metadata whose body looks like headers, which package.json files are packages, `./` member
names, a symlinked /etc/os-release, multi-member gzip."""

from __future__ import annotations

import asyncio
import gzip
import io
import tarfile
from collections.abc import AsyncIterator

import pytest
import zstandard

from pullthrough.scanning.inventory import purls
from pullthrough.scanning.inventory.apk import parse_apk_installed
from pullthrough.scanning.inventory.dpkg import is_dpkg_database, parse_dpkg_status
from pullthrough.scanning.inventory.layers import kind_of, read_layer
from pullthrough.scanning.inventory.merge import merge
from pullthrough.scanning.inventory.npm import is_npm_package, parse_package_json
from pullthrough.scanning.inventory.os_release import parse_os_release
from pullthrough.scanning.inventory.python_dists import parse_python_metadata
from pullthrough.scanning.inventory.records import FileKind, PackageRecord
from pullthrough.scanning.model import Distro
from tests.rig.scan_images import DEBIAN_OS_RELEASE, dpkg_status, tar_layer


def test_os_release_values_quoted_or_not() -> None:
    text = (
        "# comment\nNAME='Ubuntu'\nVERSION_ID=\"22.04\"\nID=ubuntu\n"
        'PRETTY_NAME="Ubuntu 22.04.4 LTS"\n'
    )
    assert parse_os_release(text) == Distro("ubuntu", "22.04", "Ubuntu 22.04.4 LTS")
    assert parse_os_release("ID=alpine\n") == Distro("alpine", "")
    assert parse_os_release("NAME=nothing\n") is None


def test_dpkg_stanzas_installed_only_with_their_source() -> None:
    text = (
        "Package: a\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: arm64\n"
        "Description: first line\n continued: not a field\n .\n"
        " Source: not a field either\n\n"
        "Package: b\nStatus: hold ok installed\nSource: bsrc (2.0-1)\nVersion: 2.0-1+b1\n\n"
        "Package: c\nStatus: install ok half-installed\nVersion: 3\n\n"
        "Package: d\nStatus: deinstall ok config-files\nVersion: 4\n\n"
        "Package: e\nVersion: 5\n"  # distroless: no Status line
    )
    assert parse_dpkg_status(text) == [
        PackageRecord("a", "1.0-1", "arm64", "a", "1.0-1"),
        PackageRecord("b", "2.0-1+b1", "", "bsrc", "2.0-1"),
        PackageRecord("e", "5", "", "e", "5"),
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("var/lib/dpkg/status", True),
        ("var/lib/dpkg/status.d/libbz2-1.0", True),
        ("var/lib/dpkg/status.d/libc6.md5sums", False),
        ("var/lib/dpkg/status-old", False),
        ("var/lib/dpkg/status.d/sub/x", False),
    ],
)
def test_which_dpkg_files_are_databases(path: str, expected: bool) -> None:
    assert is_dpkg_database(path) is expected


def test_apk_stanzas() -> None:
    text = "C:Q1x=\nP:musl\nV:1.2.4-r2\nA:aarch64\no:musl\n\nP:ssl_client\nV:1.36.1-r15\n"
    assert parse_apk_installed(text) == [
        PackageRecord("musl", "1.2.4-r2", "aarch64", "musl", "1.2.4-r2"),
        PackageRecord("ssl_client", "1.36.1-r15", "", "ssl_client", "1.36.1-r15"),
    ]


def test_python_metadata_headers_only() -> None:
    text = "Metadata-Version: 2.1\nName: Flask\nVersion: 3.0.0\n\nName: not-this\nVersion: 0\n"
    assert parse_python_metadata(text) == [PackageRecord("Flask", "3.0.0")]
    assert parse_python_metadata("Metadata-Version: 2.1\nName: nameless-version\n") == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("app/node_modules/lodash/package.json", True),
        ("node_modules/@types/node/package.json", True),
        ("a/node_modules/x/node_modules/y/package.json", True),
        ("app/node_modules/lodash/fp/package.json", False),
        ("app/package.json", False),
        ("app/node_modules/@types/package.json", False),
    ],
)
def test_which_package_json_files_are_packages(path: str, expected: bool) -> None:
    assert is_npm_package(path) is expected


def test_package_json_without_name_or_version_is_no_package() -> None:
    assert parse_package_json('{"name": "x", "version": "1.0.0"}') == [PackageRecord("x", "1.0.0")]
    assert parse_package_json('{"name": "x"}') == []
    assert parse_package_json("not json") == []
    assert parse_package_json("[1]") == []


def test_paths_and_kinds() -> None:
    assert kind_of("etc/os-release") is FileKind.OS_RELEASE
    assert kind_of("usr/lib/sysimage/rpm/Packages.db") is FileKind.RPM_NDB
    assert kind_of("var/lib/rpm/Packages") is FileKind.RPM_BERKELEY_DB
    assert kind_of("usr/lib/python3.12/site-packages/pip-24.0.dist-info/METADATA") is (
        FileKind.PYTHON
    )
    assert kind_of("usr/lib/python3/dist-packages/foo-1.0.egg-info") is FileKind.PYTHON
    assert kind_of("etc/passwd") is None


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 7000):
        yield data[start : start + 7000]


def test_dot_slash_names_a_symlinked_os_release_and_multi_member_gzip() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        link = tarfile.TarInfo("./etc/os-release")
        link.type = tarfile.SYMTYPE
        link.linkname = "../usr/lib/os-release"
        archive.addfile(link)
        for name, data in (
            ("./usr/lib/os-release", DEBIAN_OS_RELEASE),
            ("./var/lib/dpkg/status", dpkg_status()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    tar = buffer.getvalue()
    # Two gzip members, cut in the middle of a tar block, as parallel compressors write them.
    layer = gzip.compress(tar[:1000], mtime=0) + gzip.compress(tar[1000:], mtime=0)
    contents = asyncio.run(read_layer(_chunks(layer)))
    assert [(f.path, f.kind) for f in contents.files] == [
        ("etc/os-release", FileKind.NOT_A_FILE),
        ("usr/lib/os-release", FileKind.OS_RELEASE),
        ("var/lib/dpkg/status", FileKind.DPKG),
    ]
    inventory = merge([("sha256:l", contents)])
    assert inventory.distro == Distro("debian", "12", "Debian GNU/Linux 12 (bookworm)")
    assert "libc6" in {p.name for p in inventory.packages}


def test_a_whiteout_of_a_directory_removes_everything_under_it() -> None:
    lower = tar_layer(
        [
            ("srv/node_modules/a/package.json", b'{"name": "a", "version": "1.0.0"}'),
            ("srv/node_modules/ab/package.json", b'{"name": "ab", "version": "1.0.0"}'),
        ]
    )
    upper = tar_layer([("srv/node_modules/.wh.a", b"")])
    layers = [
        (name, asyncio.run(read_layer(_chunks(data))))
        for name, data in (("sha256:lower", lower), ("sha256:upper", upper))
    ]
    assert [p.name for p in merge(layers).packages] == ["ab"]  # a sibling with a longer name stays


@pytest.mark.parametrize(
    ("kind", "distro", "ecosystem", "purl"),
    [
        (
            FileKind.DPKG,
            Distro("ubuntu", "22.04"),
            "Ubuntu",
            "pkg:deb/ubuntu/libssl3@3.0.2-0ubuntu1.15?arch=amd64&distro=ubuntu-22.04",
        ),
        (
            FileKind.DPKG,
            None,
            "Debian",
            "pkg:deb/debian/libssl3@3.0.2-0ubuntu1.15?arch=amd64",
        ),
        (
            FileKind.APK,
            Distro("wolfi", "20230201"),
            "Wolfi",
            "pkg:apk/wolfi/libssl3@3.0.2-0ubuntu1.15?arch=amd64&distro=20230201",
        ),
        (
            FileKind.RPM,
            Distro("rhel", "9.4"),
            "Red Hat",
            "pkg:rpm/rhel/libssl3@3.0.2-0ubuntu1.15?arch=amd64&distro=rhel-9.4",
        ),
    ],
)
def test_ecosystem_and_purl_follow_the_distribution(
    kind: FileKind, distro: Distro | None, ecosystem: str, purl: str
) -> None:
    record = PackageRecord("libssl3", "3.0.2-0ubuntu1.15", "amd64", "openssl", "3.0.2")
    package = purls.package(record, kind, distro, "sha256:l", "p")
    assert (package.ecosystem, package.purl) == (ecosystem, purl)
    assert (package.source_name, package.source_version) == ("openssl", "3.0.2")


def test_an_opaque_root_hides_every_lower_file_but_not_its_own() -> None:
    lower = tar_layer(
        [
            ("etc/os-release", DEBIAN_OS_RELEASE),
            ("var/lib/dpkg/status", dpkg_status()),
        ]
    )
    upper = tar_layer(
        [
            (".wh..wh..opq", b""),
            ("app/node_modules/kept/package.json", b'{"name": "kept", "version": "1.0.0"}'),
        ]
        + [(f"tmp/.wh.gone-{i}", b"") for i in range(2000)]
    )
    layers = [
        (name, asyncio.run(read_layer(_chunks(data))))
        for name, data in (("sha256:lower", lower), ("sha256:upper", upper))
    ]
    inventory = merge(layers)
    assert inventory.distro is None
    assert [p.name for p in inventory.packages] == ["kept"]


def test_a_hard_link_to_a_database_file_lists_what_its_target_does() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        data = b'{"name": "linked", "version": "2.0.0"}'
        info = tarfile.TarInfo("a/node_modules/linked/package.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("b/node_modules/linked/package.json")
        link.type = tarfile.LNKTYPE
        link.linkname = "a/node_modules/linked/package.json"
        archive.addfile(link)
    contents = asyncio.run(read_layer(_chunks(buffer.getvalue())))
    assert sorted(p.path for p in merge([("sha256:l", contents)]).packages) == [
        "a/node_modules/linked/package.json",
        "b/node_modules/linked/package.json",
    ]


def test_a_zstd_layer_needing_a_window_over_the_limit_is_reported_not_read() -> None:
    tar = tar_layer([("etc/os-release", DEBIAN_OS_RELEASE)])
    # Streamed (its size unknown), the frame asks the decoder for the whole 256 MiB window.
    parameters = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=28, write_content_size=False
    )
    stream = zstandard.ZstdCompressor(compression_params=parameters).compressobj()
    large_window = stream.compress(tar) + stream.flush()
    contents = asyncio.run(read_layer(_chunks(large_window)))
    assert contents.files == ()
    assert "too much memory" in contents.problem
    usual = zstandard.ZstdCompressor(level=19).compress(tar)
    assert [f.path for f in asyncio.run(read_layer(_chunks(usual))).files] == ["etc/os-release"]
