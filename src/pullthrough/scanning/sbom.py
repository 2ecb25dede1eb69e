"""An image's software bill of materials: its `Inventory` as CycloneDX 1.6 JSON, written with
cyclonedx-python-lib. The image is the metadata component (its reference, its digest, a
`pkg:oci` package URL); the distribution is an operating-system component; every package is a
library component with its package URL, version, and as properties the layer and file that
listed it and its source package. `spdx_json` gives the same as an SPDX 2.3 JSON document.

Import this module where an SBOM is asked for only: the library takes a while to load.
"""

from __future__ import annotations

import datetime
import json
import uuid
from importlib.metadata import PackageNotFoundError, version

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from pullthrough.scanning.model import Inventory, Package

MEDIA_TYPE = "application/vnd.cyclonedx+json"
SPDX_MEDIA_TYPE = "application/spdx+json"
_PROPERTY = "pullthrough:"


def cyclonedx_json(
    inventory: Inventory,
    *,
    repository: str,
    digest: str,
    reference: str | None = None,
    platform: str | None = None,
    created: datetime.datetime | None = None,
) -> str:
    """The CycloneDX JSON document of one platform image.

    `repository` is the image's name in the cache (`docker-hub/library/nginx`), `digest` its
    manifest digest, `reference` how it was asked for (`…:1.27`; the name and digest otherwise),
    `platform` e.g. `linux/arm64`."""
    image_properties = [Property(name=f"{_PROPERTY}image:digest", value=digest)]
    if platform:
        image_properties.append(Property(name=f"{_PROPERTY}image:platform", value=platform))
    image = Component(
        type=ComponentType.CONTAINER,
        name=reference or f"{repository}@{digest}",
        version=digest,
        bom_ref=f"image:{digest}",
        purl=_oci_purl(repository, digest, platform),
        properties=image_properties,
    )
    components = [_component(index, package) for index, package in enumerate(inventory.packages)]
    if inventory.distro is not None:
        components.append(
            Component(
                type=ComponentType.OPERATING_SYSTEM,
                name=inventory.distro.id,
                version=inventory.distro.version_id or None,
                description=inventory.distro.pretty_name or None,
                bom_ref=f"os:{inventory.distro.id}",
            )
        )
    bom = Bom(
        serial_number=uuid.uuid4(),
        metadata=BomMetaData(
            component=image,
            tools=ToolRepository(components=[_tool()]),
            timestamp=created or datetime.datetime.now(datetime.UTC),
            properties=[Property(name=f"{_PROPERTY}skipped", value=s) for s in inventory.skipped],
        ),
        components=components,
    )
    # The image holds every component directly: there is no package-to-package graph here.
    bom.register_dependency(image, components)
    return JsonV1Dot6(bom).output_as_string(indent=2)


def _component(index: int, package: Package) -> Component:
    properties = [
        Property(name=f"{_PROPERTY}ecosystem", value=package.ecosystem),
        Property(name=f"{_PROPERTY}layer", value=package.layer),
        Property(name=f"{_PROPERTY}path", value=package.path),
    ]
    if package.source_name is not None:
        properties.append(Property(name=f"{_PROPERTY}source:name", value=package.source_name))
    if package.source_version is not None:
        properties.append(Property(name=f"{_PROPERTY}source:version", value=package.source_version))
    return Component(
        type=ComponentType.LIBRARY,
        name=package.name,
        version=package.version,
        purl=PackageURL.from_string(package.purl),
        # Unique within the document: one package can be listed by two files.
        bom_ref=f"{index}:{package.purl}",
        properties=properties,
    )


def _oci_purl(repository: str, digest: str, platform: str | None) -> PackageURL:
    qualifiers = {"repository_url": repository}
    if platform:
        qualifiers["arch"] = platform.split("/")[1] if "/" in platform else platform
    name = repository.rsplit("/", 1)[-1]
    return PackageURL(type="oci", name=name, version=digest, qualifiers=qualifiers)


def _tool() -> Component:
    try:
        release = version("pullthrough")
    except PackageNotFoundError:
        release = None
    return Component(type=ComponentType.APPLICATION, name="pullthrough", version=release)


def spdx_json(
    inventory: Inventory,
    *,
    repository: str,
    digest: str,
    reference: str | None = None,
    platform: str | None = None,
    created: datetime.datetime | None = None,
) -> str:
    """The SPDX 2.3 JSON document of one platform image: the image as the described package
    (purpose CONTAINER), which CONTAINS every package, each with its `purl` external reference."""
    when = (created or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    name = reference or f"{repository}@{digest}"
    image = {
        "SPDXID": "SPDXRef-Image",
        "name": name,
        "versionInfo": digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "externalRefs": [_purl_ref(_oci_purl(repository, digest, platform).to_string())],
    }
    packages: list[dict[str, object]] = [image]
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": "SPDXRef-Image",
        }
    ]
    for index, package in enumerate(inventory.packages):
        spdx_id = f"SPDXRef-Package-{index}"
        entry: dict[str, object] = {
            "SPDXID": spdx_id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "externalRefs": [_purl_ref(package.purl)],
            "comment": f"listed by {package.path} in layer {package.layer}",
        }
        if package.source_name is not None:
            entry["sourceInfo"] = (
                f"built from source package {package.source_name} {package.source_version or ''}"
            ).strip()
        packages.append(entry)
        relationships.append(
            {
                "spdxElementId": "SPDXRef-Image",
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": spdx_id,
            }
        )
    creation_info: dict[str, object] = {
        "created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "creators": [f"Tool: pullthrough-{_tool().version or 'unknown'}"],
    }
    if inventory.skipped:
        creation_info["comment"] = "; ".join(f"not read: {s}" for s in inventory.skipped)
    document = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"https://pullthrough.invalid/spdx/{digest}/{uuid.uuid4()}",
        "creationInfo": creation_info,
        "packages": packages,
        "relationships": relationships,
    }
    return json.dumps(document, indent=2)


def _purl_ref(purl: str) -> dict[str, str]:
    return {
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": purl,
    }
