"""Operator output a person reads: `lifecycle run` says what it expired, per repository, and
what it freed (or prints JSON for scripts). Help screens: tests/unit/test_cli_help.py."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pullthrough.cli.render import size
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.admin_cli import admin_ok
from tests.integration.cache_setup import PREFIX, start_cache
from tests.rig.images import FixtureImages, PushedImage
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.server import PullthroughServer, pullthrough_binary
from tests.rig.skopeo import skopeo_copy

pytestmark = pytest.mark.integration

EXPIRE_AFTER_A_DAY = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {
                "tagStatus": "any",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        }
    ]
}


def run(*args: str) -> str:
    result = subprocess.run(
        [str(pullthrough_binary()), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def lifecycle_run(server: PullthroughServer, *args: str) -> str:
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    return run("lifecycle", "run", *args, "--now", later, "--config", str(server.config_path))


def blob_bytes(image: PushedImage) -> int:
    return sum(blob.size for blob in image.blobs)


def test_lifecycle_run_says_what_it_expired_and_freed(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(EXPIRE_AFTER_A_DAY))
    admin_ok(cache.server, "templates", "put", "ROOT", "--lifecycle-policy", str(policy_file))
    app, busybox = fixture_images.oci_app, fixture_images.busybox
    assert not app.blob_digests() & busybox.blob_digests()
    for image in (app, busybox):
        copied = skopeo_copy(cache.ref(image.reference), tmp_path / image.repo.replace("/", "-"))
        assert copied.returncode == 0, copied.stderr
    app_name, busybox_name = f"{PREFIX}/{app.repo}", f"{PREFIX}/{busybox.repo}"

    report = json.loads(lifecycle_run(cache.server, app_name, "--output", "json"))
    assert [(e["repository"], e["digest"], e["tags"]) for e in report["expired"]] == [
        (app_name, app.digest, [app.tag])
    ]
    assert report["expiredByRepository"] == {app_name: 1}
    assert report["sizeCap"] is None
    assert (report["blobsDeleted"], report["bytesFreed"]) == (len(app.blobs), blob_bytes(app))
    [gc] = report["garbageCollections"]
    assert (gc["blobsDeleted"], gc["repositoriesDropped"]) == (len(app.blobs), [])

    text = lifecycle_run(cache.server)
    lines = [line.strip() for line in text.splitlines()]
    assert "Expired by lifecycle policy" in lines
    assert [line.split() for line in lines if line.startswith(busybox_name)] == [
        [busybox_name, "1", busybox.tag]
    ]
    assert "Size cap: none (lifecycle.max_size is not set)." in lines
    freed = size(blob_bytes(busybox))
    assert f"Garbage collection: {len(busybox.blobs)} blobs deleted, {freed} freed." in lines
    assert "Report(" not in text  # no Python object's repr

    again = lifecycle_run(cache.server)
    assert "No image expired by lifecycle policy." in again
    assert "Garbage collection: 0 blobs deleted, 0 B freed." in again
