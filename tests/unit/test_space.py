"""SpaceStore contract: images with their children, tags, pull times and sizes; expiry that
keeps what other images still use; pull-time upserts. Runs on every metadata backend."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, func, select

from pullthrough.cache.pulls import PullRecorder
from pullthrough.metadata import schema
from pullthrough.metadata.space import ExpiredSummary, PullBatch, SpaceStore
from pullthrough.metadata.store import MetadataStore
from tests.unit import space_support
from tests.unit.space_support import Builder, digest_of

# The fixtures, over every metadata backend.
metadata = space_support.metadata
space = space_support.space
build = space_support.build

A = "up/team/app"
B = "up/team/other"


async def count(store: MetadataStore, table: Table, *where: ColumnElement[bool]) -> int:
    query = select(func.count()).select_from(table).where(*where)
    async with store.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def test_an_index_is_one_image_with_its_cached_children_tags_pulls_and_stored_size(
    space: SpaceStore, build: Builder
) -> None:
    amd64 = await build.image(A, "amd64", {"config-amd64": 10, "layer-amd64": 1000})
    arm64 = await build.image(A, "arm64", {"config-arm64": 20, "layer-arm64": 2000})
    index = await build.index(A, "index", [amd64, arm64, digest_of("s390x-never-cached")], "1.0")
    await build.metadata.manifests.set_tag(await build.repo(A), "latest", index, 1000.0)
    single = await build.image(A, "single", {"config-single": 5, "layer-amd64": 1000}, "solo")
    # Stored: everything but arm64's layer (never pulled), so it does not count.
    for name, size in [("config-amd64", 10), ("layer-amd64", 1000), ("config-arm64", 20)]:
        await build.blob(A, name, size)
    await build.blob(A, "config-single", 5)
    repo_id = await build.repo(A)
    await space.record_pulls({(repo_id, arm64): (5000.0, 1), (repo_id, index): (4000.0, 2)})

    images = {image.digest: image for image in await space.images(A)}

    assert set(images) == {index, single}
    multi = images[index]
    assert multi.repository == A
    assert multi.tags == ("1.0", "latest")
    assert multi.children == tuple(sorted([amd64, arm64]))
    assert multi.last_pulled_at == 5000.0  # a pull of one platform counts for the image
    assert multi.size == 10 + 1000 + 20
    assert multi.cached_at > 0
    assert images[single].tags == ("solo",)
    assert images[single].last_pulled_at is None
    assert images[single].size == 5 + 1000  # a shared layer counts for each image
    assert await space.images("up/nothing-here") == []


async def test_repositories_lists_ids_and_names(space: SpaceStore, build: Builder) -> None:
    b_id = await build.repo(B)
    a_id = await build.repo(A)
    assert await space.repositories() == [(a_id, A), (b_id, B)]


async def test_expiring_an_index_removes_its_children_tags_links_and_orphan_manifests(
    space: SpaceStore, build: Builder, metadata: MetadataStore
) -> None:
    amd64 = await build.image(A, "amd64", {"config-amd64": 10, "layer-amd64": 1000})
    index = await build.index(A, "index", [amd64], "1.0")
    keep = await build.image(A, "keep", {"config-keep": 5}, "keep")
    await build.blob(A, "layer-amd64", 1000)
    await build.blob(A, "config-keep", 5)
    repo_id = await build.repo(A)
    await space.record_pulls({(repo_id, index): (4000.0, 1)})

    summary = await space.expire(A, [index])

    assert summary == ExpiredSummary(
        images=1, manifests_unlinked=2, manifests_deleted=2, tags=1, blob_links=2
    )
    assert [image.digest for image in await space.images(A)] == [keep]
    assert await metadata.manifests.get(index) is None
    assert await metadata.manifests.get(amd64) is None
    mr = schema.manifest_references
    assert await count(metadata, mr, mr.c.manifest_digest.in_([index, amd64])) == 0
    assert await count(metadata, schema.manifest_pulls) == 0
    # The blobs stay for garbage collection; the repository no longer serves the layer.
    assert {d for d, _ in await metadata.blobs.stored()} == {
        digest_of("layer-amd64"),
        digest_of("config-keep"),
    }
    assert await metadata.blobs.for_repository(A, digest_of("layer-amd64")) == (1000, False)
    assert await metadata.blobs.for_repository(A, digest_of("config-keep")) == (5, True)
    assert await space.unreferenced_bytes(created_before=1e12) == 1000


async def test_a_child_another_remaining_index_lists_stays(
    space: SpaceStore, build: Builder, metadata: MetadataStore
) -> None:
    shared = await build.image(A, "shared-child", {"layer-shared": 100})
    only_old = await build.image(A, "old-child", {"layer-old": 200})
    old = await build.index(A, "old-index", [shared, only_old], "old")
    new = await build.index(A, "new-index", [shared], "new")
    await build.blob(A, "layer-shared", 100)
    await build.blob(A, "layer-old", 200)

    summary = await space.expire(A, [old])

    assert summary.images == 1
    assert summary.manifests_unlinked == 2  # the old index and its own child
    images = await space.images(A)
    assert [(i.digest, i.children) for i in images] == [(new, (shared,))]
    assert await metadata.manifests.in_repository(A, shared) is not None
    assert await metadata.manifests.in_repository(A, only_old) is None
    assert await metadata.blobs.for_repository(A, digest_of("layer-shared")) == (100, True)
    assert await space.unreferenced_bytes(created_before=1e12) == 200


async def test_an_image_held_by_two_repositories_stays_in_the_other_with_its_blobs(
    space: SpaceStore, build: Builder, metadata: MetadataStore
) -> None:
    in_a = await build.image(A, "same", {"layer-common": 300}, "v1")
    in_b = await build.image(B, "same", {"layer-common": 300}, "v1")
    other_b = await build.image(B, "other", {"layer-common": 300, "layer-b": 50}, "v2")
    await build.blob(A, "layer-common", 300)
    await build.blob(B, "layer-b", 50)
    assert in_a == in_b

    summary = await space.expire(A, [in_a])

    assert summary.manifests_unlinked == 1
    assert summary.manifests_deleted == 0  # B still holds it
    assert await space.images(A) == []
    assert {i.digest for i in await space.images(B)} == {in_b, other_b}
    assert await metadata.manifests.get(in_a) is not None
    assert await metadata.blobs.for_repository(B, digest_of("layer-common")) == (300, True)
    assert await space.unreferenced_bytes(created_before=1e12) == 0

    summary = await space.expire(B, [in_b])

    assert summary.manifests_deleted == 1
    assert await metadata.manifests.get(in_b) is None
    # The other image in B still references the common layer.
    assert await space.unreferenced_bytes(created_before=1e12) == 0
    await space.expire(B, [other_b])
    assert await space.unreferenced_bytes(created_before=1e12) == 350


async def test_expiring_what_the_repository_does_not_hold_changes_nothing(
    space: SpaceStore, build: Builder
) -> None:
    await build.image(A, "a", {"layer-a": 1}, "v1")
    other = await build.image(B, "b", {"layer-b": 1}, "v1")

    assert await space.expire(A, [other]) == ExpiredSummary()
    assert await space.expire(A, []) == ExpiredSummary()
    assert await space.expire("up/missing", [other]) == ExpiredSummary()
    assert len(await space.images(A)) == 1


async def test_record_pulls_keeps_the_latest_time_and_adds_counts(
    space: SpaceStore, build: Builder, metadata: MetadataStore
) -> None:
    digest = await build.image(A, "a", {"layer-a": 1}, "v1")
    repo_id = await build.repo(A)

    await space.record_pulls({(repo_id, digest): (2000.0, 3)})
    await space.record_pulls({(repo_id, digest): (1500.0, 2)})  # a late flush from a worker
    await space.record_pulls({})

    mp = schema.manifest_pulls
    async with metadata.engine.connect() as conn:
        row = (await conn.execute(select(mp.c.last_pulled_at, mp.c.pull_count))).one()
    assert (row.last_pulled_at, row.pull_count) == (2000.0, 5)
    await space.record_pulls({(repo_id, digest): (2500.0, 1)})
    assert (await space.images(A))[0].last_pulled_at == 2500.0


async def test_the_pull_recorder_batches_in_memory_until_flushed(
    space: SpaceStore, build: Builder, metadata: MetadataStore
) -> None:
    digest = await build.image(A, "a", {"layer-a": 1}, "v1")
    repo_id = await build.repo(A)
    clock = iter([100.0, 300.0, 200.0])
    recorder = PullRecorder(space, interval=3600, clock=lambda: next(clock))

    for _ in range(3):
        recorder.record(repo_id, digest)

    assert recorder.pending == 1
    assert await count(metadata, schema.manifest_pulls) == 0
    await recorder.close()
    mp = schema.manifest_pulls
    async with metadata.engine.connect() as conn:
        row = (await conn.execute(select(mp.c.last_pulled_at, mp.c.pull_count))).one()
    # Pulls are recorded with the clock at record time; the last recorded one wins.
    assert (row.last_pulled_at, row.pull_count) == (200.0, 3)
    assert recorder.pending == 0


class _UnreachableSpace(SpaceStore):
    """A store whose database does not answer: every flush fails."""

    async def record_pulls(self, batch: PullBatch) -> None:
        raise ConnectionError("database unreachable")


async def test_a_failed_flush_keeps_the_pulls_for_the_next_one(
    space: SpaceStore, build: Builder, metadata: MetadataStore
) -> None:
    digest = await build.image(A, "a", {"layer-a": 1}, "v1")
    repo_id = await build.repo(A)
    recorder = PullRecorder(_UnreachableSpace(metadata.engine), clock=lambda: 100.0)
    recorder.record(repo_id, digest)
    recorder.record(repo_id, digest_of("another"))
    try:
        await recorder.flush()
    except ConnectionError:
        pass
    else:
        raise AssertionError("the flush should have failed")
    assert recorder.pending == 2
