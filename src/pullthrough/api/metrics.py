"""`GET /metrics`: every worker's metrics in Prometheus' text format (OpenMetrics when the
scraper asks for it), with the storage totals read from the metadata database at the scrape.

With auth on, the scraper is a caller the registry accepts (an API key as Basic NAME:KEY, a
login or registry token) whom the registry policy grants `registry:Admin` on `*`, as for the
admin API; `metrics_listen` serves the same page without authentication on an address of its
own (worker.py).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from pullthrough.access.registry_policy.document import ADMIN, REGISTRY_WIDE
from pullthrough.api.access import AccessControl
from pullthrough.cache.service import PullThroughCache
from pullthrough.errors import Denied, EndpointUnknown, Unauthorized
from pullthrough.metadata.inventory import CacheTotals, Inventory
from pullthrough.telemetry import metrics

# The storage totals are a query over the whole blob table: read at most this often.
TOTALS_SECONDS = 5.0


class MetricsPage:
    """The `/metrics` page of one worker, with the storage totals it last read."""

    def __init__(self) -> None:
        self._totals: CacheTotals | None = None
        self._read_at = 0.0
        self._reading = asyncio.Lock()

    async def serve(
        self, request: web.Request, cache: PullThroughCache, access: AccessControl | None
    ) -> web.Response:
        if not metrics.enabled():
            raise EndpointUnknown("metrics are off (metrics: false)")
        if access is not None:
            await require_scraper(request, access)
        families = await self._storage(cache)
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encode(metrics.gather(families))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _storage(self, cache: PullThroughCache) -> list[Metric]:
        async with self._reading:
            if self._totals is None or time.monotonic() - self._read_at > TOTALS_SECONDS:
                self._totals = await Inventory(cache.metadata.engine).totals()
                self._read_at = time.monotonic()
        return storage_families(self._totals, cache.settings.lifecycle.max_size)


def storage_families(totals: CacheTotals, cap: int | None) -> list[Metric]:
    """The storage gauges of a scrape: what the metadata database says is stored, and the
    size cap (lifecycle.max_size) when there is one."""
    families: list[Metric] = [
        GaugeMetricFamily(
            "pullthrough_storage_bytes",
            "Bytes of the blobs stored in the cache.",
            value=totals.blob_bytes,
        ),
        GaugeMetricFamily(
            "pullthrough_storage_blobs", "Blobs stored in the cache.", value=totals.blobs
        ),
        GaugeMetricFamily(
            "pullthrough_cached_repositories",
            "Repositories holding cached content.",
            value=totals.repositories,
        ),
        GaugeMetricFamily(
            "pullthrough_cached_manifests", "Manifests cached.", value=totals.manifests
        ),
    ]
    if cap is not None:
        families.append(
            GaugeMetricFamily(
                "pullthrough_storage_max_bytes",
                "The size cap (lifecycle.max_size) the stored blobs are kept under.",
                value=cap,
            )
        )
    return families


async def require_scraper(request: web.Request, access: AccessControl) -> None:
    """Return when the caller may read the metrics; else a 401 with a Basic challenge, or a
    403 that says why."""
    challenge = {"WWW-Authenticate": f'Basic realm="{access.config.service}", charset="UTF-8"'}
    try:
        caller = await access.caller(request, None)
    except Unauthorized as exc:
        raise Unauthorized(
            f"{exc.message} (/metrics takes Basic NAME:API_KEY, Basic token:<login token> or a "
            "Bearer registry token)",
            headers=challenge,
        ) from None
    principal = caller.principal
    decision = await access.authorizer.decide(principal, ADMIN, REGISTRY_WIDE)
    if decision.allowed:
        return
    why = decision.explain(principal, ADMIN, REGISTRY_WIDE)
    if not principal.authenticated:
        raise Unauthorized(f"log in to read /metrics ({why})", headers=challenge)
    raise Denied(
        f"/metrics needs {ADMIN} on *: {why}; or serve it without authentication on an "
        "address of its own with metrics_listen"
    )
