"""One layer read as a stream: its tar walked once, in a thread, keeping only the package
database files (each up to its cap), its whiteouts and its opaque directories.

Memory stays bounded whatever the layer's size: a few chunks in flight (streams.py), tarfile's
1 MiB buffer, zstd's window (at most 32 MiB), and the one file being parsed. Caps per file:
os-release and Python metadata (its header block) 64 KiB; package.json 1 MiB; a dpkg status file
and the apk database 32 MiB, held in memory while parsed; an rpmdb.sqlite 256 MiB, copied to a
temporary file for SQLite to open and deleted once read. A file over its cap is listed with the
problem, and the inventory reports it as skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import IO

import zstandard

from pullthrough.scanning.inventory import apk, dpkg, npm, os_release, python_dists, rpm
from pullthrough.scanning.inventory.records import (
    FileKind,
    LayerContents,
    LayerFile,
    PackageRecord,
)
from pullthrough.scanning.inventory.streams import ChunkFeed, FeedAborted, decompressed

KIB, MIB = 1024, 1024 * 1024
CAPS = {
    FileKind.OS_RELEASE: 64 * KIB,
    FileKind.PYTHON: 64 * KIB,
    FileKind.NPM: 1 * MIB,
    FileKind.DPKG: 32 * MIB,
    FileKind.APK: 32 * MIB,
    FileKind.RPM: 256 * MIB,
}
# Read only the beginning of these: what is parsed is at the top.
_PREFIX_ONLY = frozenset({FileKind.PYTHON})
_TAR_BUFFER = 1 * MIB
_COPY_PIECE = 1 * MIB
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


def kind_of(path: str) -> FileKind | None:
    """Which package database (or os-release) a path in an image is, if any."""
    if path in os_release.PATHS:
        return FileKind.OS_RELEASE
    if dpkg.is_dpkg_database(path):
        return FileKind.DPKG
    if path in apk.PATHS:
        return FileKind.APK
    if path in rpm.SQLITE_PATHS:
        return FileKind.RPM
    if path in rpm.WAL_PATHS:
        return FileKind.RPM_WAL
    if path in rpm.LEGACY_PATHS:
        return rpm.LEGACY_PATHS[path]
    if python_dists.is_python_metadata(path):
        return FileKind.PYTHON
    if npm.is_npm_package(path):
        return FileKind.NPM
    return None


async def read_layer(
    chunks: AsyncIterator[bytes], *, spool_dir: Path | None = None
) -> LayerContents:
    """Walk a layer blob (gzip, zstd or plain tar) as it arrives from `chunks`.

    An error of `chunks` is raised as is (nothing is learnt about the layer); a layer that is not
    a readable tar gives a `LayerContents` whose `problem` says so."""
    feed = ChunkFeed(asyncio.get_running_loop())
    walk = asyncio.ensure_future(asyncio.to_thread(_walk, feed, spool_dir))
    walk.add_done_callback(_retrieve)
    try:
        pieces = _closable(chunks)
        async with contextlib.aclosing(pieces):
            async for chunk in pieces:
                if chunk and not await feed.put(chunk):
                    break  # the walk reached the end of the archive
            await feed.put(None)
    except BaseException:
        feed.abort()
        raise
    return await walk


async def _closable(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes]:
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        close: Callable[[], object] | None = getattr(chunks, "aclose", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result


def _retrieve(task: asyncio.Future[LayerContents]) -> None:
    if not task.cancelled():
        task.exception()  # an aborted walk's error is the feeder's to report


def _walk(feed: ChunkFeed, spool_dir: Path | None) -> LayerContents:
    try:
        return _walk_tar(feed, spool_dir)
    except FeedAborted:
        raise
    except (tarfile.TarError, zlib.error, zstandard.ZstdError, EOFError, OSError) as error:
        return LayerContents(problem=f"not a readable tar archive ({error})")
    finally:
        feed.finish()


def _walk_tar(feed: ChunkFeed, spool_dir: Path | None) -> LayerContents:
    files: dict[str, LayerFile] = {}
    whiteouts: list[str] = []
    opaque: list[str] = []
    stream = decompressed(feed)
    with tarfile.open(fileobj=stream, mode="r|", bufsize=_TAR_BUFFER) as archive:  # type: ignore[call-overload]
        while (member := archive.next()) is not None:
            archive.members.clear()  # tarfile keeps every member seen: keep none
            path = _normalized(member.name)
            if not path:
                continue
            directory, base = posixpath.split(path)
            if base == _OPAQUE:
                opaque.append(directory)
                continue
            if base.startswith(_WHITEOUT):
                whiteouts.append(posixpath.join(directory, base[len(_WHITEOUT) :]))
                continue
            kind = kind_of(path)
            if kind is None:
                continue
            if member.islnk():
                # A hard link to a file earlier in this layer: the same contents.
                target = files.get(_normalized(member.linkname))
                if target is not None and target.kind is kind:
                    files[path] = replace(target, path=path)
                    continue
            if not member.isfile():
                files[path] = LayerFile(path, FileKind.NOT_A_FILE)
                continue
            content = archive.extractfile(member)
            if content is None:
                continue
            files[path] = _parse(path, kind, member.size, content, spool_dir)
    return LayerContents(
        files=tuple(files[p] for p in sorted(files)),
        whiteouts=tuple(whiteouts),
        opaque=tuple(opaque),
    )


def _normalized(name: str) -> str:
    path = posixpath.normpath("/" + name).lstrip("/")
    return "" if path in ("", ".") else path


def _parse(
    path: str, kind: FileKind, size: int, content: IO[bytes], spool_dir: Path | None
) -> LayerFile:
    if kind in (FileKind.RPM_BERKELEY_DB, FileKind.RPM_NDB):
        return LayerFile(path, kind)
    if kind is FileKind.RPM_WAL:
        # rpm merges its log into the database when it closes it: a log left with content
        # means changes the database file does not show.
        if not size:
            return LayerFile(path, kind)
        problem = f"{size} bytes of rpm changes not merged into rpmdb.sqlite: its list may be short"
        return LayerFile(path, kind, problem=problem)
    cap = CAPS[kind]
    if size > cap and kind not in _PREFIX_ONLY:
        return LayerFile(path, kind, problem=f"{size} bytes, over the {cap // KIB} KiB read limit")
    try:
        if kind is FileKind.RPM:
            return LayerFile(path, kind, packages=tuple(_read_rpmdb(content, spool_dir)))
        text = content.read(cap).decode("utf-8", "replace")
        if kind is FileKind.OS_RELEASE:
            return LayerFile(path, kind, distro=os_release.parse_os_release(text))
        parse = _PARSERS[kind]
        return LayerFile(path, kind, packages=tuple(parse(text)))
    except (rpm.RpmHeaderError, OSError, ValueError) as error:
        return LayerFile(path, kind, problem=f"could not be read ({error})")
    except sqlite3.Error as error:
        return LayerFile(path, kind, problem=f"not an rpm SQLite database ({error})")


_PARSERS = {
    FileKind.DPKG: dpkg.parse_dpkg_status,
    FileKind.APK: apk.parse_apk_installed,
    FileKind.PYTHON: python_dists.parse_python_metadata,
    FileKind.NPM: npm.parse_package_json,
}


def _read_rpmdb(content: IO[bytes], spool_dir: Path | None) -> list[PackageRecord]:
    with tempfile.TemporaryDirectory(prefix="rpmdb-", dir=spool_dir) as directory:
        copy = Path(directory) / "rpmdb.sqlite"
        with copy.open("wb") as out:
            while piece := content.read(_COPY_PIECE):
                out.write(piece)
        return rpm.read_rpmdb_sqlite(copy)
