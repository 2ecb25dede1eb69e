"""JSON log lines: one object per line, with whatever `extra` fields the caller gave.

Lines are written off the event loop: a request's line is formatted where it is made (orjson:
about two microseconds) and queued as bytes; any other record is queued unformatted; a writer
thread of the same process formats those and writes everything queued to stderr's file
descriptor, many lines in one write, holding the interpreter only briefly. Where stderr is a
pipe a write is at most PIPE_BUF bytes, so that the lines of processes sharing it never
interleave; a file or terminal takes the whole batch in one write. Each process starts its own
writer (`configure_logging`, again in a worker process) and stops it, writing what is queued,
when it ends (`stop_logging`, also run at exit).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import os
import select
import stat
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

import orjson

# When lines come fast (a batch of at least _BUSY_LINES), the writer, woken by a line, waits
# this long for more before writing: fewer, larger writes, and far fewer times the event loop
# hands the interpreter to the writer. A quiet server's lines are written at once.
_GATHER_SECONDS = 0.01
_BUSY_LINES = 8
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def _dumps(entry: dict[str, Any]) -> bytes:
    """`entry` as one line of JSON; a value orjson cannot take (an integer beyond 64 bits) goes
    through the standard library instead."""
    try:
        return orjson.dumps(entry, default=str, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(entry, default=str).encode()


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, pid, message, then its extra fields."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once a second, not once a line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def format_request(
        self, pid: int, created: float, logger: str, message: str, fields: dict[str, Any]
    ) -> bytes:
        """A request's line (`request_line`): what `format` makes of the same record."""
        return _dumps(
            {
                "time": self._time(created),
                "level": "info",
                "logger": logger,
                "pid": pid,
                "message": message,
                **fields,
            }
        )

    def format(self, record: logging.LogRecord) -> str:
        return self.format_bytes(record).decode()

    def format_bytes(self, record: logging.LogRecord) -> bytes:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return _dumps(entry)


class _LogWriter(threading.Thread):
    """The thread that formats and writes this process's log lines.

    Records wait in a deque (appending is all a logging call does). The thread sleeps until a
    record arrives while it is idle, then formats everything waiting and writes it in one write.
    Under load it gathers lines for a moment first, so it is woken a few hundred times a second,
    not once a line; a quiet server's line is written at once.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(name="log-writer", daemon=True)
        self._stream = stream
        # Where batches go: the stream's descriptor, and whether it is a pipe (None for a
        # stream without a descriptor, a test's capture: written as text).
        self._target = _target(stream)
        self._formatter = JsonFormatter()
        # Request lines come formatted (by the thread that logs them, with a formatter of its
        # own: `request_formatter`); other records are formatted here.
        self.request_formatter = JsonFormatter()
        self._records: collections.deque[logging.LogRecord | bytes] = collections.deque()
        self.pid = os.getpid()
        self._wake = threading.Event()
        self._idle = True
        self._busy = False  # the last batch was large: lines come fast
        self._stopping = False

    def put(self, record: logging.LogRecord | bytes) -> None:
        self._records.append(record)
        if self._idle:
            self._idle = False
            self._wake.set()

    def run(self) -> None:
        while True:
            self._wake.wait()
            if self._busy and not self._stopping:
                time.sleep(_GATHER_SECONDS)
            self._wake.clear()
            self._write()
            if self._stopping:
                self._write()
                return
            self._idle = True
            if self._records:  # one came between the write and going idle
                self._idle = False
                self._wake.set()

    def _write(self) -> None:
        lines: list[bytes] = []
        records = self._records
        self._busy = len(records) >= _BUSY_LINES
        while records:
            record = records.popleft()
            if isinstance(record, bytes):
                lines.append(record)
                continue
            try:
                lines.append(self._formatter.format_bytes(record))
            except Exception as exc:  # said in a line of its own, never fatal
                lines.append(_unformattable(record, exc))
        if not lines:
            return
        try:
            self._stream.flush()  # whatever else went to the stream first stays first
            target = self._target
            if target is None:
                for chunk in _pipe_sized(lines):
                    self._stream.write(chunk.decode())
                self._stream.flush()
            elif target.is_pipe:
                for chunk in _pipe_sized(lines):
                    _write_all(target.fd, chunk)
            else:
                _write_all(target.fd, b"\n".join(lines) + b"\n")
        except (OSError, ValueError):  # stderr closed: nothing else to tell it to
            pass

    def stop(self) -> None:
        """Write everything queued, then end."""
        self._stopping = True
        self._wake.set()
        self.join()


class _Target:
    """Where a batch of lines is written: a file descriptor, and whether it is a pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)


