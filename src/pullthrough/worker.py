"""One worker process: serve the app on the shared port until SIGTERM, then drain and exit.

A worker is ready (`/readyz` 200) only once its app has started, its socket accepts, and every
other worker's does too: it tells its start link that it listens, and the link says when the
whole server serves. At SIGTERM it stops accepting, lets the requests and fills in progress
finish within DRAIN_SECONDS, logs what was drained and what was abandoned, and exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Protocol

from aiohttp import web

from pullthrough.api.app import CACHE_KEY, build_app, build_metrics_app
from pullthrough.api.serving import ServingState
from pullthrough.cache.blobs import BlobCache
from pullthrough.cache.fill.lead import LeadFill
from pullthrough.cache.fill.state import FillState
from pullthrough.config import RuleConfig, Settings, parse_listen
from pullthrough.telemetry import metrics
from pullthrough.telemetry.logs import configure_logging, stop_logging

log = logging.getLogger(__name__)

# How long a stopping worker waits for requests and fills in progress. A fill still running
# then is abandoned (its partial download is removed; the next pull fetches the blob again).
DRAIN_SECONDS = 30.0
# After the drain, how long responses sent from a file after their handler returned may take
# (aiohttp's shutdown); a verified fill still committing then has cache/blobs.py's own bound.
CLOSE_SECONDS = 5.0
# Headers may be longer than aiohttp's default line limit; the middleware enforces our own
# limit with an OCI error instead of aiohttp's plain-text 400.
_PARSER_LIMIT = 65536
# While draining, look for fills that requests in flight have started this often.
_DRAIN_LOOK_SECONDS = 1.0

# What a worker and its supervisor say to each other through their pipe.
LISTENING = "listening"  # worker: my app has started and my socket accepts connections
SERVING = "serving"  # supervisor: every worker listens; be ready


class StartLink(Protocol):
    """How a worker says that it listens, and learns that the whole server serves."""

    def listening(self, serving: ServingState) -> None: ...

    def close(self) -> None: ...


def announce_serving(settings: Settings, rules: tuple[RuleConfig, ...]) -> None:
    """The line that tells an operator (and a script) the server accepts connections."""
    log.info(
        "serving on %s with %d worker(s), data in %s",
        settings.listen,
        settings.workers,
        settings.data_dir.resolve(),
        extra={"rules": [r.prefix for r in rules]},
    )


class SoleWorker:
    """The only worker, in the serving process itself: listening is serving."""

    def __init__(self, settings: Settings, rules: tuple[RuleConfig, ...]) -> None:
        self._settings = settings
        self._rules = rules

    def listening(self, serving: ServingState) -> None:
        announce_serving(self._settings, self._rules)
        serving.serving()

    def close(self) -> None:
        pass


class SupervisedWorker:
    """One of several workers: tells the supervisor it listens, serves when it answers."""

    def __init__(self, pipe: Connection) -> None:
        self._pipe = pipe
        self._watched = False

    def listening(self, serving: ServingState) -> None:
        self._pipe.send(LISTENING)
        asyncio.get_running_loop().add_reader(self._pipe.fileno(), self._heard, serving)
        self._watched = True

    def _heard(self, serving: ServingState) -> None:
        try:
            message = self._pipe.recv()
        except (EOFError, OSError):  # the supervisor is gone; keep serving what we serve
            self.close()
            return
        if message == SERVING:
            serving.serving()

    def close(self) -> None:
        if self._watched:
            self._watched = False
            asyncio.get_running_loop().remove_reader(self._pipe.fileno())


@dataclass
class DrainReport:
    """What a stopping worker finished and what it gave up on."""

    requests: int = 0  # request handlers running when the worker stopped accepting
    requests_abandoned: int = 0
    committed: list[str] = field(default_factory=list)  # fills, by digest
    failed: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)

    def log(self, seconds: float) -> None:
        def named(digests: list[str]) -> str:
            return f"{len(digests)} ({', '.join(digests)})" if digests else "0"

        log.info(
            "stopped after draining for %.1fs: %d of %d request(s) in flight finished, "
            "%d abandoned; fills committed: %s, failed: %s, abandoned: %s",
            seconds,
            self.requests - self.requests_abandoned,
            self.requests,
            self.requests_abandoned,
            named(self.committed),
            named(self.failed),
            named(self.abandoned),
            extra={
                "drained_fills": self.committed,
                "failed_fills": self.failed,
                "abandoned_fills": self.abandoned,
                "abandoned_requests": self.requests_abandoned,
            },
        )


async def drain(serving: ServingState, blobs: BlobCache, grace: float) -> DrainReport:
    """Wait, at most `grace` seconds, until no request handler runs and no fill is in progress
    (one a request in flight starts meanwhile included)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    report = DrainReport(requests=serving.in_flight)
    seen: dict[str, LeadFill] = {}
    while True:
        running: list[asyncio.Task[None]] = []
        for fill in blobs.fills:
            seen.setdefault(str(fill.digest), fill)
            if fill.task is not None and not fill.task.done():
                running.append(fill.task)
        remaining = deadline - loop.time()
        if (not running and serving.in_flight == 0) or remaining <= 0:
            break
        waiters: list[asyncio.Future[None]] = [*running]
        idle = None
        if serving.in_flight:
            idle = asyncio.ensure_future(serving.wait_idle())
            waiters.append(idle)
        await asyncio.wait(
            waiters,
            timeout=min(remaining, _DRAIN_LOOK_SECONDS),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if idle is not None:
            idle.cancel()
    report.requests_abandoned = serving.in_flight
    for digest, fill in seen.items():
        if fill.state is FillState.COMMITTED:
            report.committed.append(digest)
        elif fill.state is FillState.FAILED:
            report.failed.append(digest)
        else:
            report.abandoned.append(digest)
    return report


def _bind(settings: Settings, listen: str | None = None) -> socket.socket:
    """A socket bound to `listen` (the settings' `listen` by default), shared by the workers."""
    host, port = parse_listen(listen or settings.listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_worker(settings: Settings, link: StartLink) -> None:
    configure_logging(settings.log_level)  # this process's own log thread (after a fork too)
    try:
        asyncio.run(_serve_until_stopped(settings, link))
    finally:
        # A worker process ends without running atexit: write the lines still queued now.
        stop_logging()


def run_supervised_worker(settings: Settings, pipe: Connection) -> None:
    """The target of a worker process the supervisor starts (forked from it)."""
    # The supervisor's own signal handlers came along with the fork: a worker's are its loop's
    # (set once it runs), and until then a signal ends it.
    stops = {signal.SIGTERM, signal.SIGINT}  # blocked by the supervisor while it forked
    for signum in stops:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    run_worker(settings, SupervisedWorker(pipe))


async def _serve_until_stopped(settings: Settings, link: StartLink) -> None:
    serving = ServingState()
    runner = web.AppRunner(
        build_app(settings, serving=serving),
        access_log=None,
        max_field_size=_PARSER_LIMIT,
        max_line_size=_PARSER_LIMIT,
        shutdown_timeout=CLOSE_SECONDS,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # A worker may get SIGTERM twice (from the supervisor, and from whoever signalled the
    # process group): the second must not cut short the first's drain. Set before the app
    # starts, so a SIGTERM during the start is a clean stop too.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await runner.setup()  # the app's start: the cache and its database are open after this
    metrics_runner = None
    try:
        site = web.SockSite(runner, _bind(settings))
        await site.start()
        if settings.metrics_listen is not None and metrics.enabled():
            metrics_runner = web.AppRunner(build_metrics_app(runner.app), access_log=None)
            await metrics_runner.setup()
            await web.SockSite(metrics_runner, _bind(settings, settings.metrics_listen)).start()
        if not stopping.is_set():  # a SIGTERM during the start: stop without announcing
            link.listening(serving)
        await stopping.wait()
        started = loop.time()
        serving.stopping()
        link.close()
        await site.stop()  # no new connections
        assert runner.server is not None
        runner.server.pre_shutdown()  # no new requests on kept-alive ones
        cache = runner.app[CACHE_KEY]
        cache.eager.stop()  # blobs no client asked for yet do not hold the drain up
        report = await drain(serving, cache.blobs, DRAIN_SECONDS)
        report.log(loop.time() - started)
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        metrics.flush()  # the last second's counts
