"""What the admin handlers work with, opened once per worker when the cache is: one object on
the application, so every handler's dependencies are visible in one place."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from pullthrough.access.secrets import SecretStore
from pullthrough.api.access import AccessControl
from pullthrough.cache.rulebook import RuleBook
from pullthrough.cache.service import PullThroughCache
from pullthrough.errors import DigestInvalid
from pullthrough.metadata.inventory import ConfigReader, Inventory
from pullthrough.metadata.principals import AccessStore
from pullthrough.metadata.scanning import ScanningStore
from pullthrough.metadata.stats import CacheStatsStore
from pullthrough.metadata.templates import TemplateStore
from pullthrough.metadata.upstream_state import UpstreamStateStore
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.layout import blob_key

# Image configs are a few KiB; anything much larger is not worth reading for a listing.
_MAX_CONFIG_BYTES = 4 * 1024 * 1024


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


def stored_config_reader(driver: BlobDriver) -> ConfigReader:
    """Reads small stored blobs (image configs): from local disk, or through the driver."""

    async def read(digest: str) -> bytes | None:
        try:
            parsed = Digest.parse(digest)
        except DigestInvalid:
            return None
        key = blob_key(parsed.algorithm, parsed.hex)
        path = driver.local_path(key)
        if path is not None:
            return await asyncio.to_thread(_read_small, path)
        return await _read_small_object(driver, key)

    return read


async def _read_small_object(driver: BlobDriver, key: str) -> bytes | None:
    data = bytearray()
    try:
        async for chunk in driver.read(key, 0, _MAX_CONFIG_BYTES + 1):
            data += chunk
    except FileNotFoundError:
        return None
    return bytes(data) if len(data) <= _MAX_CONFIG_BYTES else None


def _read_small(path: Path) -> bytes | None:
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_CONFIG_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= _MAX_CONFIG_BYTES else None
