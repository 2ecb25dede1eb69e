"""The blob driver contract, the same tests over the filesystem and over S3 (a real Swift with
s3api, started by the `s3_server` fixture): what is stored reads back byte for byte, nothing is
visible at a key before it is complete, and what is gone is gone."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pullthrough.config import ConfigError, Settings, StorageConfig, load_settings
from pullthrough.lifecycle.gc import collect_garbage
from pullthrough.metadata.space import SpaceStore
from pullthrough.metadata.store import MetadataStore
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.filesystem import FilesystemDriver
from pullthrough.storage.layout import blob_key
from pullthrough.storage.locks import FileLocks
from pullthrough.storage.opening import StorageCredentialError, open_blob_storage
from pullthrough.storage.s3 import MiB, S3Credentials, S3Driver
from tests.rig.s3server import S3Server

pytestmark = pytest.mark.contract

PREFIX = "cache/one"  # S3 keys live under s3://bucket/cache/one
PAGE = 7  # a small listing page, so listings of a few dozen keys take several requests


def _s3_driver(server: S3Server, bucket: str, prefix: str = PREFIX) -> S3Driver:
    return S3Driver(
        bucket,
        prefix,
        endpoint=server.endpoint,
        region=server.region,
        path_style=True,
        credentials=S3Credentials(server.access_key, server.secret_key),
        part_size=5 * MiB,
        page_size=PAGE,
    )


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobDriver]:
    made: BlobDriver
    if request.param == "filesystem":
        (tmp_path / "blobs").mkdir()
        made = FilesystemDriver(tmp_path / "blobs")
    else:
        made = _s3_driver(
            request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
        )
    try:
        yield made
    finally:
        await made.close()


def _key(name: str) -> str:
    hex_digest = hashlib.sha256(name.encode()).hexdigest()
    return blob_key("sha256", hex_digest)


def _spool(tmp_path: Path, data: bytes, name: str = "spool") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def _read(driver: BlobDriver, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in driver.read(key, start, end)])


def _uploads(server: S3Server, bucket: str) -> list[str]:
    """The keys of the bucket's unfinished multipart uploads, as the server lists them."""
    listing = server.request("GET", f"/{bucket}", query={"uploads": ""})
    assert listing.status_code == 200, listing.text
    return re.findall(r"<Upload>.*?<Key>(.*?)</Key>", listing.text, re.DOTALL)


async def test_a_stored_file_reads_back_whole_and_in_ranges(
    driver: BlobDriver, tmp_path: Path
) -> None:
    data = os.urandom(3 * MiB + 12345)
    key = _key("layer")
    source = _spool(tmp_path, data)
    before = time.time()
    await driver.put_file(key, source)

    assert not source.exists()  # consumed
    assert await driver.size(key) == len(data)
    stat = await driver.stat(key)
    assert stat is not None and stat.size == len(data)
    assert before - 120 < stat.modified_at < time.time() + 120  # seconds since the epoch
    assert hashlib.sha256(await _read(driver, key)).digest() == hashlib.sha256(data).digest()
    assert await _read(driver, key, 1000, 2000) == data[1000:2000]
    assert await _read(driver, key, 0, 10) == data[:10]
    assert await _read(driver, key, len(data) - 10) == data[-10:]
    assert await _read(driver, key, 2 * MiB) == data[2 * MiB :]
    assert await _read(driver, key, 10, 10) == b""
    assert await _read(driver, key, len(data)) == b""


async def test_an_empty_object_is_an_object(driver: BlobDriver, tmp_path: Path) -> None:
    key = _key("empty")
    await driver.put_file(key, _spool(tmp_path, b""))
    assert await driver.size(key) == 0
    assert await _read(driver, key) == b""


async def test_a_missing_key_has_no_size_and_cannot_be_read(driver: BlobDriver) -> None:
    key = _key("never stored")
    assert await driver.size(key) is None
    assert await driver.stat(key) is None
    with pytest.raises(FileNotFoundError):
        await _read(driver, key)
    with pytest.raises(FileNotFoundError):
        await _read(driver, key, 5, 10)


async def test_put_file_replaces_what_the_key_held(driver: BlobDriver, tmp_path: Path) -> None:
    key = _key("replaced")
    await driver.put_file(key, _spool(tmp_path, b"first version"))
    await driver.put_file(key, _spool(tmp_path, b"second"))
    assert await _read(driver, key) == b"second"


async def test_a_large_file_is_stored_whole(driver: BlobDriver, tmp_path: Path) -> None:
    # Larger than one part: S3 stores it as a multipart upload.
    data = os.urandom(11 * MiB + 7)
    key = _key("large")
    await driver.put_file(key, _spool(tmp_path, data))
    assert await driver.size(key) == len(data)
    assert await _read(driver, key) == data


