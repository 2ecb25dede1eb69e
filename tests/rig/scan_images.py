"""Images with real package databases, for scanning tests: what each holds is known exactly.

Use:

    images = build_scan_images(tmp_path)             # ScanImages: every fixture, built locally
    images.debian.layers                              # tuple[Blob, ...], bottom layer first
    images.debian.packages                            # frozenset[ExpectedPackage] it must yield
    images.debian.distro                              # ("debian", "12")
    pushed = push_scan_image(pusher, "scan/debian", "12", images.debian)   # a PushedImage
    index = push_two_platform(pusher, "scan/multi", "latest", images)       # amd64 + arm64
    everything = push_scan_images(pusher, images)   # {"debian": scan/debian:v1, ..., "multi": …}

The fixtures (`ScanImages` attributes):

- `debian`: Debian 12, three gzip layers. The bottom one has `/etc/os-release`, a dpkg status
  file of real stanzas from Debian 12 (`tests/data/scanning/debian12-dpkg-status`, with Source
  fields in both forms, `Source: glibc` and `Source: bash (5.2.15-2)`, and one stanza that is
  only `deinstall ok config-files`), Python dist-info (`requests`, `six`, `urllib3`) and npm
  packages (`lodash`, `express` with a nested `debug`, and `left-pad`, `is-odd` under
  `opt/legacy`). The second layer upgrades `libssl3`/`openssl` (a new status file), deletes
  `six` with a whiteout (`.wh.six-1.16.0.dist-info`) and makes `opt/legacy` opaque
  (`.wh..wh..opq`), adding `is-even` there. The third has nothing to inventory.
  `debian.hidden` names what the whiteout and the opaque directory removed.
- `distroless`: Debian 12 with one file per package under `var/lib/dpkg/status.d/` (no Status
  lines, as distroless images have them). One gzip layer.
- `alpine`: Alpine 3.19, `lib/apk/db/installed` (origins in `o:`) and a Python egg-info in
  the bottom layer; the upper layer, zstd-compressed, adds an npm package (`semver`).
- `rocky`: Rocky Linux 9.3 with an SQLite rpmdb at `var/lib/rpm/rpmdb.sqlite`, as an
  uncompressed tar layer.
- `fedora`: Fedora 39 with the rpmdb at `usr/lib/sysimage/rpm/rpmdb.sqlite`.
- `rpm_legacy`: CentOS 7-like, a Berkeley DB `var/lib/rpm/Packages` and an NDB
  `usr/lib/sysimage/rpm/Packages.db`: no package can be read, both must be reported skipped.
- `amd64`, `arm64`: two Debian 12 images for one index that differ in one package: arm64 has
  `libssl3` at `ARM64_OLD_LIBSSL3` (older), amd64 at the current version. They share their
  bottom layer with nothing else.
- `shared_a`, `shared_b`: two images whose bottom layer is the same blob (`debian`'s first
  layer): a scan of both must read it once.

`ExpectedPackage.purl` is the package URL the inventory must give each package; `source_name`
and `source_version` are set for every OS package (its own name and version when the database
names no other source).

`large_layer_chunks(filler_size, small_files, tail)` generates a gzip'd layer of any size as a
stream (for memory tests): filler, many small files, then the files of `tail`.
"""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import zstandard

from tests.rig.images import PushedImage, push_image, push_index
from tests.rig.oci_build import (
    FIXED_EPOCH,
    OCI_LAYER,
    OCI_LAYER_UNCOMPRESSED,
    ImageContent,
    gzip_bytes,
    image_config,
)
from tests.rig.pusher import Blob, RegistryPusher, sha256_digest
from tests.rig.rpmdb import RpmPackage, write_rpmdb

OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DPKG_STATUS = Path(__file__).parent.parent / "data" / "scanning" / "debian12-dpkg-status"
ARM64_OLD_LIBSSL3 = "3.0.11-1~deb12u2"
_DEBIAN_LIBSSL3 = "3.0.19-1~deb12u2"
_DEBIAN_LIBSSL3_UPGRADED = "3.0.19-1~deb12u3"


@dataclass(frozen=True)
class ExpectedPackage:
    ecosystem: str
    name: str
    version: str
    purl: str
    source_name: str | None = None
    source_version: str | None = None


# A layer entry: a regular file with content, a directory, or an empty marker (whiteouts).
Entry = tuple[str, bytes]


