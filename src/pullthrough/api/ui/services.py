"""The stores the dashboard reads, opened once when it loads: the admin API's, without loading
the admin API (its models and OpenAPI document) into a worker that only shows pages."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from pullthrough.api.access import AccessControl
from pullthrough.cache.service import PullThroughCache
from pullthrough.errors import DigestInvalid
from pullthrough.metadata.inventory import ConfigReader, Inventory
from pullthrough.metadata.principals import AccessStore
from pullthrough.metadata.scans import ScanStore
from pullthrough.metadata.stats import CacheStatsStore
from pullthrough.metadata.stats_history import StatsHistoryStore
from pullthrough.metadata.templates import TemplateStore
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.layout import blob_key

# Image configs are a few KiB: a larger blob is not read to name a platform.
_MAX_CONFIG_BYTES = 4 * 1024 * 1024


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
            inventory=Inventory(engine, _config_reader(cache.driver)),
            stats=CacheStatsStore(engine),
            history=StatsHistoryStore(engine),
            scans=ScanStore(engine),
        )


UI_SERVICES = web.AppKey("ui_services", DashboardServices)


def _config_reader(driver: BlobDriver) -> ConfigReader:
    async def read(digest: str) -> bytes | None:
        try:
            parsed = Digest.parse(digest)
        except DigestInvalid:
            return None
        key = blob_key(parsed.algorithm, parsed.hex)
        path = driver.local_path(key)
        if path is not None:
            return await asyncio.to_thread(_read_small, path)
        data = bytearray()
        try:
            async for chunk in driver.read(key, 0, _MAX_CONFIG_BYTES + 1):
                data += chunk
        except FileNotFoundError:
            return None
        return bytes(data) if len(data) <= _MAX_CONFIG_BYTES else None

    return read


def _read_small(path: Path) -> bytes | None:
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_CONFIG_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= _MAX_CONFIG_BYTES else None
