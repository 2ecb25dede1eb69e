"""containerd (ctr) and podman pull `docker.io/library/…` through the cache using only what
`pullthrough mirror-config` printed for them, and get exactly the upstream's images.

The cache's one rule answers for docker.io and fetches from the test registry through a counting
proxy; the clients run with a closed HTTP proxy for anything off loopback, so a client that fell
back to the real Docker Hub fails instead of reaching it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, sha256, start_cache
from tests.rig.containerd import CLOSED_PROXY, Containerd
from tests.rig.images import PushedImage, RegistryPusher, push_image
from tests.rig.images import push_multi_platform as push_index_image
from tests.rig.oci_build import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    build_image,
)
from tests.rig.podman import Podman
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.server import pullthrough_binary

pytestmark = pytest.mark.integration

MANIFEST_TYPES = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
# ctr and podman pull the host's platform from an index; these machines are amd64.
HOST_ARCHITECTURE = "amd64"


@pytest.fixture(scope="module")
def hub_images(upstreams: dict[AuthMode, UpstreamRegistry]) -> list[PushedImage]:
    """Two Docker Hub style official images upstream: a single-platform Docker schema2 image
    and an OCI index over linux/amd64 and linux/arm64."""
    with RegistryPusher(upstreams["anonymous"].url) as pusher:
        content = build_image(random.Random(601), flavor="docker", layer_count=2, label="hub")
        single = push_image(pusher, "library/mirror-single", "latest", content, flavor="docker")
        multi = push_index_image(pusher, "library/mirror-multi", "latest", flavor="oci", seed=602)
    return [single, multi]


@pytest.fixture
def cache(
    upstreams: dict[AuthMode, UpstreamRegistry],
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> Cache:
    """The cache with one Docker Hub rule: `docker-hub`, default, answering for docker.io,
    official images under `library/`."""
    return start_cache(
        counting_proxy,
        pullthrough_server,
        upstreams["anonymous"],
        prefix="docker-hub",
        mirror_of=["docker.io"],
    )


@pytest.fixture
def containerd_daemons(tmp_path: Path) -> Iterator[list[Containerd]]:
    """Two private containerd daemons: the second pulls what the first did, from the cache."""
    daemons = [Containerd(tmp_path / f"containerd-{i}") for i in range(2)]
    try:
        for daemon in daemons:
            daemon.start()
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


def mirror_config(cache: Cache, *args: str) -> str:
    """Run the real CLI against the running server; its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULLTHROUGH_")}
    env["PULLTHROUGH_CLIENT_CONFIG"] = str(cache.server.tmp_dir / "no-client.yaml")
    result = subprocess.run(
        [str(pullthrough_binary()), "mirror-config", *args, "--server", cache.server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def upstream_digest(upstream: UpstreamRegistry, image: PushedImage) -> str:
    """The digest of the manifest the upstream registry serves for the image's tag."""
    response = httpx.get(
        f"{upstream.url}/v2/{image.repo}/manifests/{image.tag}",
        headers={"Accept": MANIFEST_TYPES},
    )
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(response.content)
    return sha256(response.content)


def platform_image(image: PushedImage) -> PushedImage:
    """What a client on this machine unpacks: the image itself, or its index's host child."""
    return image.child(HOST_ARCHITECTURE) if image.children else image


def hub_ref(image: PushedImage) -> str:
    return f"docker.io/{image.repo}:{image.tag}"


@pytest.mark.parametrize("mode", ["ns", "override_path"])
def test_containerd_pulls_through_the_cache_with_the_generated_hosts_toml(
    mode: str,
    cache: Cache,
    hub_images: list[PushedImage],
    containerd_daemons: list[Containerd],
    tmp_path: Path,
) -> None:
    hosts_dir = tmp_path / "certs.d"
    written = mirror_config(cache, "containerd", "--mode", mode, "--dir", str(hosts_dir))
    # mirror_of adds docker.io; the upstream's own host keeps its file.
    hosts = sorted(["docker.io", cache.proxy.host])
    assert written.split("\n")[:-1] == [f"wrote {hosts_dir / h / 'hosts.toml'}" for h in hosts]
    # What it prints is the same files, under the paths containerd reads them from.
    printed = mirror_config(cache, "containerd", "--mode", mode)
    assert printed == "\n".join(
        f"# /etc/containerd/certs.d/{h}/hosts.toml\n{(hosts_dir / h / 'hosts.toml').read_text()}"
        for h in hosts
    )

    first, second = containerd_daemons
    for image in hub_images:
        result = first.pull(hub_ref(image), hosts_dir)
        assert result.returncode == 0, result.stderr + first.log_text()[-2000:]
    pulled = first.images()
    for image in hub_images:
        assert pulled[hub_ref(image)].digest == upstream_digest(cache.upstream, image)
        # containerd verified each of these against its digest when it stored it.
        platform = platform_image(image)
        wanted = {image.digest, platform.digest} | platform.blob_digests()
        assert wanted <= first.content_digests()
    fetched = set().union(*(platform_image(image).blob_digests() for image in hub_images))
    assert cache.upstream_blob_gets() == len(fetched)  # each blob once, nothing for arm64
    arm64 = hub_images[1].child("arm64")
    assert not any(cache.proxy.count(path_contains=d) for d in arm64.blob_digests())
    # Requests reached the cache the way the mode says: by path prefix, or root plus ns.
    prefix = "/v2/docker-hub/library/" if mode == "override_path" else "/v2/library/"
    log = cache.server.log_text()
    assert f"{prefix}mirror-single/manifests/latest?ns=docker.io" in log

    cache.proxy.reset()
    for image in hub_images:
        result = second.pull(hub_ref(image), hosts_dir)
        assert result.returncode == 0, result.stderr
        assert second.images()[hub_ref(image)].digest == image.digest
    assert cache.upstream_blob_gets() == 0
    assert cache.upstream_manifest_gets() == 0


def test_podman_pulls_through_the_cache_with_the_generated_registries_conf(
    cache: Cache, hub_images: list[PushedImage], tmp_path: Path
) -> None:
    registries_conf = tmp_path / "registries.conf"
    registries_conf.write_text(mirror_config(cache, "cri-o"))
    with Podman(tmp_path / "podman-1", registries_conf) as first:
        for image in hub_images:
            result = first.pull(hub_ref(image))
            assert result.returncode == 0, result.stderr
            assert first.image_digest(hub_ref(image)) == upstream_digest(cache.upstream, image)
            # The image ID is the config's digest: podman stored the host's platform.
            assert first.image_id(hub_ref(image)) == platform_image(image).blobs[0].digest
    fetched = set().union(*(platform_image(image).blob_digests() for image in hub_images))
    assert cache.upstream_blob_gets() == len(fetched)
    assert "/v2/docker-hub/library/mirror-single/manifests/latest" in cache.server.log_text()

    cache.proxy.reset()
    with Podman(tmp_path / "podman-2", registries_conf) as second:
        for image in hub_images:
            result = second.pull(hub_ref(image))
            assert result.returncode == 0, result.stderr
            assert second.image_digest(hub_ref(image)) == image.digest
    assert cache.upstream_blob_gets() == 0
    assert cache.upstream_manifest_gets() == 0


def test_the_docker_mirror_serves_docker_hub_names_from_the_default_rule(
    cache: Cache, hub_images: list[PushedImage]
) -> None:
    daemon_json = json.loads(mirror_config(cache, "docker"))
    assert daemon_json == {
        "registry-mirrors": [cache.server.url],
        "insecure-registries": [cache.server.host],
    }
    # The Docker daemon asks its mirror for `library/<name>` with no prefix and no ns.
    (mirror,) = daemon_json["registry-mirrors"]
    for image in hub_images:
        response = httpx.get(
            f"{mirror}/v2/{image.repo}/manifests/{image.tag}", headers={"Accept": MANIFEST_TYPES}
        )
        assert response.status_code == 200, response.text
        assert sha256(response.content) == upstream_digest(cache.upstream, image)


def test_a_client_falling_back_past_the_cache_never_leaves_loopback(
    cache: Cache, containerd_daemons: list[Containerd], tmp_path: Path
) -> None:
    # The cache answers 404 for an image upstream lacks; both clients then try the registry
    # itself, which the closed proxy stops.
    hosts_dir = tmp_path / "certs.d"
    mirror_config(cache, "containerd", "--dir", str(hosts_dir))
    result = containerd_daemons[0].pull("docker.io/library/absent:latest", hosts_dir)
    assert result.returncode != 0
    assert "registry-1.docker.io" in result.stderr
    assert f"proxyconnect tcp: dial tcp {CLOSED_PROXY.removeprefix('http://')}" in result.stderr

    registries_conf = tmp_path / "registries.conf"
    registries_conf.write_text(mirror_config(cache, "cri-o"))
    with Podman(tmp_path / "podman", registries_conf) as podman:
        result = podman.pull("docker.io/library/absent:latest")
    assert result.returncode != 0
    assert "127.0.0.1:9: connect: connection refused" in result.stderr
    assert cache.proxy.count("GET", path_contains="/v2/library/absent/manifests/") >= 1


def test_containerd_pulls_by_docker_io_and_by_the_upstreams_own_name_through_one_rule(
    cache: Cache,
    hub_images: list[PushedImage],
    containerd_daemons: list[Containerd],
    tmp_path: Path,
) -> None:
    # The rule fetches from the upstream at cache.proxy.host and lists docker.io in mirror_of:
    # containerd asks for `?ns=docker.io` or `?ns=127.0.0.1%3A<port>`, and both must be served.
    hosts_dir = tmp_path / "certs.d"
    mirror_config(cache, "containerd", "--dir", str(hosts_dir))
    own_host = cache.proxy.host
    assert sorted(p.name for p in hosts_dir.iterdir()) == sorted(["docker.io", own_host])

    def own_ref(image: PushedImage) -> str:
        return f"{own_host}/{image.repo}:{image.tag}"

    single, multi = hub_images
    first, second = containerd_daemons
    pulls = [
        (first, single, hub_ref(single)),  # cold: these two fill the cache
        (first, multi, own_ref(multi)),
        (second, single, own_ref(single)),  # warm: the same images by their other names
        (second, multi, hub_ref(multi)),
    ]
    for daemon, image, ref in pulls:
        result = daemon.pull(ref, hosts_dir)
        assert result.returncode == 0, result.stderr + daemon.log_text()[-2000:]
        assert daemon.images()[ref].digest == upstream_digest(cache.upstream, image)
    # Everything came through the cache: upstream saw only pullthrough, each blob once.
    agents = {entry.headers.get("User-Agent", "") for entry in cache.proxy.entries}
    assert all(agent.startswith("pullthrough/") for agent in agents), agents
    fetched = set().union(*(platform_image(image).blob_digests() for image in hub_images))
    assert cache.upstream_blob_gets() == len(fetched)
    log = cache.server.log_text()
    assert f"/v2/library/mirror-multi/manifests/latest?ns={own_host.replace(':', '%3A')}" in log
