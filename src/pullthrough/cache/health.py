"""What each upstream's last answer or failure was, noted by the registry clients as it
happens and written to the database every second or two for `/api/v1/upstreams`."""

from __future__ import annotations

import time
from collections.abc import Callable

from pullthrough.cache.batching import BatchRecorder
from pullthrough.metadata.upstream_state import UpstreamHealth, UpstreamStateStore

FLUSH_SECONDS = 2.0


class HealthRecorder(BatchRecorder[str, UpstreamHealth]):
    """The registry clients' `HealthSink`."""

    what = "upstream health"

    def __init__(
        self,
        store: UpstreamStateStore,
        interval: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(interval)
        self._store = store
        self._clock = clock

    def succeeded(self, upstream: str) -> None:
        self.add(upstream, UpstreamHealth(last_success_at=self._clock()))

    def failed(self, upstream: str, message: str) -> None:
        self.add(upstream, UpstreamHealth(last_error=message, last_error_at=self._clock()))

    def merge(self, earlier: UpstreamHealth, later: UpstreamHealth) -> UpstreamHealth:
        return earlier.merge(later)

    async def save(self, batch: dict[str, UpstreamHealth]) -> None:
        await self._store.record_health(batch)