def _target(stream: TextIO) -> _Target | None:
    """The stream's file descriptor, or None for a stream without one (a test's capture)."""
    try:
        return _Target(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pipe_sized(lines: list[bytes]) -> Iterator[bytes]:
    """The lines, newline-terminated, joined into writes of at most PIPE_BUF bytes (a longer
    line alone): a pipe keeps such a write whole, so lines of the worker processes sharing one
    stderr never interleave."""
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        length = len(line) + 1
        if chunk and size + length > select.PIPE_BUF:
            yield b"".join(chunk)
            chunk, size = [], 0
        chunk.append(line + b"\n")
        size += length
    if chunk:
        yield b"".join(chunk)


def _unformattable(record: logging.LogRecord, exc: Exception) -> bytes:
    return _dumps(
        {
            "level": "error",
            "logger": record.name,
            "pid": record.process,
            "message": f"a log line could not be formatted: {exc!r}; its text: {record.msg!r}",
        }
    )


class _Enqueue(logging.Handler):
    """The root handler while a writer runs: hands the record, unformatted, to the writer."""

    def __init__(self, writer: _LogWriter) -> None:
        super().__init__()
        self._writer = writer

    def handle(self, record: logging.LogRecord) -> bool:  # no lock: the deque is thread-safe
        self._writer.put(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self._writer.put(record)


def request_line(logger: logging.Logger, message: str, fields: dict[str, Any]) -> None:
    """Log `message` with `fields` at info on `logger`: one line per request, so made as cheaply
    as can be. While this process's writer is the only handler, the line is formatted here (with
    orjson, a couple of microseconds: cheaper than handing the writer thread the interpreter to
    do it) and queued as bytes; otherwise (another handler, as in tests) a record is made."""
    if not logger.isEnabledFor(logging.INFO):
        return
    writer = _Writing.writer
    handlers = logging.root.handlers
    if (
        writer is not None
        and len(handlers) == 1
        and handlers[0] is _Writing.handler
        and not logger.handlers
        and (logger.parent is logging.root or not logger.parent or not logger.parent.handlers)
    ):
        line = writer.request_formatter.format_request(
            writer.pid, time.time(), logger.name, message, fields
        )
        writer.put(line)
        return
    logger.handle(
        logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, (), None, extra=fields)
    )


class _Writing:
    """This process's writer, and the pid that started it (a forked child starts its own)."""

    writer: _LogWriter | None = None
    handler: logging.Handler | None = None
    pid: int = 0


def configure_logging(level: str) -> None:
    """Send every log record of this process, as a JSON line, to stderr through a writer
    thread. Called once per process; again in a forked child, which gets a writer of its own."""
    stop_logging()
    writer = _LogWriter(sys.stderr)
    root = logging.getLogger()
    handler = _Enqueue(writer)
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Nothing here reads them: skip their cost on every record.
    logging.logThreads = False
    logging.logMultiprocessing = False
    # aiohttp's own access log is replaced by ours, which carries the request id.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # These log every statement (with its parameters) at info and debug: too much, and too
    # revealing, whatever our own level is.
    for chatty in ("aiosqlite", "sqlalchemy.engine", "sqlalchemy.pool"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    writer.start()
    _Writing.writer, _Writing.handler, _Writing.pid = writer, handler, os.getpid()


def stop_logging() -> None:
    """Write every line still queued and stop the writer; records logged afterwards go to
    stderr directly (formatted where they are made). Safe to call more than once."""
    writer, ours = _Writing.writer, _Writing.pid == os.getpid()
    _Writing.writer = _Writing.handler = None
    if writer is None:
        return
    direct = logging.StreamHandler(sys.stderr)
    direct.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [direct]
    if ours:  # a forked child has no thread of its parent's to stop
        writer.stop()


@contextlib.contextmanager
def writer_paused() -> Iterator[None]:
    """No writer thread while inside: for forking a process, which must not inherit a thread's
    locks (the queue's, stderr's) in the middle of their use. Lines are written directly
    meanwhile; the writer starts again after."""
    running = _Writing.writer is not None and _Writing.pid == os.getpid()
    level = logging.getLevelName(logging.getLogger().level)
    stop_logging()
    try:
        yield
    finally:
        if running:
            configure_logging(level)


atexit.register(stop_logging)
