"""/scans, /findings, /sbom, /scan-summaries, /gate/overrides: scanning cached images, their
findings per platform and aggregated over an index or tag, SBOMs, and the gate's overrides."""

from __future__ import annotations

import re

from aiohttp import web

from pullthrough.api.admin.body import read_model
from pullthrough.api.admin.context import AdminServices, services
from pullthrough.api.admin.errors import Conflict, Invalid, NotFound
from pullthrough.api.admin.fields import iso_or_none, iso_time
from pullthrough.api.admin.query import text_parameter
from pullthrough.api.admin.replies import no_content, reply
from pullthrough.api.admin.scan_models import (
    GateOverride,
    GateOverrideList,
    OverrideInput,
    ScanFindings,
    ScanInput,
    ScanSummary,
    ScanSummaryList,
)
from pullthrough.cache.scan_layers import CacheScanning
from pullthrough.metadata.scans import Override, ScanStore
from pullthrough.oci.digest import Digest
from pullthrough.scanning.model import SEVERITIES
from pullthrough.scanning.results import (
    PlatformScan,
    aggregate,
    findings_document,
    overall_status,
    platform_scans,
    severity_counts,
)
from pullthrough.scanning.sbom import cyclonedx_json

DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"


def _scanning(svc: AdminServices) -> CacheScanning:
    if svc.cache.scanning is None:
        raise Conflict("scanning does not run in this server")
    return svc.cache.scanning


def _store(svc: AdminServices) -> ScanStore:
    return _scanning(svc).service.store


async def _resolve(svc: AdminServices, repository: str, reference: str) -> tuple[str, str | None]:
    """The cached manifest digest `reference` names in `repository`, and the tag if one."""
    if Digest.is_digest(reference):
        return str(Digest.parse(reference)), None
    tagged = await svc.cache.metadata.manifests.tag(repository, reference)
    if tagged is None:
        raise NotFound(
            f"{repository}:{reference} is not cached; pull it through the server or start a "
            "scan of it (POST /api/v1/scans), which fetches it"
        )
    return tagged.manifest.digest, reference


async def _platforms(svc: AdminServices, repository: str, digest: str) -> list[PlatformScan]:
    found = await platform_scans(svc.cache.metadata.manifests, _store(svc), repository, digest)
    if found is None:
        raise NotFound(f"the cache holds no manifest {digest} in {repository}")
    return found


def _document(
    repository: str,
    digest: str,
    tag: str | None,
    platforms: list[PlatformScan],
    severity: str | None = None,
) -> ScanFindings:
    document = findings_document(repository, digest, tag, platforms, severity)
    document["imageScanCompletedAt"] = iso_or_none(document["imageScanCompletedAt"])
    return ScanFindings.model_validate(document)


def _severity(request: web.Request) -> str | None:
    severity = text_parameter(request, "severity")
    if severity is None:
        return None
    if severity not in SEVERITIES:
        problem = f"one of {', '.join(SEVERITIES)}"
        raise Invalid(f"severity: {problem}, not {severity[:40]!r}", [("severity", problem)])
    return severity


def _image_parameters(request: web.Request) -> tuple[str, str]:
    repository = text_parameter(request, "repository", required=True)
    reference = text_parameter(request, "reference", required=True, max_length=200)
    assert repository is not None  # required
    assert reference is not None
    return repository, reference


async def start_scan(request: web.Request) -> web.Response:
    svc = services(request)
    body = await read_model(request, ScanInput)
    scanning = _scanning(svc)
    route = (await svc.rules.router()).resolve(body.repository)
    # Fetched through the cache when not cached yet, like a pull.
    answer = await svc.cache.manifests.get(route, body.reference, None)
    digest = answer.manifest.digest
    await scanning.service.request(route.repository, digest)
    tag = None if Digest.is_digest(body.reference) else body.reference
    platforms = await _platforms(svc, route.repository, digest)
    return reply(_document(route.repository, digest, tag, platforms), status=202)


async def get_findings(request: web.Request) -> web.Response:
    svc = services(request)
    repository, reference = _image_parameters(request)
    severity = _severity(request)
    digest, tag = await _resolve(svc, repository, reference)
    platforms = await _platforms(svc, repository, digest)
    return reply(_document(repository, digest, tag, platforms, severity))


async def get_sbom(request: web.Request) -> web.Response:
    svc = services(request)
    repository, reference = _image_parameters(request)
    wanted = text_parameter(request, "platform", max_length=64)
    digest, tag = await _resolve(svc, repository, reference)
    platforms = await _platforms(svc, repository, digest)
    if len(platforms) > 1:
        chosen = [p for p in platforms if p.name == wanted]
        if not chosen:
            names = ", ".join(p.name for p in platforms)
            raise Invalid(
                f"{repository}@{digest} is an index: say which platform's SBOM with "
                f"?platform= ({names})",
                [("platform", f"one of {names}")],
            )
        platforms = chosen
    platform = platforms[0]
    inventory = await _scanning(svc).service.inventory(repository, platform.digest)
    document = cyclonedx_json(
        inventory,
        repository=repository,
        digest=platform.digest,
        reference=f"{repository}:{tag}" if tag else None,
        platform=platform.name if platform.name != "unknown" else None,
    )
    return web.Response(text=document, content_type="application/json")


async def list_scan_summaries(request: web.Request) -> web.Response:
    """Per top-level image of a repository: its scan status and severity counts."""
    svc = services(request)
    repository = text_parameter(request, "repository", required=True)
    assert repository is not None  # required
    images = await svc.inventory.images(repository)
    if images is None:
        raise NotFound(f"the cache holds no repository {repository[:255]!r}")
    summaries = []
    for image in images:
        platforms = await _platforms(svc, repository, image.digest)
        summaries.append(
            ScanSummary(
                imageDigest=image.digest,
                status=overall_status(platforms),
                findingSeverityCounts=severity_counts(aggregate(platforms)),
            )
        )
    return reply(ScanSummaryList(images=summaries))


def _override(override: Override) -> GateOverride:
    return GateOverride(
        digest=override.digest, reason=override.reason, created_at=iso_time(override.created_at)
    )


async def list_gate_overrides(request: web.Request) -> web.Response:
    overrides = await _store(services(request)).overrides()
    return reply(GateOverrideList(overrides=[_override(o) for o in overrides]))


def _digest_parameter(request: web.Request) -> str:
    digest = request.match_info["digest"]
    if not re.fullmatch(DIGEST_PATTERN, digest):
        problem = "a manifest digest, sha256:<64 hex digits>"
        raise Invalid(f"digest: {problem}, not {digest[:80]!r}", [("digest", problem)])
    return digest


async def put_gate_override(request: web.Request) -> web.Response:
    svc = services(request)
    digest = _digest_parameter(request)
    body = await read_model(request, OverrideInput)
    return reply(_override(await _store(svc).override(digest, body.reason)))


async def delete_gate_override(request: web.Request) -> web.Response:
    digest = _digest_parameter(request)
    if not await _store(services(request)).remove_override(digest):
        raise NotFound(f"no gate override for {digest}")
    return no_content()
