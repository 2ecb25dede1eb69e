"""The pull-through cache as one object: what the HTTP layer calls, wired in one place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from pullthrough import USER_AGENT
from pullthrough.access.peer_tokens import PeerTokens
from pullthrough.access.secrets import SecretStore, secret_store
from pullthrough.access.tokens import load_or_create_key
from pullthrough.cache.blobs import BlobCache, Peers
from pullthrough.cache.eager import EagerFill, EagerLimits
from pullthrough.cache.health import HealthRecorder
from pullthrough.cache.listings import Listings
from pullthrough.cache.manifests import ManifestCache
from pullthrough.cache.pulls import PullRecorder
from pullthrough.cache.rulebook import RuleBook
from pullthrough.cache.scan_layers import CacheScanning, open_scanning
from pullthrough.cache.stats import StatsRecorder
from pullthrough.cache.upstreams import Upstreams
from pullthrough.config import Settings
from pullthrough.metadata.opening import open_locks, open_metadata
from pullthrough.metadata.rules import RuleStore
from pullthrough.metadata.space import SpaceStore
from pullthrough.metadata.stats import CacheStatsStore
from pullthrough.metadata.store import MetadataStore
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.layout import DataLayout
from pullthrough.storage.locks import Locks
from pullthrough.storage.opening import open_blob_storage
from pullthrough.upstream.credentials import CredentialSource, EnvCredentialSource


@dataclass
class PullThroughCache:
    settings: Settings
    rules: RuleBook
    metadata: MetadataStore
    driver: BlobDriver
    upstreams: Upstreams
    secrets: SecretStore
    manifests: ManifestCache
    blobs: BlobCache
    listings: Listings
    pulls: PullRecorder
    stats: StatsRecorder
    # The one lock set: fills, tag refreshes, manifest fetches, and GC deleting a blob.
    locks: Locks
    # How this replica reaches the others, and signs and checks their requests (api/peer.py).
    peers: Peers
    # Image blobs filled as soon as their manifest is fetched; stopped when the worker drains.
    eager: EagerFill
    # The scan pool of this worker and the gate its manifest pulls pass (cache/scan_layers.py).
    scanning: CacheScanning | None = None


@asynccontextmanager
async def open_cache(
    settings: Settings, credentials: CredentialSource | None = None
) -> AsyncIterator[PullThroughCache]:
    layout = DataLayout(settings.data_dir.resolve())
    metadata = await open_metadata(settings)
    secrets = secret_store(metadata, settings)
    driver = await open_blob_storage(settings, secrets)
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, ttl_dns_cache=300)
    session = aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": USER_AGENT}, auto_decompress=False
    )
    blobs: BlobCache | None = None
    eager: EagerFill | None = None
    scanning: CacheScanning | None = None
    upstreams: Upstreams | None = None
    # Lease rows every replica sees on PostgreSQL, flocks in tmp/ on SQLite (metadata/opening.py).
    locks = open_locks(settings, metadata)
    pulls = PullRecorder(SpaceStore(metadata.engine))
    stats = StatsRecorder(CacheStatsStore(metadata.engine))
    health = HealthRecorder(metadata.upstreams)
    rules = RuleStore(metadata.engine)
    try:
        # Once per data directory; later the stored rules rule (metadata/rules.py).
        await rules.seed(settings.rules)
        upstreams = Upstreams(
            session, settings, credentials or EnvCredentialSource(), metadata, health, secrets
        )
        # A fill another replica leads is streamed from it, signed with the shared token key.
        token_key = await asyncio.to_thread(load_or_create_key, layout.root)
        peers = Peers(settings.advertised_url, session, PeerTokens(token_key))
        blobs = BlobCache(
            metadata,
            driver,
            upstreams,
            layout.temp_dir,
            settings.fill_deadline,
            locks,
            stats,
            peers,
        )
        eager = EagerFill(blobs, metadata, locks, EagerLimits(max_size=settings.lifecycle.max_size))
        manifests = ManifestCache(metadata, upstreams, locks, pulls, stats, eager)
        rule_book = RuleBook(rules)
        scanning = open_scanning(
            rule_book, manifests, blobs, driver, metadata, locks, layout.temp_dir
        )
        scanning.service.start()
        for recorder in (pulls, stats, health):
            recorder.start()
        yield PullThroughCache(
            settings=settings,
            rules=rule_book,
            metadata=metadata,
            driver=driver,
            upstreams=upstreams,
            secrets=secrets,
            manifests=manifests,
            blobs=blobs,
            listings=Listings(metadata, upstreams, manifests),
            pulls=pulls,
            stats=stats,
            locks=locks,
            peers=peers,
            eager=eager,
            scanning=scanning,
        )
    finally:
        if scanning is not None:
            await scanning.service.close()
        if eager is not None:
            await eager.close()
        for recorder in (pulls, stats, health):
            await recorder.close()
        if blobs is not None:
            await blobs.close()
        if upstreams is not None:
            await upstreams.close()
        await locks.close()
        await session.close()
        await driver.close()
        await metadata.close()