@dataclass(frozen=True)
class ScanImage:
    """One single-platform image: its content (config + layers), what it must inventory."""

    content: ImageContent
    distro: tuple[str, str] | None
    packages: frozenset[ExpectedPackage]
    hidden: frozenset[str] = frozenset()  # package names a whiteout or opaque dir removed
    skipped: tuple[str, ...] = ()  # paths the inventory must report as not read
    architecture: str = "amd64"

    @property
    def layers(self) -> tuple[Blob, ...]:
        return self.content.layers

    def names(self) -> set[tuple[str, str]]:
        return {(p.ecosystem, p.name) for p in self.packages}


@dataclass(frozen=True)
class ScanImages:
    debian: ScanImage
    distroless: ScanImage
    alpine: ScanImage
    rocky: ScanImage
    fedora: ScanImage
    rpm_legacy: ScanImage
    amd64: ScanImage
    arm64: ScanImage
    shared_a: ScanImage
    shared_b: ScanImage
    extra: dict[str, ScanImage] = field(default_factory=dict)


# -- layers ---------------------------------------------------------------------------------


def tar_layer(entries: list[Entry]) -> bytes:
    """An uncompressed tar: parent directories first, then each file (whiteouts are empty)."""
    buffer = io.BytesIO()
    made: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in entries:
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in made:
                    made.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = FIXED_EPOCH
                    archive.addfile(info)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = FIXED_EPOCH
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def layer_blob(entries: list[Entry], compression: str = "gzip") -> tuple[Blob, str]:
    """A layer blob and its diff_id, compressed with gzip, zstd or nothing ("tar")."""
    tar = tar_layer(entries)
    if compression == "gzip":
        return Blob.of(gzip_bytes(tar), OCI_LAYER), sha256_digest(tar)
    if compression == "zstd":
        compressed = zstandard.ZstdCompressor(level=3).compress(tar)
        return Blob.of(compressed, OCI_LAYER_ZSTD), sha256_digest(tar)
    return Blob.of(tar, OCI_LAYER_UNCOMPRESSED), sha256_digest(tar)


def image_of(layers: list[tuple[Blob, str]], architecture: str = "amd64") -> ImageContent:
    config = image_config([d for _, d in layers], flavor="oci", architecture=architecture)
    return ImageContent(config, tuple(blob for blob, _ in layers))


# -- file contents --------------------------------------------------------------------------


def os_release(distro_id: str, version_id: str, pretty: str) -> bytes:
    return (
        f'PRETTY_NAME="{pretty}"\nNAME="{pretty.split(" ")[0]}"\n'
        f'VERSION_ID="{version_id}"\nID={distro_id}\nHOME_URL="https://example.org/"\n'
    ).encode()


DEBIAN_OS_RELEASE = os_release("debian", "12", "Debian GNU/Linux 12 (bookworm)")


def dpkg_stanzas() -> list[str]:
    return DPKG_STATUS.read_text().strip().split("\n\n")


def dpkg_status(version_of: dict[str, str] | None = None) -> bytes:
    """The fixture status file, with some packages' Version lines changed."""
    out = []
    for stanza in dpkg_stanzas():
        name = _field(stanza, "Package")
        if version_of and name in version_of:
            old = _field(stanza, "Version")
            stanza = stanza.replace(f"\nVersion: {old}\n", f"\nVersion: {version_of[name]}\n")
        out.append(stanza)
    return ("\n\n".join(out) + "\n").encode()


def expected_dpkg(
    version_of: dict[str, str] | None = None,
    *,
    distro: str = "debian-12",
    stanzas: list[str] | None = None,
) -> set[ExpectedPackage]:
    """What the inventory must list for the fixture status file (installed stanzas only)."""
    expected = set()
    for stanza in stanzas if stanzas is not None else dpkg_stanzas():
        status = _field(stanza, "Status")
        if status and not status.endswith(" installed"):
            continue
        name = _field(stanza, "Package")
        version = (version_of or {}).get(name, _field(stanza, "Version"))
        source = _field(stanza, "Source")
        source_name, _, source_version = source.partition(" (")
        arch = _field(stanza, "Architecture")
        expected.add(
            ExpectedPackage(
                "Debian",
                name,
                version,
                f"pkg:deb/debian/{name}@{_purl_escape(version)}?arch={arch}&distro={distro}",
                source_name or name,
                source_version.rstrip(")") or version,
            )
        )
    return expected


