"""The CycloneDX SBOM of a scanned image: valid against the CycloneDX 1.6 JSON schema (the
library's own validator, offline), every package with its package URL, the image as the
metadata component. Inventories come from the rig's real layers."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation import make_schemabased_validator

from pullthrough.metadata.layer_inventories import LayerInventoryStore
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.scanning.inventory import Layer, LayerInventories
from pullthrough.scanning.model import Distro, Inventory, Package
from pullthrough.scanning.sbom import cyclonedx_json, spdx_json
from tests.rig.pusher import Blob
from tests.rig.scan_images import ScanImage, build_scan_images

DIGEST = "sha256:" + "ab" * 32


class BlobSource:
    def __init__(self, blobs: list[Blob]) -> None:
        self._blobs = {blob.digest: blob for blob in blobs}

    async def layer(self, repository: str, digest: str) -> AsyncIterator[bytes]:
        yield self._blobs[digest].read()


async def _inventory(tmp_path: Path, image: ScanImage) -> Inventory:
    metadata = await MetadataStore.open(sqlite_url(tmp_path / "metadata.sqlite"))
    try:
        inventories = LayerInventories(
            BlobSource(list(image.layers)), LayerInventoryStore(metadata.engine)
        )
        layers = [Layer(blob.digest, blob.media_type) for blob in image.layers]
        return await inventories.image("scan/x", layers)
    finally:
        await metadata.close()


def _valid(document: str) -> None:
    validator = make_schemabased_validator(OutputFormat.JSON, SchemaVersion.V1_6)
    error = validator.validate_str(document)
    assert error is None, str(error)


@pytest.mark.parametrize("name", ["debian", "alpine", "rocky"])
async def test_the_sbom_validates_and_lists_every_package_with_its_purl(
    tmp_path: Path, name: str
) -> None:
    image: ScanImage = getattr(build_scan_images(tmp_path), name)
    inventory = await _inventory(tmp_path, image)
    document = cyclonedx_json(
        inventory, repository="hub/library/app", digest=DIGEST, platform="linux/amd64"
    )
    _valid(document)
    bom = json.loads(document)
    libraries = [c for c in bom["components"] if c["type"] == "library"]
    assert sorted((c["name"], c["version"], c["purl"]) for c in libraries) == sorted(
        (p.name, p.version, p.purl) for p in image.packages
    )
    layers = {blob.digest for blob in image.layers}
    for component in libraries:
        properties = {p["name"]: p["value"] for p in component["properties"]}
        assert properties["pullthrough:layer"] in layers
    (system,) = [c for c in bom["components"] if c["type"] == "operating-system"]
    assert (system["name"], system["version"]) == image.distro
    image_component = bom["metadata"]["component"]
    assert image_component["type"] == "container"
    assert image_component["version"] == DIGEST
    assert image_component["purl"].startswith("pkg:oci/app@sha256:")


def test_a_package_listed_twice_and_what_was_skipped_are_kept() -> None:
    package = Package("PyPI", "six", "1.16.0", "pkg:pypi/six@1.16.0", path="a/METADATA")
    inventory = Inventory(
        distro=Distro("debian", "12"),
        packages=(package, replace(package, path="b/METADATA")),
        skipped=("var/lib/rpm/Packages (layer x): an rpm Berkeley DB database",),
    )
    document = cyclonedx_json(inventory, repository="r", digest=DIGEST, reference="r:1")
    _valid(document)
    bom = json.loads(document)
    assert [c["purl"] for c in bom["components"] if c["type"] == "library"] == [
        "pkg:pypi/six@1.16.0"
    ] * 2
    assert bom["metadata"]["component"]["name"] == "r:1"
    assert bom["metadata"]["properties"] == [
        {"name": "pullthrough:skipped", "value": inventory.skipped[0]}
    ]


async def test_the_spdx_document_lists_every_package_with_its_purl(tmp_path: Path) -> None:
    images = build_scan_images(tmp_path)
    image, debian = images.rpm_legacy, images.debian
    inventory = await _inventory(tmp_path, debian)
    skipped = (await _inventory(tmp_path, image)).skipped
    document = json.loads(
        spdx_json(replace(inventory, skipped=skipped), repository="hub/app", digest=DIGEST)
    )
    assert (document["spdxVersion"], document["dataLicense"]) == ("SPDX-2.3", "CC0-1.0")
    described = [
        r["relatedSpdxElement"]
        for r in document["relationships"]
        if r["spdxElementId"] == "SPDXRef-DOCUMENT" and r["relationshipType"] == "DESCRIBES"
    ]
    assert described == ["SPDXRef-Image"]
    by_id = {p["SPDXID"]: p for p in document["packages"]}
    assert len(by_id) == len(document["packages"])  # identifiers are unique
    assert all(re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", spdx_id) for spdx_id in by_id)
    contained = [
        by_id[r["relatedSpdxElement"]]
        for r in document["relationships"]
        if r["spdxElementId"] == "SPDXRef-Image" and r["relationshipType"] == "CONTAINS"
    ]
    assert sorted(
        (p["name"], p["versionInfo"], p["externalRefs"][0]["referenceLocator"]) for p in contained
    ) == sorted((p.name, p.version, p.purl) for p in debian.packages)
    assert by_id["SPDXRef-Image"]["primaryPackagePurpose"] == "CONTAINER"
    assert "Berkeley DB" in document["creationInfo"]["comment"]
