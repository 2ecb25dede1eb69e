"""Running `pullthrough serve`: recover the data directory, then serve on N worker processes.

Workers share one port with SO_REUSEPORT, each with its own event loop. Recovery runs once, in
the parent, before any worker starts: leftover spool files go, and blob rows whose file is gone
are dropped, so nothing half-written is ever visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from aiohttp import web

from pullthrough.access.rule_credentials import warn_about_credentials
from pullthrough.access.secrets import open_secret_store
from pullthrough.access.tokens import load_or_create_key
from pullthrough.api.app import build_app
from pullthrough.config import RuleConfig, Settings
from pullthrough.logs import configure_logging
from pullthrough.metadata.rules import RuleStore
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.storage.filesystem import FilesystemDriver
from pullthrough.storage.layout import DataLayout, blob_key

log = logging.getLogger(__name__)

# Headers may be longer than aiohttp's default line limit; the middleware enforces our own
# limit with an OCI error instead of aiohttp's plain-text 400.
_PARSER_LIMIT = 65536


async def prepare_rules(settings: Settings) -> tuple[RuleConfig, ...]:
    """Seed a new data directory with the configured rules; return the rules in force. A
    configuration file whose rules differ from the stored ones is pointed out: after the first
    start, rules change through the admin API (`pullthrough rules`, `pullthrough apply`)."""
    layout = DataLayout(settings.data_dir.resolve())
    layout.create()
    metadata = await MetadataStore.open(sqlite_url(layout.metadata_file))
    try:
        store = RuleStore(metadata.engine)
        seeded = await store.seed(settings.rules)
        rules = tuple(stored.rule for stored in await store.all())
    finally:
        await metadata.close()
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
            layout.metadata_file,
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
        layout = DataLayout(settings.data_dir.resolve())
        async with open_secret_store(layout.root, sqlite_url(layout.metadata_file)) as store:
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
    metadata = await MetadataStore.open(sqlite_url(layout.metadata_file))
    try:
        driver = FilesystemDriver(layout.blob_root)
        missing = []
        for digest, size in await metadata.stored_blobs():
            algorithm, _, hex_digest = digest.partition(":")
            if await driver.size(blob_key(algorithm, hex_digest)) != size:
                missing.append(digest)
        await metadata.forget_blobs(missing)
    finally:
        await metadata.close()
    if removed or missing:
        log.warning(
            "recovered data directory: removed %d leftover spool files, forgot %d blobs whose "
            "file was missing",
            removed,
            len(missing),
        )
    return removed, len(missing)


def _bind(settings: Settings) -> socket.socket:
    host, port = settings.listen_host, settings.listen_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_worker(settings: Settings) -> None:
    configure_logging(settings.log_level)
    asyncio.run(_serve_until_stopped(settings))


async def _serve_until_stopped(settings: Settings) -> None:
    runner = web.AppRunner(
        build_app(settings),
        access_log=None,
        max_field_size=_PARSER_LIMIT,
        max_line_size=_PARSER_LIMIT,
        shutdown_timeout=10,
    )
    await runner.setup()
    try:
        await web.SockSite(runner, _bind(settings)).start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        # A worker may get SIGTERM twice (from the supervisor, and from whoever signalled the
        # process group): the second must not cut short the first's graceful shutdown, in
        # which fills commit and pull times are written.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
    finally:
        await runner.cleanup()


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    rules = asyncio.run(prepare_rules(settings))
    check_credentials(settings, rules)
    asyncio.run(recover(settings))
    if settings.auth.enabled:
        # Made here, once, so worker processes never race to create it.
        load_or_create_key(settings.data_dir.resolve())
    log.info(
        "serving on %s with %d worker(s), data in %s",
        settings.listen,
        settings.workers,
        settings.data_dir.resolve(),
        extra={"rules": [r.prefix for r in rules]},
    )
    if settings.workers == 1:
        run_worker(settings)
        return
    _supervise(settings)


def _supervise(settings: Settings) -> None:
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=run_worker, args=(settings,), daemon=False)
        process.start()
        return process

    workers = [start() for _ in range(settings.workers)]

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in workers:
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM if signum != signal.SIGINT else signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        for i, process in enumerate(workers):
            if not process.is_alive() and not stopping:
                log.error(
                    "worker %d exited with %s; starting another", process.pid, process.exitcode
                )
                workers[i] = start()
        time.sleep(0.5)
    for process in workers:
        process.join(timeout=15)
        if process.is_alive():
            process.kill()
