"""Fixtures for the integration rig: upstream registries in three auth modes over one storage,
the session's fixture images, counting proxies and pullthrough servers.

Session fixtures start once (the 256 MiB image is built and pushed once per run); function
fixtures are factories whose every product is stopped at teardown.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig.images import FixtureImages, RegistryPusher, push_fixture_images
from tests.rig.proxy import CountingProxy
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.s3server import S3Server, missing_swift
from tests.rig.secret_watch import WATCH, register_secret, report
from tests.rig.server import PullthroughServer
from tests.rig.token_issuer import TokenIssuer

_REQUIRED_TOOLS = ("docker-registry", "skopeo", "containerd", "ctr", "podman")

MakeProxy = Callable[[str], CountingProxy]
StartPullthrough = Callable[..., PullthroughServer]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the item, so fixtures can tell at teardown if the test failed.
    report: pytest.TestReport = yield
    setattr(item, f"rig_report_{report.when}", report)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any server log of it holds a secret the tests made
    (tests/rig/secret_watch.py)."""
    leaks = WATCH.leaks()
    if not leaks:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "secrets in server logs", red=True)
        reporter.write_line(report(leaks), red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rig_report_call", None)
    return report is None or report.failed


@pytest.fixture(scope="session")
def rig_tools() -> None:
    """Fail (never skip) when the Debian tools the rig drives are missing."""
    missing = [tool for tool in _REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: `make test` installs the Debian packages "
            f"{' '.join(_REQUIRED_TOOLS)} the integration tests need",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 API (Swift + s3api from Debian) for the session; fails when Swift is missing."""
    reason = missing_swift()
    if reason is not None:
        pytest.fail(
            f"{reason}: `make debian-deps` installs the Debian packages swift swift-proxy "
            "swift-account swift-container swift-object memcached the S3 tests need",
            pytrace=False,
        )
    with S3Server(tmp_path_factory.mktemp("s3server")) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    return s3_server.bucket(f"t-{uuid.uuid4().hex[:20]}")


@pytest.fixture(scope="session")
def upstream_storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The filesystem storage all upstream registries of the session share."""
    return tmp_path_factory.mktemp("upstream-storage")


@pytest.fixture(scope="session")
def token_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    with TokenIssuer(tmp_path_factory.mktemp("token-issuer")) as issuer:
        yield issuer


@pytest.fixture(scope="session")
def upstreams(
    rig_tools: None,
    upstream_storage: Path,
    token_issuer: TokenIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[AuthMode, UpstreamRegistry]]:
    """One registry per auth mode, all serving the same storage (so the same images)."""
    modes: tuple[AuthMode, ...] = ("anonymous", "basic", "token")
    registries = {
        mode: UpstreamRegistry(
            upstream_storage,
            mode,
            workdir=tmp_path_factory.mktemp(f"registry-{mode}"),
            token_issuer=token_issuer,
        )
        for mode in modes
    }
    for registry in registries.values():
        if registry.credentials is not None:
            register_secret(registry.credentials[1], f"the {registry.auth} upstream's password")
    try:
        for registry in registries.values():
            registry.start()
        yield registries
    finally:
        for registry in registries.values():
            registry.stop()


@pytest.fixture(scope="session")
def fixture_images(
    upstreams: dict[AuthMode, UpstreamRegistry], tmp_path_factory: pytest.TempPathFactory
) -> FixtureImages:
    """The fixture image set, pushed once through the anonymous registry."""
    with RegistryPusher(upstreams["anonymous"].url) as pusher:
        return push_fixture_images(pusher, tmp_path_factory.mktemp("images"))


@pytest.fixture
def counting_proxy() -> Iterator[MakeProxy]:
    """A factory: `make_proxy(target_url)` starts a CountingProxy; all stop at teardown."""
    proxies: list[CountingProxy] = []

    def make_proxy(target_url: str) -> CountingProxy:
        proxy = CountingProxy(target_url)
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield make_proxy
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def pullthrough_server(
    rig_tools: None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StartPullthrough]:
    """A factory: `start_pullthrough(rules, **extra_config)` starts a PullthroughServer; all
    stop at teardown, and a failed test prints their logs."""
    servers: list[PullthroughServer] = []

    def start_pullthrough(
        rules: list[dict[str, Any]], env: dict[str, str] | None = None, **extra: Any
    ) -> PullthroughServer:
        server = PullthroughServer(tmp_path / f"pullthrough-{len(servers)}", rules, extra, env)
        servers.append(server)
        server.start()
        return server

    yield start_pullthrough
    for server in servers:
        server.stop()
    if _failed(request):
        for server in servers:
            print(f"--- pullthrough log ({server.log_path}) ---\n{server.log_tail(8000)}")
