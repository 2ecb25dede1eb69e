"""What the admin handlers work with, opened once per worker when the cache is: one object on
the application, so every handler's dependencies are visible in one place."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from pullthrough.access.secrets import SecretStore
from pullthrough.api.access import AccessControl
from pullthrough.api.stored_configs import stored_config_reader
from pullthrough.cache.rulebook import RuleBook
from pullthrough.cache.service import PullThroughCache
from pullthrough.metadata.inventory import Inventory
from pullthrough.metadata.principals import AccessStore
from pullthrough.metadata.scanning import ScanningStore
from pullthrough.metadata.stats import CacheStatsStore
from pullthrough.metadata.templates import TemplateStore
from pullthrough.metadata.upstream_state import UpstreamStateStore


@dataclass(frozen=True)
class AdminServices:
    cache: PullThroughCache
    access: AccessControl | None
    secrets: SecretStore
    policy: AccessStore
    templates: TemplateStore
    scanning: ScanningStore
    inventory: Inventory
    stats: CacheStatsStore
    upstreams: UpstreamStateStore

    @property
    def rules(self) -> RuleBook:
        return self.cache.rules

    @classmethod
    def open(cls, cache: PullThroughCache, access: AccessControl | None) -> AdminServices:
        engine = cache.metadata.engine
        return cls(
            cache=cache,
            access=access,
            secrets=cache.secrets,
            policy=AccessStore(engine),
            templates=TemplateStore(engine),
            scanning=ScanningStore(engine),
            inventory=Inventory(engine, stored_config_reader(cache.driver)),
            stats=CacheStatsStore(engine),
            upstreams=cache.metadata.upstreams,
        )


ADMIN_KEY = web.AppKey("admin", AdminServices)


def services(request: web.Request) -> AdminServices:
    return request.app[ADMIN_KEY]
