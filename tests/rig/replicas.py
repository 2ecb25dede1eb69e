"""Several pullthrough replicas on one PostgreSQL database (and one S3 bucket), behind nginx.

`Replicas` creates a database of its own on the machine's PostgreSQL (127.0.0.1:5432, trust
auth), migrates it once with `pullthrough migrate`, and starts each replica as a real `pullthrough
serve` with its own data directory and port, the shared `database_url` (and `storage` block),
and the keys replicas must share in the environment: PULLTHROUGH_SECRET_KEY (upstream secrets),
PULLTHROUGH_TOKEN_KEY (client tokens, peer requests), and each replica's own
PULLTHROUGH_ADVERTISE_URL. nginx goes in front, round-robin. `stop()` stops them all and drops
the database.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

from tests.rig.lifecycle import Started
from tests.rig.nginx import Nginx
from tests.rig.postgres import create_database, drop_database
from tests.rig.s3server import S3Server
from tests.rig.secret_watch import register_command
from tests.rig.server import PullthroughServer, pullthrough_binary

S3_PREFIX = "pullthrough"


class Replicas(Started):
    """`count` replicas of one cache and nginx in front of them.

    `rules` seed the shared database (the first replica's start stores them); `settings` are
    more top-level configuration keys for every replica; `s3` and `bucket`, when given, put the
    blobs in that bucket (under `S3_PREFIX/`) instead of each replica's data directory.
    """

    def __init__(
        self,
        tmp_dir: Path,
        rules: list[dict[str, Any]],
        count: int = 3,
        *,
        workers: int = 1,
        settings: dict[str, Any] | None = None,
        s3: S3Server | None = None,
        bucket: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmp_dir = tmp_dir
        self.rules = rules
        self.count = count
        self.workers = workers
        self.settings = dict(settings or {})
        self.s3 = s3
        self.bucket = bucket
        self.extra_env = dict(env or {})
        self.secret_key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.token_key = secrets.token_hex(32)
        self.database_url: str | None = None
        self.servers: list[PullthroughServer] = []
        self.nginx: Nginx | None = None

    # --- what tests use -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The load balancer's URL: what clients use."""
        return self._balancer.url

    @property
    def host(self) -> str:
        return self._balancer.host

    @property
    def balancer(self) -> Nginx:
        return self._balancer

    def by_address(self, address: str) -> PullthroughServer:
        """The replica at host:port (as nginx's log names it)."""
        for server in self.servers:
            if server.host == address:
                return server
        raise KeyError(address)

    def others(self, server: PullthroughServer) -> list[PullthroughServer]:
        return [other for other in self.servers if other is not server]

    def storage_settings(self) -> dict[str, Any]:
        """The `storage` block every replica gets ({} without S3)."""
        if self.s3 is None or self.bucket is None:
            return {}
        return {
            "storage": {
                "url": f"s3://{self.bucket}/{S3_PREFIX}",
                "endpoint": self.s3.endpoint,
                "region": self.s3.region,
                "path_style": True,
            }
        }

    def command(
        self, server: PullthroughServer, *args: str, stdin: str = "", timeout: float = 120
    ) -> str:
        """`pullthrough <args> --config <replica's configuration>` with the replica's
        environment (the shared keys), as an operator runs it on that replica's machine; its
        standard output (the command must succeed)."""
        result = subprocess.run(
            [str(pullthrough_binary()), *args, "--config", str(server.config_path)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **server.env},
            check=False,
        )
        register_command(args, stdin, result.stdout)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def logs(self, chars: int = 6000) -> str:
        parts = [
            f"--- replica {s.host} ({s.log_path}) ---\n{s.log_tail(chars)}" for s in self.servers
        ]
        if self.nginx is not None:
            parts.append(f"--- nginx error log ---\n{self.nginx.error_tail(chars)}")
        return "\n".join(parts)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.servers:
            return
        try:
            self.database_url = create_database()
            for index in range(self.count):
                self.servers.append(self._replica(index))
            self.command(self.servers[0], "migrate")
            for server in self.servers:
                server.start()
            self.nginx = Nginx(self.tmp_dir / "nginx", [s.host for s in self.servers])
            self.nginx.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        nginx, self.nginx = self.nginx, None
        if nginx is not None:
            nginx.stop()
        for server in self.servers:
            server.stop()
        database, self.database_url = self.database_url, None
        if database is not None:
            with contextlib.suppress(Exception):
                drop_database(database)

    def _replica(self, index: int) -> PullthroughServer:
        assert self.database_url is not None
        settings = {
            "database_url": self.database_url,
            "workers": self.workers,
            **self.storage_settings(),
            **self.settings,
        }
        server = PullthroughServer(self.tmp_dir / f"replica-{index}", self.rules, settings)
        server.env = {
            "PULLTHROUGH_SECRET_KEY": self.secret_key,
            "PULLTHROUGH_TOKEN_KEY": self.token_key,
            "PULLTHROUGH_ADVERTISE_URL": server.url,
            **self.extra_env,
        }
        if self.s3 is not None:
            server.env["AWS_ACCESS_KEY_ID"] = self.s3.access_key
            server.env["AWS_SECRET_ACCESS_KEY"] = self.s3.secret_key
        return server

    @property
    def _balancer(self) -> Nginx:
        if self.nginx is None:
            raise RuntimeError("the replicas are not started")
        return self.nginx