def _field(stanza: str, key: str) -> str:
    for line in stanza.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _purl_escape(version: str) -> str:
    return version.replace("+", "%2B")


def dist_info(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x\n\n".encode()


def package_json(name: str, version: str) -> bytes:
    return (
        f'{{\n  "name": "{name}",\n  "version": "{version}",\n  "main": "index.js"\n}}\n'.encode()
    )


def pypi(name: str, version: str) -> ExpectedPackage:
    return ExpectedPackage("PyPI", name, version, f"pkg:pypi/{name.lower()}@{version}")


def npm(name: str, version: str) -> ExpectedPackage:
    if name.startswith("@"):
        scope, _, bare = name.partition("/")
        return ExpectedPackage("npm", name, version, f"pkg:npm/%40{scope[1:]}/{bare}@{version}")
    return ExpectedPackage("npm", name, version, f"pkg:npm/{name}@{version}")


_SITE = "usr/lib/python3/dist-packages"
_APP = "srv/app/node_modules"


# -- the fixtures ---------------------------------------------------------------------------


def build_debian() -> ScanImage:
    bottom = [
        ("etc/os-release", DEBIAN_OS_RELEASE),
        ("var/lib/dpkg/status", dpkg_status()),
        (f"{_SITE}/requests-2.28.1.dist-info/METADATA", dist_info("requests", "2.28.1")),
        (f"{_SITE}/requests-2.28.1.dist-info/RECORD", b""),
        (f"{_SITE}/six-1.16.0.dist-info/METADATA", dist_info("six", "1.16.0")),
        (f"{_SITE}/urllib3-1.26.12.dist-info/METADATA", dist_info("urllib3", "1.26.12")),
        (f"{_APP}/lodash/package.json", package_json("lodash", "4.17.20")),
        (f"{_APP}/lodash/fp/package.json", b'{"main": "../fp"}\n'),
        (f"{_APP}/express/package.json", package_json("express", "4.17.1")),
        (
            f"{_APP}/express/node_modules/debug/package.json",
            package_json("debug", "2.6.9"),
        ),
        (f"{_APP}/@types/node/package.json", package_json("@types/node", "20.1.0")),
        ("srv/app/package.json", package_json("my-app", "1.0.0")),
        ("opt/legacy/node_modules/left-pad/package.json", package_json("left-pad", "1.3.0")),
        ("opt/legacy/node_modules/is-odd/package.json", package_json("is-odd", "3.0.1")),
    ]
    upgrade = {"libssl3": _DEBIAN_LIBSSL3_UPGRADED, "openssl": _DEBIAN_LIBSSL3_UPGRADED}
    upper = [
        ("var/lib/dpkg/status", dpkg_status(upgrade)),
        (f"{_SITE}/.wh.six-1.16.0.dist-info", b""),
        ("opt/legacy/.wh..wh..opq", b""),
        ("opt/legacy/node_modules/is-even/package.json", package_json("is-even", "1.0.0")),
    ]
    top = [("srv/app/index.js", b"console.log('hello')\n")]
    layers = [layer_blob(bottom), layer_blob(upper), layer_blob(top)]
    packages = expected_dpkg(upgrade) | {
        pypi("requests", "2.28.1"),
        pypi("urllib3", "1.26.12"),
        npm("lodash", "4.17.20"),
        npm("express", "4.17.1"),
        npm("debug", "2.6.9"),
        npm("@types/node", "20.1.0"),
        npm("is-even", "1.0.0"),
    }
    return ScanImage(
        image_of(layers),
        ("debian", "12"),
        frozenset(packages),
        hidden=frozenset({"six", "left-pad", "is-odd"}),
    )


def build_distroless() -> ScanImage:
    chosen = {"base-files", "libc6", "libssl3", "zlib1g"}
    stanzas = [s for s in dpkg_stanzas() if _field(s, "Package") in chosen]
    files: list[Entry] = [("etc/os-release", DEBIAN_OS_RELEASE)]
    for stanza in stanzas:
        without_status = "\n".join(
            line for line in stanza.splitlines() if not line.startswith("Status:")
        )
        name = _field(stanza, "Package")
        files.append((f"var/lib/dpkg/status.d/{name}", (without_status + "\n").encode()))
    # distroless also ships the packages' file lists beside them; they are not stanzas.
    files.append(("var/lib/dpkg/status.d/libc6.md5sums", b"0123  lib/x86_64-linux-gnu/libc.so.6\n"))
    return ScanImage(
        image_of([layer_blob(files)]),
        ("debian", "12"),
        frozenset(expected_dpkg(stanzas=stanzas)),
    )


_APK_PACKAGES = [
    # (name, version, arch, origin)
    ("musl", "1.2.4_git20230717-r4", "x86_64", "musl"),
    ("busybox", "1.36.1-r15", "x86_64", "busybox"),
    ("busybox-binsh", "1.36.1-r15", "x86_64", "busybox"),
    ("libcrypto3", "3.1.4-r2", "x86_64", "openssl"),
    ("libssl3", "3.1.4-r2", "x86_64", "openssl"),
    ("zlib", "1.3.1-r0", "x86_64", "zlib"),
    ("apk-tools", "2.14.0-r5", "x86_64", "apk-tools"),
]


def apk_installed() -> bytes:
    stanzas = []
    for index, (name, version, arch, origin) in enumerate(_APK_PACKAGES):
        stanzas.append(
            f"C:Q1{index:02d}AbCdEfGhIjKlMnOpQrStUvWxYz0=\nP:{name}\nV:{version}\nA:{arch}\n"
            f"S:{100000 + index}\nI:{400000 + index}\nT:{name} package\n"
            f"U:https://example.org/{origin}\nL:MIT\no:{origin}\n"
            f"m:Natanael Copa <ncopa@alpinelinux.org>\nt:1700000000\n"
            f"c:{index:040x}\nD:so:libc.musl-x86_64.so.1\nF:usr/lib\nR:lib{name}.so\n"
            f"a:0:0:755\nZ:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        )
    return ("\n".join(stanzas) + "\n").encode()


def build_alpine() -> ScanImage:
    site = "usr/lib/python3.11/site-packages"
    bottom = [
        ("etc/os-release", os_release("alpine", "3.19.1", "Alpine Linux v3.19")),
        ("lib/apk/db/installed", apk_installed()),
        (f"{site}/Jinja2-3.1.2-py3.11.egg-info/PKG-INFO", dist_info("Jinja2", "3.1.2")),
    ]
    upper = [("usr/local/lib/node_modules/semver/package.json", package_json("semver", "7.5.1"))]
    layers = [layer_blob(bottom), layer_blob(upper, "zstd")]
    packages = {
        ExpectedPackage(
            "Alpine",
            name,
            version,
            f"pkg:apk/alpine/{name}@{version}?arch={arch}&distro=3.19.1",
            origin,
            version,
        )
        for name, version, arch, origin in _APK_PACKAGES
    } | {pypi("Jinja2", "3.1.2"), npm("semver", "7.5.1")}
    return ScanImage(image_of(layers), ("alpine", "3.19.1"), frozenset(packages))


ROCKY_PACKAGES = [
    RpmPackage("openssl-libs", "3.0.7", "24.el9", "x86_64", "openssl-3.0.7-24.el9.src.rpm", 1),
    RpmPackage("bash", "5.1.8", "6.el9_1", "x86_64", "bash-5.1.8-6.el9_1.src.rpm"),
    RpmPackage("glibc", "2.34", "83.el9.7", "x86_64", "glibc-2.34-83.el9.7.src.rpm"),
    RpmPackage("tzdata", "2023c", "1.el9", "noarch", "tzdata-2023c-1.el9.src.rpm"),
]
FEDORA_PACKAGES = [
    RpmPackage("curl", "8.2.1", "4.fc39", "x86_64", "curl-8.2.1-4.fc39.src.rpm"),
    RpmPackage("libcurl", "8.2.1", "4.fc39", "x86_64", "curl-8.2.1-4.fc39.src.rpm"),
]


def expected_rpm(
    packages: list[RpmPackage], ecosystem: str, namespace: str, distro: str
) -> set[ExpectedPackage]:
    expected = set()
    for p in packages:
        epoch = f"&epoch={p.epoch}" if p.epoch is not None else ""
        source = p.source_rpm.removesuffix(".src.rpm")
        source_name, source_version, source_release = source.rsplit("-", 2)
        # The source package has the binary's epoch: advisories spell versions with it.
        epoch_prefix = f"{p.epoch}:" if p.epoch is not None else ""
        expected.add(
            ExpectedPackage(
                ecosystem,
                p.name,
                p.evr,
                f"pkg:rpm/{namespace}/{p.name}@{p.version}-{p.release}"
                f"?arch={p.arch}&distro={distro}{epoch}",
                source_name,
                f"{epoch_prefix}{source_version}-{source_release}",
            )
        )
    return expected


def build_rpm(workdir: Path) -> tuple[ScanImage, ScanImage]:
    rocky_db = write_rpmdb(workdir / "rocky" / "rpmdb.sqlite", ROCKY_PACKAGES)
    rocky = ScanImage(
        image_of(
            [
                layer_blob(
                    [
                        (
                            "etc/os-release",
                            os_release("rocky", "9.3", "Rocky Linux 9.3 (Blue Onyx)"),
                        ),
                        ("var/lib/rpm/rpmdb.sqlite", rocky_db),
                    ],
                    "tar",
                )
            ]
        ),
        ("rocky", "9.3"),
        frozenset(expected_rpm(ROCKY_PACKAGES, "Rocky Linux", "rocky", "rocky-9.3")),
    )
    fedora_db = write_rpmdb(workdir / "fedora" / "rpmdb.sqlite", FEDORA_PACKAGES)
    fedora = ScanImage(
        image_of(
            [
                layer_blob(
                    [
                        ("usr/lib/os-release", os_release("fedora", "39", "Fedora Linux 39")),
                        ("usr/lib/sysimage/rpm/rpmdb.sqlite", fedora_db),
                    ]
                )
            ]
        ),
        ("fedora", "39"),
        frozenset(expected_rpm(FEDORA_PACKAGES, "Fedora", "fedora", "fedora-39")),
    )
    return rocky, fedora


def build_rpm_legacy() -> ScanImage:
    # Berkeley DB hash file magic 0x00061561 at offset 12; NDB starts with "RpmP".
    bdb = b"\0" * 12 + (0x00061561).to_bytes(4, "little") + b"\0" * 4080
    ndb = b"RpmP" + b"\0" * 4092
    files = [
        ("etc/os-release", os_release("centos", "7", "CentOS Linux 7 (Core)")),
        ("var/lib/rpm/Packages", bdb),
        ("usr/lib/sysimage/rpm/Packages.db", ndb),
    ]
    return ScanImage(
        image_of([layer_blob(files)]),
        ("centos", "7"),
        frozenset(),
        skipped=("var/lib/rpm/Packages", "usr/lib/sysimage/rpm/Packages.db"),
    )


def build_platform_pair() -> tuple[ScanImage, ScanImage]:
    """Debian 12 images for linux/amd64 and linux/arm64 that differ in `libssl3` only."""
    images = []
    for architecture, libssl3 in (("amd64", _DEBIAN_LIBSSL3), ("arm64", ARM64_OLD_LIBSSL3)):
        versions = {"libssl3": libssl3}
        status = dpkg_status(versions).replace(
            b"Architecture: amd64", f"Architecture: {architecture}".encode()
        )
        files = [
            ("etc/os-release", DEBIAN_OS_RELEASE),
            ("var/lib/dpkg/status", status),
            ("etc/hostname", architecture.encode()),
        ]
        stanzas = [
            s.replace("Architecture: amd64", f"Architecture: {architecture}")
            for s in dpkg_status(versions).decode().strip().split("\n\n")
        ]
        expected = expected_dpkg(stanzas=stanzas)
        images.append(
            ScanImage(
                image_of([layer_blob(files)], architecture),
                ("debian", "12"),
                frozenset(expected),
                architecture=architecture,
            )
        )
    return images[0], images[1]


def build_shared_pair(debian: ScanImage) -> tuple[ScanImage, ScanImage]:
    """Two images over `debian`'s bottom layer, each with a top layer of its own."""
    base = debian.layers[0]
    base_diff_id = _diff_id_of(base)
    pair = []
    for name in ("a", "b"):
        top = layer_blob(
            [
                (
                    f"srv/{name}/node_modules/{name}-lib/package.json",
                    package_json(f"{name}-lib", "1.0.0"),
                )
            ]
        )
        content = image_of([(base, base_diff_id), top])
        packages = expected_dpkg() | {
            pypi("requests", "2.28.1"),
            pypi("six", "1.16.0"),
            pypi("urllib3", "1.26.12"),
            npm("lodash", "4.17.20"),
            npm("express", "4.17.1"),
            npm("debug", "2.6.9"),
            npm("@types/node", "20.1.0"),
            npm("left-pad", "1.3.0"),
            npm("is-odd", "3.0.1"),
            npm(f"{name}-lib", "1.0.0"),
        }
        pair.append(
            replace(debian, content=content, packages=frozenset(packages), hidden=frozenset())
        )
    return pair[0], pair[1]


def _diff_id_of(blob: Blob) -> str:
    return sha256_digest(gzip.decompress(blob.read()))


def build_scan_images(workdir: Path) -> ScanImages:
    """Every scanning fixture; `workdir` receives the rpm databases as they are written."""
    debian = build_debian()
    rocky, fedora = build_rpm(workdir)
    amd64, arm64 = build_platform_pair()
    shared_a, shared_b = build_shared_pair(debian)
    return ScanImages(
        debian=debian,
        distroless=build_distroless(),
        alpine=build_alpine(),
        rocky=rocky,
        fedora=fedora,
        rpm_legacy=build_rpm_legacy(),
        amd64=amd64,
        arm64=arm64,
        shared_a=shared_a,
        shared_b=shared_b,
    )


# -- pushing --------------------------------------------------------------------------------


def push_scan_image(
    pusher: RegistryPusher, repo: str, tag: str | None, image: ScanImage
) -> PushedImage:
    """Push one fixture image (OCI manifest) under `tag`, or by digest when `tag` is None."""
    platform = {"architecture": image.architecture, "os": "linux"}
    return push_image(pusher, repo, tag, image.content, flavor="oci", platform=platform)


def push_two_platform(
    pusher: RegistryPusher, repo: str, tag: str, images: ScanImages
) -> PushedImage:
    """An OCI index over `images.amd64` and `images.arm64` (children pushed by digest);
    `index.child("arm64")` is the one with the older libssl3."""
    children = [
        push_scan_image(pusher, repo, None, images.amd64),
        push_scan_image(pusher, repo, None, images.arm64),
    ]
    return push_index(pusher, repo, tag, children, flavor="oci")


# -- a large layer, generated as a stream ------------------------------------------------------


_PIECE = 1024 * 1024


def large_layer_chunks(
    filler_size: int, small_files: int, tail: list[Entry], *, seed: int = 7
) -> Iterator[bytes]:
    """A gzip'd tar layer generated piece by piece, never held whole: `filler_size` bytes of
    filler in two files (half random, half zeros), `small_files` tiny files, then `tail` (package
    databases, so a reader must get through the filler to find them).

    The gzip stream is a series of members (valid gzip, as `pigz` writes), each piece compressed
    on its own; the two filler pieces are compressed once and repeated, so making the stream
    costs little. Its digest is not computed: give the reader any digest.
    """
    random_piece = random.Random(seed).randbytes(_PIECE)
    compressed_random = gzip_bytes(random_piece)
    compressed_zeros = gzip_bytes(bytes(_PIECE))
    half = filler_size // 2 // _PIECE * _PIECE
    for name, compressed in (
        ("filler/random.bin", compressed_random),
        ("filler/zeros.bin", compressed_zeros),
    ):
        yield gzip_bytes(_tar_header(name, half))
        for _ in range(half // _PIECE):
            yield compressed
    batch = bytearray()
    for index in range(small_files):
        data = f"{index}\n".encode()
        batch += _tar_header(f"many/{index // 1000:03d}/file-{index:06d}.txt", len(data)) + _padded(
            data
        )
        if len(batch) >= _PIECE:
            yield gzip_bytes(bytes(batch))
            batch.clear()
    for name, data in tail:
        batch += _tar_header(name, len(data)) + _padded(data)
    batch += bytes(2 * _TAR_BLOCK)
    yield gzip_bytes(bytes(batch))


_TAR_BLOCK = 512


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = FIXED_EPOCH
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % _TAR_BLOCK)


SCAN_IMAGE_NAMES = (
    "debian",
    "distroless",
    "alpine",
    "rocky",
    "fedora",
    "rpm_legacy",
    "shared_a",
    "shared_b",
)


def push_scan_images(pusher: RegistryPusher, images: ScanImages) -> dict[str, PushedImage]:
    """Every fixture as `scan/<name>:v1` (`rpm_legacy` as `scan/rpm-legacy`, `shared_a` as
    `scan/shared-a`...), and the two-platform index as `scan/multi:latest` under "multi"."""
    pushed = {
        name: push_scan_image(pusher, f"scan/{name.replace('_', '-')}", "v1", getattr(images, name))
        for name in SCAN_IMAGE_NAMES
    }
    pushed["multi"] = push_two_platform(pusher, "scan/multi", "latest", images)
    return pushed
