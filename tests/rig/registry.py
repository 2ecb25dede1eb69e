"""A real upstream registry: Debian's `docker-registry` (CNCF distribution 2.8) as a subprocess.

Several instances may share one storage directory, each with its own auth mode, so images are
pushed once and served anonymously, behind Basic auth and behind token auth. They share
`http.secret` too, which signs upload state: an upload started on one finishes on any.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Literal

import bcrypt
import httpx
import yaml

from tests.rig.lifecycle import Started
from tests.rig.ports import free_port
from tests.rig.token_issuer import DEFAULT_PASSWORD, DEFAULT_USERNAME, TokenIssuer

AuthMode = Literal["anonymous", "basic", "token"]

REGISTRY_BINARY = "docker-registry"
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0


def require_binary(name: str) -> str:
    """The path of a Debian tool the rig drives; a failure that says how to get it."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"`{name}` is not installed; `make test` installs the Debian packages "
            "docker-registry and skopeo that the integration tests need"
        )
    return path


class UpstreamRegistry(Started):
    """One `docker-registry serve` process on a fixed loopback port; restartable on that port."""

    def __init__(
        self,
        storage_dir: Path,
        auth: AuthMode = "anonymous",
        *,
        workdir: Path | None = None,
        token_issuer: TokenIssuer | None = None,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        port: int | None = None,
    ) -> None:
        if auth == "token" and token_issuer is None:
            raise ValueError("auth='token' needs a token_issuer")
        self.storage_dir = storage_dir
        self.auth: AuthMode = auth
        self.port = port or free_port()
        self.token_issuer = token_issuer
        self._username = username
        self._password = password
        # Config and log live beside the storage unless told otherwise, inside whatever temp
        # directory the caller owns.
        self.workdir = workdir or storage_dir.parent / f"registry-{auth}-{self.port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "registry.log"
        self.config_path = self.workdir / "config.yml"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def username(self) -> str | None:
        if self.auth == "basic":
            return self._username
        if self.auth == "token" and self.token_issuer is not None:
            return self.token_issuer.username
        return None

    @property
    def password(self) -> str | None:
        if self.auth == "basic":
            return self._password
        if self.auth == "token" and self.token_issuer is not None:
            return self.token_issuer.password
        return None

    @property
    def credentials(self) -> tuple[str, str] | None:
        """(username, password) for basic and token modes, None when anonymous."""
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        if self.running:
            return
        binary = require_binary(REGISTRY_BINARY)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [binary, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); the port and storage stay reserved."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, sig)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(_STOP_TIMEOUT)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    raise RuntimeError(
                        f"docker-registry ({self.auth}) exited on start:\n{self.log_text()[-4000:]}"
                    )
                try:
                    # 401 is "up" too: basic and token modes challenge an anonymous /v2/.
                    if client.get(f"{self.url}/v2/").status_code in (200, 401):
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"docker-registry ({self.auth}) did not answer on {self.url}:\n"
            + self.log_text()[-4000:]
        )

    def _write_config(self) -> None:
        config = {
            "version": 0.1,
            "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                # No `cache` key, so no blob-descriptor cache: registries sharing this storage
                # would each cache "exists" and miss a delete made through another.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": self.host,
                # Fixed rather than generated per process: upload state is signed with it.
                "secret": "pullthrough-rig-shared-secret",
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        if self.auth == "basic":
            htpasswd = self.workdir / "htpasswd"
            # distribution reads only bcrypt entries; Go's bcrypt accepts the $2b$ prefix.
            hashed = bcrypt.hashpw(self._password.encode(), bcrypt.gensalt(rounds=4)).decode()
            htpasswd.write_text(f"{self._username}:{hashed}\n")
            config["auth"] = {"htpasswd": {"realm": "pullthrough-rig", "path": str(htpasswd)}}
        elif self.auth == "token":
            assert self.token_issuer is not None
            config["auth"] = {
                "token": {
                    "realm": self.token_issuer.realm,
                    "service": self.token_issuer.service,
                    "issuer": self.token_issuer.issuer,
                    "rootcertbundle": str(self.token_issuer.cert_path),
                }
            }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
