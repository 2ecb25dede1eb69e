"""Three replicas behind nginx on one PostgreSQL database and one S3 bucket, filling cold blobs
together: upstream is asked once per blob across the cluster, the clients of the replicas that
do not fetch a blob stream it from the one that does (first bytes before the fill completes),
and a replica killed mid-fill leaves its work to the others and nothing behind in the bucket
once garbage is collected."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pullthrough.oci.mediatypes import UPSTREAM_ACCEPT
from pullthrough.storage.layout import blob_key
from tests.conftest import MakeProxy
from tests.integration.cache_setup import wait_for
from tests.integration.conftest import StartReplicas
from tests.rig.images import FixtureImages
from tests.rig.proxy import CountingProxy
from tests.rig.registry import AuthMode, UpstreamRegistry, require_binary
from tests.rig.replicas import S3_PREFIX, Replicas
from tests.rig.s3server import S3Server
from tests.rig.skopeo import SKOPEO_TIMEOUT, skopeo_copy, verified_dir_digests

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.s3]

CLIENTS = 30
# How long the upstream takes to send the slow blob: long enough for every client to ask for it
# while it is being fetched.
FILL_SECONDS = 6.0
# The large layer's first upstream GET, killed partway: long enough to kill its replica
# mid-fill after the first multipart part went up.
KILLED_FILL_SECONDS = 30.0
KILL_CLIENTS = 4
GC_GRACE = 1.0
PULL_ATTEMPTS = 3


def start_cluster(
    start_replicas: StartReplicas,
    counting_proxy: MakeProxy,
    upstream: UpstreamRegistry,
    s3_server: S3Server,
    bucket: str,
    **settings: Any,
) -> tuple[Replicas, CountingProxy]:
    proxy = counting_proxy(upstream.url)
    rule = {"prefix": "up", "upstream": proxy.url, "default": True}
    replicas = start_replicas([rule], 3, s3=s3_server, bucket=bucket, settings=settings)
    return replicas, proxy


def upstream_blob_gets(proxy: CountingProxy, digest: str) -> int:
    return proxy.count("GET", path_contains=f"/blobs/{digest}")


def object_key(digest: str) -> str:
    algorithm, hex_digest = digest.split(":")
    return f"{S3_PREFIX}/{blob_key(algorithm, hex_digest)}"


def in_bucket(s3: S3Server, bucket: str, digest: str) -> bool:
    """Whether the blob is committed: its object exists (only a verified blob gets its key)."""
    return s3.request("HEAD", f"/{bucket}/{object_key(digest)}").status_code == 200


@asynccontextmanager
async def s3_client(s3: S3Server) -> AsyncIterator[S3Client]:
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name=s3.region,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        config=AioConfig(s3={"addressing_style": "path"}),
    ) as client:
        yield client


async def bucket_contents(s3: S3Server, bucket: str) -> tuple[set[str], list[str]]:
    """Every object key in the bucket, and the keys of its incomplete multipart uploads."""
    keys: set[str] = set()
    uploads: list[str] = []
    async with s3_client(s3) as client:
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket):
            keys |= {item["Key"] for item in page.get("Contents", [])}
        listed = await client.list_multipart_uploads(Bucket=bucket)
        uploads = [upload["Key"] for upload in listed.get("Uploads", [])]
    return keys, uploads


async def known_blobs(database_url: str) -> set[str]:
    """The digests of the blobs the shared metadata has a row for."""
    engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT digest FROM blobs"))
            return {str(row[0]) for row in rows}
    finally:
        await engine.dispose()


# -- one upstream GET per blob across the cluster ---------------------------------------------


def test_thirty_cold_pulls_over_three_replicas_make_one_upstream_get_per_blob(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    start_replicas: StartReplicas,
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    replicas, proxy = start_cluster(
        start_replicas, counting_proxy, upstreams["anonymous"], s3_server, s3_bucket
    )
    image = fixture_images.many_layers
    slow = max(image.blobs, key=lambda b: b.size)
    proxy.throttle(slow.digest, max(1, int(slow.size / FILL_SECONDS)))
    reference = f"{replicas.host}/up/{image.repo}:{image.tag}"

    def pull(index: int) -> tuple[int, str, set[str]]:
        dest = tmp_path / f"pull-{index}"
        result = skopeo_copy(reference, dest)
        got = verified_dir_digests(dest) if result.returncode == 0 else set()
        return result.returncode, result.stderr, got

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        results = list(pool.map(pull, range(CLIENTS), timeout=SKOPEO_TIMEOUT))

    for returncode, stderr, got in results:
        assert returncode == 0, stderr
        assert got == image.all_digests()
    for digest in image.blob_digests():
        assert upstream_blob_gets(proxy, digest) == 1, digest
        assert in_bucket(s3_server, s3_bucket, digest), digest
    served = replicas.balancer.served("/blobs/")
    assert set(served) == {server.host for server in replicas.servers}, served


async def stream_blob(url: str, on_first_chunk: Any) -> str:
    """GET a blob and hash it as it streams; `on_first_chunk()` is called at its first bytes."""
    hasher = hashlib.sha256()
    async with (
        httpx.AsyncClient(timeout=120) as client,
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200, url
        async for chunk in response.aiter_raw():
            if chunk:
                on_first_chunk()
                on_first_chunk = _nothing
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def _nothing() -> None:
    return None


async def test_clients_of_non_leading_replicas_get_first_bytes_before_the_fill_completes(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    start_replicas: StartReplicas,
    s3_server: S3Server,
    s3_bucket: str,
) -> None:
    replicas, proxy = start_cluster(
        start_replicas, counting_proxy, upstreams["anonymous"], s3_server, s3_bucket
    )
    image = fixture_images.oci_app
    slow = max(image.blobs, key=lambda b: b.size)
    proxy.throttle(slow.digest, max(1, int(slow.size / FILL_SECONDS)))
    async with httpx.AsyncClient(timeout=60) as client:
        manifest = await client.get(
            f"{replicas.url}/v2/up/{image.repo}/manifests/{image.tag}",
            headers={"Accept": UPSTREAM_ACCEPT},
        )
    assert manifest.status_code == 200, manifest.text
    leader, *others = replicas.servers
    path = f"/v2/up/{image.repo}/blobs/{slow.digest}"
    # Whether the blob was committed when each replica's client got its first bytes.
    committed_at_first_bytes: dict[str, bool] = {}

    def first_bytes(host: str) -> Any:
        def seen() -> None:
            committed_at_first_bytes[host] = in_bucket(s3_server, s3_bucket, slow.digest)

        return seen

    # The leader's client starts the fill; the others ask once its upstream GET is under way.
    leading = asyncio.create_task(stream_blob(f"{leader.url}{path}", first_bytes(leader.host)))
    deadline = time.monotonic() + 30
    while upstream_blob_gets(proxy, slow.digest) == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert upstream_blob_gets(proxy, slow.digest) == 1
    assert not in_bucket(s3_server, s3_bucket, slow.digest)
    following = [stream_blob(f"{server.url}{path}", first_bytes(server.host)) for server in others]
    digests = await asyncio.gather(leading, *following)

    assert digests == [slow.digest] * len(replicas.servers)
    # A client has every byte once they are verified, a moment before the commit.
    wait_for(lambda: in_bucket(s3_server, s3_bucket, slow.digest), 30, "the commit")
    assert upstream_blob_gets(proxy, slow.digest) == 1
    for server in replicas.servers:
        assert committed_at_first_bytes[server.host] is False, (
            f"{server.host}'s client waited for the whole blob"
        )


# -- a replica killed mid-fill ----------------------------------------------------------------


def pull_until_done(reference: str, dest: Path) -> tuple[int, str, Path]:
    """`skopeo copy --retry-times 3`, run again on failure as a user's script does (skopeo 1.9
    does not retry a body that ends short): the last run's status, its stderr, the directory it
    wrote."""
    returncode, stderr, target = 1, "", dest
    dest.mkdir(parents=True, exist_ok=True)
    for attempt in range(PULL_ATTEMPTS):
        target = dest / f"attempt-{attempt}"
        result = subprocess.run(
            [
                require_binary("skopeo"),
                "--insecure-policy",
                "copy",
                "--retry-times",
                "3",
                "--src-tls-verify=false",
                "--src-no-creds",
                f"docker://{reference}",
                f"dir:{target}",
            ],
            capture_output=True,
            text=True,
            timeout=SKOPEO_TIMEOUT,
            check=False,
        )
        returncode, stderr = result.returncode, result.stderr
        if returncode == 0:
            break
    return returncode, stderr, target


def test_a_replica_killed_mid_fill_leaves_the_pulls_and_the_lease_to_the_others(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    start_replicas: StartReplicas,
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    replicas, proxy = start_cluster(
        start_replicas,
        counting_proxy,
        upstreams["anonymous"],
        s3_server,
        s3_bucket,
        lifecycle={"interval": 0, "gc_grace": GC_GRACE},
    )
    image = fixture_images.large
    layer = max(image.blobs, key=lambda b: b.size)
    # Only the first upstream GET is slow: the one the killed replica makes.
    proxy.throttle(layer.digest, int(layer.size / KILLED_FILL_SECONDS), times=1)
    manifest = httpx.get(
        f"{replicas.url}/v2/up/{image.repo}/manifests/{image.tag}",
        headers={"Accept": UPSTREAM_ACCEPT},
        timeout=60,
    )
    assert manifest.status_code == 200, manifest.text
    leader, *survivors = replicas.servers
    path = f"/v2/up/{image.repo}/blobs/{layer.digest}"

    # A client of the leader directly starts the fill (its stream breaks when the leader dies).
    def leader_client() -> None:
        try:
            with httpx.stream("GET", f"{leader.url}{path}", timeout=120) as response:
                for _ in response.iter_raw():
                    pass
        except httpx.HTTPError:
            pass

    first = threading.Thread(target=leader_client, daemon=True)
    first.start()
    wait_for(lambda: upstream_blob_gets(proxy, layer.digest) == 1, 30, "the upstream GET")
    reference = f"{replicas.host}/up/{image.repo}:{image.tag}"
    with ThreadPoolExecutor(max_workers=KILL_CLIENTS) as pool:
        pulls = [
            pool.submit(pull_until_done, reference, tmp_path / f"pull-{i}")
            for i in range(KILL_CLIENTS)
        ]
        # Mid-fill: the leader's multipart upload has its first part in the bucket.
        wait_for(
            lambda: bool(asyncio.run(bucket_contents(s3_server, s3_bucket))[1]),
            60,
            "the leader's multipart upload",
        )
        assert upstream_blob_gets(proxy, layer.digest) == 1
        leader.kill()
        outcomes = [pull.result(timeout=PULL_ATTEMPTS * SKOPEO_TIMEOUT) for pull in pulls]
    first.join(30)

    for returncode, stderr, target in outcomes:
        assert returncode == 0, stderr
        assert verified_dir_digests(target) == image.all_digests()
    # The lease went to another replica, which fetched the blob once more; nobody else did.
    assert upstream_blob_gets(proxy, layer.digest) == 2
    assert in_bucket(s3_server, s3_bucket, layer.digest)
    # Each client got the whole layer once, from a survivor (nginx sent the retries there).
    # (Counted in bytes sent: a chunked answer's framing makes it a little more.)
    whole = [
        entry.served_by
        for entry in replicas.balancer.entries()
        if entry.method == "GET" and layer.digest in entry.uri and entry.body_bytes >= layer.size
    ]
    assert len(whole) == KILL_CLIENTS, whole
    assert set(whole) <= {server.host for server in survivors}, whole

    # The next garbage collection (on a survivor) aborts the upload the killed replica left
    # (nobody holds its blob's fill lock any more) and leaves only the objects of blobs the
    # metadata knows.
    replicas.command(survivors[0], "lifecycle", "run")
    keys, uploads = asyncio.run(bucket_contents(s3_server, s3_bucket))
    assert uploads == []
    assert replicas.database_url is not None
    known = asyncio.run(known_blobs(replicas.database_url))
    assert keys == {object_key(digest) for digest in known}
    assert image.blob_digests() <= known
