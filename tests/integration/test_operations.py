"""Running it: start-up errors that name the key, health and readiness, request ids in logs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import start_cache, wait_for
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.server import pullthrough_binary

pytestmark = pytest.mark.integration


def serve(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(pullthrough_binary()), "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listen: 127.0.0.1:5000\nworkrs: 2\n", "workrs: unknown key"),
        (
            "rules:\n  - prefix: hub\n    upstream: registry-1.docker.io\n",
            "rules.0.upstream: 'registry-1.docker.io' is not an http(s) URL",
        ),
        (
            "rules:\n  - prefix: hub\n    upstream: https://x\n    tag_ttl: often\n",
            "rules.0.tag_ttl",
        ),
    ],
)
def test_a_bad_config_stops_the_server_at_start_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    result = serve(config)
    assert result.returncode == 2
    assert message in result.stderr
    assert str(config) in result.stderr


def test_a_missing_credential_is_named_at_start(
    pullthrough_server: StartPullthrough,
) -> None:
    # Not fatal: secrets can be added while the server runs (`pullthrough secrets put`).
    server = pullthrough_server(
        [{"prefix": "hub", "upstream": "https://x", "credential": "team/hub-login"}]
    )
    assert server.running
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    [warning] = [
        json.loads(line)
        for line in server.log_text().splitlines()
        if line.startswith("{") and "team/hub-login" in line
    ]
    assert warning["level"] == "warning"
    assert "pullthrough secrets put team/hub-login" in warning["message"]
    assert "PULLTHROUGH_SECRET_TEAM_HUB_LOGIN_USERNAME" in warning["message"]
    assert "PULLTHROUGH_SECRET_TEAM_HUB_LOGIN_PASSWORD" in warning["message"]


def test_health_readiness_and_request_ids_in_json_logs(
    upstreams: dict[AuthMode, UpstreamRegistry],
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])
    assert cache.get("/healthz").status_code == 200
    ready = cache.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"worker": "serving", "metadata": "ok", "storage": "ok"}

    answer = cache.get("/v2/up/team/oci-app/manifests/missing-tag")
    generated = answer.headers["X-Request-Id"]
    chosen = httpx.get(cache.url("/v2/"), headers={"X-Request-Id": "trace-42"})
    assert chosen.headers["X-Request-Id"] == "trace-42"

    def logged() -> list[dict[str, Any]]:
        text = cache.server.log_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    # Lines are written by each worker's log thread, a moment after the response.
    wait_for(
        lambda: {generated, "trace-42"} <= {line.get("request_id") for line in logged()},
        10,
        "the two requests' log lines",
    )
    lines = logged()
    access = {line["request_id"]: line for line in lines if line["logger"] == "pullthrough.access"}
    assert access[generated]["status"] == 404
    assert access[generated]["path"] == "/v2/up/team/oci-app/manifests/missing-tag"
    assert access["trace-42"]["status"] == 200
    assert all({"time", "level", "message", "pid"} <= line.keys() for line in lines)