async def test_a_streamed_upload_is_invisible_until_complete(
    driver: BlobDriver, tmp_path: Path
) -> None:
    key = _key("streamed")
    upload = driver.upload(key)
    if upload is None:
        assert isinstance(driver, FilesystemDriver)  # it stores the fill's spool file instead
        return
    data = os.urandom(20 * MiB + 333)
    step = 1_000_003  # odd-sized writes, not aligned to parts
    for offset in range(0, len(data), step):
        await upload.write(data[offset : offset + step])
        assert await driver.size(key) is None
    assert [k async for k in driver.keys("blobs")] == []
    await upload.complete()

    assert await driver.size(key) == len(data)
    assert hashlib.sha256(await _read(driver, key)).digest() == hashlib.sha256(data).digest()
    assert await _read(driver, key, 5 * MiB - 3, 5 * MiB + 3) == data[5 * MiB - 3 : 5 * MiB + 3]
    await upload.abort()  # after complete: nothing happens
    assert await driver.size(key) == len(data)


async def test_a_small_streamed_upload_completes(driver: BlobDriver) -> None:
    for name, data in (("small", b"a small config blob"), ("nothing", b"")):
        key = _key(name)
        upload = driver.upload(key)
        if upload is None:
            return
        await upload.write(data)
        assert await driver.size(key) is None
        await upload.complete()
        assert await _read(driver, key) == data


