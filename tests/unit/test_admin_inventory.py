"""Inventory and ScanningStore contract: repositories, images and tags with counts, sizes,
platforms and pull times, and the scanning configuration round trip. Runs on every metadata
backend."""

from __future__ import annotations

import hashlib
import json

from pullthrough.metadata.inventory import Inventory, platform_name
from pullthrough.metadata.scanning import (
    RepositoryFilter,
    ScanningConfiguration,
    ScanningRule,
    ScanningStore,
)
from pullthrough.metadata.space import SpaceStore
from pullthrough.metadata.store import MetadataStore
from pullthrough.oci import mediatypes
from pullthrough.oci.manifest import parse_manifest
from tests.unit import space_support
from tests.unit.space_support import digest_of

metadata = space_support.metadata

APP = "up/team/app"
MULTI = "up/team/multi"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _image(config: str, layers: dict[str, int]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {"mediaType": CONFIG, "digest": digest_of(config), "size": 10},
            "layers": [
                {"mediaType": LAYER, "digest": digest_of(name), "size": size}
                for name, size in layers.items()
            ],
        }
    ).encode()


def _index(children: dict[str, str]) -> bytes:
    """An index over manifests by digest, each with an `os/arch` platform."""
    entries = []
    for digest, platform in children.items():
        os_name, architecture = platform.split("/")
        entries.append(
            {
                "mediaType": mediatypes.OCI_MANIFEST,
                "digest": digest,
                "size": 100,
                "platform": {"os": os_name, "architecture": architecture},
            }
        )
    return json.dumps(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    ).encode()


async def _save(metadata: MetadataStore, repository: str, content: bytes, tag: str | None) -> str:
    repository_id = await metadata.repositories.id(repository, "up")
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    parsed = parse_manifest(content, None)
    await metadata.manifests.save(repository_id, digest, content, parsed)
    if tag is not None:
        await metadata.manifests.set_tag(repository_id, tag, digest, 1000.0)
    return digest


async def _stored(metadata: MetadataStore, repository: str, blobs: dict[str, int]) -> None:
    repository_id = await metadata.repositories.id(repository, "up")
    for name, size in blobs.items():
        await metadata.blobs.save(digest_of(name), size, repository_id)


async def test_repositories_images_and_tags(metadata: MetadataStore) -> None:
    app = await _save(metadata, APP, _image("app-config", {"a1": 100, "a2": 200}), "v1")
    await _stored(metadata, APP, {"app-config": 10, "a1": 100, "a2": 200})
    amd64 = await _save(metadata, MULTI, _image("amd-config", {"m1": 1000, "shared": 7}), None)
    arm64 = await _save(metadata, MULTI, _image("arm-config", {"m2": 2000, "shared": 7}), None)
    index = await _save(metadata, MULTI, _index({amd64: "linux/amd64", arm64: "linux/arm64"}), "1")
    await metadata.manifests.set_tag(
        await metadata.repositories.id(MULTI, "up"), "latest", index, 2000.0
    )
    await _stored(metadata, MULTI, {"amd-config": 10, "m1": 1000, "shared": 7})  # amd64 only
    multi_id = await metadata.repositories.id(MULTI, "up")
    await SpaceStore(metadata.engine).record_pulls(
        {(multi_id, index): (5000.0, 3), (multi_id, amd64): (5001.0, 2)}
    )

    async def read_config(digest: str) -> bytes | None:
        configs = {digest_of("app-config"): {"os": "linux", "architecture": "arm", "variant": "v7"}}
        found = configs.get(digest)
        return None if found is None else json.dumps(found).encode()

    inventory = Inventory(metadata.engine, read_config)
    repositories = {r.name: r for r in await inventory.repositories()}
    assert sorted(repositories) == [APP, MULTI]
    multi = repositories[MULTI]
    assert (multi.rule, multi.image_count, multi.tag_count) == ("up", 1, 2)
    assert multi.size_bytes == 10 + 1000 + 7  # stored blobs, `shared` once
    assert (multi.pull_count, multi.last_pulled_at) == (5, 5001.0)
    assert (repositories[APP].pull_count, repositories[APP].last_pulled_at) == (0, None)
    assert repositories[APP].size_bytes == 310

    assert [r.name for r in await inventory.repositories(prefix="up/team/m")] == [MULTI]
    assert [r.name for r in await inventory.repositories(limit=1)] == [APP]  # by name
    assert await inventory.repositories(prefix="up/team/%") == []  # a literal prefix
    assert await inventory.repository(APP) == repositories[APP]
    assert await inventory.repository("up/none") is None

    [image] = await inventory.images(MULTI) or []
    assert (image.digest, image.media_type, image.tags) == (
        index,
        mediatypes.OCI_INDEX,
        ("1", "latest"),
    )
    assert image.platforms == ("linux/amd64", "linux/arm64")
    assert (image.pull_count, image.last_pulled_at, image.size_bytes) == (5, 5001.0, 1017)
    [single] = await inventory.images(APP) or []
    assert (single.digest, single.platforms, single.rule) == (app, ("linux/arm/v7",), "up")
    assert await inventory.images("up/none") is None

    tags = await inventory.tags(MULTI) or []
    assert [(t.name, t.digest, t.updated_at) for t in tags] == [
        ("1", index, 1000.0),
        ("latest", index, 2000.0),
    ]
    assert await inventory.tags("up/none") is None

    assert await inventory.image_count() == 2
    assert (await Inventory(metadata.engine).totals()).repositories == 2


def test_platform_names() -> None:
    assert platform_name({"os": "linux", "architecture": "amd64"}) == "linux/amd64"
    assert platform_name({"os": "linux", "architecture": "arm64", "variant": "v8"}) == (
        "linux/arm64/v8"
    )
    # buildkit's attestation manifests, and garbage
    assert platform_name({"os": "unknown", "architecture": "unknown"}) is None
    assert platform_name({"os": "linux"}) is None
    assert platform_name("linux/amd64") is None


async def test_scanning_configuration_round_trip(metadata: MetadataStore) -> None:
    store = ScanningStore(metadata.engine)
    default = await store.get()
    assert (default.scan_type, default.rules, default.updated_at) == ("BASIC", (), None)
    wanted = ScanningConfiguration(
        "ENHANCED",
        (ScanningRule("SCAN_ON_PUSH", (RepositoryFilter("up/*"), RepositoryFilter("k8s/*"))),),
    )
    saved = await store.put(wanted)
    assert saved.updated_at is not None
    assert await store.get() == saved
    assert (await store.get()).to_json()["rules"][0]["repository_filters"][1] == {
        "filter": "k8s/*",
        "filter_type": "WILDCARD",
    }
    again = await store.put(ScanningConfiguration())
    assert (await store.get()).rules == () and again.updated_at is not None
