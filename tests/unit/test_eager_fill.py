"""EagerFill's own decisions, with the blob cache faked at its `open` seam: what starts, how many
at once per upstream, and that closing cancels what waits."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from pullthrough.access.import_check import import_anything
from pullthrough.cache.eager import EagerFill, EagerLimits
from pullthrough.cache.routing import Route
from pullthrough.config import RuleConfig
from pullthrough.errors import Denied, UpstreamUnavailable
from pullthrough.metadata.manifests import StoredManifest
from pullthrough.oci import mediatypes
from pullthrough.oci.digest import Digest

LAYERS = 8


def digest_of(n: int) -> str:
    return f"sha256:{n:064x}"


def image(layers: int = LAYERS, size: int = 100) -> StoredManifest:
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest_of(0),
            "size": size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest_of(n),
                "size": size,
            }
            for n in range(1, layers + 1)
        ],
    }
    content = json.dumps(document).encode()
    return StoredManifest(str(Digest.of(content)), mediatypes.OCI_MANIFEST, content)


def index() -> StoredManifest:
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [{"mediaType": mediatypes.OCI_MANIFEST, "digest": digest_of(99), "size": 10}],
    }
    content = json.dumps(document).encode()
    return StoredManifest(str(Digest.of(content)), mediatypes.OCI_INDEX, content)


def route(**rule: Any) -> Route:
    config = RuleConfig(prefix="up", upstream="http://127.0.0.1:1", **rule)
    return Route(config, "up/app", "app")


@dataclass
class FakeBlobs:
    """`open` blocks until released; records what was opened and the most open at once."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    opened: list[str] = field(default_factory=list)
    at_once: int = 0
    most_at_once: int = 0
    failing: set[str] = field(default_factory=set)
    fills: tuple[object, ...] = ()

    async def open(self, _route: Route, digest: Digest, may_import: Any) -> object:
        may_import(str(digest))
        self.opened.append(str(digest))
        self.at_once += 1
        self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            await self.release.wait()
        finally:
            self.at_once -= 1
        if str(digest) in self.failing:
            raise UpstreamUnavailable("upstream broke")
        return object()


class FakeBlobRecords:
    async def for_repository(self, _repository: str, digest: str) -> tuple[int | None, bool]:
        return (100, True) if digest == digest_of(LAYERS) else (None, False)


@dataclass
class FakeMetadata:
    blobs: FakeBlobRecords = field(default_factory=FakeBlobRecords)


class FakeLock:
    async def holder_url(self) -> str | None:
        return None


class FakeLocks:
    def blob_fill(self, _algorithm: str, _hex: str) -> FakeLock:
        return FakeLock()


def eager(blobs: FakeBlobs, **limits: Any) -> EagerFill:
    return EagerFill(blobs, FakeMetadata(), FakeLocks(), EagerLimits(**limits))  # type: ignore[arg-type]


async def settle(fill: EagerFill) -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_blobs_open_in_order_a_bounded_few_at_a_time_skipping_stored_ones() -> None:
    blobs = FakeBlobs()
    fill = eager(blobs, per_upstream=3)
    fill.start(route(), image(), import_anything)
    fill.start(route(), image(), import_anything)  # the same image again: nothing more
    await settle(fill)
    assert blobs.opened == [digest_of(0), digest_of(1), digest_of(2)]
    blobs.release.set()
    await settle(fill)
    assert blobs.most_at_once == 3
    # digest_of(LAYERS) is stored already: never opened.
    assert blobs.opened == [digest_of(n) for n in range(LAYERS)]
    assert fill.pending == 0
    await fill.close()


async def test_no_fill_for_an_index_a_rule_off_a_denied_caller_or_a_too_large_image() -> None:
    blobs = FakeBlobs()
    blobs.release.set()
    fill = eager(blobs, max_size=LAYERS * 100)

    def deny(what: str) -> None:
        raise Denied(f"pulling uncached {what} needs registry:ImportUpstream")

    fill.start(route(), index(), import_anything)
    fill.start(route(eager_fill=False), image(), import_anything)
    fill.start(route(), image(), deny)
    fill.start(route(), image(layers=LAYERS, size=101), import_anything)  # 9 blobs > cap
    await settle(fill)
    assert blobs.opened == []
    fill.start(route(), image(size=10), import_anything)  # fits
    await settle(fill)
    assert len(blobs.opened) == LAYERS
    await fill.close()


async def test_a_failed_fill_is_logged_and_the_rest_go_on() -> None:
    blobs = FakeBlobs(failing={digest_of(1)})
    blobs.release.set()
    fill = eager(blobs)
    fill.start(route(), image(), import_anything)
    await settle(fill)
    assert blobs.opened == [digest_of(n) for n in range(LAYERS)]
    assert fill.pending == 0
    await fill.close()


async def test_close_cancels_what_waits_and_stop_starts_nothing_new() -> None:
    blobs = FakeBlobs()
    fill = eager(blobs, per_upstream=2)
    fill.start(route(), image(), import_anything)
    await settle(fill)
    assert blobs.at_once == 2
    await fill.close()
    assert blobs.at_once == 0
    assert fill.pending == 0
    fill.start(route(), image(layers=2), import_anything)
    await settle(fill)
    assert len(blobs.opened) == 2
