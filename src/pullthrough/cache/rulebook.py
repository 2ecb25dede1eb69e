"""The rules in force: read from the database, re-read at most every second, so a rule changed
through the admin API reaches every worker process without a restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from pullthrough.cache.routing import Router
from pullthrough.config import RuleConfig
from pullthrough.metadata.rules import RuleStore

log = logging.getLogger(__name__)

RELOAD_SECONDS = 1.0


class RuleBook:
    def __init__(
        self,
        store: RuleStore,
        interval: float = RELOAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._interval = interval
        self._clock = clock
        self._rules: tuple[RuleConfig, ...] | None = None
        self._router = Router(())
        self._loaded_at = -float("inf")
        self._lock = asyncio.Lock()

    async def router(self) -> Router:
        """The router over the current rules (at most `interval` seconds old)."""
        if self._clock() - self._loaded_at >= self._interval:
            async with self._lock:
                if self._clock() - self._loaded_at >= self._interval:
                    await self._reload()
        return self._router

    def invalidate(self) -> None:
        """Make the next `router()` read the database: after this worker changed a rule."""
        self._loaded_at = -float("inf")

    async def _reload(self) -> None:
        try:
            stored = await self.store.all()
        except SQLAlchemyError as exc:
            # Keep routing with what we know; the next request tries again.
            log.warning("reading the rules failed, still using the previous ones: %s", exc)
            self._loaded_at = self._clock()
            return
        rules = tuple(s.rule for s in stored)
        if rules != self._rules:
            self._rules = rules
            self._router = Router(rules)
        self._loaded_at = self._clock()
