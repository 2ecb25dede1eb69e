"""Blobs as objects in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Swift's s3api, ...).

Keys are the driver keys under the URL's prefix (`s3://bucket/prefix` stores `blobs/sha256/ab/…`
at `prefix/blobs/sha256/ab/…`). Nothing is visible at a key until it is complete: `put_file` is
one PutObject (or a multipart upload for a large file), and a streamed `upload` is a multipart
upload whose parts go up in the background while the fill downloads, completed only after the
fill verified the digest. An upload left behind by a killed process stays invisible and is
aborted by `sweep_uploads`, which garbage collection calls.

One aiobotocore client per driver, made at first use and closed by `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from pullthrough.storage.driver import PendingUpload, StoredObject

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

MiB = 1 << 20
# S3's smallest part (but the last) is 5 MiB; 8 MiB parts make 80 GB in 10,000 parts, and the
# part size grows by 8 MiB every 1,000 parts, so S3's 10,000-part limit is ~440 GB.
PART_SIZE = 8 * MiB
_PARTS_PER_STEP = 1000
# Parts of one upload in flight at once; a writer waits only when all of them are busy.
UPLOAD_CONCURRENCY = 4
_READ_CHUNK = 1 << 20
_MISSING_CODES = ("404", "NoSuchKey", "NotFound")


@dataclass(frozen=True, slots=True)
class S3Credentials:
    """An access key id and its secret; the secret never appears in a repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


