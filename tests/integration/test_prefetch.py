"""`pullthrough prefetch` warms the cache through the server's registry API: afterwards a real
client copies the images without one upstream blob request, and the summary says where every
manifest and blob came from (upstream the first time, the cache the second)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.admin_cli import pullthrough_cli, refusal
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.images import FixtureImages, PushedImage
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.skopeo import skopeo_copy, verified_dir_digests

pytestmark = pytest.mark.integration


def warmed_images(fixture_images: FixtureImages) -> list[PushedImage]:
    """Single images, both index flavours, many layers, and the 256 MiB layer."""
    f = fixture_images
    return [f.busybox, f.oci_app, f.multi, f.multi_docker, f.many_layers, f.large]


def prefetch(cache: Cache, *args: str, token: str | None = None) -> Any:
    return pullthrough_cli(cache.server, "prefetch", *args, token=token)


def summary_rows(table: str) -> dict[str, str]:
    """Summary table lines by the image name that starts them."""
    rows = {}
    for line in table.splitlines():
        words = line.split()
        if words and ("/" in words[0] or words[0] == "total"):
            rows[words[0]] = line
    return rows


def test_prefetch_fills_the_cache_so_a_copy_costs_no_upstream_blob_request(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    # Each blob is reported as prefetch fetched it: no eager fill ahead of it.
    cache = start_cache(
        counting_proxy, pullthrough_server, upstreams["anonymous"], eager_fill=False
    )
    images = warmed_images(fixture_images)
    # The three ways to write an image: through the cache with its host, the cache name alone,
    # and as upstream names it (the rule's upstream is the counting proxy).
    written = [cache.ref(image.reference) for image in images[:3]]
    written.append(f"up/{images[3].reference}")
    written += [f"{cache.proxy.host}/{image.reference}" for image in images[4:]]
    image_list = tmp_path / "images.txt"
    image_list.write_text("# warm before the release\n" + "\n".join(written[1:]) + "\n\n")
    all_blobs = {d: b for image in images for d, b in image.all_blobs().items()}
    # Counted per image: a blob two images share is fetched by each (from the cache, once held).
    blob_count = sum(len(image.all_blobs()) for image in images)
    blob_bytes = sum(b.size for image in images for b in image.all_blobs().values())
    manifest_count = sum(len(image.manifest_digests()) for image in images)

    first = prefetch(cache, written[0], "-f", str(image_list), "--concurrency", "3")
    assert first.returncode == 0, first.stderr
    rows = summary_rows(first.stdout)
    for image in images:
        name = f"{cache.server.host}/up/{image.reference}"
        assert name in rows, first.stdout
        assert " ok " in rows[name]
        assert rows[name].split()[-2] == "upstream", rows[name]
    assert "upstream" in rows["total"]
    for digest, blob in all_blobs.items():
        assert cache.proxy.count("GET", path_contains=f"/blobs/{digest}") == 1, blob.media_type
    assert cache.upstream_blob_gets() == len(all_blobs)
    for digest in all_blobs:
        cache.committed(digest)

    cache.proxy.reset()
    for image in images:
        dest = tmp_path / f"copy-{image.repo.replace('/', '-')}"
        copied = skopeo_copy(cache.ref(image.reference), dest, all_platforms=bool(image.children))
        assert copied.returncode == 0, copied.stderr
        assert verified_dir_digests(dest) == image.all_digests()
    assert cache.upstream_blob_gets() == 0
    assert cache.proxy.requests == []  # tags are fresh: not even a HEAD

    again = prefetch(cache, *written, "--output", "json")
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert [entry["name"] for entry in document["images"]] == [
        f"{cache.server.host}/up/{image.reference}" for image in images
    ]
    assert document["total"]["blobs"] == {"cache": blob_count, "upstream": 0, "unknown": 0}
    assert document["total"]["manifests"] == {"cache": manifest_count, "upstream": 0, "unknown": 0}
    assert document["total"]["bytes_from_cache"] == blob_bytes
    assert document["total"]["bytes_from_upstream"] == 0
    multi = document["images"][2]
    assert multi["digest"] == fixture_images.multi.digest
    assert multi["platforms"] == ["linux/amd64", "linux/arm64"]
    assert cache.proxy.requests == []


def test_one_platform_of_an_index_and_images_that_fail(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])
    multi = fixture_images.multi
    arm64, amd64 = multi.child("arm64"), multi.child("amd64")

    result = prefetch(
        cache,
        f"up/{multi.reference}",
        "up/team/nothing-here:v1",
        "quay.io/org/app:1",
        f"up/{fixture_images.oci_app.reference}",
        "--platform",
        "linux/arm64",
        "--output",
        "json",
    )
    assert result.returncode == 1, result.stderr
    warmed, missing, no_rule, single = json.loads(result.stdout)["images"]
    assert warmed["ok"] and single["ok"]
    assert warmed["platforms"] == ["linux/arm64"]
    assert "team/nothing-here" in missing["error"]
    assert "no rule for registry quay.io" in no_rule["error"]
    assert "pullthrough: up/team/nothing-here:v1: " in result.stderr
    for digest in arm64.blob_digests():
        assert cache.proxy.count("GET", path_contains=digest) == 1
    for digest in amd64.blob_digests():
        assert cache.proxy.count("GET", path_contains=digest) == 0
    assert cache.proxy.count("GET", path_contains=amd64.digest) == 0

    # Usage errors reach no server.
    cache.proxy.reset()
    assert (
        refusal(prefetch(cache), 2)
        == "pullthrough: name at least one image, or a file of them with -f"
    )
    assert "is not a platform" in refusal(prefetch(cache, "up/x:1", "--platform", "linux"), 2)
    assert "not both" in refusal(
        prefetch(cache, "up/x:1", "--platform", "linux/amd64", "--all-platforms"), 2
    )
    assert "cannot read the image list" in refusal(
        prefetch(cache, "-f", str(tmp_path / "missing.txt")), 2
    )
    assert cache.proxy.requests == []


def test_with_auth_on_prefetch_logs_in_with_the_token(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    tmp_path: Path,
) -> None:
    cache = start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        settings={"auth": {"enabled": True}},
    )
    config = str(cache.server.config_path)
    created = [
        pullthrough_cli(None, "apikeys", "create", name, "--config", config)
        for name in ("ops", "ci")
    ]
    assert all(c.returncode == 0 for c in created), [c.stderr for c in created]
    ops, ci = (f"{name}:{c.stdout.strip()}" for name, c in zip(("ops", "ci"), created, strict=True))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(ADMIN_AND_PULLERS))
    bootstrap = pullthrough_cli(None, "policy", "put", "-f", str(policy), "--config", config)
    assert bootstrap.returncode == 0, bootstrap.stderr
    image = fixture_images.oci_app

    anonymous = prefetch(cache, f"up/{image.reference}")
    assert anonymous.returncode == 1
    assert "pass --token" in anonymous.stderr

    # An admin's key reads the rules, so the upstream's own name works.
    by_upstream_name = prefetch(cache, f"{cache.proxy.host}/{image.reference}", token=ops)
    assert by_upstream_name.returncode == 0, by_upstream_name.stderr

    # A puller may not read the rules: it writes the image through the cache instead.
    puller = prefetch(cache, cache.ref(fixture_images.busybox.reference), token=ci)
    assert puller.returncode == 0, puller.stderr
    assert "cannot read the rules" in puller.stderr
    short = prefetch(cache, "library/busybox:latest", token=ci)
    assert short.returncode == 1
    assert "write the image through the cache" in short.stderr
    wrong = prefetch(cache, cache.ref(image.reference), token="ci:ptk_wrong")
    assert wrong.returncode == 1
    assert "refused the credentials" in wrong.stderr or "pass --token" in wrong.stderr


ADMIN_AND_PULLERS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "OpsAdministers",
            "Effect": "Allow",
            "Principal": {"ApiKey": ["ops"]},
            "Action": "registry:*",
            "Resource": "*",
        },
        {
            "Sid": "KeysPull",
            "Effect": "Allow",
            "Principal": {"ApiKey": ["*"]},
            "Action": ["registry:Pull", "registry:ImportUpstream"],
            "Resource": "*",
        },
    ],
}
