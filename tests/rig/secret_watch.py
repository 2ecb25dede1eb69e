"""No secret in any server log of the test run: the values tests make (passwords, API keys,
login and registry tokens, upstream credentials, stored secrets) are registered as they are
made, every pullthrough server's log file is registered when the server is made, and at the
end of the session every log is searched for every value (tests/conftest.py).

The rig registers what passes through it on its own: a `PullthroughServer`'s `PULLTHROUGH_SECRET_*`
environment, what `PullthroughServer.command` sends on stdin (passwords, secret values) and the
API keys and login tokens it prints, the upstream registries' passwords. A test that makes a
secret any other way calls `register_secret`.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from pathlib import Path

# Shorter values (a username such as "ci", a digit) would match by chance.
MIN_LENGTH = 8
# Commands whose standard output is a secret: `apikeys create` (the key), `login-password`.
_SECRET_OUTPUT = (("apikeys", "create"), ("login-password",))
_SECRET_VARIABLES = ("PULLTHROUGH_TOKEN_KEY", "AWS_SECRET_ACCESS_KEY")


@dataclass(frozen=True)
class Leak:
    log: Path
    line_number: int
    what: str  # how the value was registered, never the value itself


class SecretWatch:
    """The session's secrets and server logs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = {}
        self._logs: list[Path] = []

    def secret(self, value: str, what: str) -> None:
        value = value.strip()
        if len(value) < MIN_LENGTH:
            return
        with self._lock:
            self._secrets.setdefault(value, what)

    def knows(self, value: str) -> str | None:
        """How `value` was registered, or None."""
        with self._lock:
            return self._secrets.get(value)

    def log(self, path: Path) -> None:
        with self._lock:
            if path not in self._logs:
                self._logs.append(path)

    @property
    def logs(self) -> list[Path]:
        with self._lock:
            return list(self._logs)

    def leaks(self, logs: list[Path] | None = None) -> list[Leak]:
        """Where a registered value, or a Basic header made of it, is in a log."""
        with self._lock:
            secrets = dict(self._secrets)
            paths = list(self._logs) if logs is None else logs
        needles = needles_of(secrets)
        found = []
        for path in paths:
            if not path.exists():
                continue
            for number, line in enumerate(path.read_bytes().splitlines(), 1):
                for needle, what in needles.items():
                    if needle in line:
                        found.append(Leak(path, number, what))
        return found


def needles_of(secrets: dict[str, str]) -> dict[bytes, str]:
    """Each value as bytes, and base64-encoded as a Basic header's `name:value` would end."""
    needles: dict[bytes, str] = {}
    for value, what in secrets.items():
        needles[value.encode()] = what
        # In base64("name:value") the value starts at any of three offsets within a group of
        # three bytes: for each, the characters that only the value's bytes decide.
        for offset in range(3):
            encoded = base64.b64encode(b"\0" * offset + value.encode())
            core = encoded[4 if offset else 0 :]
            if len(core) >= MIN_LENGTH:
                needles[core] = f"{what} (base64, as in a Basic header)"
    return needles


WATCH = SecretWatch()


def register_secret(value: str, what: str) -> None:
    """Check at the session's end that no server log holds `value` (`what` names it)."""
    WATCH.secret(value, what)


def register_log(path: Path) -> None:
    WATCH.log(path)


def register_command(args: tuple[str, ...], stdin: str, stdout: str) -> None:
    """What a `pullthrough` command run by the rig took on stdin and printed, when secret."""
    if stdin.strip():
        what = f"stdin of `pullthrough {' '.join(args[:2])}`"
        register_secret(stdin, what)
        try:
            document = json.loads(stdin)
        except ValueError:
            document = None
        if isinstance(document, dict):  # a secret's fields: each value but the username
            for key, value in document.items():
                if isinstance(value, str) and key.lower() not in ("username", "user"):
                    register_secret(value, f"{what}, field {key}")
    if any(args[: len(prefix)] == prefix for prefix in _SECRET_OUTPUT):
        register_secret(stdout, f"output of `pullthrough {' '.join(args[:2])}`")


def register_environment(env: dict[str, str]) -> None:
    for name, value in env.items():
        stored = name.startswith("PULLTHROUGH_SECRET_") and not name.endswith("_USERNAME")
        if stored or name in _SECRET_VARIABLES:
            register_secret(value, f"the environment's {name}")


def report(leaks: list[Leak]) -> str:
    lines = [f"{len(leaks)} secret value(s) found in server logs:"]
    lines += [f"  {leak.log}:{leak.line_number}: {leak.what}" for leak in leaks[:50]]
    return "\n".join(lines)