# Looked up when the client is made (at first use), so a server can start before its storage
# secret is stored; and again at most every KEYS_RECHECK_SECONDS, so that keys rotated (or a
# secret deleted) in the secret store are used from then on, never the old ones.
CredentialsLookup = Callable[[], Awaitable[S3Credentials | None]]
KEYS_RECHECK_SECONDS = 1.0


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_missing(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 404 or _error_code(exc) in _MISSING_CODES


class S3Driver:
    """The BlobDriver over one bucket (and key prefix) of an S3-compatible service."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        path_style: bool = False,
        credentials: S3Credentials | CredentialsLookup | None = None,
        part_size: int = PART_SIZE,
        upload_concurrency: int = UPLOAD_CONCURRENCY,
        page_size: int = 1000,
        keys_recheck: float = KEYS_RECHECK_SECONDS,
    ) -> None:
        if part_size < 5 * MiB:
            raise ValueError("S3 parts (but the last) are at least 5 MiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self.region = region
        self.path_style = path_style
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency
        self.page_size = page_size
        self._credentials = credentials
        self._keys_recheck = keys_recheck
        self._keys: S3Credentials | None = None  # what the current client signs with
        self._keys_checked_at = -float("inf")
        self._client: S3Client | None = None
        self._client_lock = asyncio.Lock()
        self._exits = contextlib.AsyncExitStack()
        self._closed = False

    def __repr__(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"S3Driver({where}, endpoint={self.endpoint or 'AWS'})"

    def object_key(self, key: str) -> str:
        """The bucket key of the driver key `key`."""
        key = key.lstrip("/")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _driver_key(self, object_key: str) -> str:
        return object_key[len(self.prefix) + 1 :] if self.prefix else object_key

    async def client(self) -> S3Client:
        """The driver's client, made at first use, and made again when the keys read from the
        secret store changed."""
        client = self._client
        if client is not None and not self._keys_due():
            return client
        async with self._client_lock:
            if self._closed:
                raise RuntimeError("the S3 driver is closed")
            if self._client is None or self._keys_due():
                keys = self._credentials
                if callable(keys):
                    self._keys_checked_at = time.monotonic()
                    keys = await keys()
                if self._client is None or keys != self._keys:
                    # A client made with the old keys may still serve requests in flight; it
                    # is closed with the driver.
                    made = await self._exits.enter_async_context(self._create_client(keys))
                    self._client, self._keys = made, keys
            client = self._client
        return client

    def _keys_due(self) -> bool:
        """Whether the keys come from the secret store and were last read too long ago."""
        return (
            callable(self._credentials)
            and time.monotonic() - self._keys_checked_at >= self._keys_recheck
        )

    def _create_client(self, keys: S3Credentials | None) -> ClientCreatorContext[S3Client]:
        config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path" if self.path_style else "auto"},
            retries={"max_attempts": 4, "mode": "standard"},
            # Checksums S3-compatible services may not know (x-amz-checksum-*, aws-chunked
            # trailers) only where an operation needs one.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=64,
            connect_timeout=10,
            read_timeout=60,
        )
        return get_session().create_client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint,
            config=config,
            aws_access_key_id=None if keys is None else keys.access_key_id,
            aws_secret_access_key=None if keys is None else keys.secret_access_key,
        )

    async def size(self, key: str) -> int | None:
        found = await self.stat(key)
        return None if found is None else found.size

    async def stat(self, key: str) -> StoredObject | None:
        s3 = await self.client()
        try:
            head = await s3.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return StoredObject(
            size=head["ContentLength"], modified_at=head["LastModified"].timestamp()
        )

    def local_path(self, key: str) -> Path | None:
        return None

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        s3 = await self.client()
        object_key = self.object_key(key)
        try:
            if start > 0 or end is not None:
                response = await s3.get_object(
                    Bucket=self.bucket,
                    Key=object_key,
                    Range=f"bytes={start}-{'' if end is None else end - 1}",
                )
            else:
                response = await s3.get_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _error_code(exc) == "NoSuchKey" or _is_missing(exc):
                raise FileNotFoundError(f"no stored object {key}") from None
            if _error_code(exc) == "InvalidRange":
                return  # start at or past the end: nothing, as a file read there gives
            raise
        async with response["Body"] as body:
            async for chunk in body.iter_chunks(_READ_CHUNK):
                yield chunk

    async def put_file(self, key: str, source: Path) -> None:
        size = (await asyncio.to_thread(os.stat, source)).st_size
        if size <= self.part_size:
            data = await asyncio.to_thread(source.read_bytes)
            s3 = await self.client()
            await s3.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)
        else:
            upload = self.upload(key)
            try:
                with source.open("rb") as handle:
                    while chunk := await asyncio.to_thread(handle.read, self.part_size):
                        await upload.write(chunk)
                await upload.complete()
            finally:
                await upload.abort()  # nothing to do once complete
        await asyncio.to_thread(source.unlink, missing_ok=True)

    def upload(self, key: str) -> S3Upload:
        return S3Upload(self, self.object_key(key))

    async def presigned_url(self, key: str, expires_in: float) -> str | None:
        s3 = await self.client()
        return await s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.object_key(key)},
            ExpiresIn=max(1, int(expires_in)),
        )

    async def delete(self, key: str) -> None:
        s3 = await self.client()
        try:
            await s3.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if not _is_missing(exc):
                raise

    def _list_prefix(self, prefix: str) -> str:
        prefix = prefix.strip("/")
        if prefix:
            return self.object_key(prefix) + "/"
        return f"{self.prefix}/" if self.prefix else ""

    async def keys(self, prefix: str) -> AsyncIterator[str]:
        s3 = await self.client()
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self._list_prefix(prefix),
            PaginationConfig={"PageSize": self.page_size},
        )
        async for page in pages:
            for found in page.get("Contents", []):
                yield self._driver_key(found["Key"])

    async def pending_uploads(self) -> AsyncIterator[PendingUpload]:
        s3 = await self.client()
        pages = s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket,
            Prefix=self._list_prefix(""),
            PaginationConfig={"PageSize": self.page_size},
        )
        async for page in pages:
            for upload in page.get("Uploads", []):
                yield PendingUpload(
                    key=self._driver_key(upload["Key"]),
                    upload_id=upload["UploadId"],
                    initiated_at=upload["Initiated"].timestamp(),
                )

    async def abort_upload(self, upload: PendingUpload) -> bool:
        s3 = await self.client()
        try:
            await s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.object_key(upload.key), UploadId=upload.upload_id
            )
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":
                raise
            return False  # completed or aborted meanwhile
        log.warning("aborted an unfinished upload of %s (a process killed mid-fill?)", upload.key)
        return True

    async def sweep_uploads(self, older_than: float) -> int:
        stale = [u async for u in self.pending_uploads() if u.initiated_at < older_than]
        aborted = 0
        for upload in stale:
            aborted += await self.abort_upload(upload)
        return aborted

    async def ping(self) -> None:
        s3 = await self.client()
        try:
            await s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise OSError(f"bucket {self.bucket}: {_error_code(exc) or exc}") from None

    async def close(self) -> None:
        async with self._client_lock:
            self._closed = True
            self._client = None
            await self._exits.aclose()


class S3Upload:
    """A multipart upload to one key, in parts of `part_size` sent in the background.

    Memory: the part being filled plus at most `upload_concurrency` parts in flight. An object
    smaller than one part is sent by `complete` as one PutObject instead.
    """

    def __init__(self, driver: S3Driver, object_key: str) -> None:
        self._driver = driver
        self._key = object_key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._next_part = 1
        self._etags: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(driver.upload_concurrency)
        self._failure: BaseException | None = None
        self._finished = False  # completed or aborted

    def _part_size(self) -> int:
        return self._driver.part_size * (1 + (self._next_part - 1) // _PARTS_PER_STEP)

    def _check(self) -> None:
        if self._finished:
            raise RuntimeError(f"the upload of {self._key} is already completed or aborted")
        if self._failure is not None:
            raise self._failure

    async def write(self, chunk: bytes) -> None:
        self._check()
        self._buffer += chunk
        while len(self._buffer) >= (size := self._part_size()):
            part = bytes(self._buffer[:size])
            del self._buffer[:size]
            await self._send(part)

    async def _send(self, part: bytes) -> None:
        s3 = await self._driver.client()
        if self._upload_id is None:
            started = await s3.create_multipart_upload(Bucket=self._driver.bucket, Key=self._key)
            self._upload_id = started["UploadId"]
        await self._slots.acquire()
        if self._failure is not None:
            self._slots.release()
            raise self._failure
        number, self._next_part = self._next_part, self._next_part + 1
        task = asyncio.create_task(self._send_part(s3, self._upload_id, number, part))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_part(self, s3: S3Client, upload_id: str, number: int, part: bytes) -> None:
        try:
            sent = await s3.upload_part(
                Bucket=self._driver.bucket,
                Key=self._key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part,
            )
            self._etags[number] = sent["ETag"]
        except Exception as exc:
            if self._failure is None:
                self._failure = exc
        finally:
            self._slots.release()

    async def complete(self) -> None:
        self._check()
        try:
            s3 = await self._driver.client()
            if self._upload_id is None:
                body, self._buffer = bytes(self._buffer), bytearray()
                await s3.put_object(Bucket=self._driver.bucket, Key=self._key, Body=body)
            else:
                if self._buffer:
                    last, self._buffer = bytes(self._buffer), bytearray()
                    await self._send(last)
                await asyncio.gather(*self._tasks)
                self._check()
                parts: list[CompletedPartTypeDef] = [
                    {"PartNumber": n, "ETag": etag} for n, etag in sorted(self._etags.items())
                ]
                await s3.complete_multipart_upload(
                    Bucket=self._driver.bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            await self.abort()
            raise
        self._finished = True

    async def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._buffer = bytearray()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._upload_id is None:
            return
        try:
            s3 = await self._driver.client()
            await s3.abort_multipart_upload(
                Bucket=self._driver.bucket, Key=self._key, UploadId=self._upload_id
            )
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":
                log.warning("could not abort the upload of %s: %s (the sweep will)", self._key, exc)
        except Exception as exc:
            log.warning("could not abort the upload of %s: %s (the sweep will)", self._key, exc)
