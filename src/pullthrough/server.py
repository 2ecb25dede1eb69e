"""Running `pullthrough serve`: recover the data directory, then serve on N worker processes.

Workers share one port with SO_REUSEPORT, each with its own event loop (worker.py). Recovery
runs once, in the parent, before any worker starts: leftover spool files go, and blob rows whose
file is gone are dropped, so nothing half-written is ever visible. `serving on` is logged once
every worker accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import shutil
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from pullthrough.access.rule_credentials import warn_about_credentials
from pullthrough.access.secrets import open_secret_store, secret_store
from pullthrough.access.tokens import load_or_create_key
from pullthrough.config import RuleConfig, Settings
from pullthrough.metadata.opening import describe_database, metadata_for
from pullthrough.metadata.rules import RuleStore
from pullthrough.storage.layout import DataLayout, blob_key
from pullthrough.storage.opening import open_blob_storage
from pullthrough.telemetry import metrics
from pullthrough.telemetry.logs import configure_logging, writer_paused
from pullthrough.worker import (
    CLOSE_SECONDS,
    DRAIN_SECONDS,
    LISTENING,
    SERVING,
    SoleWorker,
    announce_serving,
    run_supervised_worker,
    run_worker,
)

log = logging.getLogger(__name__)

# How often the supervisor looks at its workers when none has news.
_WATCH_SECONDS = 0.5
# A stopping worker drains, closes, and lets a verified fill commit (cache/blobs.py); one that
# takes longer than this is killed.
_STOP_SECONDS = DRAIN_SECONDS + CLOSE_SECONDS + 25.0


async def prepare_rules(settings: Settings) -> tuple[RuleConfig, ...]:
    """Seed a new data directory with the configured rules; return the rules in force. A
    configuration file whose rules differ from the stored ones is pointed out: after the first
    start, rules change through the admin API (`pullthrough rules`, `pullthrough apply`)."""
    async with metadata_for(settings) as metadata:
        store = RuleStore(metadata.engine)
        seeded = await store.seed(settings.rules)
        rules = tuple(stored.rule for stored in await store.all())
    configured = "rules" in settings.model_fields_set
    if (
        not seeded
        and configured
        and sorted(rules, key=_prefix) != sorted(settings.rules, key=_prefix)
    ):
        log.warning(
            "the configuration's rules differ from the %d stored in %s, which are the ones served: "
            "the file's rules only seed a new data directory; change rules with `pullthrough "
            "rules` or `pullthrough apply -f FILE`",
            len(rules),
            describe_database(settings),
        )
    return rules


def _prefix(rule: RuleConfig) -> str:
    return rule.prefix


def check_credentials(settings: Settings, rules: tuple[RuleConfig, ...]) -> None:
    """Warn about each rule's secret that neither the secret store nor the environment holds
    (or that cannot be opened). Not fatal: `pullthrough secrets put` adds it while running."""
    if not any(rule.credential for rule in rules):
        return

    async def check() -> None:
        async with open_secret_store(settings) as store:
            await warn_about_credentials(rules, store)

    asyncio.run(check())


async def recover(settings: Settings) -> tuple[int, int]:
    """Remove leftover spool files and forget blobs whose file is gone: (removed, forgotten)."""
    layout = DataLayout(settings.data_dir.resolve())
    layout.create()
    removed = 0
    for leftover in layout.temp_dir.iterdir():
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed += 1
    async with metadata_for(settings) as metadata:
        driver = await open_blob_storage(settings, secret_store(metadata, settings))
        missing = []
        try:
            # Object storage is shared and outlives a host: its blobs are not this host's to
            # check at every start (one request each). A hit finds a missing object there
            # anyway, forgets it and fetches the blob again (cache/blobs.py).
            if driver.local_path(blob_key("sha256", "0" * 64)) is not None:
                for digest, size in await metadata.blobs.stored():
                    algorithm, _, hex_digest = digest.partition(":")
                    if await driver.size(blob_key(algorithm, hex_digest)) != size:
                        missing.append(digest)
        finally:
            await driver.close()
        await metadata.blobs.forget(missing)
    if removed or missing:
        log.warning(
            "recovered data directory: removed %d leftover spool files, forgot %d blobs whose "
            "file was missing",
            removed,
            len(missing),
        )
    return removed, len(missing)


def serve(settings: Settings) -> int:
    """Serve until SIGTERM; the exit status: 0 after a stop, 1 if the server could not start."""
    configure_logging(settings.log_level)
    rules = asyncio.run(prepare_rules(settings))
    check_credentials(settings, rules)
    asyncio.run(recover(settings))
    if settings.metrics:
        # Every process's metrics are files here, read by whichever worker a scrape reaches.
        metrics.use_directory(DataLayout(settings.data_dir.resolve()).temp_dir / "metrics")
    else:
        metrics.disable()
    if settings.auth.enabled:
        # Made here, once, so worker processes never race to create it.
        load_or_create_key(settings.data_dir.resolve())
    if settings.workers == 1:
        run_worker(settings, SoleWorker(settings, rules))
        return 0
    return _Supervisor(settings, rules).run()


@dataclass
class _Worker:
    process: BaseProcess
    pipe: Connection | None  # None once the worker is gone
    listening: bool = False


class _Supervisor:
    """Starts the workers, says `serving on` once every one listens, restarts a worker that
    dies, and at SIGTERM passes it on and waits for their drains."""

    def __init__(self, settings: Settings, rules: tuple[RuleConfig, ...]) -> None:
        self._settings = settings
        self._rules = rules
        # Forked, not spawned: a worker starts with the serving code this process has already
        # imported, in pages the workers share with it and with each other (copy-on-write)
        # instead of importing a copy of their own.
        self._context = multiprocessing.get_context("fork")
        self._workers: list[_Worker] = []
        self._serving = False
        self._stop_signal: int | None = None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        # Everything alive now (the imported modules, most of all) is left out of the garbage
        # collector's passes: a pass writes to each object it visits, which would copy into each
        # worker the pages it shares with this process.
        gc.freeze()
        self._workers = [self._start() for _ in range(self._settings.workers)]
        failed = False
        while self._stop_signal is None and not failed:
            failed = not self._watch()
        # Again, after _stop did: a worker started while the signal arrived has not had it.
        # A worker takes a second SIGTERM as the first.
        for worker in self._workers:
            self._signal(worker, self._passed_on())
        for worker in self._workers:
            worker.process.join(timeout=_STOP_SECONDS)
            if worker.process.is_alive():
                log.error(
                    "worker %d did not stop within %.0fs; killed", worker.process.pid, _STOP_SECONDS
                )
                worker.process.kill()
                worker.process.join()
        return 1 if failed else 0

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=run_supervised_worker, args=(self._settings, theirs), daemon=False
        )
        # No signal handler of ours runs in the child before it resets them (worker.py).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            with writer_paused():
                process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        theirs.close()
        return _Worker(process, ours)

    def _watch(self) -> bool:
        """Wait a moment for news from the workers and act on it; False if the server cannot
        start (a worker died before the whole server served)."""
        pipes = [worker.pipe for worker in self._workers if worker.pipe is not None]
        sentinels = [worker.process.sentinel for worker in self._workers]
        ready = wait([*pipes, *sentinels], timeout=_WATCH_SECONDS)
        for worker in self._workers:
            if worker.pipe is not None and worker.pipe in ready:
                self._hear(worker)
        if self._stop_signal is not None:
            return True
        for i, worker in enumerate(self._workers):
            if worker.process.is_alive():
                continue
            if not self._serving:
                log.error(
                    "worker %d exited with %s before the server was serving; stopping",
                    worker.process.pid,
                    worker.process.exitcode,
                )
                return False
            log.error(
                "worker %d exited with %s; starting another",
                worker.process.pid,
                worker.process.exitcode,
            )
            if worker.process.pid is not None:
                metrics.worker_exited(worker.process.pid)
            self._workers[i] = self._start()
        return True

    def _hear(self, worker: _Worker) -> None:
        assert worker.pipe is not None
        try:
            message = worker.pipe.recv()
        except (EOFError, OSError):  # it is exiting: its sentinel tells the rest
            worker.pipe.close()
            worker.pipe = None
            return
        if message != LISTENING:
            return
        worker.listening = True
        if self._serving:  # a replacement for a worker that died
            self._tell_serving(worker)
        elif all(w.listening for w in self._workers):
            announce_serving(self._settings, self._rules)
            self._serving = True
            for each in self._workers:
                self._tell_serving(each)

    @staticmethod
    def _tell_serving(worker: _Worker) -> None:
        if worker.pipe is not None:
            with contextlib.suppress(OSError):
                worker.pipe.send(SERVING)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_signal is None:
            log.info(
                "stopping: workers finish requests and downloads in progress (at most %.0fs)",
                DRAIN_SECONDS,
            )
        self._stop_signal = signum
        for worker in self._workers:
            self._signal(worker, self._passed_on())

    def _passed_on(self) -> int:
        """The signal the workers get: SIGINT for SIGINT, else (a failed start too) SIGTERM."""
        return signal.SIGINT if self._stop_signal == signal.SIGINT else signal.SIGTERM

    @staticmethod
    def _signal(worker: _Worker, signum: int) -> None:
        pid = worker.process.pid
        if pid is not None and worker.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
