"""The fixture images pushed upstream once per test session, and helpers to push more.

Repository names are part of the contract with the tests: `library/busybox`, `team/oci-app`,
`team/multi`, `team/multi-docker`, `team/many-layers`, `team/large`.

Freshness tests that re-point a tag must use a repository or tag of their own (`retag` on a
session fixture's tag would change what every later test sees).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

from tests.rig.oci_build import (
    OCI_EMPTY,
    Flavor,
    ImageContent,
    build_image,
    image_config,
    image_manifest,
    index_manifest,
    large_tar_layer,
)
from tests.rig.pusher import Blob, RegistryPusher, sha256_digest

__all__ = [
    "ARTIFACT_TYPE",
    "LARGE_FILE_SIZE",
    "Blob",
    "FixtureImages",
    "PushedImage",
    "RegistryPusher",
    "push_fixture_images",
    "push_image",
    "push_index",
    "retag",
]

ARTIFACT_TYPE = "application/vnd.example.sbom.v1"
SBOM_LAYER_TYPE = "application/vnd.example.sbom.v1+json"
LARGE_FILE_SIZE = 256 * 1024 * 1024
_LARGE_SEED = 256

# Distinct seeds for `retag` calls that don't name one, so each gives new content.
_retag_seeds = itertools.count(10_000)


@dataclass(frozen=True)
class PushedImage:
    """A manifest as pushed: its exact bytes, its digest, its blobs, and child manifests."""

    repo: str
    tag: str | None
    manifest: bytes
    digest: str
    media_type: str
    blobs: list[Blob] = field(default_factory=list)
    children: list[PushedImage] = field(default_factory=list)
    platform: dict[str, str] | None = None
    artifact_type: str | None = None

    @property
    def reference(self) -> str:
        """`repo:tag`, or `repo@digest` for a manifest pushed by digest."""
        return f"{self.repo}:{self.tag}" if self.tag else f"{self.repo}@{self.digest}"

    @property
    def by_digest(self) -> str:
        return f"{self.repo}@{self.digest}"

    def descriptor(self) -> dict[str, object]:
        """The descriptor an index (or a `subject` field) uses to point at this manifest."""
        descriptor: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.manifest),
        }
        if self.artifact_type is not None:
            descriptor["artifactType"] = self.artifact_type
        if self.platform is not None:
            descriptor["platform"] = self.platform
        return descriptor

    def manifest_digests(self) -> set[str]:
        """This manifest's digest and those of every child, recursively."""
        digests = {self.digest}
        for child in self.children:
            digests |= child.manifest_digests()
        return digests

    def blob_digests(self) -> set[str]:
        """Every config and layer digest reachable from this manifest."""
        digests = {blob.digest for blob in self.blobs}
        for child in self.children:
            digests |= child.blob_digests()
        return digests

    def all_digests(self) -> set[str]:
        """Every manifest and blob digest reachable: what a full copy must contain."""
        return self.manifest_digests() | self.blob_digests()

    def all_blobs(self) -> dict[str, Blob]:
        """Every reachable blob by digest."""
        blobs = {blob.digest: blob for blob in self.blobs}
        for child in self.children:
            blobs.update(child.all_blobs())
        return blobs

    def child(self, architecture: str) -> PushedImage:
        """The platform child of an index for one architecture."""
        for child in self.children:
            if child.platform and child.platform.get("architecture") == architecture:
                return child
        raise KeyError(f"{self.reference} has no {architecture} child")


@dataclass(frozen=True)
class FixtureImages:
    """The session's upstream images, one attribute per fixture."""

    busybox: PushedImage  # library/busybox:latest, Docker schema2, 2 layers
    oci_app: PushedImage  # team/oci-app:v1, OCI manifest, 2 layers
    multi: PushedImage  # team/multi:latest, OCI index: linux/amd64 + linux/arm64
    multi_docker: PushedImage  # team/multi-docker:latest, Docker manifest list, 2 platforms
    many_layers: PushedImage  # team/many-layers:v1, OCI manifest, 24 layers
    large: PushedImage  # team/large:v1, one uncompressed tar layer over 256 MiB
    artifact: PushedImage  # team/oci-app@sha256:…, an SBOM whose subject is oci_app
    referrers_tag: PushedImage  # team/oci-app:sha256-<oci_app hex>, the tag-schema fallback

    def all(self) -> list[PushedImage]:
        return [
            self.busybox,
            self.oci_app,
            self.multi,
            self.multi_docker,
            self.many_layers,
            self.large,
            self.artifact,
            self.referrers_tag,
        ]


def push_image(
    pusher: RegistryPusher,
    repo: str,
    reference: str | None,
    content: ImageContent,
    *,
    flavor: Flavor,
    platform: dict[str, str] | None = None,
    artifact_type: str | None = None,
    subject: dict[str, object] | None = None,
) -> PushedImage:
    """Push a single-platform image's blobs, then its manifest under `reference` (a tag), or by
    digest when `reference` is None."""
    for blob in content.blobs:
        pusher.push_blob(repo, blob)
    body, media_type = image_manifest(
        content.config,
        content.layers,
        flavor=flavor,
        artifact_type=artifact_type,
        subject=subject,
    )
    digest = pusher.push_manifest(repo, reference or sha256_digest(body), body, media_type)
    return PushedImage(
        repo,
        reference,
        body,
        digest,
        media_type,
        content.blobs,
        platform=platform,
        artifact_type=artifact_type,
    )


