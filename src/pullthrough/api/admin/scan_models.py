"""Bodies of the scan endpoints: a scan asked for, findings in the shape of ECR's
DescribeImageScanFindings (with the platforms each finding affects), an SBOM, gate overrides."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pullthrough.api.admin.fields import NullableTime, RepositoryName, Time
from pullthrough.api.admin.models import Input, Output

ScanStatus = Literal["PENDING", "IN_PROGRESS", "COMPLETE", "FAILED", "NOT_SCANNED"]
Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED"]
Reference = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^([A-Za-z0-9_][A-Za-z0-9._-]{0,127}|sha256:[a-f0-9]{64})$",
        description="A tag or a digest.",
    ),
]


class ScanInput(Input):
    repository: RepositoryName
    reference: Reference


class FindingAttribute(Output):
    key: str
    value: str


class ScanFinding(Output):
    name: str = Field(description="The advisory's ID (OSV: DSA-…, GHSA-…, CVE-…).")
    description: str
    uri: str
    severity: Severity
    platforms: list[str] = Field(description="The platforms of the image it affects.")
    package_name: str
    package_version: str
    fixed_in: str | None = Field(description="The first version that fixes it, if any.")
    attributes: list[FindingAttribute]


class ImageScanStatus(Output):
    status: ScanStatus
    description: str


class ImageId(Output):
    imageDigest: str
    imageTag: str | None


class PlatformScanStatus(Output):
    platform: str
    imageDigest: str
    status: ScanStatus
    findingSeverityCounts: dict[str, int]


class ImageScanFindings(Output):
    findings: list[ScanFinding]
    findingSeverityCounts: dict[str, int] = Field(
        description="Every finding by severity, whatever `severity` filtered."
    )


class ScanFindings(Output):
    repositoryName: str
    imageId: ImageId
    imageScanStatus: ImageScanStatus
    imageScanCompletedAt: NullableTime
    platforms: list[PlatformScanStatus]
    imageScanFindings: ImageScanFindings


class ScanSummary(Output):
    imageDigest: str
    status: ScanStatus
    findingSeverityCounts: dict[str, int]


class ScanSummaryList(Output):
    images: list[ScanSummary]


class SbomDocument(BaseModel):
    """A CycloneDX JSON document (only its head is described here)."""

    model_config = ConfigDict(extra="allow")

    bomFormat: Literal["CycloneDX"]
    specVersion: str


class OverrideInput(Input):
    reason: Annotated[str, Field(min_length=1, max_length=1024)]


class GateOverride(Output):
    digest: str
    reason: str
    created_at: Time


class GateOverrideList(Output):
    overrides: list[GateOverride]
