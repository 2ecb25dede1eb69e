"""A worker's serving phase and the requests it is handling: what `/readyz` and the drain at
SIGTERM read.

A worker is STARTING until the whole server serves (every worker listens: the supervisor says
so), SERVING until SIGTERM, then STOPPING while it drains. Only SERVING is ready.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware


class ServingPhase(StrEnum):
    STARTING = "starting"
    SERVING = "serving"
    STOPPING = "stopping"


class ServingState:
    """The phase, and a count of request handlers running (a response sent from a file after
    its handler returned is not counted: aiohttp's own shutdown waits for those)."""

    def __init__(self, phase: ServingPhase = ServingPhase.STARTING) -> None:
        self.phase = phase
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        return self.phase is ServingPhase.SERVING

    def serving(self) -> None:
        if self.phase is ServingPhase.STARTING:
            self.phase = ServingPhase.SERVING

    def stopping(self) -> None:
        self.phase = ServingPhase.STOPPING

    async def wait_idle(self) -> None:
        """Return once no request handler is running."""
        await self._idle.wait()

    def middleware(self) -> Middleware:
        @web.middleware
        async def count_in_flight(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.in_flight += 1
            self._idle.clear()
            try:
                return await handler(request)
            finally:
                self.in_flight -= 1
                if self.in_flight == 0:
                    self._idle.set()

        return count_in_flight
