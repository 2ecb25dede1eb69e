"""The browser tier: a real `pullthrough serve` (auth on) filled with images pulled through it
from a real upstream registry, and Debian's chromium driven by Playwright (never a downloaded
browser). Each page's screenshot is saved to `test-artifacts/screenshots/<page>-<width>.png`
under the repository root."""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy.ext.asyncio import create_async_engine

from pullthrough.metadata.scans import ScanStore
from pullthrough.metadata.store import sqlite_url
from pullthrough.metadata.templates import CreationTemplate, TemplateStore
from pullthrough.scanning.model import Finding, Package
from pullthrough.scanning.results import finding_json
from tests.rig.images import PushedImage, RegistryPusher, push_image
from tests.rig.images import push_multi_platform as push_two_platforms
from tests.rig.oci_build import build_image
from tests.rig.proxy import CountingProxy
from tests.rig.pusher import basic_authorization
from tests.rig.registry import UpstreamRegistry
from tests.rig.server import PullthroughServer

CHROMIUM = Path("/usr/bin/chromium")
# What a page shows is checked until it shows it, for up to this long (a busy machine is slow).
expect.set_options(timeout=20_000)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
PREFIX = "up"
# A second rule through a proxy that adds Docker Hub's rate-limit headers to manifests.
HUB = "hub"
RATE_LIMIT = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "7;w=21600"}
ADMIN, PASSWORD = "alice", "correct horse battery staple"
SECOND_ADMIN, VIEWER, OTHER_PASSWORD = "bob", "carol", "another long password"
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "AliceAdministers",
            "Effect": "Allow",
            "Principal": {"User": [ADMIN, SECOND_ADMIN]},
            "Action": "registry:*",
            "Resource": "*",
        }
    ],
}
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


@dataclass
class Site:
    """The server, the images it holds, and what the test's pulls were served as."""

    server: PullthroughServer
    single: PushedImage  # team/app:v1, one platform
    older: PushedImage  # team/app:old, cached before v1 (its manifest only): the one to expire
    multi: PushedImage  # team/multi:latest, linux/amd64 + linux/arm64, both pulled
    extra: list[PushedImage]  # team/extra-N:v1
    limited: PushedImage  # team/limited:v1, only its manifest pulled, through the hub rule
    hits: int = 0
    misses: int = 0  # of both rules
    hub_misses: int = 0
    sizes: dict[str, int] = field(default_factory=dict)  # repository -> bytes of its blobs

    @property
    def url(self) -> str:
        return self.server.url

    def repository(self, image: PushedImage) -> str:
        return f"{PREFIX}/{image.repo}"


