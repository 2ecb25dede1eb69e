"""What takes cached content away reaches what each worker remembers (the CONTENT revision
moves in the same transaction; the manifest memo forgets), listings count only repositories
that hold something, and garbage collection drops the repositories of deleted rules."""

from __future__ import annotations

import time
from pathlib import Path

from pullthrough.cache.memo import ManifestMemo
from pullthrough.config import RuleConfig
from pullthrough.lifecycle.gc import collect_garbage
from pullthrough.metadata.inventory import Inventory
from pullthrough.metadata.manifests import StoredManifest, TaggedManifest
from pullthrough.metadata.repositories import RepositoryStore
from pullthrough.metadata.revisions import CONTENT, Revisions
from pullthrough.metadata.rules import RuleStore
from pullthrough.metadata.space import SpaceStore
from pullthrough.metadata.store import MetadataStore
from pullthrough.storage.filesystem import FilesystemDriver
from pullthrough.storage.layout import DataLayout
from tests.unit import space_support
from tests.unit.space_support import Builder

metadata = space_support.metadata
space = space_support.space
build = space_support.build

UP = RuleConfig(prefix="up", upstream="https://registry.example", default=True)
GONE = RuleConfig(prefix="gone", upstream="https://other.example")


class FakeRevisions:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    async def value(self, name: str) -> int:
        return self.values.get(name, 0)

    def bump(self, name: str) -> None:
        self.values[name] = self.values.get(name, 0) + 1


MANIFEST = StoredManifest(digest="sha256:" + "a" * 64, media_type="x", content=b"{}")


async def test_the_memo_forgets_everything_when_content_was_removed() -> None:
    revisions = FakeRevisions()
    memo = ManifestMemo(revisions)
    _, revision = await memo.tag("up/app", "v1")
    memo.remember_tag("up/app", "v1", TaggedManifest(MANIFEST, time.time()), 300, revision)
    assert (await memo.tag("up/app", "v1"))[0] is not None
    assert (await memo.manifest("up/app", MANIFEST.digest))[0] == MANIFEST

    revisions.bump(CONTENT)  # lifecycle expiry, GC, a dropped repository
    assert (await memo.tag("up/app", "v1"))[0] is None
    assert (await memo.manifest("up/app", MANIFEST.digest))[0] is None


async def test_a_row_read_before_a_removal_the_memo_has_seen_is_not_remembered() -> None:
    revisions = FakeRevisions()
    memo = ManifestMemo(revisions)
    _, revision = await memo.manifest("up/app", MANIFEST.digest)  # then the database is read…
    revisions.bump(CONTENT)  # …while expiry commits; another request sees the new revision
    await memo.manifest("up/app", "sha256:" + "b" * 64)
    memo.remember_manifest("up/app", MANIFEST, revision)  # the row may be the expired one
    assert (await memo.manifest("up/app", MANIFEST.digest))[0] is None


async def content_revision(metadata: MetadataStore) -> int:
    return await Revisions(metadata.engine, interval=0).value(CONTENT)


async def test_expiry_and_collection_move_the_content_revision(
    metadata: MetadataStore, space: SpaceStore, build: Builder, tmp_path: Path
) -> None:
    digest = await build.image("up/app", "image", {"layer": 10}, "v1")
    await build.blob("up/app", "layer", 10)
    assert await content_revision(metadata) == 0
    await space.expire("up/app", ["sha256:" + "f" * 64])  # nothing of it held: nothing moves
    assert await content_revision(metadata) == 0
    await space.expire("up/app", [digest])
    assert await content_revision(metadata) == 1

    layout = DataLayout(tmp_path / "data")
    layout.create()
    report = await collect_garbage(
        space, FilesystemDriver(layout.blob_root), 0, time.time() + 1, settle=0
    )
    assert report.blobs_deleted == 1
    assert await content_revision(metadata) == 2


async def test_listings_count_only_repositories_that_hold_something(
    metadata: MetadataStore, space: SpaceStore, build: Builder
) -> None:
    kept = await build.image("up/kept", "kept", {"kept-layer": 10}, "v1")
    await build.blob("up/kept", "kept-layer", 10)
    emptied = await build.image("up/emptied", "emptied", {"emptied-layer": 20}, "v1")
    await build.repo("up/never-filled")  # what a failed pull made before
    await space.expire("up/emptied", [emptied])

    assert await metadata.repositories.catalog(None, None) == ["up/kept"]
    assert (await Inventory(metadata.engine).totals()).repositories == 1
    inventory = Inventory(metadata.engine)
    assert [r.name for r in await inventory.repositories()] == ["up/kept"]
    assert await inventory.repository("up/emptied") is None
    assert (await inventory.repository("up/kept")) is not None
    assert [i.digest for i in await inventory.images("up/kept") or []] == [kept]


async def test_collection_drops_the_repositories_of_deleted_rules(
    metadata: MetadataStore, space: SpaceStore, build: Builder, tmp_path: Path
) -> None:
    rules = RuleStore(metadata.engine)
    # Before the rules live in the database no rule is known to be gone.
    await build.image("gone/app", "gone-image", {"gone-layer": 10, "shared": 5}, "v1")
    assert await space.repositories_without_rule() == []
    await rules.seed([UP, GONE])
    await build.image("up/app", "up-image", {"shared": 5}, "v1")
    for name, size in (("gone-layer", 10), ("shared", 5)):
        await build.blob("gone/app", name, size)
    metadata.revisions = Revisions(metadata.engine, interval=0)  # no 0.5 s bound in a test
    metadata.repositories = RepositoryStore(metadata.engine, metadata.revisions)
    old_id = await metadata.repositories.id("gone/app", "gone")

    await rules.delete("gone")
    assert await space.repositories_without_rule() == ["gone/app"]
    layout = DataLayout(tmp_path / "data")
    layout.create()
    driver = FilesystemDriver(layout.blob_root)
    report = await collect_garbage(space, driver, 0, time.time() + 1, settle=0)

    assert report.repositories_dropped == ("gone/app",)
    assert report.blobs_deleted == 1  # gone-layer; `shared` is still referenced by up/app
    assert [name for _, name in await space.repositories()] == ["up/app"]
    assert await metadata.manifests.tag("gone/app", "v1") is None
    # A worker's pulls of it, counted just before, are flushed after: they are left out.
    up_id = await metadata.repositories.id("up/app", "up")
    up_image = [image.digest for image in await space.images("up/app")]
    await space.record_pulls(
        {(old_id, "sha256:" + "c" * 64): (1.0, 1), (up_id, up_image[0]): (2.0, 3)}
    )
    [pulled] = await space.images("up/app")
    assert pulled.last_pulled_at == 2.0
    # A rule made again with the prefix starts an empty repository under a new id.
    await rules.create(GONE)
    assert await metadata.repositories.id("gone/app", "gone") != old_id


async def test_a_rule_made_again_before_the_collection_keeps_its_repositories(
    metadata: MetadataStore, space: SpaceStore, build: Builder
) -> None:
    rules = RuleStore(metadata.engine)
    await rules.seed([UP, GONE])
    await build.image("gone/app", "image", {"layer": 10}, "v1")
    await rules.delete("gone")
    [name] = await space.repositories_without_rule()
    await rules.create(GONE)
    assert await space.drop_repository_without_rule(name) is None
    assert await metadata.manifests.tag("gone/app", "v1") is not None
