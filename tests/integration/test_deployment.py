"""The deployment artifacts run for real: the Containerfile built with podman on a Debian base
made here with debootstrap, its image migrating a PostgreSQL database and serving with health
checks; the compose file's image services (bucket, migrate, a replica) on this machine's
PostgreSQL and S3 server; and deploy/nginx.conf balancing over three pullthrough servers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
import yaml

from tests.rig.compose_file import load_compose, service_environment
from tests.rig.container_image import PodmanStore, make_base_tarball
from tests.rig.ports import free_port
from tests.rig.s3server import S3Server
from tests.rig.server import PullthroughServer

# The first test also waits for the base and the image to be made (minutes on a busy machine).
pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/pullthrough-test-base:bookworm"
IMAGE = "localhost/pullthrough:test"
START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanStore]:
    """The image built from the Containerfile, in a podman store of its own (module scope: the
    base and the image are made once per run)."""
    if os.geteuid() != 0:
        pytest.fail("the image test runs as root (debootstrap and podman's store need it)")
    workdir = tmp_path_factory.mktemp("image")
    started = time.monotonic()
    tarball = make_base_tarball(workdir)
    base_seconds = time.monotonic() - started
    with PodmanStore() as store:
        store.import_base(tarball, BASE)
        tarball.unlink()
        build_seconds = store.build(ROOT, IMAGE, BASE)
        print(
            f"\nbase image (debootstrap): {base_seconds:.0f} s, image build: {build_seconds:.0f} s"
        )
        yield store


def _wait_for(url: str, status: int = 200) -> httpx.Response:
    deadline = time.monotonic() + START_TIMEOUT
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == status:
                return response
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer {status} within {START_TIMEOUT:.0f} s: {last}")


def test_image_is_the_project_as_a_non_root_server(image: PodmanStore) -> None:
    assert image.run(IMAGE, "version").strip() == version("pullthrough")
    config = image.checked(
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|"
        "{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}|{{json .Config.Healthcheck.Test}}",
        IMAGE,
    ).strip()
    user, entrypoint, cmd, ports, volumes, healthcheck = config.split("|")
    assert user == "10001:10001"
    assert entrypoint == '["pullthrough"]'
    assert cmd == '["serve"]'
    assert "5000/tcp" in ports
    assert "/var/lib/pullthrough" in volumes
    assert "/healthz" in healthcheck
    # The runtime dependencies from the lock file, and not the development group.
    found = image.checked(
        "run",
        "--rm",
        "--network",
        "none",
        *image.limits,
        "--entrypoint",
        "python3",
        IMAGE,
        "-c",
        "import importlib.util as u; "
        "print(sorted(m for m in ('aiohttp', 'asyncpg', 'pytest', 'mypy') if u.find_spec(m)))",
    ).strip()
    assert found == "['aiohttp', 'asyncpg']"


def test_image_migrates_postgresql_then_serves_healthy(image: PodmanStore, database: str) -> None:
    # As the Helm chart's hook Job runs it: a read-only root file system, the data directory
    # under /tmp, the image's own listen address (every address: serve's decision about who
    # may pull is not asked of migrate).
    migrated = image.checked(
        "run",
        "--rm",
        "--network",
        "host",
        "--read-only",
        *image.limits,
        f"--env=PULLTHROUGH_DATABASE_URL={database}",
        "--env=PULLTHROUGH_DATA_DIR=/tmp/pullthrough",
        IMAGE,
        "migrate",
    )
    assert "migrated from nothing (new)" in migrated

    # As the chart's pods run: a read-only root file system, writable /tmp and data volume.
    port = free_port()
    name = f"pt-{uuid.uuid4().hex[:8]}"
    image.start(
        IMAGE,
        name,
        env={
            "PULLTHROUGH_LISTEN": f"127.0.0.1:{port}",
            "PULLTHROUGH_WORKERS": "1",
            "PULLTHROUGH_DATABASE_URL": database,
            "PULLTHROUGH_AUTH": "{enabled: true}",
        },
    )
    try:
        assert _wait_for(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        ready = _wait_for(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["status"] == "ready"
        # Authentication is on: the registry API asks for credentials, the probes did not.
        challenge = httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=5)
        assert challenge.status_code == 401
        assert challenge.headers["WWW-Authenticate"].startswith("Bearer realm=")
        # The image's HEALTHCHECK, run as the engine runs it.
        check = image.podman("healthcheck", "run", name)
        assert check.returncode == 0, check.stderr
        health = image.checked("inspect", "--format", "{{.State.Health.Status}}", name).strip()
        assert health == "healthy"
        assert image.checked("exec", name, "id", "-u").strip() == "10001"
        # SIGTERM: the server drains and exits by itself, with status 0.
        image.checked("stop", "--time", "45", name, timeout=90)
        exit_code = image.checked("inspect", "--format", "{{.State.ExitCode}}", name).strip()
        assert exit_code == "0", image.podman("logs", name).stderr[-3000:]
    finally:
        image.podman("rm", "--force", "--time", "0", name)


@contextlib.contextmanager
def nginx_with_site(prefix: Path, site: str) -> Iterator[None]:
    """Debian's nginx with `site` included in its http block, as the nginx image includes
    conf.d/default.conf; an access log naming the replica of each request."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / temp).mkdir(parents=True, exist_ok=True)
    (prefix / "default.conf").write_text(site)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"""{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format replica '$request_uri $status $upstream_addr';
    access_log {prefix}/access.log replica;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/default.conf;
}}
"""
    )
    process = subprocess.Popen(
        [
            binary,
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            str(prefix / "error.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)


def test_nginx_conf_balances_round_robin(tmp_path: Path) -> None:
    """deploy/nginx.conf as compose.yaml mounts it, with the replicas' service names pointed at
    three pullthrough servers on loopback: requests go round-robin over all three."""
    servers = [PullthroughServer(tmp_path / f"replica-{i}", rules=[]) for i in range(1, 4)]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            _wait_for(f"{server.url}/healthz")
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        for index, server in enumerate(servers, start=1):
            site = site.replace(f"pullthrough-{index}:5000", server.host)
        port = free_port()
        site = site.replace("listen 5000;", f"listen 127.0.0.1:{port};")
        assert "pullthrough-" not in site and str(port) in site
        prefix = tmp_path / "nginx"
        with nginx_with_site(prefix, site):
            _wait_for(f"http://127.0.0.1:{port}/healthz")
            for _ in range(9):
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        served = [line.split()[2] for line in (prefix / "access.log").read_text().splitlines()]
        counts = {server.host: served.count(server.host) for server in servers}
        assert sum(counts.values()) == len(served)
        assert min(counts.values()) >= 3, counts
    finally:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda server: server.stop(), servers))


def test_compose_services_run_on_real_backends(
    image: PodmanStore, database: str, s3_server: S3Server
) -> None:
    """compose.yaml's services that run the image, with its environment and commands, pointed
    at this machine's PostgreSQL and S3 server instead of the compose network's: `bucket`
    creates its bucket, `migrate` the schema, and a replica serves, ready, on both."""
    compose = load_compose()
    services = compose["services"]
    dot_env = {
        "PULLTHROUGH_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        "PULLTHROUGH_TOKEN_KEY": os.urandom(32).hex(),
        "S3_ACCESS_KEY": s3_server.access_key,
        "S3_SECRET_KEY": s3_server.secret_key,
    }
    bucket = f"pt-compose-{uuid.uuid4().hex[:12]}"

    # `bucket`: its Python, with the S3 server's address and a bucket of this test's own.
    code = services["bucket"]["command"][0]
    given = 'bucket, endpoint = "pullthrough", "http://s3:7070"'
    assert code.count(given) == 1
    code = code.replace(given, f'bucket, endpoint = "{bucket}", "{s3_server.endpoint}"')
    bucket_env = service_environment(services["bucket"], dot_env)
    for _ in range(2):  # a second run finds the bucket there
        created = image.checked(
            "run",
            "--rm",
            "--network",
            "host",
            *image.limits,
            *(f"--env={key}={value}" for key, value in bucket_env.items()),
            "--entrypoint",
            services["bucket"]["entrypoint"][0],
            IMAGE,
            *services["bucket"]["entrypoint"][1:],
            code,
        )
        assert f"bucket {bucket} ready" in created

    # `migrate`, with its environment and command.
    migrate_env = service_environment(services["migrate"], dot_env)
    migrate_env["PULLTHROUGH_DATABASE_URL"] = database
    migrated = image.checked(
        "run",
        "--rm",
        "--network",
        "host",
        *image.limits,
        *(f"--env={key}={value}" for key, value in migrate_env.items()),
        IMAGE,
        *services["migrate"]["command"],
    )
    assert "migrated from nothing (new)" in migrated

    # A replica: the file's environment, with this machine's addresses.
    port = free_port()
    env = service_environment(services["pullthrough-1"], dot_env)
    storage = yaml.safe_load(env["PULLTHROUGH_STORAGE"])
    assert storage["endpoint"] == "http://s3:7070" and storage["url"] == "s3://pullthrough/blobs"
    storage.update(url=f"s3://{bucket}/blobs", endpoint=s3_server.endpoint, region=s3_server.region)
    env.update(
        PULLTHROUGH_STORAGE=json.dumps(storage),
        PULLTHROUGH_DATABASE_URL=database,
        PULLTHROUGH_LISTEN=f"127.0.0.1:{port}",
        PULLTHROUGH_ADVERTISE_URL=f"http://127.0.0.1:{port}",
        PULLTHROUGH_WORKERS="1",
    )
    name = f"pt-{uuid.uuid4().hex[:8]}"
    image.start(IMAGE, name, env=env)
    try:
        ready = _wait_for(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["checks"]["storage"] == "ok" and ready["checks"]["metadata"] == "ok"
        # PULLTHROUGH_AUTH: anyone may pull.
        assert httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=5).status_code == 200
    finally:
        image.podman("rm", "--force", "--time", "0", name)
