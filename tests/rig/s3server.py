"""A real S3 server for the tests: a single-node OpenStack Swift with its s3api middleware.

Debian packages Swift (proxy, account, container and object servers) with s3api and tempauth;
S3 calls go through the same code a Swift cluster serving S3 clients runs. Everything lives in
one work directory: configs in `etc/`, the one device in `srv/d1`, logs in `log/`. memcached and
the four servers listen on free 127.0.0.1 ports, run as children that get SIGTERM if the test
process dies (PR_SET_PDEATHSIG), and are stopped by `stop()`.

Swift 2.30 servers read `/etc/swift/swift.conf` whatever `swift_dir` says, so each server runs
through a small launcher that points Swift at `etc/` first (and drops its syslog handler, as
there is no /dev/log here). The proxy's launcher builds the three one-device rings before it
serves.
"""

from __future__ import annotations

import ctypes
import datetime
import getpass
import hashlib
import hmac
import json
import secrets
import shutil
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import httpx

from tests.rig.lifecycle import Started
from tests.rig.ports import free_port

SWIFT_PYTHON = "/usr/bin/python3"
_S3API_MODULE = Path("/usr/lib/python3/dist-packages/swift/common/middleware/s3api/s3api.py")
DEBIAN_PACKAGES = "swift swift-proxy swift-account swift-container swift-object memcached"
ACCESS_KEY = "test:tester"  # tempauth's account:user is the S3 access key id
SECRET_KEY = "testing"  # and the user's key is the S3 secret
REGION = "us-east-1"
_SERVERS = ("account", "container", "object", "proxy")
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_START_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1

_LAUNCHER = r"""
import json, logging, os, sys
from swift.common import utils
swift_dir, conf_file, app_section = sys.argv[1:4]
if len(sys.argv) > 4:
    from swift.common.ring import RingBuilder
    for name, port in json.loads(sys.argv[4]).items():
        builder = RingBuilder(8, 1, 1)
        builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1",
                         "port": int(port), "device": "d1", "weight": 100, "meta": ""})
        builder.rebalance()
        builder.save(os.path.join(swift_dir, name + ".builder"))
        builder.get_ring().save(os.path.join(swift_dir, name + ".ring.gz"))
utils.set_swift_dir(swift_dir)
from swift.common import constraints, storage_policy
storage_policy.reload_storage_policies()
constraints.reload_constraints()
class _NoSyslog(logging.NullHandler):
    def __init__(self, *args, **kwargs):
        logging.NullHandler.__init__(self)
utils.ThreadSafeSysLogHandler = _NoSyslog
from swift.common.wsgi import run_wsgi
sys.exit(run_wsgi(conf_file, app_section, verbose=True))
"""

_SWIFT_CONF = """[swift-hash]
swift_hash_path_prefix = {prefix}
swift_hash_path_suffix = {suffix}

[storage-policy:0]
name = Policy-0
default = yes

[swift-constraints]
# Swift's 256-byte metadata values would come back from s3api as a 500; S3 allows 2 KB.
max_meta_value_length = 2048
max_meta_overall_size = 4096
"""

_COMMON = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {user}
swift_dir = {etc}
devices = {devices}
mount_check = false
disable_fallocate = true
log_level = INFO
log_name = {name}-server
eventlet_debug = false
bind_timeout = 3
"""

_BACKEND = """
[pipeline:main]
pipeline = healthcheck recon {name}-server

[app:{name}-server]
use = egg:swift#{name}

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:recon]
use = egg:swift#recon
recon_cache_path = {run}

[{name}-replicator]
[{name}-updater]
[{name}-auditor]
"""

_PROXY = """
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk \
tempurl ratelimit s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:s3api]
use = egg:swift#s3api
location = {region}
dns_compliant_bucket_names = true
max_upload_part_num = 10000

