"""The pullthrough server under test, run as a real `pullthrough serve` subprocess.

It is started from the venv the tests run in, with a config file the rig writes, on a fixed
free port so that a restart (after `stop()` or `kill()`) comes back at the same address.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.rig.lifecycle import Started
from tests.rig.ports import free_port
from tests.rig.secret_watch import register_command, register_environment, register_log

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 15.0


def pullthrough_binary() -> Path:
    """The console script beside the interpreter running the tests (the project's venv)."""
    return Path(sys.executable).parent / "pullthrough"


class PullthroughServer(Started):
    """`pullthrough serve --config <file>` with stdout and stderr in a log file."""

    def __init__(
        self,
        tmp_dir: Path,
        rules: list[dict[str, Any]],
        extra_config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        *,
        port: int | None = None,
    ) -> None:
        self.tmp_dir = tmp_dir
        self.port = port or free_port()
        self.data_dir = tmp_dir / "data"
        self.config_path = tmp_dir / "pullthrough.yaml"
        self.log_path = tmp_dir / "pullthrough.log"
        self.env = env or {}
        self.config: dict[str, Any] = {
            "listen": self.host,
            "data_dir": str(self.data_dir),
            "workers": 1,
            "rules": rules,
            **(extra_config or {}),
        }
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        # Searched for every secret the session made, at its end (tests/conftest.py).
        register_log(self.log_path)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit status once the process has ended by itself (None while it runs)."""
        return self._process.poll() if self._process is not None else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start (or restart, on the same port and data) and wait for `/healthz` to say 200."""
        if self.running:
            return
        self.launch()
        self._wait_healthy()

    def launch(self) -> None:
        """Start the process and return at once, without waiting for it to answer."""
        if self.running:
            return
        register_environment(self.env)  # as it is now: a replica's keys are set after __init__
        binary = pullthrough_binary()
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run `uv sync` (or `make test`)")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(binary), "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                # Its own process group: worker processes go down with it in kill().
                start_new_session=True,
            )

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """SIGTERM and wait `timeout` for a clean exit (SIGKILL if it does not come)."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the server and its workers at once: a crash, not a shutdown."""
        self._end(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def log_entries(self) -> list[dict[str, Any]]:
        """The JSON log's lines, parsed (lines that are not JSON objects left out)."""
        return [json.loads(line) for line in self.log_text().splitlines() if line.startswith("{")]

    def log_levels(self) -> set[str]:
        return {entry.get("level", "") for entry in self.log_entries()}

    def served_by(self, request_ids: set[str]) -> dict[str, int]:
        """Which worker process (pid) answered each request, from the JSON log."""
        served: dict[str, int] = {}
        for entry in self.log_entries():
            if entry.get("request_id") in request_ids and "status" in entry:
                served[entry["request_id"]] = entry["pid"]
        return served

    def command(self, *args: str, stdin: str = "", timeout: float = 120) -> str:
        """`pullthrough <args> --config <this server's configuration>`, as an operator runs it on
        the server's machine; its standard output (the command must succeed)."""
        result = subprocess.run(
            [str(pullthrough_binary()), *args, "--config", str(self.config_path)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        register_command(args, stdin, result.stdout)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def _end(self, sig: signal.Signals, timeout: float = _STOP_TIMEOUT) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            # The group id is the server's pid (start_new_session): this reaches its workers
            # and nothing else.
            _signal_group(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(_STOP_TIMEOUT)
        if sig == signal.SIGKILL:
            return
        # Workers that outlived a clean stop would keep the port; don't leave them behind.
        _signal_group(process.pid, signal.SIGKILL)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                process = self._process
                if process is None or process.poll() is not None:
                    code = process.returncode if process is not None else None
                    self._process = None
                    raise RuntimeError(
                        f"pullthrough serve exited ({code}) on start:\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"pullthrough serve not healthy after {_START_TIMEOUT}s:\n{self.log_tail()}"
        )


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
