"""A server on PostgreSQL metadata: refused until `pullthrough migrate` made its schema, then it
serves pulls."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest

from pullthrough.metadata.migrating import head
from tests.rig.images import FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.server import PullthroughServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json,"
    "application/vnd.docker.distribution.manifest.v2+json"
)


def test_serve_waits_for_migrate_then_serves_a_pull(
    database: str,
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    tmp_path: Path,
) -> None:
    rule = {"prefix": "up", "upstream": upstreams["anonymous"].url, "default": True}
    server = PullthroughServer(tmp_path / "pullthrough", [rule], {"database_url": database})
    try:
        server.launch()
        deadline = time.monotonic() + 60
        while server.exit_code is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.exit_code == 2, server.log_tail()
        assert "run `pullthrough migrate`" in server.log_text()

        assert f"migrated from nothing (new) to {head()}" in server.command("migrate")
        assert f"at revision {head()}, nothing to migrate" in server.command("migrate")

        server.start()
        image = fixture_images.oci_app
        manifest = httpx.get(
            f"{server.url}/v2/up/{image.repo}/manifests/{image.tag}",
            headers={"Accept": MANIFEST_TYPES},
        )
        assert manifest.status_code == 200, manifest.text
        assert manifest.content == image.manifest
        blob = image.blobs[0]
        got = httpx.get(f"{server.url}/v2/up/{image.repo}/blobs/{blob.digest}", timeout=60)
        assert got.status_code == 200
        assert f"sha256:{hashlib.sha256(got.content).hexdigest()}" == blob.digest
    finally:
        server.stop()
