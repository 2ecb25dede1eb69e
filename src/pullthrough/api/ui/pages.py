"""The dashboard's pages: each reads through the stores the admin API uses and renders one
template."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from pullthrough.api.ui import session
from pullthrough.api.ui.findings import FINDING_COLUMNS, findings_view, severity_filter
from pullthrough.api.ui.formatting import iso, ratio
from pullthrough.api.ui.services import UI_SERVICES, DashboardServices
from pullthrough.api.ui.tables import Column, csv_response, listing
from pullthrough.config import RuleConfig
from pullthrough.errors import RegistryError
from pullthrough.lifecycle.keeper import SpaceKeeper
from pullthrough.metadata.inventory import ImageSummary, RepositorySummary, platform_name
from pullthrough.metadata.stats_history import BUCKET_SECONDS, bucket_of
from pullthrough.metadata.upstream_state import UpstreamHealth
from pullthrough.oci.manifest import parse_manifest
from pullthrough.scanning.model import SEVERITIES

# What the overview's charts can span: (label, seconds, step).
RANGES = {
    "6h": (6 * 3600.0, BUCKET_SECONDS),
    "24h": (86_400.0, BUCKET_SECONDS),
    "7d": (7 * 86_400.0, 3600.0),
    "14d": (14 * 86_400.0, 3 * 3600.0),
}
DEFAULT_RANGE = "24h"
TOP_REPOSITORIES = 10


def _services(request: web.Request) -> DashboardServices:
    return request.app[UI_SERVICES]


def render(request: web.Request, template: str, **context: Any) -> web.Response:
    context.setdefault("viewer", request.get(session.VIEWER_KEY))
    context["csrf"] = session.csrf_token(request)
    context["auth_on"] = _services(request).access is not None
    context["path"] = request.path
    response = aiohttp_jinja2.render_template(template, request, context)
    session.with_csrf_cookie(request, response)
    return response


async def _rules(ui: DashboardServices) -> list[RuleConfig]:
    return sorted(
        (stored.rule for stored in await ui.cache.rules.store.all()), key=lambda r: r.prefix
    )


# -- overview ---------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    ui = _services(request)
    report = await ui.stats.read()
    rules = [rule.prefix for rule in await _rules(ui)]
    chosen = request.query.get("rule", "")
    if chosen not in rules:
        chosen = ""
    span_name = request.query.get("range", DEFAULT_RANGE)
    if span_name not in RANGES:
        span_name = DEFAULT_RANGE
    span, step = RANGES[span_name]
    now = time.time()
    history = await ui.history.series(now - span, now, step)
    picked = [points for prefix, points in history.items() if not chosen or prefix == chosen]
    first = bucket_of(now - span, step)
    starts = (
        [p.start for p in picked[0]]
        if picked
        else [first + i * step for i in range(int((now - first) // step) + 1)]
    )
    chart = {
        "x": starts,
        "hits": [sum(points[i].hits for points in picked) for i in range(len(starts))],
        "misses": [sum(points[i].misses for points in picked) for i in range(len(starts))],
        "bytes_from_cache": [
            sum(points[i].bytes_from_cache for points in picked) for i in range(len(starts))
        ],
        "bytes_from_upstream": [
            sum(points[i].bytes_from_upstream for points in picked) for i in range(len(starts))
        ],
    }
    total = report.total
    per_rule = [
        {
            "prefix": prefix,
            "stats": counts,
            "hit_ratio": ratio(counts.hits, counts.hits + counts.misses),
        }
        for prefix, counts in sorted(report.rules.items())
    ]
    return render(
        request,
        "overview.html",
        title="Overview",
        total=total,
        hit_ratio=ratio(total.hits, total.hits + total.misses),
        since=report.since,
        per_rule=per_rule,
        rules=rules,
        chosen=chosen,
        ranges=list(RANGES),
        span_name=span_name,
        chart_json=json.dumps(chart),
    )


# -- upstreams --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpstreamView:
    rule: RuleConfig
    health: UpstreamHealth
    blocked_until: float | None
    limit: int | None
    remaining: int | None
    window: int | None
    seen_at: float | None

    @property
    def headroom(self) -> float | None:
        """Remaining requests as a share of the limit, 0 to 1."""
        if self.limit is None or self.remaining is None or self.limit <= 0:
            return None
        return max(0.0, min(1.0, self.remaining / self.limit))


async def upstreams(request: web.Request) -> web.Response:
    ui = _services(request)
    health = await ui.cache.metadata.upstreams.health()
    states = {state.prefix: state for state in await ui.cache.metadata.upstreams.states()}
    now = time.time()
    views = []
    for rule in await _rules(ui):
        state = states.get(rule.prefix)
        blocked = state.blocked_until if state is not None else None
        views.append(
            UpstreamView(
                rule=rule,
                health=health.get(rule.prefix, UpstreamHealth()),
                blocked_until=blocked if blocked is not None and blocked > now else None,
                limit=state.ratelimit_limit if state else None,
                remaining=state.ratelimit_remaining if state else None,
                window=state.ratelimit_window if state else None,
                seen_at=state.ratelimit_seen_at if state else None,
            )
        )
    return render(request, "upstreams.html", title="Upstreams", upstreams=views)


# -- repositories and images ------------------------------------------------------------------

REPOSITORY_COLUMNS: list[Column[RepositorySummary]] = [
    Column("name", "Repository", lambda r: r.name),
    Column("rule", "Rule", lambda r: r.rule),
    Column("images", "Images", lambda r: r.image_count, numeric=True),
    Column("tags", "Tags", lambda r: r.tag_count, numeric=True),
    Column("size_bytes", "Size", lambda r: r.size_bytes, numeric=True),
    Column("last_pulled_at", "Last pulled", lambda r: r.last_pulled_at, as_text=iso),
    Column("pull_count", "Pulls", lambda r: r.pull_count, numeric=True),
]

IMAGE_COLUMNS: list[Column[ImageSummary]] = [
    Column("digest", "Image", lambda i: i.digest),
    Column("tags", "Tags", lambda i: " ".join(i.tags)),
    Column("platforms", "Platforms", lambda i: " ".join(i.platforms)),
    Column("size_bytes", "Size", lambda i: i.size_bytes, numeric=True),
    Column("cached_at", "Cached", lambda i: i.cached_at, as_text=iso),
    Column("last_pulled_at", "Last pulled", lambda i: i.last_pulled_at, as_text=iso),
    Column("pull_count", "Pulls", lambda i: i.pull_count, numeric=True),
]


async def repositories(request: web.Request) -> web.Response:
    found = await _services(request).inventory.repositories()
    page = listing(
        request,
        found,
        REPOSITORY_COLUMNS,
        searched=lambda r: f"{r.name} {r.rule}",
        default_sort="name",
    )
    if request.query.get("format") == "csv":
        return csv_response(page.matched, REPOSITORY_COLUMNS, "repositories.csv")
    return render(
        request,
        "repositories.html",
        title="Repositories",
        listing=page,
        columns=REPOSITORY_COLUMNS,
    )


class NotCached(Exception):
    """What a page was asked about is not in the cache: a 404 page that says so."""


def _missing(what: str) -> NotCached:
    return NotCached(f"{what} is not in the cache (the Repositories page lists what is)")


async def repository(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    ui = _services(request)
    summary = await ui.inventory.repository(name) if name else None
    images = await ui.inventory.images(name) if summary is not None else None
    if summary is None or images is None:
        raise _missing(f"repository {name[:255]!r}")
    page = listing(
        request,
        images,
        IMAGE_COLUMNS,
        searched=lambda i: " ".join((i.digest, *i.tags, *i.platforms)),
        default_sort="cached_at",
        keep=("name",),
    )
    if request.query.get("format") == "csv":
        filename = name.replace("/", "_") + "-images.csv"
        return csv_response(page.matched, IMAGE_COLUMNS, filename)
    return render(
        request,
        "repository.html",
        title=name,
        repository=summary,
        listing=page,
        columns=IMAGE_COLUMNS,
    )


@dataclass(frozen=True)
class Layer:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class PlatformManifest:
    platform: str
    digest: str
    config: Layer | None
    layers: list[Layer]

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers) + (self.config.size if self.config else 0)


async def _platform_manifest(
    ui: DashboardServices, repository: str, digest: str, platform: str
) -> PlatformManifest:
    stored = await ui.cache.metadata.manifests.in_repository(repository, digest)
    if stored is None:
        return PlatformManifest(platform, digest, None, [])
    try:
        parsed = parse_manifest(stored.content, stored.media_type)
    except RegistryError:
        return PlatformManifest(platform, digest, None, [])
    blobs = [Layer(b.digest, b.media_type, b.size) for b in parsed.blobs]
    config = blobs[0] if blobs else None
    return PlatformManifest(platform, digest, config, blobs[1:])


async def image(request: web.Request) -> web.StreamResponse:
    name = request.query.get("repository", "")
    digest = request.query.get("digest", "")
    ui = _services(request)
    images = await ui.inventory.images(name) if name else None
    summary = next((i for i in images or () if i.digest == digest), None)
    stored = await ui.cache.metadata.manifests.in_repository(name, digest) if summary else None
    if summary is None or stored is None:
        raise _missing(f"image {name[:255]}@{digest[:80]}")
    parsed = parse_manifest(stored.content, stored.media_type)
    platforms: list[PlatformManifest] = []
    scanned: list[tuple[str, str | None]] = []
    if parsed.children:
        for child in parsed.children:
            platform = platform_name(child.platform)
            label = platform or ("attestation" if child.platform else "unknown")
            platforms.append(await _platform_manifest(ui, name, child.digest, label))
            if platform is not None:  # attestations are not scanned
                scanned.append((child.digest, platform))
    else:
        label = summary.platforms[0] if summary.platforms else "unknown"
        platforms.append(await _platform_manifest(ui, name, digest, label))
        scanned.append((digest, summary.platforms[0] if summary.platforms else None))
    severity = severity_filter(request.query.get("severity"))
    findings = await findings_view(ui.scans, scanned, severity)
    if request.query.get("format") == "csv":
        filename = f"{name.replace('/', '_')}-{digest.partition(':')[2][:12]}-findings.csv"
        return csv_response(findings.shown, FINDING_COLUMNS, filename)
    return render(
        request,
        "image.html",
        title=f"{name}@{digest[:19]}",
        image=summary,
        media_type=stored.media_type,
        platforms=platforms,
        is_index=bool(parsed.children),
        findings=findings,
        severities=SEVERITIES,
    )


# -- configuration ----------------------------------------------------------------------------


async def rules(request: web.Request) -> web.Response:
    ui = _services(request)
    policy = await ui.policy.policy()
    policy_text = None
    policy_updated = None
    if policy is not None:
        document, policy_updated = policy
        try:
            policy_text = json.dumps(json.loads(document), indent=2)
        except ValueError:
            policy_text = document
    templates = []
    for template in await ui.templates.all():
        lifecycle = template.lifecycle_policy
        if lifecycle:
            with contextlib.suppress(ValueError):
                lifecycle = json.dumps(json.loads(lifecycle), indent=2)
        templates.append((template, lifecycle))
    return render(
        request,
        "rules.html",
        title="Rules and policy",
        rules=await _rules(ui),
        templates=templates,
        policy_text=policy_text,
        policy_updated=policy_updated,
    )


# -- space ------------------------------------------------------------------------------------


async def space(request: web.Request) -> web.Response:
    ui = _services(request)
    settings = ui.cache.settings
    totals = await ui.inventory.totals()
    found = await ui.inventory.repositories()
    top = sorted(found, key=lambda r: (-r.size_bytes, r.name))[:TOP_REPOSITORIES]
    keeper = SpaceKeeper(ui.cache.metadata.engine, ui.cache.driver, settings.lifecycle)
    expiries, broken = await keeper.preview()
    expiries.sort(key=lambda e: (e.image.repository, e.image.cached_at, e.image.digest))
    max_size = settings.lifecycle.max_size
    return render(
        request,
        "space.html",
        title="Space",
        totals=totals,
        top=top,
        largest=max((r.size_bytes for r in top), default=0),
        expiries=expiries,
        expiring_bytes=sum(e.image.size for e in expiries),
        broken=broken,
        max_size=max_size,
        used_share=(totals.blob_bytes / max_size) if max_size else None,
        interval=settings.lifecycle.interval,
    )
