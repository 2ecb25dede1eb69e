"""ECR's scan actions over pullthrough's scanning: StartImageScan queues the scan the admin
API's POST /scans queues (fetching the image through the cache when it is not cached), and
DescribeImageScanFindings answers from the same results (scanning/results.py), aggregated over
an index's platforms, in ECR's shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pullthrough.api.ecr.call import Body, Call, Operation, Reply
from pullthrough.api.ecr.errors import AwsError, invalid_parameter
from pullthrough.api.ecr.shapes import member, page, text
from pullthrough.cache.scan_layers import CacheScanning
from pullthrough.errors import ManifestUnknown, NameInvalid, NameUnknown, RegistryError
from pullthrough.oci.digest import Digest
from pullthrough.scanning.results import (
    NOT_SCANNED,
    PlatformScan,
    findings_document,
    platform_scans,
)

# What ECR's finding carries; the rest of pullthrough's (platforms, package) is in attributes.
_FINDING_MEMBERS = ("name", "description", "uri", "severity", "attributes")


def _scanning(call: Call) -> CacheScanning:
    scanning = call.services.cache.scanning
    if scanning is None:
        raise AwsError("ValidationException", "scanning does not run in this server")
    return scanning


def _image_id(body: Body) -> tuple[str | None, str | None]:
    image_id = member(body, "imageId", dict, required=True) or {}
    digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
    if not isinstance(digest, str | None) or not isinstance(tag, str | None):
        raise invalid_parameter("Invalid parameter: imageDigest and imageTag are strings")
    if digest is None and tag is None:
        raise invalid_parameter("Invalid parameter: imageId needs imageDigest or imageTag")
    return digest, tag


def _image_not_found(call: Call, repository: str, digest: str | None, tag: str | None) -> AwsError:
    shown = f"imageDigest={digest}" if digest else f"imageTag={tag}"
    return AwsError(
        "ImageNotFoundException",
        f"The image with imageId {{{shown}}} does not exist within the repository with name "
        f"'{repository}' in the registry with id '{call.aws.account_id}'",
    )


async def _platforms(call: Call, repository: str, digest: str) -> list[PlatformScan] | None:
    store = _scanning(call).service.store
    return await platform_scans(call.services.cache.metadata.manifests, store, repository, digest)


def _id(digest: str, tag: str | None) -> Reply:
    return {"imageDigest": digest, **({"imageTag": tag} if tag else {})}


async def scan_summary(call: Call, repository: str, digest: str) -> Reply:
    """DescribeImages' `imageScanStatus` and `imageScanFindingsSummary` of an image scanned
    (or being scanned); nothing for one never scanned, or without scanning."""
    if call.services.cache.scanning is None:
        return {}
    platforms = await _platforms(call, repository, digest)
    if not platforms:
        return {}
    document = findings_document(repository, digest, None, platforms)
    status = document["imageScanStatus"]
    if status["status"] == NOT_SCANNED:
        return {}
    summary: Reply = {"imageScanStatus": status}
    if status["status"] == "COMPLETE":
        counts = document["imageScanFindings"]["findingSeverityCounts"]
        summary["imageScanFindingsSummary"] = {"findingSeverityCounts": counts}
        if document["imageScanCompletedAt"] is not None:
            completed = document["imageScanCompletedAt"]
            summary["imageScanFindingsSummary"]["imageScanCompletedAt"] = completed
    return summary


async def start_image_scan(call: Call, body: Body) -> Reply:
    repository = text(body, "repositoryName")
    digest, tag = _image_id(body)
    scanning = _scanning(call)
    cache = call.services.cache
    try:
        route = (await cache.rules.router()).resolve(repository)
        answer = await cache.manifests.get(route, digest or str(tag), None)
    except (NameInvalid, NameUnknown):
        raise AwsError(
            "RepositoryNotFoundException",
            f"The repository with name '{repository}' does not exist in the registry with id "
            f"'{call.aws.account_id}'",
        ) from None
    except ManifestUnknown:
        raise _image_not_found(call, repository, digest, tag) from None
    except RegistryError as exc:
        raise AwsError("ValidationException", exc.message) from None
    found = answer.manifest.digest
    await scanning.service.request(route.repository, found)
    platforms = await _platforms(call, route.repository, found) or []
    document = findings_document(route.repository, found, tag, platforms)
    status = document["imageScanStatus"]
    if status["status"] == NOT_SCANNED:  # just queued
        status = {"status": "PENDING", "description": "The image is queued for scanning."}
    return {
        "registryId": call.aws.account_id,
        "repositoryName": route.repository,
        "imageId": _id(found, tag),
        "imageScanStatus": status,
    }


async def describe_image_scan_findings(call: Call, body: Body) -> Reply:
    repository = text(body, "repositoryName")
    digest, tag = _image_id(body)
    if digest is None:
        tagged = await call.services.cache.metadata.manifests.tag(repository, str(tag))
        if tagged is None:
            raise _image_not_found(call, repository, digest, tag)
        digest = tagged.manifest.digest
    elif not Digest.is_digest(digest):
        raise invalid_parameter(f"Invalid parameter: {digest[:100]!r} is not a digest")
    platforms = await _platforms(call, repository, digest)
    if platforms is None:
        raise _image_not_found(call, repository, digest, tag)
    document = findings_document(repository, digest, tag, platforms)
    if document["imageScanStatus"]["status"] == NOT_SCANNED:
        raise AwsError(
            "ScanNotFoundException",
            f"Image scan does not exist for the image with '{{imageDigest:{digest}}}' in the "
            f"repository with name '{repository}' in the registry with id "
            f"'{call.aws.account_id}' (StartImageScan starts one)",
        )
    found = document["imageScanFindings"]
    findings: list[Any] = [{k: f[k] for k in _FINDING_MEMBERS if k in f} for f in found["findings"]]
    chunk, next_token = page(findings, body)
    scan_findings: Reply = {
        "findingSeverityCounts": found["findingSeverityCounts"],
        "findings": chunk,
    }
    if document["imageScanCompletedAt"] is not None:
        scan_findings["imageScanCompletedAt"] = document["imageScanCompletedAt"]
    reply: Reply = {
        "registryId": call.aws.account_id,
        "repositoryName": repository,
        "imageId": _id(digest, tag),
        "imageScanStatus": document["imageScanStatus"],
        "imageScanFindings": scan_findings,
    }
    if next_token:
        reply["nextToken"] = next_token
    return reply


OPERATIONS: Mapping[str, Operation] = {
    "StartImageScan": Operation(start_image_scan, per_repository=True),
    "DescribeImageScanFindings": Operation(describe_image_scan_findings, per_repository=True),
}
