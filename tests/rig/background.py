"""Run an aiohttp web application on 127.0.0.1 in a background thread with its own event loop.

The token issuer and the counting proxy are test-side servers: they must keep answering while the
test thread blocks in httpx or subprocess calls, so each gets a thread and a loop of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web

from tests.rig.lifecycle import Started
from tests.rig.ports import free_port

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


class BackgroundApp(Started):
    """One aiohttp application served from a daemon thread; restartable on the same port."""

    def __init__(self, make_app: Callable[[], web.Application], port: int | None = None) -> None:
        # A factory rather than an app: an aiohttp Application is bound to the loop that ran it
        # and cannot be served twice, while `start()` after `stop()` must work.
        self._make_app = make_app
        self.port = port or free_port()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"rig-app-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError(f"background app on port {self.port} did not start")
        if self._error is not None:
            raise RuntimeError(f"background app on port {self.port} failed") from self._error

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"background app on port {self.port} did not stop")
        self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the thread that called start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # A short shutdown timeout: a test that stops the server mid-request wants it gone, not
        # drained for aiohttp's default 60 seconds.
        runner = web.AppRunner(self._make_app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
            await site.start()
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()
