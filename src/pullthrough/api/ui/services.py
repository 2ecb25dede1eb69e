"""The stores the dashboard reads, opened once when it loads: the admin API's, without loading
the admin API (its models and OpenAPI document) into a worker that only shows pages."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from pullthrough.api.access import AccessControl
from pullthrough.api.stored_configs import stored_config_reader
from pullthrough.cache.service import PullThroughCache
from pullthrough.metadata.inventory import Inventory
from pullthrough.metadata.principals import AccessStore
from pullthrough.metadata.scans import ScanStore
from pullthrough.metadata.stats import CacheStatsStore
from pullthrough.metadata.stats_history import StatsHistoryStore
from pullthrough.metadata.templates import TemplateStore


@dataclass(frozen=True)
class DashboardServices:
    cache: PullThroughCache
    access: AccessControl | None
    policy: AccessStore
    templates: TemplateStore
    inventory: Inventory
    stats: CacheStatsStore
    history: StatsHistoryStore
    scans: ScanStore

    @classmethod
    def open(cls, cache: PullThroughCache, access: AccessControl | None) -> DashboardServices:
        engine = cache.metadata.engine
        return cls(
            cache=cache,
            access=access,
            policy=AccessStore(engine),
            templates=TemplateStore(engine),
            inventory=Inventory(engine, stored_config_reader(cache.driver)),
            stats=CacheStatsStore(engine),
            history=StatsHistoryStore(engine),
            scans=ScanStore(engine),
        )


UI_SERVICES = web.AppKey("ui_services", DashboardServices)