async def test_an_aborted_upload_leaves_nothing(
    driver: BlobDriver, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    key, kept = _key("aborted"), _key("kept")
    await driver.put_file(kept, _spool(tmp_path, b"the old object"))
    for target in (key, kept):
        upload = driver.upload(target)
        if upload is None:
            return
        await upload.write(os.urandom(12 * MiB))  # parts went up already
        await upload.abort()
        await upload.abort()  # twice is fine
    assert await driver.size(key) is None
    assert await _read(driver, kept) == b"the old object"  # the key stays as it was
    server: S3Server = request.getfixturevalue("s3_server")
    assert _uploads(server, request.getfixturevalue("s3_bucket")) == []


async def test_sweep_aborts_an_upload_a_killed_process_left(
    driver: BlobDriver, request: pytest.FixtureRequest
) -> None:
    if isinstance(driver, FilesystemDriver):
        assert await driver.sweep_uploads(time.time() + 60) == 0  # it has no uploads
        return
    assert isinstance(driver, S3Driver)
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    key = _key("abandoned")
    # What a process killed mid-fill leaves: an upload begun, a part sent, never completed.
    s3 = await driver.client()
    started = await s3.create_multipart_upload(Bucket=bucket, Key=driver.object_key(key))
    await s3.upload_part(
        Bucket=bucket,
        Key=driver.object_key(key),
        UploadId=started["UploadId"],
        PartNumber=1,
        Body=os.urandom(5 * MiB),
    )
    assert _uploads(server, bucket) == [driver.object_key(key)]

    assert await driver.sweep_uploads(time.time() - 3600) == 0  # younger than that: kept
    assert _uploads(server, bucket) == [driver.object_key(key)]
    assert await driver.sweep_uploads(time.time() + 60) == 1
    assert _uploads(server, bucket) == []
    assert await driver.size(key) is None


async def test_delete_removes_and_a_missing_key_is_no_error(
    driver: BlobDriver, tmp_path: Path
) -> None:
    key = _key("deleted")
    await driver.put_file(key, _spool(tmp_path, b"bytes"))
    await driver.delete(key)
    assert await driver.size(key) is None
    await driver.delete(key)
    await driver.delete(_key("never stored"))


async def test_keys_lists_every_key_under_a_prefix(driver: BlobDriver, tmp_path: Path) -> None:
    blobs = sorted(_key(f"blob {n}") for n in range(23))
    others = ["other/a", "other/b/c", "blobsides/x"]
    for n, key in enumerate(blobs + others):
        await driver.put_file(key, _spool(tmp_path, f"object {n}".encode()))

    assert sorted([k async for k in driver.keys("blobs")]) == blobs
    assert sorted([k async for k in driver.keys("other")]) == ["other/a", "other/b/c"]
    assert sorted([k async for k in driver.keys("")]) == sorted(blobs + others)
    assert [k async for k in driver.keys("nothing/here")] == []


async def test_a_presigned_url_hands_out_the_object(driver: BlobDriver, tmp_path: Path) -> None:
    data = os.urandom(MiB + 5)
    key = _key("presigned")
    await driver.put_file(key, _spool(tmp_path, data))
    url = await driver.presigned_url(key, 300)
    if isinstance(driver, FilesystemDriver):
        assert url is None
        return
    assert url is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        assert response.status_code == 200
        assert response.content == data
        signature = re.search(r"Signature=([0-9a-f]+)", url)
        assert signature is not None
        wrong = "1" if signature[1][0] == "0" else "0"
        tampered = await client.get(
            url.replace(signature[0], f"Signature={wrong}{signature[1][1:]}")
        )
        assert tampered.status_code == 403


async def test_ping_answers_when_storage_works(driver: BlobDriver) -> None:
    await driver.ping()


@pytest.mark.s3
async def test_ping_fails_for_a_missing_bucket(s3_server: S3Server) -> None:
    driver = _s3_driver(s3_server, "no-such-bucket-here")
    try:
        with pytest.raises(OSError, match="no-such-bucket-here"):
            await driver.ping()
    finally:
        await driver.close()


@pytest.mark.s3
async def test_s3_objects_live_under_the_url_prefix(s3_server: S3Server, s3_bucket: str) -> None:
    driver = _s3_driver(s3_server, s3_bucket, "team/cache/")
    other = _s3_driver(s3_server, s3_bucket, "elsewhere")
    try:
        key = _key("prefixed")
        upload = driver.upload(key)
        await upload.write(b"under the prefix")
        await upload.complete()
        listing = s3_server.request("GET", f"/{s3_bucket}", query={"list-type": "2"})
        assert re.findall(r"<Key>(.*?)</Key>", listing.text) == [f"team/cache/{key}"]
        assert [k async for k in driver.keys("")] == [key]
        assert [k async for k in other.keys("")] == []
        assert await other.size(key) is None
    finally:
        await driver.close()
        await other.close()


@pytest.mark.s3
async def test_wrong_keys_are_refused(s3_server: S3Server, s3_bucket: str) -> None:
    driver = S3Driver(
        s3_bucket,
        endpoint=s3_server.endpoint,
        path_style=True,
        credentials=S3Credentials(s3_server.access_key, "not the secret"),
    )
    try:
        with pytest.raises(OSError, match=s3_bucket):
            await driver.ping()
    finally:
        await driver.close()


@pytest.mark.s3
async def test_gc_on_s3_removes_orphans_and_aborts_abandoned_uploads(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    metadata = await MetadataStore.open(f"sqlite+aiosqlite:///{tmp_path / 'metadata.sqlite'}")
    driver = _s3_driver(s3_server, s3_bucket)
    try:
        orphan = _key("orphan: stored, but the process died before its row")
        await driver.put_file(orphan, _spool(tmp_path, b"orphan bytes"))
        abandoned = _key("abandoned upload")
        s3 = await driver.client()
        await s3.create_multipart_upload(Bucket=s3_bucket, Key=driver.object_key(abandoned))

        now = time.time()
        report = await collect_garbage(SpaceStore(metadata.engine), driver, 600, now, settle=0)
        assert (report.orphan_files_deleted, report.uploads_aborted) == (0, 0)  # too young
        assert await driver.size(orphan) == len(b"orphan bytes")

        later = now + 7200  # past gc_grace and the upload grace
        report = await collect_garbage(SpaceStore(metadata.engine), driver, 600, later, settle=0)
        assert report.orphan_files_deleted == 1
        assert report.bytes_freed == len(b"orphan bytes")
        assert report.uploads_aborted == 1
        assert await driver.size(orphan) is None
        assert _uploads(s3_server, s3_bucket) == []
    finally:
        await driver.close()
        await metadata.close()


@pytest.mark.s3
async def test_gc_aborts_an_upload_whose_fill_is_gone_and_keeps_one_a_fill_writes(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """A killed replica's upload goes at the next GC, however young: its fill lock is free."""
    metadata = await MetadataStore.open(f"sqlite+aiosqlite:///{tmp_path / 'metadata.sqlite'}")
    driver = _s3_driver(s3_server, s3_bucket)
    (tmp_path / "locks").mkdir()
    locks = FileLocks(tmp_path / "locks")
    try:
        abandoned = _key("upload of a process killed mid-fill")
        running = _key("upload of a fill still running")
        s3 = await driver.client()
        for key in (abandoned, running):
            await s3.create_multipart_upload(Bucket=s3_bucket, Key=driver.object_key(key))
        running_hex = running.rsplit("/", 1)[1]
        fill_lock = locks.blob_fill("sha256", running_hex)
        assert await fill_lock.try_acquire()

        space = SpaceStore(metadata.engine)
        report = await collect_garbage(space, driver, 600, locks=locks, settle=0)
        assert report.uploads_aborted == 1
        assert _uploads(s3_server, s3_bucket) == [driver.object_key(running)]

        await fill_lock.release()  # the fill's process is gone now too
        report = await collect_garbage(space, driver, 600, locks=locks, settle=0)
        assert report.uploads_aborted == 1
        assert _uploads(s3_server, s3_bucket) == []
    finally:
        await driver.close()
        await metadata.close()


def _settings(tmp_path: Path, **storage: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", storage=StorageConfig.model_validate(storage))


class _NamedKeys:
    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password


class _Secrets:
    """The secret store's `get`, over a dictionary."""

    def __init__(self) -> None:
        self.values: dict[str, _NamedKeys] = {}

    async def get(self, name: str) -> _NamedKeys | None:
        return self.values.get(name)


@pytest.mark.s3
async def test_open_blob_storage_chooses_the_driver_the_settings_name(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    local = await open_blob_storage(_settings(tmp_path))
    assert isinstance(local, FilesystemDriver)
    await local.close()

    settings = _settings(
        tmp_path,
        url=f"s3://{s3_bucket}/some/prefix",
        endpoint=s3_server.endpoint,
        path_style=True,
        credentials_secret="storage/s3",
    )
    with pytest.raises(StorageCredentialError, match="secret store"):
        await open_blob_storage(settings)

    store = _Secrets()
    remote = await open_blob_storage(settings, store)
    assert isinstance(remote, S3Driver)
    assert (remote.bucket, remote.prefix, remote.path_style) == (s3_bucket, "some/prefix", True)
    try:
        # Looked up at first use: a server starts before its storage secret is stored.
        with pytest.raises(StorageCredentialError, match="storage/s3"):
            await remote.ping()
        store.values["storage/s3"] = _NamedKeys(s3_server.access_key, s3_server.secret_key)
        await remote.ping()
        await remote.put_file(_key("via settings"), _spool(tmp_path, b"stored"))
        assert await remote.size(_key("via settings")) == len(b"stored")
    finally:
        await remote.close()


@pytest.mark.s3
async def test_keys_changed_in_the_secret_store_are_used_from_the_next_recheck(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """Keys read from the secret store are never kept past a rotation: revoked keys stop being
    used, and a deleted secret stops the bucket's use."""
    good = S3Credentials(s3_server.access_key, s3_server.secret_key)
    current: list[S3Credentials | None] = [good]

    async def lookup() -> S3Credentials:
        keys = current[0]
        if keys is None:
            raise StorageCredentialError("the secret is gone")
        return keys

    driver = S3Driver(
        s3_bucket,
        PREFIX,
        endpoint=s3_server.endpoint,
        region=s3_server.region,
        path_style=True,
        credentials=lookup,
        keys_recheck=0.2,
    )
    try:
        await driver.ping()
        current[0] = S3Credentials(s3_server.access_key, "revoked-secret")
        await asyncio.sleep(0.3)
        with pytest.raises(OSError, match="403"):  # the revoked keys are refused
            await driver.ping()
        current[0] = good
        await asyncio.sleep(0.3)
        await driver.ping()
        current[0] = None
        await asyncio.sleep(0.3)
        with pytest.raises(StorageCredentialError, match="gone"):
            await driver.ping()
    finally:
        await driver.close()


def test_storage_keys_come_from_the_aws_environment(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("storage:\n  url: s3://bucket-one/cache\n  path_style: true\n")
    environ = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    storage = load_settings(config, environ).storage
    assert (storage.bucket, storage.prefix) == ("bucket-one", "cache")
    assert (storage.access_key_id, storage.secret_access_key) == ("AKIAEXAMPLE", "s3cr3t")
    assert "s3cr3t" not in repr(storage)
    # A secret named in the configuration wins over the environment.
    config.write_text("storage:\n  url: s3://bucket-one\n  credentials_secret: storage/s3\n")
    storage = load_settings(config, environ).storage
    assert storage.access_key_id is None and storage.credentials_secret == "storage/s3"
    assert storage.prefix == ""


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("{url: 'http://bucket/x'}", "is not s3://bucket"),
        ("{url: 's3://Bad_Bucket'}", "is not a bucket name"),
        ("{url: 's3://bucket-one/a//b'}", "empty, . or .. segment"),
        ("{url: 's3://bucket-one', endpoint: 'minio:9000'}", "is not an http:// or https://"),
        ("{redirect_blobs: true}", "redirect_blobs needs blobs on S3"),
        ("{url: 's3://bucket-one', access_key_id: AKIA}", "go together"),
        ("{url: 's3://bucket-one', redirect_ttl: 8d}", "redirect_ttl is between"),
    ],
)
def test_storage_settings_are_checked(tmp_path: Path, storage: str, message: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"storage: {storage}\n")
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load_settings(config, {})
    assert ": storage" in str(raised.value)
