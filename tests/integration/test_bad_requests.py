"""Malformed requests get the right 4xx OCI error, and the server keeps serving."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.conftest import MakeProxy, StartPullthrough
from tests.integration.cache_setup import Cache, start_cache
from tests.rig.images import FixtureImages
from tests.rig.registry import AuthMode, UpstreamRegistry

pytestmark = pytest.mark.integration

HEX = "0123456789abcdef" * 4
MISSING = f"sha256:{HEX}"


def raw_request(
    cache: Cache, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send the path exactly as written: no client-side normalisation of `..` or escapes."""
    host, port = cache.server.host.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def cases(images: FixtureImages) -> list[tuple[str, str, dict[str, str], int, str]]:
    layer = max(images.oci_app.blobs, key=lambda b: b.size)
    blob = f"/v2/up/team/oci-app/blobs/{layer.digest}"
    manifests = "/v2/up/team/oci-app/manifests"
    return [
        # Names
        ("GET", "/v2/up/Team/oci-app/manifests/v1", {}, 400, "NAME_INVALID"),
        ("GET", "/v2/up/../etc/passwd/manifests/v1", {}, 400, "NAME_INVALID"),
        ("GET", "/v2/up/team/../../x/blobs/" + MISSING, {}, 400, "NAME_INVALID"),
        ("GET", "/v2/up/%2e%2e/x/manifests/v1", {}, 400, "NAME_INVALID"),
        ("GET", "/v2/up/%2E%2E/%2E%2E/blobs/" + MISSING, {}, 400, "NAME_INVALID"),
        ("GET", "/v2/up/team%2Foci-app/manifests/v1", {}, 400, "NAME_INVALID"),
        ("GET", "/v2/up/a//b/manifests/v1", {}, 400, "NAME_INVALID"),
        ("GET", "/v2/up/./x/manifests/v1", {}, 400, "NAME_INVALID"),
        ("GET", "/v2/up/x%00y/manifests/v1", {}, 400, "NAME_INVALID"),
        ("GET", "/v2/up/-lead/manifests/v1", {}, 400, "NAME_INVALID"),
        ("GET", "/v2/up/trail_/manifests/v1", {}, 400, "NAME_INVALID"),
        ("GET", "/v2/up/" + "a/" * 130 + "b/manifests/v1", {}, 400, "NAME_INVALID"),
        # Tags and digests
        # Neither a tag nor a digest: no such manifest can exist (the conformance suite's view)
        ("GET", f"{manifests}/.hidden", {}, 404, "MANIFEST_UNKNOWN"),
        ("GET", f"{manifests}/{'t' * 129}", {}, 404, "MANIFEST_UNKNOWN"),
        ("GET", f"{manifests}/sha256:abc", {}, 400, "DIGEST_INVALID"),
        ("GET", f"{manifests}/md5:{HEX}", {}, 400, "DIGEST_INVALID"),
        ("HEAD", f"{manifests}/sha256:{HEX.upper()}", {}, 400, "DIGEST_INVALID"),
        ("GET", "/v2/up/team/oci-app/blobs/not-a-digest", {}, 400, "DIGEST_INVALID"),
        ("GET", f"/v2/up/team/oci-app/blobs/sha256:{HEX[:-1]}", {}, 400, "DIGEST_INVALID"),
        ("GET", "/v2/up/team/oci-app/referrers/sha256:zz", {}, 400, "DIGEST_INVALID"),
        # Pagination
        ("GET", "/v2/up/team/oci-app/tags/list?n=-1", {}, 400, "PAGINATION_NUMBER_INVALID"),
        ("GET", "/v2/up/team/oci-app/tags/list?n=ten", {}, 400, "PAGINATION_NUMBER_INVALID"),
        ("GET", "/v2/_catalog?n=99999999", {}, 400, "PAGINATION_NUMBER_INVALID"),
        # Ranges
        ("GET", blob, {"Range": "bytes=abc"}, 416, "RANGE_INVALID"),
        ("GET", blob, {"Range": "bytes=9-2"}, 416, "RANGE_INVALID"),
        ("GET", blob, {"Range": "bytes=0-1,4-5"}, 416, "RANGE_INVALID"),
        ("GET", blob, {"Range": f"bytes={layer.size}-"}, 416, "RANGE_INVALID"),
        ("GET", blob, {"Range": "bytes=-0"}, 416, "RANGE_INVALID"),
        ("GET", blob, {"Range": "pages=0-1"}, 416, "RANGE_INVALID"),
        # Routing
        ("GET", "/v2/nope/team/oci-app/manifests/v1", {}, 404, "NAME_UNKNOWN"),
        ("GET", "/v2/team/oci-app/manifests/v1?ns=quay.io", {}, 404, "NAME_UNKNOWN"),
        ("GET", "/v2/up/team/oci-app/nonsense", {}, 404, "UNSUPPORTED"),
        ("GET", "/not-the-api", {}, 404, "UNSUPPORTED"),
        # Missing things
        ("GET", "/v2/up/team/oci-app/manifests/no-such-tag", {}, 404, "MANIFEST_UNKNOWN"),
        ("GET", f"/v2/up/team/oci-app/blobs/{MISSING}", {}, 404, "BLOB_UNKNOWN"),
        # Writes
        ("PUT", f"{manifests}/v2", {"Content-Length": "0"}, 405, "UNSUPPORTED"),
        ("DELETE", f"{manifests}/v1", {}, 405, "UNSUPPORTED"),
        ("POST", "/v2/up/team/oci-app/blobs/uploads/", {"Content-Length": "0"}, 405, "UNSUPPORTED"),
        (
            "PATCH",
            "/v2/up/team/oci-app/blobs/uploads/x",
            {"Content-Length": "0"},
            405,
            "UNSUPPORTED",
        ),
        ("DELETE", blob, {}, 405, "UNSUPPORTED"),
        # Headers
        ("GET", "/v2/", {"X-Padding": "x" * 20000}, 431, "UNSUPPORTED"),
    ]


def test_malformed_requests_get_oci_errors_and_the_server_keeps_serving(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    counting_proxy: MakeProxy,
    pullthrough_server: StartPullthrough,
) -> None:
    cache = start_cache(counting_proxy, pullthrough_server, upstreams["anonymous"], default=False)
    layer = max(fixture_images.oci_app.blobs, key=lambda b: b.size)
    status, _, _ = raw_request(cache, "GET", f"/v2/up/team/oci-app/blobs/{layer.digest}")
    assert status == 200  # cached, so range errors below are judged against the real size
    all_cases = cases(fixture_images)
    assert len(all_cases) >= 30
    for method, path, headers, want_status, want_code in all_cases:
        status, response_headers, body = raw_request(cache, method, path, headers)
        where = f"{method} {path[:80]} {headers and list(headers)}"
        assert status == want_status, (where, body[:300])
        assert response_headers["Content-Type"].startswith("application/json"), where
        assert response_headers.get("X-Request-Id"), where
        if method != "HEAD":
            error = json.loads(body)["errors"][0]
            assert error["code"] == want_code, (where, error)
            assert error["message"], where
        health, _, _ = raw_request(cache, "GET", "/v2/")
        assert health == 200, f"server stopped answering after {where}"
    assert cache.server.running
    status, _, body = raw_request(cache, "GET", "/v2/up/team/oci-app/manifests/v1")
    assert status == 200
    assert body == fixture_images.oci_app.manifest
    assert "Traceback" not in cache.server.log_text()
