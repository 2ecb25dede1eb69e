"""Prefetch against a fake cache behind httpx.MockTransport: what it asks for (an index's chosen
children, every blob once), how it counts cache and upstream, and how an image fails."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from pullthrough.client.naming import CacheNaming
from pullthrough.client.prefetch import (
    DirectNaming,
    ImageResult,
    Platform,
    Prefetcher,
    merged,
    source_of,
)
from pullthrough.config import RuleConfig
from pullthrough.oci.mediatypes import OCI_INDEX, OCI_MANIFEST

RULES = [
    RuleConfig(prefix="hub", upstream="https://registry-1.docker.io", default=True),
    RuleConfig(prefix="up", upstream="https://up.test"),
]
CACHE_HOST = "cache.test:5000"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


@dataclass
class FakeCache:
    """Manifests and blobs by repository; `cached` says which ones answer `hit`."""

    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    cached: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    header: bool = True
    requests: list[str] = field(default_factory=list)
    require: str | None = None  # an Authorization value; others get a Bearer challenge

    def image(self, repo: str, tag: str | None, seed: str, layers: int = 2) -> tuple[bytes, str]:
        config = f'{{"seed": "{seed}"}}'.encode()
        blobs = [config] + [f"{seed}-layer-{i}".encode() * 1000 for i in range(layers)]
        for blob in blobs:
            self.blobs[digest_of(blob)] = blob
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(CONFIG_TYPE, config),
                "layers": [descriptor(LAYER_TYPE, b) for b in blobs[1:]],
            }
        ).encode()
        self.manifests[(repo, digest_of(manifest))] = (manifest, OCI_MANIFEST)
        if tag:
            self.manifests[(repo, tag)] = (manifest, OCI_MANIFEST)
        return manifest, digest_of(manifest)

    def index(self, repo: str, tag: str, platforms: list[str]) -> bytes:
        children = []
        for platform in platforms:
            os_name, arch = platform.split("/")
            manifest, _ = self.image(repo, None, f"{repo}-{arch}")
            children.append(
                descriptor(OCI_MANIFEST, manifest, platform={"os": os_name, "architecture": arch})
            )
        body = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
        ).encode()
        self.manifests[(repo, tag)] = (body, OCI_INDEX)
        self.manifests[(repo, digest_of(body))] = (body, OCI_INDEX)
        return body

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(path)
        if self.require and request.headers.get("Authorization") != self.require:
            challenge = 'Bearer realm="http://cache.test:5000/token",service="pullthrough"'
            return httpx.Response(
                401,
                headers={"WWW-Authenticate": challenge},
                json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            )
        repo, kind, reference = path.removeprefix("/v2/").rsplit("/", 2)
        if kind == "manifests" and (repo, reference) in self.manifests:
            body, media_type = self.manifests[(repo, reference)]
            return self._answer(body, digest_of(body), {"Content-Type": media_type})
        if kind == "blobs" and reference in self.blobs:
            body = self.blobs[reference]
            if reference in self.corrupt:
                body = body[:-1] + b"X"
            return self._answer(body, reference, {})
        code = "MANIFEST_UNKNOWN" if kind == "manifests" else "BLOB_UNKNOWN"
        message = f"{repo}:{reference} is not upstream"
        return httpx.Response(404, json={"errors": [{"code": code, "message": message}]})

    def _answer(self, body: bytes, digest: str, headers: dict[str, str]) -> httpx.Response:
        headers = {**headers, "Docker-Content-Digest": digest}
        if self.header:
            headers["X-Pullthrough-Cache"] = "hit" if digest in self.cached else "miss"
        self.cached.add(digest)
        return httpx.Response(200, content=body, headers=headers)


async def warm(
    fake: FakeCache, *references: str, platforms: list[Platform] | None = None, **client: Any
) -> list[ImageResult]:
    async with httpx.AsyncClient(
        base_url=f"http://{CACHE_HOST}", transport=httpx.MockTransport(fake.handle), **client
    ) as http:
        prefetcher = Prefetcher(
            http, CacheNaming(RULES, CACHE_HOST), platforms=platforms or [], concurrency=3
        )
        return await prefetcher.warm_all(list(references))


def blob_requests(fake: FakeCache) -> list[str]:
    return [path for path in fake.requests if "/blobs/" in path]


async def test_an_image_is_warmed_from_upstream_then_found_in_the_cache() -> None:
    fake = FakeCache()
    _, digest = fake.image("up/team/app", "v1", "app")
    (first,) = await warm(fake, "up.test/team/app:v1")
    assert first.ok, first.error
    assert first.name == f"{CACHE_HOST}/up/team/app:v1"
    assert first.digest == digest
    assert (first.manifests.upstream, first.blobs.upstream, first.blobs.cache) == (1, 3, 0)
    assert first.bytes_from_upstream == sum(len(b) for b in fake.blobs.values())
    assert first.bytes_from_cache == 0
    assert len(blob_requests(fake)) == 3
    assert fake.requests[0] == "/v2/up/team/app/manifests/v1"

    # Written as a name through the cache this time; everything is a hit now.
    (second,) = await warm(fake, "up/team/app:v1")
    assert (second.manifests.cache, second.blobs.cache, second.blobs.upstream) == (1, 3, 0)
    assert second.bytes_from_cache == first.bytes_from_upstream


async def test_an_index_warms_every_platform_unless_told_which() -> None:
    fake = FakeCache()
    fake.index("hub/library/multi", "latest", ["linux/amd64", "linux/arm64", "linux/s390x"])
    (everything,) = await warm(fake, "multi")  # docker.io/library/multi, via the default rule
    assert everything.ok, everything.error
    assert everything.name == f"{CACHE_HOST}/hub/library/multi:latest"
    assert everything.platforms == ["linux/amd64", "linux/arm64", "linux/s390x"]
    assert everything.manifests.total == 4
    assert everything.blobs.total == 9

    fake = FakeCache()
    fake.index("hub/library/multi", "latest", ["linux/amd64", "linux/arm64", "linux/s390x"])
    (chosen,) = await warm(
        fake, "docker.io/library/multi:latest", platforms=[Platform.parse("linux/arm64")]
    )
    assert chosen.platforms == ["linux/arm64"]
    assert chosen.manifests.total == 2
    arm_blobs = {d for d, b in fake.blobs.items() if b"arm64" in b}
    assert {path.rsplit("/", 1)[1] for path in blob_requests(fake)} == arm_blobs

    (missing,) = await warm(fake, "multi", platforms=[Platform.parse("windows/amd64")])
    assert missing.error is not None
    assert "has no windows/amd64 image" in missing.error
    assert "linux/amd64, linux/arm64, linux/s390x" in missing.error


async def test_a_corrupt_blob_fails_its_image_and_the_others_still_warm() -> None:
    fake = FakeCache()
    fake.image("up/team/good", "v1", "good")
    bad_manifest, _ = fake.image("up/team/bad", "v1", "bad")
    bad_layer = json.loads(bad_manifest)["layers"][0]["digest"]
    fake.corrupt.add(bad_layer)

    good, bad, unknown = await warm(fake, "up/team/good:v1", "up/team/bad:v1", "up/team/nothing:v1")
    assert good.ok
    assert bad.error is not None
    assert f"blob {bad_layer} of up/team/bad failed verification" in bad.error
    assert "the image was not warmed" in bad.error
    assert unknown.error == "up/team/nothing:v1: up/team/nothing:v1 is not upstream (HTTP 404)"
    total = merged([good, bad, unknown])
    assert total.error == "2 of 3 failed"
    assert total.blobs.total >= 3


async def test_a_manifest_that_does_not_match_its_digest_fails() -> None:
    fake = FakeCache()
    manifest, digest = fake.image("up/team/app", "v1", "app")
    fake.manifests[("up/team/app", digest)] = (manifest + b" ", OCI_MANIFEST)
    (result,) = await warm(fake, f"up/team/app@{digest}")
    assert result.error is not None
    assert f"manifest up/team/app@{digest} came back as sha256:" in result.error
    assert blob_requests(fake) == []


async def test_without_the_header_the_source_is_unknown() -> None:
    fake = FakeCache(header=False)
    fake.image("up/team/app", "v1", "app")
    (result,) = await warm(fake, "up/team/app:v1")
    assert result.ok
    assert (result.manifests.unknown, result.blobs.unknown) == (1, 3)
    assert result.bytes_unknown == result.bytes > 0
    assert [source_of(v) for v in ("hit", "miss", "stale", "revalidated", None)] == [
        "cache",
        "upstream",
        "cache",
        "cache",
        "unknown",
    ]


async def test_credentials_go_as_basic_and_a_challenge_says_to_pass_a_token() -> None:
    fake = FakeCache(require="Basic Y2k6cHRrX3g=")  # ci:ptk_x
    fake.image("up/team/app", "v1", "app")
    (anonymous,) = await warm(fake, "up/team/app:v1")
    assert anonymous.error is not None
    assert "the server wants credentials: pass --token NAME:API_KEY" in anonymous.error
    (wrong,) = await warm(fake, "up/team/app:v1", headers={"Authorization": "Basic eDp5"})
    assert wrong.error is not None
    assert "refused the credentials in --token" in wrong.error
    (logged_in,) = await warm(
        fake, "up/team/app:v1", headers={"Authorization": "Basic Y2k6cHRrX3g="}
    )
    assert logged_in.ok, logged_in.error


async def test_references_no_rule_caches_fail_with_the_reason() -> None:
    (result,) = await warm(FakeCache(), "quay.io/org/app:1")
    assert result.error is not None
    assert "no rule for registry quay.io" in result.error
    (garbage,) = await warm(FakeCache(), "UPPER/Case:tag")
    assert garbage.error is not None


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "linux/arm/v7/x"])
def test_bad_platforms_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="os/arch"):
        Platform.parse(text)


def test_platform_variant_matches_only_when_given() -> None:
    arm7 = {"os": "linux", "architecture": "arm", "variant": "v7"}
    assert Platform.parse("linux/arm").matches(arm7)
    assert Platform.parse("linux/arm/v7").matches(arm7)
    assert not Platform.parse("linux/arm/v6").matches(arm7)
    assert str(Platform.parse("linux/arm/v7")) == "linux/arm/v7"


async def test_without_the_rules_only_names_through_the_cache_are_warmed() -> None:
    fake = FakeCache()
    fake.image("up/team/app", "v1", "app")
    naming = DirectNaming(CACHE_HOST, "its admin API refused to list them")
    async with httpx.AsyncClient(
        base_url=f"http://{CACHE_HOST}", transport=httpx.MockTransport(fake.handle)
    ) as http:
        prefetcher = Prefetcher(http, naming)
        through, short = await prefetcher.warm_all([f"{CACHE_HOST}/up/team/app:v1", "team/app:v1"])
    assert through.ok, through.error
    assert through.name == f"{CACHE_HOST}/up/team/app:v1"
    assert short.error is not None
    assert "its admin API refused to list them" in short.error
    assert f"write the image through the cache, e.g. {CACHE_HOST}/<rule prefix>/team/app" in (
        short.error
    )
