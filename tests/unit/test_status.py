"""What `pullthrough status` shows: the workers record upstream blocks and rate limits in the
`upstream_state` table; the admin API's `/status` document is rendered as tables, with a warning
when an upstream's rate limit runs low."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from pullthrough.cli.status import headroom_warnings, is_low, print_status, quota
from pullthrough.config import RuleConfig, Settings
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.storage.layout import DataLayout

ISO = "%Y-%m-%dT%H:%M:%SZ"

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
    assert await metadata.upstreams.blocked_until("hub") is None
    await metadata.upstreams.block("hub", 2000.0)
    await metadata.upstreams.block("hub", 1500.0)  # another worker's shorter 429
    assert await metadata.upstreams.blocked_until("hub") == 2000.0
    await metadata.upstreams.block("hub", 2500.0)
    assert await metadata.upstreams.blocked_until("hub") == 2500.0


async def test_rate_limit_and_block_share_one_row_per_rule(metadata: MetadataStore) -> None:
    await metadata.upstreams.block("hub", 2000.0)
    await metadata.upstreams.save_rate_limit(
        "hub", limit=100, remaining=76, window=21600, source="203.0.113.9", seen_at=1000.0
    )
    await metadata.upstreams.save_rate_limit(
        "hub", limit=100, remaining=75, window=21600, source="203.0.113.9", seen_at=1001.0
    )
    (state,) = await metadata.upstreams.states()
    assert (state.prefix, state.blocked_until) == ("hub", 2000.0)
    assert (state.ratelimit_limit, state.ratelimit_remaining, state.ratelimit_window) == (
        100,
        75,
        21600,
    )
    assert state.ratelimit_seen_at == 1001.0


def document(now: datetime) -> dict[str, Any]:
    """A `/status` answer as the admin API gives it: hub nearly out of pulls and blocked by a
    429 for another 42s, ghcr never contacted."""
    seen = (now - timedelta(seconds=120)).strftime(ISO)
    return {
        "version": "0.1.0",
        "rules": 2,
        "repositories": 1,
        "images": 1,
        "blobs": 2,
        "stored_bytes": 1024,
        "upstreams": [
            {
                "prefix": "hub",
                "upstream": "https://registry-1.docker.io",
                "reachable": True,
                "last_success_at": seen,
                "last_error": "429 Too Many Requests",
                "last_error_at": seen,
                "blocked_until": (now + timedelta(seconds=42)).strftime(ISO),
                "rate_limit": {
                    "limit": 100,
                    "remaining": 7,
                    "window": 21600,
                    "source": None,
                    "seen_at": seen,
                },
            },
            {
                "prefix": "ghcr",
                "upstream": "https://ghcr.io",
                "reachable": None,
                "last_success_at": None,
                "last_error": None,
                "last_error_at": None,
                # A block that has passed is not shown.
                "blocked_until": (now - timedelta(seconds=5)).strftime(ISO),
                "rate_limit": {
                    "limit": 100,
                    "remaining": 60,
                    "window": None,
                    "source": None,
                    "seen_at": seen,
                },
            },
        ],
        "stats": {
            "since": seen,
            "total": {"hits": 1, "misses": 1, "bytes_from_cache": 10, "bytes_from_upstream": 10},
            "rules": [
                {
                    "prefix": "hub",
                    "hits": 1,
                    "misses": 1,
                    "bytes_from_cache": 10,
                    "bytes_from_upstream": 10,
                }
            ],
        },
    }


def test_status_table_for_people() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    console = Console(record=True, width=200, color_system=None)

    print_status(document(now), console, now)

    text = console.export_text()
    assert "7/100 per 6h" in text
    assert "60/100" in text
    assert "2m ago" in text
    assert "(in 42s)" in text  # hub is blocked for another 42s
    assert text.count("UTC (in") == 1  # ghcr's block has passed
    assert "https://ghcr.io" in text
    assert "not tried" in text
    assert "429 Too Many Requests (2m ago)" in text
    assert "50%" in text
    assert "Cached: 1 repositories, 1 images, 2 blobs (1.0 KiB)" in text


def test_low_headroom_is_warned_about_and_highlighted() -> None:
    now = datetime.now(UTC)
    upstreams = document(now)["upstreams"]
    (warning,) = headroom_warnings(upstreams)
    assert warning.startswith("rule hub: https://registry-1.docker.io has 7 of 100 pulls left")
    assert "per 6h" in warning
    hub, ghcr = (u["rate_limit"] for u in upstreams)
    assert is_low(hub)
    assert not is_low(ghcr)
    assert quota(hub) == "[yellow]7/100 per 6h[/yellow]"
    assert quota(ghcr) == "60/100"
    assert not is_low({"limit": None, "remaining": 0})  # no limit known: nothing to warn about

    console = Console(record=True, width=200, color_system=None)
    print_status(document(now), console, now)
    assert "warning: rule hub:" in console.export_text()
