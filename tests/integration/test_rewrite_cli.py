"""`pullthrough rewrite` against a real server: the rules come from its admin API, and every
rewritten reference pulls, through the cache, the very image the original one named."""

from __future__ import annotations

from pathlib import Path

import pytest

from pullthrough.oci.mediatypes import UPSTREAM_ACCEPT
from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.admin_cli import pullthrough_cli
from tests.integration.cache_setup import PREFIX, start_cache
from tests.rig.images import FixtureImages
from tests.rig.ports import free_port
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

MANIFEST = """\
# A pod whose images come from the rig's upstream, which the rule `up` mirrors as docker.io.
apiVersion: v1
kind: Pod
metadata:
  name: rewrite-test
spec:
  initContainers:
    - name: short-name
      image: {busybox}   # docker.io/library/busybox, as docker reads it
  containers:
    - name: by-host
      image: "{oci_app}"
    - name: pinned
      image: '{multi}'
    - name: elsewhere
      image: mcr.microsoft.com/dotnet/runtime:8.0
"""


def test_rewrite_uses_the_servers_rules_and_the_result_pulls(
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    tmp_path: Path,
) -> None:
    cache = start_cache(
        counting_proxy, pullthrough_server, upstreams["anonymous"], mirror_of=["docker.io"]
    )
    upstream, here, multi = cache.proxy.host, cache.server.host, fixture_images.multi.digest
    before = {
        "busybox": "busybox",
        "oci_app": f"{upstream}/team/oci-app:v1",
        "multi": f"{upstream}/team/multi@{multi}",
    }
    # name in the cache, what to ask for, the image it must be
    after = {
        "busybox": (f"{PREFIX}/library/busybox", "latest", fixture_images.busybox),
        "oci_app": (f"{PREFIX}/team/oci-app", "v1", fixture_images.oci_app),
        "multi": (f"{PREFIX}/team/multi", multi, fixture_images.multi),
    }
    rewritten = {
        "busybox": f"{here}/{PREFIX}/library/busybox",
        "oci_app": f"{here}/{PREFIX}/team/oci-app:v1",
        "multi": f"{here}/{PREFIX}/team/multi@{multi}",
    }
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(MANIFEST.format(**before))

    check = pullthrough_cli(cache.server, "rewrite", "--check", str(manifest))
    assert check.returncode == 3, (check.stdout, check.stderr)
    assert manifest.read_text() == MANIFEST.format(**before)

    result = pullthrough_cli(cache.server, "rewrite", str(manifest))
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert manifest.read_text() == MANIFEST.format(**rewritten)
    assert result.stdout.splitlines() == [
        f"{manifest}:9: {before['busybox']} -> {rewritten['busybox']}",
        f"{manifest}:12: {before['oci_app']} -> {rewritten['oci_app']}",
        f"{manifest}:14: {before['multi']} -> {rewritten['multi']}",
    ]
    assert f"{manifest}:16: left mcr.microsoft.com/dotnet/runtime:8.0 as is: no rule" in (
        result.stderr
    )

    # Each new reference, asked of the cache, is the image the old one named upstream.
    for repository, reference, image in after.values():
        response = cache.get(
            f"/v2/{repository}/manifests/{reference}", headers={"Accept": UPSTREAM_ACCEPT}
        )
        assert response.status_code == 200, (repository, reference, response.text)
        assert response.headers["Docker-Content-Digest"] == image.digest, repository

    again = pullthrough_cli(cache.server, "rewrite", "--check", str(manifest))
    assert (again.returncode, again.stdout) == (0, "")


def test_rewrite_without_a_server_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text("image: busybox\n")
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = pullthrough_cli(None, "rewrite", str(manifest), "--server", server)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith(f"pullthrough: cannot reach {server}")
    assert result.stderr.count("\n") == 1
    assert manifest.read_text() == "image: busybox\n"