[filter:tempauth]
use = egg:swift#tempauth
user_admin_admin = admin .admin .reseller_admin
user_test_tester = {secret} .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached}

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:ratelimit]
use = egg:swift#ratelimit
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
max_manifest_segments = 10000
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
allow_versioned_writes = true
allow_object_versioning = true
[filter:symlink]
use = egg:swift#symlink
"""


def missing_swift() -> str | None:
    """Why the server cannot start here, or None when Swift with s3api and memcached exist."""
    if not Path(SWIFT_PYTHON).exists() or not _S3API_MODULE.exists():
        return "OpenStack Swift with s3api is not installed"
    if shutil.which("memcached") is None:
        return "memcached is not installed"
    return None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM it when the test process dies.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _ExitedEarly(RuntimeError):
    """A server exited while starting, typically because its free port was taken meanwhile."""


class S3Server(Started):
    """Swift + s3api + tempauth + memcached under `workdir`, on free loopback ports.

    Path-style addressing only (there is no DNS for bucket hosts); SigV4 and SigV2 both sign.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self.proxy_port = 0
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    @property
    def running(self) -> bool:
        return bool(self._processes) and all(p.poll() is None for p in self._processes.values())

    def start(self) -> None:
        if self._processes:
            return
        reason = missing_swift()
        if reason is not None:
            raise RuntimeError(
                f"{reason}: `make debian-deps` installs the Debian packages {DEBIAN_PACKAGES} "
                "the S3 storage tests need"
            )
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._start_once()
                return
            except _ExitedEarly:
                self.stop()
                if attempt == _START_ATTEMPTS:
                    raise

    def stop(self) -> None:
        """SIGTERM every process, then SIGKILL what is left after the timeout."""
        processes, self._processes = self._processes, {}
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        for process in processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(_STOP_TIMEOUT)

    def bucket(self, name: str) -> str:
        """Create the bucket `name` (in the server's region) and return its name."""
        response = self.request("PUT", f"/{name}")
        if response.status_code != 200:
            raise RuntimeError(f"creating bucket {name}: {response.status_code} {response.text}")
        return name

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> httpx.Response:
        """One SigV4-signed request to the S3 API (path style: `/bucket/key`)."""
        url = self.endpoint + urllib.parse.quote(path)
        headers = sign_v4(
            method,
            url,
            query or {},
            body,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
        )
        return httpx.request(method, url, params=query, content=body, headers=headers, timeout=10.0)

    def log_tail(self, limit: int = 4000) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-limit:]}")
        return "\n".join(parts)

    def _start_once(self) -> None:
        etc, run, log, devices = (self.workdir / d for d in ("etc", "run", "log", "srv"))
        for directory in (etc, run, log, devices / "d1"):
            directory.mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name in (*_SERVERS, "memcached")}
        self.proxy_port = ports["proxy"]
        user = getpass.getuser()

        (etc / "swift.conf").write_text(
            _SWIFT_CONF.format(prefix=secrets.token_hex(8), suffix=secrets.token_hex(8))
        )
        for name in _SERVERS:
            config = _COMMON.format(
                port=ports[name], user=user, etc=etc, devices=devices, name=name
            )
            if name == "proxy":
                config += _PROXY.format(
                    region=self.region, secret=self.secret_key, memcached=ports["memcached"]
                )
            else:
                config += _BACKEND.format(name=name, run=run)
            (etc / f"{name}-server.conf").write_text(config)
        launcher = etc / "launch_swift_server.py"
        launcher.write_text(_LAUNCHER)

        memcached = ["memcached", "-l", "127.0.0.1", "-p", str(ports["memcached"]), "-U", "0"]
        memcached += ["-m", "64"]
        if user == "root":
            memcached += ["-u", "root"]
        self._spawn("memcached", memcached)
        rings = json.dumps({name: ports[name] for name in ("account", "container", "object")})
        for name in _SERVERS:
            argv = [SWIFT_PYTHON, str(launcher), str(etc), str(etc / f"{name}-server.conf")]
            argv.append(f"{name}-server")
            if name == "proxy":
                argv.append(rings)
            self._spawn(name, argv)
        self._wait_ready(ports)

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self._processes[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=_die_with_parent,  # only prctl runs between fork and exec
            )

    def _wait_ready(self, ports: dict[str, int]) -> None:
        pending = {f"http://127.0.0.1:{ports[name]}/healthcheck" for name in _SERVERS}
        deadline = time.monotonic() + _START_TIMEOUT
        status: int | None = None
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                for name, process in self._processes.items():
                    if process.poll() is not None:
                        raise _ExitedEarly(f"{name} exited on start:\n{self.log_tail()}")
                for url in list(pending):
                    try:
                        if client.get(url).status_code == 200:
                            pending.discard(url)
                    except httpx.TransportError:
                        pass
                if not pending:
                    try:
                        status = self.request("GET", "/").status_code
                    except httpx.TransportError:
                        status = None
                    if status == 200:
                        return
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"Swift did not serve S3 on {self.endpoint} within {_START_TIMEOUT:.0f}s "
            f"(waiting for {sorted(pending)}, last ListBuckets status {status}):\n"
            + self.log_tail()
        )


def sign_v4(
    method: str,
    url: str,
    query: dict[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    region: str,
) -> dict[str, str]:
    """The headers that sign one S3 request with AWS Signature Version 4.

    `url` is the already-quoted URL without its query; `query` the parameters httpx adds.
    """
    now = datetime.datetime.now(datetime.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    parsed = urllib.parse.urlsplit(url)
    payload = hashlib.sha256(body).hexdigest()
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(query.items())
    )
    signed = "host;x-amz-content-sha256;x-amz-date"
    canonical = "\n".join(
        [
            method,
            parsed.path or "/",
            canonical_query,
            f"host:{parsed.netloc}\nx-amz-content-sha256:{payload}\nx-amz-date:{stamp}\n",
            signed,
            payload,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": stamp,
        "x-amz-content-sha256": payload,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        ),
    }
