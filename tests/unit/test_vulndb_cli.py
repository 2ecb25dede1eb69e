"""`pullthrough vulndb import`, `sync` and `status`, run as a user runs them: the real command
on a data directory named by a configuration file, the archives from a local server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import yaml

from tests.rig.server import pullthrough_binary
from tests.unit import vulndb_support
from tests.unit.vulndb_support import ArchiveServer, osv, zipped

archive_server = vulndb_support.archive_server

_TIMEOUT = 120.0


async def pullthrough(config: Path, *args: str) -> tuple[int, str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PULLTHROUGH_")}
    process = await asyncio.create_subprocess_exec(
        str(pullthrough_binary()),
        *args,
        "--config",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    out, err = await asyncio.wait_for(process.communicate(), _TIMEOUT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def configuration(tmp_path: Path, url: str) -> Path:
    (tmp_path / "data").mkdir()
    config = tmp_path / "pullthrough.yaml"
    config.write_text(
        yaml.safe_dump(
            {"data_dir": str(tmp_path / "data"), "vulndb": {"url": url, "ecosystems": ["Alpine"]}}
        )
    )
    return config


async def test_import_then_status_in_a_table_and_in_json(
    tmp_path: Path, archive_server: ArchiveServer
) -> None:
    config = configuration(tmp_path, archive_server.url)
    archive = tmp_path / "all.zip"
    archive.write_bytes(
        zipped(
            osv("PYSEC-2024-1", "PyPI", "tool", "1.1", modified="2024-05-01T10:00:00Z"),
            osv("PYSEC-2024-2", "PyPI", "other", "2.0", modified="2024-06-02T11:00:00Z"),
        )
    )

    imported = await pullthrough(config, "vulndb", "import", str(archive))
    again = await pullthrough(config, "vulndb", "import", str(archive))
    table = await pullthrough(config, "vulndb", "status")
    code, out, err = await pullthrough(config, "vulndb", "status", "--output", "json")

    assert imported == (
        0,
        f"{archive}: 2 records read, 2 new or newer, 0 unchanged; ecosystems: PyPI\n",
        "",
    )
    assert again[:2] == (
        0,
        f"{archive}: 2 records read, 0 new or newer, 2 unchanged; ecosystems: PyPI\n",
    )
    assert table[0] == 0
    (row,) = [line.split() for line in table[1].splitlines() if line.strip().startswith("PyPI")]
    assert row[:5] == ["PyPI", "2", "0", "2024-06-02", "11:00:00"]
    assert row[-1] == str(archive)
    assert (code, err) == (0, "")
    (ecosystem,) = json.loads(out)["ecosystems"]
    assert {k: ecosystem[k] for k in ("ecosystem", "records", "newest_modified", "source")} == {
        "ecosystem": "PyPI",
        "records": 2,
        "newest_modified": "2024-06-02T11:00:00Z",
        "source": str(archive),
    }


async def test_an_empty_database_says_how_to_fill_it(
    tmp_path: Path, archive_server: ArchiveServer
) -> None:
    config = configuration(tmp_path, archive_server.url)

    code, out, _err = await pullthrough(config, "vulndb", "status")

    assert code == 0
    assert "empty" in out and "pullthrough vulndb sync" in out and "vulndb import" in out


async def test_an_unreadable_record_is_named_and_the_import_exits_1(
    tmp_path: Path, archive_server: ArchiveServer
) -> None:
    config = configuration(tmp_path, archive_server.url)
    path = tmp_path / "record.json"
    path.write_text('{"id": "X-1"}')

    code, _out, err = await pullthrough(config, "vulndb", "import", str(path))

    assert code == 1
    assert f"pullthrough: skipped {path}: X-1: modified is not an RFC 3339 time" in err


async def test_sync_uses_the_configured_url_and_ecosystems_and_then_gets_304s(
    tmp_path: Path, archive_server: ArchiveServer
) -> None:
    config = configuration(tmp_path, archive_server.url)
    archive_server.archives["Alpine"] = zipped(
        osv("ALPINE-CVE-1", "Alpine:v3.19", "busybox", "1.36.1-r16")
    )
    broken = {"id": "BROKEN-1", "modified": "soon"}
    archive_server.archives["PyPI"] = zipped(osv("PYSEC-1", "PyPI", "tool", "1.1"), broken)

    first = await pullthrough(config, "vulndb", "sync")
    second = await pullthrough(config, "vulndb", "sync", "--output", "json")
    other = await pullthrough(
        config, "vulndb", "sync", "--url", archive_server.url, "-e", "PyPI", "-e", "Nope"
    )

    assert first[0] == 0, first
    assert "Alpine" in first[1] and "updated" in first[1]
    assert second[0] == 0
    (alpine,) = json.loads(second[1])["archives"]
    assert (alpine["ecosystem"], alpine["outcome"], alpine["written"]) == ("Alpine", "unchanged", 0)
    assert other[0] == 1
    assert (
        f"pullthrough: PyPI: skipped 1 record that could not be read, first: "
        f"{archive_server.url}/PyPI/all.zip:BROKEN-1.json: BROKEN-1: modified 'soon' is not an "
        "RFC 3339 time"
    ) in other[2]
    assert (
        f"pullthrough: Nope: GET {archive_server.url}/Nope/all.zip answered 404 Not Found"
        in other[2]
    )
    assert archive_server.requests == [
        ("Alpine", 200),
        ("Alpine", 304),
        ("PyPI", 200),
        ("Nope", 404),
    ]

    code, out, _err = await pullthrough(config, "vulndb", "status")
    assert code == 0
    etag = archive_server.etag("Alpine")
    (alpine_row,) = [line.split() for line in out.splitlines() if etag in line]
    assert alpine_row[:2] == ["Alpine", "1"]
    assert alpine_row[-2:] == [etag, f"{archive_server.url}/Alpine/all.zip"]
