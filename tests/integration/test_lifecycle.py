"""Creation templates (through the admin API) and lifecycle policies (on the data directory)
through the real server and the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.admin_cli import admin_ok
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.images import FixtureImages
from tests.rig.oci_build import OCI_INDEX, OCI_MANIFEST
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.server import PullthroughServer

pytestmark = pytest.mark.integration

ACCEPT = {
    "Accept": f"{OCI_MANIFEST}, {OCI_INDEX}, application/vnd.docker.distribution.manifest.v2+json"
}


def policy(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"rules": [{"action": {"type": "expire"}, **rule} for rule in rules]}


EXPIRE_UNTAGGED_14_DAYS = policy(
    {
        "rulePriority": 1,
        "description": "Expire untagged images older than 14 days",
        "selection": {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": 14,
        },
    }
)
KEEP_TWO = policy(
    {
        "rulePriority": 1,
        "description": "Keep only two images",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2},
    }
)
KEEP_FIVE = policy(
    {
        "rulePriority": 1,
        "description": "Keep only five images",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5},
    }
)


def put_template(
    server: PullthroughServer, prefix: str, document: dict[str, Any], tmp_path: Path
) -> None:
    file = tmp_path / f"{prefix}.json"
    file.write_text(json.dumps(document))
    admin_ok(server, "templates", "put", prefix, "--lifecycle-policy", str(file))


def repository_policy(server: PullthroughServer, repository: str) -> dict[str, Any]:
    return dict(json.loads(server.command("lifecycle", "policy", repository)))


def pull(server: PullthroughServer, path: str) -> None:
    response = httpx.get(f"{server.url}{path}", headers=ACCEPT, timeout=60)
    assert response.status_code == 200, response.text


def test_templates_apply_to_new_repositories_by_prefix_and_edits_spare_existing_ones(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    proxy = counting_proxy(upstreams["anonymous"].url)
    server = pullthrough_server(
        [
            {"prefix": "docker-hub", "upstream": proxy.url, "implicit_namespace": "library"},
            {"prefix": "up", "upstream": proxy.url, "default": True},
        ]
    )
    put_template(server, "ROOT", EXPIRE_UNTAGGED_14_DAYS, tmp_path)
    put_template(server, "docker-hub", KEEP_TWO, tmp_path)
    pull(server, "/v2/docker-hub/busybox/manifests/latest")
    pull(server, "/v2/up/team/oci-app/manifests/v1")

    hub = repository_policy(server, "docker-hub/library/busybox")
    assert hub["template"] == "docker-hub"
    assert hub["lifecyclePolicy"] == KEEP_TWO
    other = repository_policy(server, "up/team/oci-app")
    assert other["template"] == "ROOT"
    assert other["lifecyclePolicy"] == EXPIRE_UNTAGGED_14_DAYS

    put_template(server, "docker-hub", KEEP_FIVE, tmp_path)  # an edit
    pull(server, "/v2/docker-hub/team/multi/manifests/latest")
    assert repository_policy(server, "docker-hub/team/multi")["lifecyclePolicy"] == KEEP_FIVE
    assert repository_policy(server, "docker-hub/library/busybox")["lifecyclePolicy"] == KEEP_TWO

    listed = json.loads(admin_ok(server, "templates", "list", "--output", "json"))
    assert [t["prefix"] for t in listed["templates"]] == ["ROOT", "docker-hub"]


def test_preview_names_the_rule_and_run_expires_exactly_that(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache: Cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])
    server = cache.server
    put_template(server, "ROOT", EXPIRE_UNTAGGED_14_DAYS, tmp_path)
    artifact = fixture_images.artifact  # untagged in team/oci-app
    pull(server, "/v2/up/team/oci-app/manifests/v1")
    pull(server, f"/v2/up/team/oci-app/manifests/{artifact.digest}")

    soon = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    assert json.loads(server.command("lifecycle", "preview", "--now", soon, "--json")) == []
    later = (datetime.now(UTC) + timedelta(days=15)).isoformat()
    preview = json.loads(server.command("lifecycle", "preview", "--now", later, "--json"))
    assert [(e["repository"], e["digest"], e["rulePriority"]) for e in preview] == [
        ("up/team/oci-app", artifact.digest, 1)
    ]
    assert "14" in preview[0]["reason"]
    text = server.command("lifecycle", "preview", "--now", later)
    assert artifact.digest in text
    assert "rule 1" in text

    server.command("lifecycle", "run", "--now", later)
    cache.proxy.reset()
    pull(server, "/v2/up/team/oci-app/manifests/v1")  # the tagged image stays cached
    assert cache.proxy.requests == []
    pull(server, f"/v2/up/team/oci-app/manifests/{artifact.digest}")  # expired: fetched again
    assert cache.proxy.count("GET", path_contains=artifact.digest) == 1