def _get(server: PullthroughServer, path: str, accept: str | None = None) -> bytes:
    headers = {"Authorization": basic_authorization(ADMIN, PASSWORD)}
    if accept:
        headers["Accept"] = accept
    response = httpx.get(server.url + path, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return response.content


def _pull(server: PullthroughServer, image: PushedImage, reference: str) -> tuple[int, set[str]]:
    """GET a single-platform image's manifest and blobs; the requests made, the blobs."""
    _get(server, f"/v2/{PREFIX}/{image.repo}/manifests/{reference}", MANIFEST_TYPES)
    for blob in image.blobs:
        _get(server, f"/v2/{PREFIX}/{image.repo}/blobs/{blob.digest}")
    return 1 + len(image.blobs), {blob.digest for blob in image.blobs}


def _fill(server: PullthroughServer, site: Site) -> None:
    """Pull every image (a miss for every request), then team/app and the index again (a hit
    for each): the counts the overview must show follow from these requests alone."""
    sizes: dict[str, int] = {}
    _get(server, f"/v2/{PREFIX}/{site.older.repo}/manifests/old", MANIFEST_TYPES)
    site.misses += 1
    for image in (site.single, *site.extra):
        requests, _ = _pull(server, image, "v1")
        site.misses += requests
        sizes[site.repository(image)] = sum(blob.size for blob in image.blobs)
    multi = site.multi
    _get(server, f"/v2/{PREFIX}/{multi.repo}/manifests/latest", MANIFEST_TYPES)
    site.misses += 1
    sizes[site.repository(multi)] = 0
    for child in multi.children:
        requests, _ = _pull(server, child, child.digest)
        site.misses += requests
        sizes[site.repository(multi)] += sum(blob.size for blob in child.blobs)
    # Second pulls: every request a hit.
    requests, _ = _pull(server, site.single, "v1")
    site.hits += requests
    _get(server, f"/v2/{PREFIX}/{multi.repo}/manifests/latest", MANIFEST_TYPES)
    site.hits += 1
    # Through the hub rule: the manifest alone, so the repository holds no blob.
    _get(server, f"/v2/{HUB}/{site.limited.repo}/manifests/v1", MANIFEST_TYPES)
    site.misses += 1
    site.hub_misses += 1
    sizes[f"{HUB}/{site.limited.repo}"] = 0
    site.sizes = sizes


def _wait_until_recorded(server: PullthroughServer, hits: int, misses: int) -> None:
    """The workers write their counts every two seconds and the upstreams' answers as they
    come: poll the overview and the upstreams page (logged in as a browser would, with the
    form's CSRF token) until both are in."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.get("/ui/login")
        form = {"username": ADMIN, "password": PASSWORD, "csrf": client.cookies["pullthrough_csrf"]}
        assert client.post("/ui/login", data=form).status_code == 303
        deadline = time.monotonic() + 60
        seen = None
        rate_limit = False
        while time.monotonic() < deadline:
            found = re.search(r"(\d+) hits, (\d+) misses", client.get("/ui/").text)
            seen = (int(found[1]), int(found[2])) if found else None
            rate_limit = "7 of 100" in client.get("/ui/upstreams").text
            if seen == (hits, misses) and rate_limit:
                return
            time.sleep(0.2)
    raise AssertionError(
        f"the overview never showed {hits} hits, {misses} misses (last {seen}), "
        f"or the hub rule's rate limit never showed ({rate_limit})"
    )


def finding(advisory: str, severity: str, package: str, fixed: str | None) -> dict[str, Any]:
    return finding_json(
        Finding(
            advisory=advisory,
            aliases=(),
            package=Package("Debian", package, "1.0-1", f"pkg:deb/debian/{package}@1.0-1"),
            severity=severity,
            score=None,
            vector=None,
            fixed_version=fixed,
            summary=f"{package} does something wrong",
        )
    )


# What a scan of each platform of team/multi found: one advisory on both, one on each.
SCAN_FINDINGS = {
    "amd64": [
        finding("DSA-0001-1", "CRITICAL", "libfoo", "1.0-2"),
        finding("CVE-2026-0002", "LOW", "bar", None),
    ],
    "arm64": [
        finding("DSA-0001-1", "CRITICAL", "libfoo", "1.0-2"),
        finding("GHSA-aaaa-bbbb-cccc", "HIGH", "baz", "2.0"),
    ],
}


# team/app keeps its newest image: its lifecycle policy, from a creation template.
KEEP_ONE = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "keep the newest image",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
            "action": {"type": "expire"},
        }
    ]
}


async def _keep_one_template(server: PullthroughServer) -> None:
    """The creation template for up/team/app, stored as `templates put` stores it."""
    engine = create_async_engine(sqlite_url(server.data_dir / "metadata.sqlite"))
    try:
        template = CreationTemplate(
            prefix=f"{PREFIX}/team/app",
            lifecycle_policy=json.dumps(KEEP_ONE),
            description="Only the newest app image.",
        )
        await TemplateStore(engine).put(template)
    finally:
        await engine.dispose()


async def _record_scans(server: PullthroughServer, multi: PushedImage) -> None:
    """Record the platform images' scan results where the scanner keeps them (the scan
    store of the server's database), as a finished scan of each would."""
    engine = create_async_engine(sqlite_url(server.data_dir / "metadata.sqlite"))
    try:
        scans = ScanStore(engine)
        for architecture, findings in SCAN_FINDINGS.items():
            child = multi.child(architecture)
            await scans.queue(f"{PREFIX}/{multi.repo}", child.digest)
            await scans.finish(
                child.digest,
                platform=f"linux/{architecture}",
                findings=findings,
                vulndb_revision=1,
            )
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    for tool in ("docker-registry",):
        if shutil.which(tool) is None:
            pytest.fail(f"missing {tool}: `make debian-deps` installs it", pytrace=False)
    work = tmp_path_factory.mktemp("dashboard")
    upstream = UpstreamRegistry(work / "upstream-storage", "anonymous", workdir=work / "registry")
    upstream.start()
    proxy = CountingProxy(upstream.url)
    proxy.start()
    proxy.extra_headers(r"/manifests/", RATE_LIMIT)
    server = PullthroughServer(
        work / "pullthrough",
        [
            {"prefix": PREFIX, "upstream": upstream.url, "eager_fill": False},
            {"prefix": HUB, "upstream": proxy.url, "eager_fill": False},
        ],
        {"auth": {"enabled": True}},
    )
    try:
        with RegistryPusher(upstream.url) as pusher:
            single = push_image(
                pusher,
                "team/app",
                "v1",
                build_image(random.Random(71), flavor="oci", layer_count=3, label="app"),
                flavor="oci",
            )
            older = push_image(
                pusher,
                "team/app",
                "old",
                build_image(random.Random(70), flavor="oci", layer_count=1, label="app-old"),
                flavor="oci",
            )
            multi = push_two_platforms(pusher, "team/multi", "latest", flavor="oci", seed=72)
            extra = [
                push_image(
                    pusher,
                    f"team/extra-{n}",
                    "v1",
                    build_image(
                        random.Random(80 + n),
                        flavor="docker",
                        layer_count=1,
                        layer_file_size=1024 * (n + 1),
                        label=f"extra-{n}",
                    ),
                    flavor="docker",
                )
                for n in range(3)
            ]
            limited = push_image(
                pusher,
                "team/limited",
                "v1",
                build_image(random.Random(90), flavor="oci", layer_count=1, label="limited"),
                flavor="oci",
            )
        server.command("users", "add", ADMIN, stdin=PASSWORD)
        for user in (SECOND_ADMIN, VIEWER):  # carol may log in, but is no admin
            server.command("users", "add", user, stdin=OTHER_PASSWORD)
        policy = work / "policy.json"
        policy.write_text(json.dumps(ADMIN_POLICY))
        server.command("policy", "put", "-f", str(policy))
        asyncio.run(_keep_one_template(server))
        server.start()
        built = Site(server, single, older, multi, extra, limited)
        _fill(server, built)
        _wait_until_recorded(server, built.hits, built.misses)
        asyncio.run(_record_scans(server, multi))
        yield built
    finally:
        server.stop()
        proxy.stop()
        upstream.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"missing {CHROMIUM}: `make debian-deps` installs chromium", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser: Browser, width_name: str) -> Page:
    width, height = WIDTHS[width_name]
    context = browser.new_context(viewport={"width": width, "height": height})
    return context.new_page()


def log_in(page: Page, site: Site, password: str = PASSWORD, username: str = ADMIN) -> None:
    page.goto(site.url + "/ui/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def screenshot(page: Page, name: str, width_name: str) -> Path:
    """Save the whole page, and check it does not scroll sideways."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{WIDTHS[width_name][0]}.png"
    page.screenshot(path=str(path), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width_name} width"
    return path
