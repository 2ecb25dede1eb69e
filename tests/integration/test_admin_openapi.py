"""The admin API does what its OpenAPI document says: schemathesis generates requests from the
document (valid ones and schema-violating ones) against a real server, with auth off and with
auth on, and checks every answer: no 5xx, only documented status codes and content types,
bodies that match their schemas, and invalid data refused.

The document is loaded from the code that serves it (collection happens before any server
runs); `test_served_document_is_the_one_tested` shows the server serves exactly that one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from pullthrough.access.hashing import hash_api_key, new_api_key
from pullthrough.api.admin.openapi import openapi_document
from pullthrough.metadata.principals import AccessStore
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.storage.layout import DataLayout
from tests.integration.cache_setup import PREFIX
from tests.rig.images import FixtureImages, PushedImage
from tests.rig.registry import AuthMode, UpstreamRegistry
from tests.rig.server import PullthroughServer

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Small enough that the file runs in about a minute; derandomized, so every run sends the same
# requests and a failure reproduces.
CONFORMANCE = settings(
    max_examples=10,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
ADMIN_KEY_NAME = "ops"
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "OpsAdministers",
            "Effect": "Allow",
            "Principal": {"ApiKey": [ADMIN_KEY_NAME]},
            "Action": "registry:*",
            "Resource": "*",
        }
    ],
}
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

GeneratedCase = schemathesis.Case[Any]

open_api = schemathesis.openapi.from_dict(openapi_document())
# With auth on, generated policies would lock the administrator out halfway through the run;
# the open run covers those two operations.
guarded_api = schemathesis.openapi.from_dict(openapi_document()).exclude(
    operation_id=["putPolicy", "deletePolicy"]
)


def _server(directory: Path, upstream: UpstreamRegistry, **config: Any) -> PullthroughServer:
    rule = {"prefix": PREFIX, "upstream": upstream.url, "implicit_namespace": "library"}
    server = PullthroughServer(directory, [rule], config)
    server.start()
    return server


def warm(server: PullthroughServer, images: list[PushedImage], authorization: str = "") -> None:
    """Cache the images' manifests (and one platform of an index), so listings have rows."""
    headers = {"Accept": ACCEPT, "Authorization": authorization}
    for image in images:
        references = [image.tag or image.digest, *(child.digest for child in image.children[:1])]
        for reference in references:
            response = httpx.get(
                f"{server.url}/v2/{PREFIX}/{image.repo}/manifests/{reference}",
                headers=headers,
                timeout=60,
            )
            assert response.status_code == 200, response.text


async def _bootstrap_admin(data_dir: Path) -> str:
    """An API key the registry policy lets administer, written to the server's database as an
    operator on its machine would; returns the key."""
    metadata = await MetadataStore.open(sqlite_url(DataLayout(data_dir).metadata_file))
    try:
        store = AccessStore(metadata.engine)
        key = new_api_key()
        await store.put_principal(ADMIN_KEY_NAME, "apikey", hash_api_key(key), None, ())
        await store.put_policy(json.dumps(ADMIN_POLICY))
    finally:
        await metadata.close()
    return key


def basic(name: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()


@pytest.fixture(scope="module")
def open_server(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PullthroughServer]:
    server = _server(tmp_path_factory.mktemp("admin-open"), upstreams["anonymous"])
    try:
        warm(server, [fixture_images.oci_app, fixture_images.multi])
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def guarded_server(
    upstreams: dict[AuthMode, UpstreamRegistry],
    fixture_images: FixtureImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PullthroughServer, str]]:
    """A server with auth on, and the Authorization header of an API key that may administer."""
    server = _server(
        tmp_path_factory.mktemp("admin-guarded"),
        upstreams["anonymous"],
        auth={"enabled": True},
    )
    try:
        header = basic(ADMIN_KEY_NAME, asyncio.run(_bootstrap_admin(server.data_dir)))
        deadline = time.monotonic() + 10  # the policy is re-read at most once a second
        while time.monotonic() < deadline:
            status = httpx.get(f"{server.url}/api/v1/status", headers={"Authorization": header})
            if status.status_code == 200:
                break
            time.sleep(0.1)
        assert status.status_code == 200, status.text
        warm(server, [fixture_images.oci_app], header)
        yield server, header
    finally:
        server.stop()


@open_api.parametrize()
@CONFORMANCE
def test_every_operation_does_what_the_document_says(
    case: GeneratedCase, open_server: PullthroughServer
) -> None:
    case.call_and_validate(base_url=open_server.url, checks=CHECKS)


@guarded_api.parametrize()
@CONFORMANCE
def test_with_auth_on_every_answer_is_documented(
    case: GeneratedCase, guarded_server: tuple[PullthroughServer, str]
) -> None:
    server, header = guarded_server
    # Without credentials every operation is a 401, in the admin error format (a method the
    # path does not take is a 405 whoever asks)...
    anonymous = case.call(base_url=server.url, headers={"Authorization": ""})
    expected = 401 if case.method.upper() == case.operation.method.upper() else 405
    assert anonymous.status_code == expected, anonymous.text
    assert anonymous.json()["code"] == ("UNAUTHORIZED" if expected == 401 else "METHOD_NOT_ALLOWED")
    case.validate_response(anonymous, checks=CHECKS)
    # ...and an administrator gets what the document says.
    case.call_and_validate(base_url=server.url, headers={"Authorization": header}, checks=CHECKS)


def test_served_document_is_the_one_tested(
    guarded_server: tuple[PullthroughServer, str],
) -> None:
    server, _ = guarded_server
    response = httpx.get(f"{server.url}/api/v1/openapi.json", timeout=30)  # no credentials
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == json.loads(json.dumps(openapi_document()))
    assert response.json()["openapi"] == "3.1.0"


def test_listings_of_real_content_match_the_document(
    open_server: PullthroughServer, fixture_images: FixtureImages
) -> None:
    """Generated names rarely exist; these ask about what the cache really holds."""
    multi = f"{PREFIX}/{fixture_images.multi.repo}"
    calls: dict[str, dict[str, str]] = {
        "/api/v1/repositories": {},
        "/api/v1/images": {"repository": multi},
        "/api/v1/tags": {"repository": multi},
        "/api/v1/status": {},
        "/api/v1/stats": {},
        "/api/v1/upstreams": {},
    }
    for path, params in calls.items():
        response = httpx.get(f"{open_server.url}{path}", params=params, timeout=30)
        assert response.status_code == 200, response.text
        open_api[path]["GET"].validate_response(response)
    assert httpx.get(f"{open_server.url}/api/v1/images", params={"repository": multi}).json()[
        "images"
    ]
    one = httpx.get(f"{open_server.url}/api/v1/repositories/{multi.replace('/', '%2F')}")
    assert one.status_code == 200, one.text
    open_api["/api/v1/repositories/{name}"]["GET"].validate_response(one)
