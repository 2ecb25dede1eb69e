"""/stats, /upstreams, /status: how the cache is doing, per rule and in total."""

from __future__ import annotations

import time

from aiohttp import web

from pullthrough import __version__
from pullthrough.api.admin.context import AdminServices, services
from pullthrough.api.admin.fields import iso_or_none, iso_time
from pullthrough.api.admin.models import (
    RateLimit,
    RuleStats,
    Stats,
    StatsReport,
    Status,
    Upstream,
    UpstreamList,
)
from pullthrough.api.admin.replies import reply
from pullthrough.config import RuleConfig
from pullthrough.metadata import stats as stored_stats
from pullthrough.metadata.upstream_state import UpstreamHealth, UpstreamStateRecord


def _stats(counts: stored_stats.RuleStats) -> Stats:
    return Stats(
        hits=counts.hits,
        misses=counts.misses,
        bytes_from_cache=counts.bytes_from_cache,
        bytes_from_upstream=counts.bytes_from_upstream,
    )


async def _report(admin: AdminServices) -> StatsReport:
    report = await admin.stats.read()
    return StatsReport(
        since=iso_or_none(report.since),
        total=_stats(report.total),
        rules=[
            RuleStats(prefix=prefix, **_stats(counts).model_dump())
            for prefix, counts in sorted(report.rules.items())
        ],
    )


def _upstream(
    rule: RuleConfig, health: UpstreamHealth, state: UpstreamStateRecord | None, now: float
) -> Upstream:
    rate_limit = None
    blocked_until = None
    if state is not None:
        if state.ratelimit_seen_at is not None:
            rate_limit = RateLimit(
                limit=state.ratelimit_limit,
                remaining=state.ratelimit_remaining,
                window=state.ratelimit_window,
                source=state.ratelimit_source,
                seen_at=iso_time(state.ratelimit_seen_at),
            )
        if state.blocked_until is not None and state.blocked_until > now:
            blocked_until = iso_time(state.blocked_until)
    return Upstream(
        prefix=rule.prefix,
        upstream=rule.upstream,
        reachable=health.reachable,
        last_success_at=iso_or_none(health.last_success_at),
        last_error=health.last_error,
        last_error_at=iso_or_none(health.last_error_at),
        blocked_until=blocked_until,
        rate_limit=rate_limit,
    )


async def _upstreams(admin: AdminServices, rules: tuple[RuleConfig, ...]) -> list[Upstream]:
    health = await admin.upstreams.health()
    states = {state.prefix: state for state in await admin.upstreams.states()}
    now = time.time()
    return [
        _upstream(rule, health.get(rule.prefix, UpstreamHealth()), states.get(rule.prefix), now)
        for rule in sorted(rules, key=lambda r: r.prefix)
    ]


async def _rules(admin: AdminServices) -> tuple[RuleConfig, ...]:
    # The stored rules rather than this worker's copy, which may be a second old.
    return tuple(stored.rule for stored in await admin.rules.store.all())


async def get_stats(request: web.Request) -> web.Response:
    return reply(await _report(services(request)))


async def list_upstreams(request: web.Request) -> web.Response:
    admin = services(request)
    rules = await _rules(admin)
    return reply(UpstreamList(upstreams=await _upstreams(admin, rules)))


async def get_status(request: web.Request) -> web.Response:
    admin = services(request)
    rules = await _rules(admin)
    totals = await admin.inventory.totals()
    images = await admin.inventory.image_count()
    return reply(
        Status(
            version=__version__,
            rules=len(rules),
            repositories=totals.repositories,
            images=images,
            blobs=totals.blobs,
            stored_bytes=totals.blob_bytes,
            upstreams=await _upstreams(admin, rules),
            stats=await _report(admin),
        )
    )
