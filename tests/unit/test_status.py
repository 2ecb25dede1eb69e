"""`pullthrough status` reads what the workers recorded: upstream blocks and rate limits in the
`upstream_state` table, and what the cache holds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rich.console import Console

from pullthrough.config import RuleConfig, Settings
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.oci.manifest import ParsedManifest
from pullthrough.oci.mediatypes import OCI_MANIFEST
from pullthrough.status import NoCacheData, print_status, read_status, status_document
from pullthrough.storage.layout import DataLayout

RULES = (
    RuleConfig(prefix="hub", upstream="https://registry-1.docker.io", default=True),
    RuleConfig(prefix="ghcr", upstream="https://ghcr.io"),
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", rules=RULES, workers=1)


@pytest.fixture
async def metadata(settings: Settings) -> AsyncIterator[MetadataStore]:
    layout = DataLayout(settings.data_dir)
    layout.create()
    store = await MetadataStore.open(sqlite_url(layout.metadata_file))
    yield store
    await store.close()


async def test_a_block_keeps_the_later_time(metadata: MetadataStore) -> None:
    assert await metadata.upstream_blocked_until("hub") is None
    await metadata.block_upstream("hub", 2000.0)
    await metadata.block_upstream("hub", 1500.0)  # another worker's shorter 429
    assert await metadata.upstream_blocked_until("hub") == 2000.0
    await metadata.block_upstream("hub", 2500.0)
    assert await metadata.upstream_blocked_until("hub") == 2500.0


async def test_rate_limit_and_block_share_one_row_per_rule(metadata: MetadataStore) -> None:
    await metadata.block_upstream("hub", 2000.0)
    await metadata.save_rate_limit(
        "hub", limit=100, remaining=76, window=21600, source="203.0.113.9", seen_at=1000.0
    )
    await metadata.save_rate_limit(
        "hub", limit=100, remaining=75, window=21600, source="203.0.113.9", seen_at=1001.0
    )
    (state,) = await metadata.upstream_states()
    assert (state.prefix, state.blocked_until) == ("hub", 2000.0)
    assert (state.ratelimit_limit, state.ratelimit_remaining, state.ratelimit_window) == (
        100,
        75,
        21600,
    )
    assert state.ratelimit_seen_at == 1001.0


async def test_status_shows_rate_limits_blocks_and_cache_totals(
    settings: Settings, metadata: MetadataStore
) -> None:
    now = time.time()
    await metadata.save_rate_limit(
        "hub", limit=100, remaining=7, window=21600, source=None, seen_at=now - 120
    )
    await metadata.block_upstream("hub", now + 42)
    await metadata.block_upstream("ghcr", now - 5)  # passed: not shown
    await metadata.save_rate_limit(  # a rule since removed from the configuration
        "old", limit=10, remaining=10, window=60, source=None, seen_at=now
    )
    await metadata.block_upstream("gone", now - 5)  # removed, and nothing worth showing
    repo = await metadata.repository_id("hub/library/nginx", "hub")
    await metadata.save_manifest(repo, "sha256:" + "a" * 64, b"{}", ParsedManifest(OCI_MANIFEST))
    await metadata.set_tag(repo, "1.27", "sha256:" + "a" * 64, now)
    await metadata.save_blob("sha256:" + "b" * 64, 1000, repo)
    await metadata.save_blob("sha256:" + "c" * 64, 24, repo)

    document = status_document(await read_status(settings))

    hub, ghcr, old = document["rules"]
    assert hub["prefix"] == "hub"
    assert hub["upstream"] == "https://registry-1.docker.io"
    assert hub["rate_limit"]["limit"] == 100
    assert hub["rate_limit"]["remaining"] == 7
    assert hub["rate_limit"]["window_seconds"] == 21600
    assert hub["blocked_until"].endswith("Z")
    assert 40 <= hub["retry_after_seconds"] <= 42
    assert ghcr["rate_limit"] is None
    assert ghcr["blocked_until"] is None
    assert (old["prefix"], old["configured"]) == ("old", False)
    assert document["cache"] == {
        "repositories": 1,
        "manifests": 1,
        "tags": 1,
        "blobs": 2,
        "blob_bytes": 1024,
    }


async def test_status_table_for_people(settings: Settings, metadata: MetadataStore) -> None:
    now = time.time()
    await metadata.save_rate_limit(
        "hub", limit=100, remaining=7, window=21600, source=None, seen_at=now - 120
    )
    await metadata.block_upstream("hub", now + 42)
    console = Console(record=True, width=160, color_system=None)

    print_status(await read_status(settings), console)

    text = console.export_text()
    assert "7/100 per 6h" in text
    assert "2m ago" in text
    assert "(in 4" in text  # blocked for another 41-42s
    assert "https://ghcr.io" in text
    assert "Cached: 0 repositories, 0 manifests, 0 tags, 0 blobs (0 B)" in text


async def test_status_of_a_cache_that_never_ran(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "nowhere", rules=RULES, workers=1)
    with pytest.raises(NoCacheData, match="has not run with this configuration"):
        await read_status(settings)
    assert not (tmp_path / "nowhere").exists()
