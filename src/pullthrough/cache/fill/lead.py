"""The fill in the process that downloads the blob: one upstream download, hashed as it lands
in a spool file, committed to storage and metadata only if its digest and size match, and
readable by any number of clients while it grows.

While it runs it holds the blob's fill lock and keeps the fill record (`state.py`) up to date,
so that other worker processes follow it (`follow.py`) instead of downloading the blob again.

Storage gets the blob one of two ways. A driver that keeps files (the filesystem) is handed the
verified spool file (`put_file`). A driver with streamed uploads (object storage) is fed while
the download runs: one more reader of the spool file, under the readers' rule (never the last
byte before the digest is verified), writes it to the upload, which is completed only after
verification; a failed fill aborts it, so nothing is ever visible at the key. The spool file is
the buffer between the two: the download never waits for the upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from pathlib import Path

from pullthrough.cache.fill.downloading import DownloadingFill
from pullthrough.cache.fill.spool import SpoolWriter
from pullthrough.cache.fill.state import FillRecord, FillState, forget_record
from pullthrough.errors import (
    RegistryError,
    UpstreamInvalid,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver, BlobUpload
from pullthrough.storage.layout import blob_key
from pullthrough.storage.locks import ExclusiveLock
from pullthrough.telemetry import metrics
from pullthrough.upstream.client import RegistryClient

log = logging.getLogger(__name__)

# How long a failed fill's record stays for followers in other workers to read.
FAILED_RECORD_SECONDS = 5.0
# How often a broken upstream body is resumed with a Range request before the fill gives up.
RESUME_ATTEMPTS = 5
# How long a failed fill waits for storage to discard its upload (a sweep removes leftovers).
ABORT_UPLOAD_SECONDS = 30.0


class LeadFill(DownloadingFill):
    def __init__(
        self,
        *,
        digest: Digest,
        repository: str,
        rule_prefix: str,
        upstream_repository: str,
        client: RegistryClient,
        spool_dir: Path,
        driver: BlobDriver,
        metadata: MetadataStore,
        final_path: Path | None,
        deadline: float,
        lock: ExclusiveLock | None = None,
        record_path: Path | None = None,
    ) -> None:
        self.digest = digest
        self.repository = repository
        self._rule_prefix = rule_prefix
        self._upstream_repository = upstream_repository
        self._client = client
        self.spool_path = spool_dir / f"{digest.hex[:16]}-{uuid.uuid4().hex}.part"
        self.driver = driver
        self.storage_key = blob_key(digest.algorithm, digest.hex)
        self._metadata = metadata
        self._deadline = deadline
        self.size: int | None = None
        self.written = 0
        self.state = FillState.RUNNING
        self.error: RegistryError | None = None
        # Where the blob lives once committed, for a reader that opens after the rename.
        self.committed_path = final_path
        self._started = asyncio.Event()
        self._changed = asyncio.Event()
        # Held for the whole fill: other workers follow this fill instead of starting their own.
        self._lock = lock
        self._record_path = record_path
        self.task: asyncio.Task[None] | None = None
        # The streamed upload to storage, and the task feeding it from the spool file.
        self._upload: BlobUpload | None = None
        self._feeding: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"fill {self.digest}")
        return self.task

    async def wait_started(self) -> None:
        """Wait until upstream answered with headers; raise the fill's error if it failed first."""
        await self._started.wait()
        if self.state is FillState.FAILED:
            assert self.error is not None
            raise self.error

    async def _spool_gone(self) -> None:
        return None  # this process removed it, after the state was settled

    async def _run(self) -> None:
        fd = os.open(self.spool_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        hasher = self.digest.hasher()
        began = time.monotonic()
        counted = metrics.current()
        if counted is not None:
            counted.fills_in_progress.inc()
        try:
            self._upload = self.driver.upload(self.storage_key)
            if self._upload is not None:
                self._feeding = asyncio.get_running_loop().create_task(
                    self._feed(self._upload), name=f"upload {self.digest}"
                )
            async with asyncio.timeout(self._deadline):
                await self._download(fd, hasher)
            self._verify(hasher.hexdigest())
            # The bytes are proven right: readers may have the last one now, while the
            # durable commit (fsync, rename or upload, record) goes on.
            self.state = FillState.VERIFIED
            self._notify()
            _log_rate(self.digest, self._client.name, self.written, time.monotonic() - began)
            await asyncio.to_thread(self._publish)
            if self._upload is None:
                await asyncio.to_thread(os.fsync, fd)
            await self._commit()
        except RegistryError as exc:
            self._fail(exc)
        except TimeoutError:
            self._fail(
                UpstreamTimeout(
                    f"fill of {self.digest} from {self._client.name} did not finish within "
                    f"{self._deadline:.0f}s (fill_deadline)"
                )
            )
        except asyncio.CancelledError:
            self._fail(UpstreamUnavailable(f"fill of {self.digest} was cancelled (shutdown)"))
            raise
        except Exception as exc:
            log.exception("fill of %s failed", self.digest)
            self._fail(UpstreamUnavailable(f"fill of {self.digest} failed: {exc}"))
        else:
            self.state = FillState.COMMITTED
            self._started.set()
            self._notify()
        finally:
            os.close(fd)
            if counted is not None:
                counted.fill_ended(
                    self._rule_prefix, self.state is FillState.COMMITTED, self.written
                )
            if self.state is not FillState.COMMITTED:
                await self._discard_upload()
            if self.state is not FillState.COMMITTED or self._upload is not None:
                # Readers that have it open read on; later ones read the stored blob.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.spool_path)
            self._publish()
            if self._lock is not None:
                await self._lock.release()
            if self.state is FillState.COMMITTED and self._record_path is not None:
                # Followers that miss the record find the committed blob instead.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._record_path)
            elif self._record_path is not None:
                # A failure's record stays a while, so every follower reads the same error.
                asyncio.get_running_loop().call_later(
                    FAILED_RECORD_SECONDS,
                    forget_record,
                    self._record_path,
                    self.spool_path.name,
                )

    def _publish(self) -> None:
        """Tell followers in other worker processes where this fill stands."""
        if self._record_path is None:
            return
        record = FillRecord.of(
            self.spool_path.name, self.size, self.repository, self.state, self.error
        )
        record.write(self._record_path)

    async def _commit(self) -> None:
        """Store the verified blob (complete the upload, or hand over the spool file), then
        record it in the metadata."""
        if self._upload is not None:
            assert self._feeding is not None
            await self._feeding  # every byte written: the feed reads up to the verified end
            await self._upload.complete()
        else:
            await self.driver.put_file(self.storage_key, self.spool_path)
        # The repository is created with its first content, not by a fill that fails.
        repo_id = await self._metadata.repositories.id(self.repository, self._rule_prefix)
        await self._metadata.blobs.save(str(self.digest), self.written, repo_id)

    async def _feed(self, upload: BlobUpload) -> None:
        """Write the spool file to the upload as it grows, as a reader reads it."""
        async for chunk in self.read(0, None):
            await upload.write(chunk)

    async def _discard_upload(self) -> None:
        """Stop feeding the upload and abort it: nothing appears at the key."""
        if self._feeding is not None:
            self._feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._feeding
        if self._upload is not None:
            try:
                async with asyncio.timeout(ABORT_UPLOAD_SECONDS):
                    await self._upload.abort()
            except Exception as exc:  # a sweep of old uploads removes it later
                log.warning("could not abort the upload of %s: %s", self.digest, exc)

    def _fail(self, error: RegistryError) -> None:
        self.state = self.state.failing()
        self.error = error
        self._started.set()
        self._notify()
        log.warning("fill of %s through %s failed: %s", self.digest, self.repository, error.message)

    async def _receive(self, spool: SpoolWriter) -> None:
        received = 0  # bytes handed to the spool writer; `written` trails it a little
        resumes = 0
        while True:
            blob = await self._client.open_blob(
                self._upstream_repository, str(self.digest), offset=received
            )
            try:
                if self.size is None:
                    self.size = blob.total_size
                skip = received - blob.offset  # upstream ignored our Range: drop the repeat
                if not self._started.is_set():
                    await asyncio.to_thread(self._publish)
                self._started.set()
                self._notify()
                async for chunk in blob.iter_chunks():
                    if skip > 0:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                        if not chunk:
                            continue
                    received += len(chunk)
                    if self.size is not None and received > self.size:
                        raise UpstreamInvalid(
                            f"upstream {self._client.name} sent more than the {self.size} bytes "
                            f"it announced for {self.digest}"
                        )
                    await spool.write(chunk)
                    self._notify()
                return
            except (UpstreamUnavailable, UpstreamTimeout) as exc:
                resumes += 1
                if resumes > RESUME_ATTEMPTS or self.size is None:
                    raise
                log.info("resuming %s at byte %d after: %s", self.digest, received, exc.message)
            finally:
                await blob.close()

    def _verify(self, actual_hex: str) -> None:
        if self.size is not None and self.written != self.size:
            raise UpstreamInvalid(
                f"upstream {self._client.name} sent {self.written} bytes for {self.digest}, "
                f"not the {self.size} it announced; discarded"
            )
        if actual_hex != self.digest.hex:
            raise UpstreamInvalid(
                f"upstream {self._client.name} sent bytes for {self.repository}@{self.digest} "
                f"whose digest is {self.digest.algorithm}:{actual_hex}; discarded, not stored"
            )


def _log_rate(digest: Digest, upstream: str, size: int, seconds: float) -> None:
    rate = size / seconds / 1e6 if seconds > 0 else 0.0
    log.info(
        "filled %s from %s: %d bytes in %.2fs (%.0f MB/s)",
        digest,
        upstream,
        size,
        seconds,
        rate,
        extra={"digest": str(digest), "upstream": upstream, "bytes": size, "seconds": seconds},
    )
