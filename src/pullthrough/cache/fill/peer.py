"""The fill as a replica that does not lead it sees it: the bytes stream from the replica that
does, over that replica's fills endpoint (`api/peer.py`), so upstream is asked once across the
cluster and this replica's clients get first bytes before the fill completes.

    fill = PeerFill(
        digest=digest,                 # the blob
        repository=route.repository,   # the repository it was asked for through
        peer_url="http://10.0.0.7:5000",  # the leading replica's advertise_url
        session=session,               # an aiohttp.ClientSession (not closed by the fill)
        tokens=PeerTokens(token_key),  # signs the requests (access/peer_tokens.py)
        driver=driver,                 # the shared storage, for readers after the spool file
        spool_dir=layout.temp_dir,     # where the local spool file goes
        deadline=settings.fill_deadline,  # seconds for the whole transfer
        lock=host_lock,                # optional: a lock of this host, already taken; released
        record_path=record,            #   at the end. With the record (in spool_dir), other
    )                                  #   workers follow this fill (FollowFill, that lock)
    fill.start()
    await fill.wait_started()          # the peer answered: `size` is set if the peer knows it
    async for chunk in fill.read(0, None): ...   # any number of readers, one connection

One connection per blob: the bytes land in a local spool file, hashed as they arrive, and every
local reader follows that file (`Fill.read`), the last byte held back until the whole blob's
digest is verified. Given a `lock` and a `record_path`, the fill publishes a `FillRecord` there
as `LeadFill` does, so the other worker processes of this replica follow it with `FollowFill`
instead of opening their own connection: one per blob per replica. A stream that breaks is
resumed at the byte reached (`?offset=`), a few times.

It ends VERIFIED and never stores the blob: the leading replica commits it to the shared
storage. It ends FAILED with `UpstreamUnavailable` naming the peer when the peer has no fill of
the blob (`PeerHasNoFill`: look in storage, or lead), refuses the token, answers an error, or
its stream ends short (its own fill failed, it died); with `UpstreamInvalid` when the bytes
are not the blob; with `UpstreamTimeout` past the deadline. The spool file goes when the fill
fails, `SPOOL_LINGER_SECONDS` after it verifies (readers that opened it keep reading; the
blob is in storage by then), or at `close()`; the record `FAILED_RECORD_SECONDS` after a failure
(so followers read the same error), `SPOOL_LINGER_SECONDS` after success.

`host_fill` is the other side: the fill of a blob this host runs, which the endpoint streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import aiohttp

from pullthrough.access.peer_tokens import PeerTokens
from pullthrough.cache.fill.downloading import DownloadingFill
from pullthrough.cache.fill.follow import FollowFill
from pullthrough.cache.fill.reading import Fill
from pullthrough.cache.fill.spool import SpoolWriter
from pullthrough.cache.fill.state import FillRecord, FillState, forget_record, record_path
from pullthrough.errors import (
    RegistryError,
    UpstreamInvalid,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.layout import blob_key
from pullthrough.storage.locks import ExclusiveLock, Locks

log = logging.getLogger(__name__)

# Where a replica's fills endpoint is; the digest follows (`sha256:<hex>`).
FILLS_PATH = "/_pullthrough/fills/"
# Response headers of the endpoint.
SIZE_HEADER = "X-Pullthrough-Blob-Size"
STATE_HEADER = "X-Pullthrough-Fill-State"
OFFSET_HEADER = "X-Pullthrough-Offset"
# How often a broken stream from the peer is resumed before the fill gives up.
RESUME_ATTEMPTS = 3
# How long a verified fill's spool file stays for readers that have not opened it yet.
SPOOL_LINGER_SECONDS = 30.0
# How long a failed fill's record stays for the other workers following it to read.
FAILED_RECORD_SECONDS = 5.0
# A peer that sends nothing for this long is taken for gone.
READ_TIMEOUT_SECONDS = 120.0
CONNECT_TIMEOUT_SECONDS = 10.0
# How long the endpoint waits for another worker's fill record to appear.
ATTACH_SECONDS = 30.0


class PeerHasNoFill(UpstreamUnavailable):
    """The peer has no fill of the blob and no stored copy (it ended, or never began there)."""


class _StreamBroke(Exception):
    """The peer's stream ended before the blob did; `reason` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PeerFill(DownloadingFill):
    def __init__(
        self,
        *,
        digest: Digest,
        repository: str,
        peer_url: str,
        session: aiohttp.ClientSession,
        tokens: PeerTokens,
        driver: BlobDriver,
        spool_dir: Path,
        deadline: float,
        lock: ExclusiveLock | None = None,
        record_path: Path | None = None,
    ) -> None:
        self.digest = digest
        self.repository = repository
        self.peer_url = peer_url.rstrip("/")
        self._session = session
        self._tokens = tokens
        self._deadline = deadline
        self.spool_path = spool_dir / f"{digest.hex[:16]}-{uuid.uuid4().hex}.part"
        # Never stored by this fill: the leading replica commits the blob to the shared storage,
        # where a reader that comes after the spool file is gone reads it.
        self.driver = driver
        self.storage_key = blob_key(digest.algorithm, digest.hex)
        self.committed_path = driver.local_path(self.storage_key)
        self.size: int | None = None
        self.written = 0
        self.state = FillState.RUNNING
        self.error: RegistryError | None = None
        self._started = asyncio.Event()
        self._changed = asyncio.Event()
        # A lock of this host held for the whole fill, and the record that lets the other
        # workers of this replica follow it (FollowFill) instead of opening their own stream.
        self._lock = lock
        self._record_path = record_path
        self.task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"PeerFill({self.digest} from {self.peer_url}, {self.state.value})"

    def start(self) -> asyncio.Task[None]:
        # The spool file exists from here on, so readers may open it at once.
        fd = os.open(self.spool_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.task = asyncio.get_running_loop().create_task(
            self._run(fd), name=f"peer fill {self.digest}"
        )
        return self.task

    async def wait_started(self) -> None:
        """Wait until the peer answered with headers; raise the fill's error if it failed first."""
        await self._started.wait()
        if self.state is FillState.FAILED:
            assert self.error is not None
            raise self.error

    async def close(self) -> None:
        """Stop the transfer (readers get an error) and remove the spool file."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        _remove(self.spool_path)

    async def _spool_gone(self) -> None:
        # Only a verified fill's spool file goes while the fill is still handed out: by then
        # the leading replica has most likely stored the blob.
        if self.state is FillState.VERIFIED:
            size = await self.driver.size(self.storage_key)
            if size is not None and size == self.written:
                self.state = FillState.COMMITTED

    async def _run(self, fd: int) -> None:
        hasher = self.digest.hasher()
        try:
            async with asyncio.timeout(self._deadline):
                await self._download(fd, hasher)
            self._verify(hasher.hexdigest())
            self.state = FillState.VERIFIED
            self._started.set()
            self._notify()
            await asyncio.to_thread(self._publish)
        except RegistryError as exc:
            self._fail(exc)
        except TimeoutError:
            self._fail(
                UpstreamTimeout(
                    f"streaming {self.digest} from peer {self.peer_url} did not finish within "
                    f"{self._deadline:.0f}s (fill_deadline)"
                )
            )
        except asyncio.CancelledError:
            self._fail(UpstreamUnavailable(f"streaming {self.digest} was cancelled (shutdown)"))
            raise
        except Exception as exc:
            log.exception("streaming %s from peer %s failed", self.digest, self.peer_url)
            self._fail(
                UpstreamUnavailable(f"streaming {self.digest} from peer {self.peer_url}: {exc}")
            )
        finally:
            os.close(fd)
            linger = SPOOL_LINGER_SECONDS
            if self.state is FillState.FAILED:
                _remove(self.spool_path)
                self._publish()
                linger = FAILED_RECORD_SECONDS
            if self._lock is not None:
                await self._lock.release()
            loop = asyncio.get_running_loop()
            loop.call_later(SPOOL_LINGER_SECONDS, _remove, self.spool_path)
            if self._record_path is not None:
                loop.call_later(linger, forget_record, self._record_path, self.spool_path.name)

    def _publish(self) -> None:
        """Tell the other workers of this replica where this fill stands."""
        if self._record_path is None:
            return
        record = FillRecord.of(
            self.spool_path.name, self.size, self.repository, self.state, self.error
        )
        record.write(self._record_path)

    def _fail(self, error: RegistryError) -> None:
        self.state = self.state.failing()
        self.error = error
        self._started.set()
        self._notify()
        log.warning("streaming %s from peer %s failed: %s", self.digest, self.peer_url, error)

    async def _receive(self, spool: SpoolWriter) -> None:
        received = 0  # bytes handed to the spool writer; `written` trails it a little
        resumes = 0
        while True:
            try:
                async for chunk in self._stream_from(received):
                    received += len(chunk)
                    if self.size is not None and received > self.size:
                        raise UpstreamInvalid(
                            f"peer {self.peer_url} sent more than the {self.size} bytes it "
                            f"announced for {self.digest}"
                        )
                    await spool.write(chunk)
                    self._notify()
                return
            except _StreamBroke as broke:
                resumes += 1
                if resumes > RESUME_ATTEMPTS:
                    raise UpstreamUnavailable(
                        f"the stream of {self.digest} from peer {self.peer_url} broke at byte "
                        f"{received} ({broke.reason}); its fill failed or it went away; retry"
                    ) from None
                log.info(
                    "resuming %s from peer %s at byte %d after: %s",
                    self.digest,
                    self.peer_url,
                    received,
                    broke.reason,
                )
            except PeerHasNoFill as exc:
                if received == 0:
                    raise
                raise UpstreamUnavailable(
                    f"the stream of {self.digest} from peer {self.peer_url} broke at byte "
                    f"{received} and the peer has no fill of it now (its fill failed?); retry"
                ) from exc

    async def _stream_from(self, offset: int) -> AsyncIterator[bytes]:
        """The peer's bytes from `offset` on; _StreamBroke when the connection drops."""
        url = f"{self.peer_url}{FILLS_PATH}{self.digest}"
        headers = {"Authorization": self._tokens.authorization(str(self.digest))}
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_SECONDS, sock_read=READ_TIMEOUT_SECONDS
        )
        try:
            async with self._session.get(
                url, params={"offset": str(offset)}, headers=headers, timeout=timeout
            ) as response:
                if response.status != 200:
                    raise await self._refusal(response)
                if response.headers.get(OFFSET_HEADER) != str(offset):
                    raise UpstreamInvalid(
                        f"peer {self.peer_url} did not start {self.digest} at byte {offset}"
                    )
                size_text = response.headers.get(SIZE_HEADER)
                if self.size is None and size_text is not None and size_text.isdigit():
                    self.size = int(size_text)
                if not self._started.is_set():
                    await asyncio.to_thread(self._publish)
                self._started.set()
                self._notify()
                async for chunk, _ in response.content.iter_chunks():
                    yield chunk
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # Timeouts too: aiohttp's connect and read timeouts are connection errors.
            raise _StreamBroke(str(exc) or type(exc).__name__) from None

    async def _refusal(self, response: aiohttp.ClientResponse) -> RegistryError:
        try:
            body = json.loads(await response.read())
            message = str(body["errors"][0]["message"])
        except (ValueError, KeyError, IndexError, TypeError, aiohttp.ClientError):
            message = response.reason or ""
        if response.status == 404:
            return PeerHasNoFill(f"peer {self.peer_url} has no fill of {self.digest}: {message}")
        if response.status == 401:
            return UpstreamUnavailable(
                f"peer {self.peer_url} refused this replica's peer token for {self.digest} "
                f"(do the replicas share PULLTHROUGH_TOKEN_KEY?): {message}"
            )
        return UpstreamUnavailable(
            f"peer {self.peer_url} answered {response.status} for {self.digest}: {message}"
        )

    def _verify(self, actual_hex: str) -> None:
        if self.size is not None and self.written != self.size:
            raise UpstreamInvalid(
                f"peer {self.peer_url} sent {self.written} bytes for {self.digest}, not the "
                f"{self.size} it announced; discarded"
            )
        if actual_hex != self.digest.hex:
            raise UpstreamInvalid(
                f"peer {self.peer_url} sent bytes for {self.digest} whose digest is "
                f"{self.digest.algorithm}:{actual_hex}; discarded"
            )


async def host_fill(
    digest: Digest,
    *,
    leading: Iterable[Fill],
    locks: Locks,
    driver: BlobDriver,
    spool_dir: Path,
    deadline: float,
    own_url: str,
) -> Fill | None:
    """The fill of `digest` this host runs: one this worker leads (`leading`), or another
    worker's, followed through its record; None when no worker of this host fills it (one that
    committed just now is followed too: its readers read the stored blob). `own_url` is this
    replica's advertise URL: a fill lock another replica holds is not this host's fill."""
    for fill in leading:
        if fill.digest == digest and fill.state is not FillState.FAILED:
            return fill
    lock = locks.blob_fill(digest.algorithm, digest.hex)
    holder = await lock.holder_url()
    if (holder is not None and holder != own_url) or await lock.is_free():
        return None
    follower = FollowFill(
        digest=digest,
        lock=lock,
        record_path=record_path(spool_dir, digest.algorithm, digest.hex),
        final_path=driver.local_path(blob_key(digest.algorithm, digest.hex)),
        driver=driver,
        deadline=deadline,
    )
    try:
        async with asyncio.timeout(ATTACH_SECONDS):
            attached = await follower.attach()
    except TimeoutError:
        return None
    return follower if attached else None


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
