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

Files (or objects) under blobs/ with no row at all (a crash between the store and the row
insert) are removed once their modification time is older than the grace period; tmp/ is never
touched. On object storage, an unfinished multipart upload is aborted when the blob's fill lock
can be taken (a fill holds it from before its upload begins until after it completes or aborts,
so a free lock means the process that began it is gone — killed mid-fill); without a lock set,
once it is older than the grace period and `UPLOAD_GRACE` (no fill runs that long).
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
# An unfinished upload to object storage this old is abandoned: a fill gives up after
# fill_deadline (an hour by default), so only a killed process leaves one behind.
UPLOAD_GRACE = 3600.0
_BLOBS_PREFIX = "blobs"


@dataclass(frozen=True, slots=True)
class GcReport:
    """What one collection did."""

    repositories_dropped: tuple[str, ...] = ()  # repositories of deleted rules
    blobs_deleted: int = 0  # unreferenced blobs whose row and file were removed
    bytes_freed: int = 0  # bytes of the files removed, orphans included
    orphan_files_deleted: int = 0  # files under blobs/ that had no row
    refilled: int = 0  # collected rows whose blob a client fetched again meanwhile: file kept
    uploads_aborted: int = 0  # unfinished uploads to object storage left by a killed process


async def collect_garbage(
    space: SpaceStore,
    driver: BlobDriver,
    grace: float,
    now: float | None = None,
    *,
    locks: Locks | None = None,
    settle: float = SETTLE_SECONDS,
    upload_grace: float = UPLOAD_GRACE,
) -> GcReport:
    """Collect unreferenced blobs older than `grace` seconds, then orphan files as old.

    `locks` is the fills' lock set (`PullThroughCache.locks`, `metadata.opening.open_locks`);
    without it no fill lock is taken, which is only right when no server shares the storage.

    Unfinished uploads to object storage begun more than `grace` and `upload_grace` seconds ago
    are aborted: no fill runs that long, so a killed process left them.
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
    aborted = await _abort_abandoned_uploads(driver, locks, cutoff - max(0.0, upload_grace - grace))
    report = GcReport(
        repositories_dropped=dropped,
        blobs_deleted=deleted,
        bytes_freed=freed + orphan_bytes,
        orphan_files_deleted=orphans,
        refilled=refilled,
        uploads_aborted=aborted,
    )
    if deleted or orphans or refilled or aborted:
        log.info(
            "garbage collection: %d blobs and %d orphan files deleted, %d bytes freed; "
            "%d fetched again meanwhile; %d unfinished uploads aborted",
            deleted,
            orphans,
            report.bytes_freed,
            refilled,
            aborted,
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
    lock: ExclusiveLock | None = None
    if locks is not None:
        lock = locks.blob_fill(digest.algorithm, digest.hex)
        if not await lock.try_acquire():
            return None  # a fill is running: the file it renames into place will be the blob
    try:
        if path is not None:
            return await asyncio.to_thread(_unlink_unless_newer, path, older_than)
        found = await driver.stat(key)
        if found is None:
            return 0
        if older_than is not None and found.modified_at >= older_than:
            return None  # a fill stored a fresh copy meanwhile
        await driver.delete(key)
        return found.size
    finally:
        if lock is not None:
            await lock.release()


async def _abort_abandoned_uploads(
    driver: BlobDriver, locks: Locks | None, older_than: float
) -> int:
    """Abort the uploads no fill is writing any more; how many were aborted."""
    aborted = 0
    async for upload in driver.pending_uploads():
        digest = _digest_of_key(upload.key)
        if locks is None or digest is None:
            if upload.initiated_at < older_than:
                aborted += await driver.abort_upload(upload)
            continue
        lock = locks.blob_fill(digest.algorithm, digest.hex)
        if not await lock.try_acquire():
            continue  # a fill is writing it (or a newer one for the same blob)
        try:
            aborted += await driver.abort_upload(upload)
        finally:
            await lock.release()
    return aborted


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
    found = await driver.stat(key)
    return None if found is None else found.modified_at


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
    """Delete blob files older than `cutoff` that have no row; (files, bytes) removed.

    Only the files without a row are asked their age: on object storage that is a request each.
    """
    listed: dict[str, Digest] = {}
    async for key in driver.keys(_BLOBS_PREFIX):
        digest = _digest_of_key(key)
        if digest is not None:
            listed[str(digest)] = digest
    known = await space.blobs_present(listed)
    files = freed = 0
    for name, digest in listed.items():
        if name in known:
            continue
        modified = await _modified_at(driver, blob_key(digest.algorithm, digest.hex))
        if modified is None or modified >= cutoff:
            continue
        size = await _remove_file(space, driver, digest, locks, cutoff)
        if size is not None:
            log.warning("removed blob file %s, which had no metadata row (a crash?)", name)
            files += 1
            freed += size
    return files, freed
