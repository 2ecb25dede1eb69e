"""The OCI distribution-spec conformance suite's (v1.1) pull requests for manifests that cannot
exist, replayed byte for byte against a running cache: 404 with an OCI error body, and upstream
never asked. A malformed digest stays a 400."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import start_cache
from tests.integration.test_bad_requests import raw_request
from tests.rig.images import FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

# The suite's `nonexistentManifest` (conformance/setup.go): a reference that is no tag (a tag may
# not start with '.') and no digest.
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"
# What its Go client (reggie over resty and net/http, set up in setup.go) sends with the
# nonexistent-manifest requests: no Accept at all; its existing-manifest requests ask for the
# OCI manifest type.
SUITE_HEADERS = {"User-Agent": "distribution-spec-conformance-tests", "Accept-Encoding": "gzip"}
SUITE_MANIFEST_ACCEPT = {**SUITE_HEADERS, "Accept": "application/vnd.oci.image.manifest.v1+json"}


def test_the_conformance_suites_nonexistent_manifest_is_404_without_asking_upstream(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"])
    image = fixture_images.oci_app
    manifests = f"/v2/up/{image.repo}/manifests"

    for headers in (SUITE_HEADERS, SUITE_MANIFEST_ACCEPT):
        status, response_headers, _ = raw_request(
            cache, "HEAD", f"{manifests}/{NONEXISTENT_MANIFEST}", headers
        )
        assert status == 404, headers
        status, response_headers, body = raw_request(
            cache, "GET", f"{manifests}/{NONEXISTENT_MANIFEST}", headers
        )
        assert status == 404, (headers, body[:300])
        assert response_headers["Content-Type"].startswith("application/json")
        (error,) = json.loads(body)["errors"]
        assert error["code"] == "MANIFEST_UNKNOWN"
        assert NONEXISTENT_MANIFEST in error["message"]
        assert "a reference is a tag" in error["message"]

    for method in ("HEAD", "GET"):
        status, _, body = raw_request(
            cache, method, f"{manifests}/sha256:zz", SUITE_MANIFEST_ACCEPT
        )
        assert status == 400, (method, body[:300])
        if method == "GET":
            assert json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"
    assert cache.proxy.requests == []

    # The same client asking for a real tag is sent upstream: the proxy above would have seen it.
    status, response_headers, body = raw_request(
        cache, "GET", f"{manifests}/{image.tag}", SUITE_MANIFEST_ACCEPT
    )
    assert status == 200, body[:300]
    assert response_headers["Docker-Content-Digest"] == image.digest
    assert cache.upstream_manifest_gets() == 1
