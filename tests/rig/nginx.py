"""nginx (Debian's) as the load balancer in front of pullthrough replicas, as users run it.

Its own configuration, pid file, logs and temp paths live in a directory the rig owns, so it needs
no system configuration and leaves nothing behind. Requests go round-robin over the replicas,
unbuffered both ways (a blob streams through as the replica sends it), with HTTP/1.1 keepalive to
the replicas, and a request whose replica cannot be reached (refused, reset before the response
began, or silent past the connect/read timeout) is passed on to the next one; `/_pullthrough/`
(the replicas' own endpoint, which they reach directly) is refused. The access log has
one tab-separated line per request with the replica(s) nginx tried (`$upstream_addr`), so a test
can tell which replica served what.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.rig.lifecycle import Started
from tests.rig.ports import free_port

_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 15.0
_LOG_FIELDS = (
    "$msec",
    "$request_id",
    "$http_x_request_id",
    "$request_method",
    "$request_uri",
    "$status",
    "$body_bytes_sent",
    "$upstream_addr",
    "$upstream_status",
    "$request_time",
)


def nginx_config(port: int, replicas: list[str], prefix: Path) -> str:
    """The configuration the rig runs, which the README shows too: `replicas` are host:port."""
    servers = "\n".join(
        f"        server {address} max_fails=1 fail_timeout=5s;" for address in replicas
    )
    log_format = "\\t".join(_LOG_FIELDS)
    user = ""
    if os.geteuid() == 0:
        # A root master would switch its workers to `nobody`, who cannot write the temp dir.
        user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(0).gr_name};\n"
    return f"""\
{user}daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    log_format replicas '{log_format}';
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    upstream pullthrough {{
{servers}
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{port};
        access_log {prefix}/access.log replicas;

        client_max_body_size 0;            # layer pushes of any size
        proxy_buffering off;               # stream blobs as the replica sends them
        proxy_request_buffering off;
        proxy_http_version 1.1;            # keepalive to the replicas
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;  # the clients' host: token realms and Locations
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 5s;
        proxy_send_timeout 1h;             # big blobs
        proxy_read_timeout 1h;
        proxy_next_upstream error timeout; # a dead replica's requests go to another
        proxy_next_upstream_tries 3;

        location / {{
            proxy_pass http://pullthrough;
        }}
        location /_pullthrough/ {{         # replicas reach each other at their advertise_url
            return 404;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class AccessEntry:
    """One request nginx answered: `upstreams` are the replicas tried, in order (the last one
    answered), as host:port."""

    request_id: str
    client_request_id: str
    method: str
    uri: str
    status: int
    body_bytes: int
    upstreams: tuple[str, ...]
    upstream_statuses: tuple[str, ...]

    @property
    def served_by(self) -> str | None:
        """The replica whose answer the client got (None if no replica answered)."""
        return self.upstreams[-1] if self.upstreams else None


class Nginx(Started):
    """`nginx -p <dir> -c <dir>/nginx.conf` in the foreground, on a free 127.0.0.1 port."""

    def __init__(self, tmp_dir: Path, replicas: list[str], *, port: int | None = None) -> None:
        self.tmp_dir = tmp_dir
        self.replicas = list(replicas)
        self.port = port or free_port()
        self.config_path = tmp_dir / "nginx.conf"
        self.access_log = tmp_dir / "access.log"
        self.error_log = tmp_dir / "error.log"
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

    def start(self) -> None:
        if self.running:
            return
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is missing: `make debian-deps` installs it")
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.tmp_dir / temp).mkdir(exist_ok=True)
        self.config_path.write_text(nginx_config(self.port, self.replicas, self.tmp_dir))
        with (self.tmp_dir / "nginx.out").open("ab") as out:
            self._process = subprocess.Popen(
                # -e: the error log before the configuration is read (not /var/log/nginx).
                [
                    binary,
                    "-p",
                    str(self.tmp_dir),
                    "-c",
                    str(self.config_path),
                    "-e",
                    str(self.error_log),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_listening()

    def stop(self) -> None:
        """Fast shutdown (SIGTERM), SIGKILL to the group if it lingers."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(_STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def entries(self) -> list[AccessEntry]:
        """Every request nginx has finished answering, in the order it finished them."""
        if not self.access_log.exists():
            return []
        entries = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            fields = line.split("\t")
            if len(fields) != len(_LOG_FIELDS):
                continue
            _, request_id, client_id, method, uri, status, sent, addrs, statuses, _ = fields
            entries.append(
                AccessEntry(
                    request_id=request_id,
                    client_request_id="" if client_id == "-" else client_id,
                    method=method,
                    uri=uri,
                    status=int(status),
                    body_bytes=int(sent),
                    upstreams=_split_upstream(addrs),
                    upstream_statuses=_split_upstream(statuses),
                )
            )
        return entries

    def served(self, path_contains: str = "") -> dict[str, int]:
        """How many requests (with `path_contains` in their URI) each replica answered."""
        counts: dict[str, int] = {}
        for entry in self.entries():
            if path_contains in entry.uri and entry.served_by is not None:
                counts[entry.served_by] = counts.get(entry.served_by, 0) + 1
        return counts

    def error_tail(self, chars: int = 4000) -> str:
        if not self.error_log.exists():
            return ""
        return self.error_log.read_text(errors="replace")[-chars:]

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                self._process = None
                raise RuntimeError(f"nginx exited on start:\n{self.error_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx not listening after {_START_TIMEOUT}s:\n{self.error_tail()}")


def _split_upstream(value: str) -> tuple[str, ...]:
    """`$upstream_addr` lists the servers tried, ", " between attempts (" : " between
    internal redirects); "-" when none was."""
    if value in ("", "-"):
        return ()
    parts = [part.strip() for chunk in value.split(" : ") for part in chunk.split(",")]
    return tuple(part for part in parts if part and part != "-")