def push_index(
    pusher: RegistryPusher, repo: str, tag: str, children: list[PushedImage], *, flavor: Flavor
) -> PushedImage:
    """Push an OCI index or Docker manifest list over already-pushed child manifests."""
    body, media_type = index_manifest([child.descriptor() for child in children], flavor=flavor)
    digest = pusher.push_manifest(repo, tag, body, media_type)
    return PushedImage(repo, tag, body, digest, media_type, children=children)


def push_multi_platform(
    pusher: RegistryPusher, repo: str, tag: str, *, flavor: Flavor, seed: int
) -> PushedImage:
    """An index over linux/amd64 and linux/arm64 images, each with its own layers."""
    rng = random.Random(seed)
    children = []
    for architecture in ("amd64", "arm64"):
        content = build_image(
            rng, flavor=flavor, layer_count=2, architecture=architecture, label=architecture
        )
        platform = {"architecture": architecture, "os": "linux"}
        children.append(push_image(pusher, repo, None, content, flavor=flavor, platform=platform))
    return push_index(pusher, repo, tag, children, flavor=flavor)


def push_artifact(pusher: RegistryPusher, subject: PushedImage) -> tuple[PushedImage, PushedImage]:
    """An SBOM artifact referring to `subject`, pushed by digest, and the tag-schema fallback
    index (`sha256-<hex>`) that lists it, since distribution 2.8 has no referrers API.

    distribution 2.8 stores the manifest bytes as sent and only checks that config and layer
    blobs exist, so `artifactType`, the empty config and `subject` are all accepted as is.
    """
    empty_config = Blob.of(b"{}", OCI_EMPTY)
    sbom = b'{"spdxVersion": "SPDX-2.3", "name": "pullthrough-rig-sbom", "packages": []}\n'
    content = ImageContent(empty_config, (Blob.of(sbom, SBOM_LAYER_TYPE),))
    subject_descriptor = {
        "mediaType": subject.media_type,
        "digest": subject.digest,
        "size": len(subject.manifest),
    }
    artifact = push_image(
        pusher,
        subject.repo,
        None,
        content,
        flavor="oci",
        artifact_type=ARTIFACT_TYPE,
        subject=subject_descriptor,
    )
    fallback_tag = subject.digest.replace(":", "-")
    fallback = push_index(pusher, subject.repo, fallback_tag, [artifact], flavor="oci")
    return artifact, fallback


def push_large(pusher: RegistryPusher, workdir: Path) -> PushedImage:
    """team/large:v1: one uncompressed tar layer around a single 256 MiB random file. The
    layer file is kept in `workdir` and reused when it is already there."""
    layer = large_tar_layer(workdir / "large-layer.tar", _LARGE_SEED, LARGE_FILE_SIZE)
    # The diff_id is the layer digest itself: the layer is not compressed.
    config = image_config([layer.digest], flavor="oci")
    return push_image(pusher, "team/large", "v1", ImageContent(config, (layer,)), flavor="oci")


def retag(
    pusher: RegistryPusher,
    repo: str,
    tag: str,
    *,
    seed: int | None = None,
    flavor: Flavor = "oci",
    layer_count: int = 2,
) -> PushedImage:
    """Push a new image (new layer content) under `tag`, so the tag now points elsewhere."""
    rng = random.Random(next(_retag_seeds) if seed is None else seed)
    content = build_image(rng, flavor=flavor, layer_count=layer_count, label=f"retag-{tag}")
    return push_image(pusher, repo, tag, content, flavor=flavor)


def push_fixture_images(pusher: RegistryPusher, workdir: Path) -> FixtureImages:
    """Build and push the whole fixture set; `workdir` keeps the large layer file."""
    workdir.mkdir(parents=True, exist_ok=True)
    busybox = push_image(
        pusher,
        "library/busybox",
        "latest",
        build_image(random.Random(1), flavor="docker", layer_count=2, label="busybox"),
        flavor="docker",
    )
    oci_app = push_image(
        pusher,
        "team/oci-app",
        "v1",
        build_image(random.Random(2), flavor="oci", layer_count=2, label="oci-app"),
        flavor="oci",
    )
    multi = push_multi_platform(pusher, "team/multi", "latest", flavor="oci", seed=3)
    multi_docker = push_multi_platform(
        pusher, "team/multi-docker", "latest", flavor="docker", seed=4
    )
    many_layers = push_image(
        pusher,
        "team/many-layers",
        "v1",
        build_image(
            random.Random(5), flavor="oci", layer_count=24, layer_file_size=512, label="many"
        ),
        flavor="oci",
    )
    large = push_large(pusher, workdir)
    artifact, referrers_tag = push_artifact(pusher, oci_app)
    return FixtureImages(
        busybox=busybox,
        oci_app=oci_app,
        multi=multi,
        multi_docker=multi_docker,
        many_layers=many_layers,
        large=large,
        artifact=artifact,
        referrers_tag=referrers_tag,
    )
