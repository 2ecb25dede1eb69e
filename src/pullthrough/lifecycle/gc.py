"""Garbage collection: delete blobs that no remaining manifest references, while clients pull.

First the repositories of deleted rules are dropped (no rule serves them any more), so that the
blobs only they used are collected in the same pass.

No stop-the-world lock. A blob is collected only when it is older than a grace period (so a
fill that just committed, or a blob whose manifest is being cached right now, is left alone)
and, re-checked in the transaction that deletes its row, still unreferenced. Its file goes
afterwards, in three steps that keep every pull working:

1. the row goes first: from then on a client that asks for the blob gets a fresh fill;
2. a short settle wait lets requests that found the row just before open the file (an open
   file outlives its unlink);
3. the file is unlinked holding the blob's fill lock, and only if no fill committed the blob
   again meanwhile (a running fill's lock makes us leave the file to it).

Files under blobs/ with no row at all (a crash between the rename and the row insert) are
removed once their mtime is older than the grace period; tmp/ is never touched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pullthrough.errors import DigestInvalid
from pullthrough.metadata.space import SpaceStore
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.layout import blob_key
from pullthrough.storage.locks import ExclusiveLock, Locks

log = logging.getLogger(__name__)

# Long enough for a request that saw the blob's row to open its file; see step 2 above.
SETTLE_SECONDS = 1.0
_BLOBS_PREFIX = "blobs"


@dataclass(frozen=True, slots=True)
class GcReport:
    """What one collection did."""

    repositories_dropped: tuple[str, ...] = ()  # repositories of deleted rules
    blobs_deleted: int = 0  # unreferenced blobs whose row and file were removed
    bytes_freed: int = 0  # bytes of the files removed, orphans included
    orphan_files_deleted: int = 0  # files under blobs/ that had no row
    refilled: int = 0  # collected rows whose blob a client fetched again meanwhile: file kept


async def collect_garbage(
    space: SpaceStore,
    driver: BlobDriver,
    grace: float,
    now: float | None = None,
    *,
    locks: Locks | None = None,
    settle: float = SETTLE_SECONDS,
) -> GcReport:
    """Collect unreferenced blobs older than `grace` seconds, then orphan files as old.

    `locks` is the fills' lock set (`PullThroughCache.locks`, `metadata.opening.open_locks`);
    without it no fill lock is taken, which is only right when no server shares the storage.
    """
    cutoff = (time.time() if now is None else now) - grace
    dropped = await _drop_repositories_without_rule(space)
    forgotten = [
        blob
        for blob in await space.unreferenced_blobs(cutoff)
        if await space.forget_unreferenced_blob(blob.digest, cutoff)
    ]
    if forgotten and settle > 0:
        await asyncio.sleep(settle)
    deleted = refilled = freed = 0
    for blob in forgotten:
        size = await _remove_file(space, driver, Digest.parse(blob.digest), locks, None)
        if size is None:
            refilled += 1
        else:
            deleted += 1
            freed += size
    orphans, orphan_bytes = await _remove_orphan_files(space, driver, cutoff, locks)
    report = GcReport(
        repositories_dropped=dropped,
        blobs_deleted=deleted,
        bytes_freed=freed + orphan_bytes,
        orphan_files_deleted=orphans,
        refilled=refilled,
    )
    if deleted or orphans or refilled:
        log.info(
            "garbage collection: %d blobs and %d orphan files deleted, %d bytes freed; "
            "%d fetched again meanwhile",
            deleted,
            orphans,
            report.bytes_freed,
            refilled,
        )
    return report


async def _drop_repositories_without_rule(space: SpaceStore) -> tuple[str, ...]:
    dropped = []
    for name in await space.repositories_without_rule():
        gone = await space.drop_repository_without_rule(name)
        if gone is not None:
            log.info(
                "dropped repository %s: its rule %s was deleted",
                name,
                gone.rule,
                extra={"repository": name, "images": gone.expired.images},
            )
            dropped.append(name)
    return tuple(dropped)


async def _remove_file(
    space: SpaceStore,
    driver: BlobDriver,
    digest: Digest,
    locks: Locks | None,
    older_than: float | None,
) -> int | None:
    """Remove the blob's file unless it has a row again or a fill holds its lock (None then);
    with `older_than`, only a file last written before that time. The bytes removed otherwise.

    The blob's fill lock is held for as short a time as possible: a worker that finds it taken
    looks for the committed file instead of starting a fill.
    """
    if await space.blobs_present([str(digest)]):
        return None  # a fill committed it again: the file is the blob's
    key = blob_key(digest.algorithm, digest.hex)
    path = driver.local_path(key)
    if path is None and older_than is not None:
        return None  # no way to tell the object's age on this driver
    lock: ExclusiveLock | None = None
    if locks is not None:
        lock = locks.blob_fill(digest.algorithm, digest.hex)
        if not await lock.try_acquire():
            return None  # a fill is running: the file it renames into place will be the blob
    try:
        if path is not None:
            return await asyncio.to_thread(_unlink_unless_newer, path, older_than)
        size = await driver.size(key) or 0
        await driver.delete(key)
        return size
    finally:
        if lock is not None:
            await lock.release()


def _unlink_unless_newer(path: Path, older_than: float | None) -> int | None:
    """Unlink `path` (its size; 0 when it is gone already), unless it was written at or after
    `older_than` (None then)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return 0
    if older_than is not None and stat.st_mtime >= older_than:
        return None  # a fill renamed a fresh copy into place meanwhile
    os.unlink(path)
    return stat.st_size


async def _modified_at(driver: BlobDriver, key: str) -> float | None:
    path = driver.local_path(key)
    if path is None:
        return None  # no way to tell a file's age on this driver: never an orphan
    try:
        return (await asyncio.to_thread(os.stat, path)).st_mtime
    except FileNotFoundError:
        return None


def _digest_of_key(key: str) -> Digest | None:
    """The digest a storage key under blobs/ names, or None for anything else there."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != _BLOBS_PREFIX:
        return None
    try:
        digest = Digest.parse(f"{parts[1]}:{parts[3]}")
    except DigestInvalid:
        return None
    return digest if blob_key(digest.algorithm, digest.hex) == key else None


async def _remove_orphan_files(
    space: SpaceStore, driver: BlobDriver, cutoff: float, locks: Locks | None
) -> tuple[int, int]:
    """Delete blob files older than `cutoff` that have no row; (files, bytes) removed."""
    old: dict[str, Digest] = {}
    async for key in driver.keys(_BLOBS_PREFIX):
        digest = _digest_of_key(key)
        if digest is None:
            continue
        modified = await _modified_at(driver, key)
        if modified is not None and modified < cutoff:
            old[str(digest)] = digest
    known = await space.blobs_present(old)
    files = freed = 0
    for name, digest in old.items():
        if name in known:
            continue
        size = await _remove_file(space, driver, digest, locks, cutoff)
        if size is not None:
            log.warning("removed blob file %s, which had no metadata row (a crash?)", name)
            files += 1
            freed += size
    return files, freed
