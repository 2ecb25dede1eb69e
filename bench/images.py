"""The generated images the benchmark pulls, pushed once to the upstream registry.

Layer content is seeded random bytes in an uncompressed tar (`tests.rig.oci_build`), so the same
sizes give the same digests on every run. A layer file lives in `bench/work/layers/` only until
it is pushed; after that the upstream's storage (`bench/work/upstream/`) is the only copy, and
`bench/work/images.json` remembers what was pushed so that a later run skips generation when the
upstream still has every blob.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from tests.rig.images import push_image
from tests.rig.oci_build import OCI_MANIFEST, ImageContent, image_config, large_tar_layer
from tests.rig.pusher import RegistryPusher

MiB = 1024 * 1024
TAG = "v1"
# Share of the cold-pull image's total in each of its five layers: uneven, like real images.
COLD_SHARES = (0.40, 0.24, 0.16, 0.12, 0.08)
SWARM_LAYERS = 8
# Relative sizes of the 24 layers of the realistic-upstream image: a few large, many small, in
# the mixed order a real image's layers come in.
SLOW_WEIGHTS = (30, 2, 18, 1, 12, 6, 1, 9, 3, 14, 2, 5, 1, 8, 4, 1, 10, 2, 3, 7, 1, 4, 2, 6)
_CHECK_TIMEOUT = 10.0


@dataclass(frozen=True)
class BlobRef:
    digest: str
    size: int


@dataclass(frozen=True)
class BenchImage:
    """One pushed image: `repo:TAG` upstream, its manifest, and its blobs (config first)."""

    repo: str
    manifest_digest: str
    media_type: str
    blobs: tuple[BlobRef, ...]

    @property
    def total_size(self) -> int:
        return sum(blob.size for blob in self.blobs)

    @property
    def largest(self) -> BlobRef:
        return max(self.blobs, key=lambda blob: blob.size)


@dataclass(frozen=True)
class ImageSpec:
    """What to generate: a repository name and the payload size of each layer."""

    repo: str
    seed: int
    layer_sizes: tuple[int, ...]


@dataclass(frozen=True)
class ImageSet:
    big: BenchImage  # one layer: warm throughput, cold fill and peak RSS
    small: BenchImage  # one smaller layer: peak RSS against blob size
    cold: BenchImage  # five layers: cold pull
    swarm: BenchImage  # many small layers: 50 concurrent cold pulls
    slow: BenchImage  # 24 mixed layers: cold pull from a slow upstream


def specs(
    big: int, small: int, cold_total: int, swarm_layer: int, slow_total: int
) -> dict[str, ImageSpec]:
    """The five images for these sizes; repository names carry the sizes so that the quick and
    the full set live side by side upstream."""
    cold_sizes = tuple(int(cold_total * share) for share in COLD_SHARES)
    slow_sizes = tuple(slow_total * w // sum(SLOW_WEIGHTS) for w in SLOW_WEIGHTS)
    return {
        "big": ImageSpec(f"bench/big-{big // MiB}m", 1001, (big,)),
        "small": ImageSpec(f"bench/small-{small // MiB}m", 1002, (small,)),
        "cold": ImageSpec(f"bench/cold-{cold_total // MiB}m", 2001, cold_sizes),
        "swarm": ImageSpec(
            f"bench/swarm-{SWARM_LAYERS}x{swarm_layer // MiB}m",
            3001,
            (swarm_layer,) * SWARM_LAYERS,
        ),
        "slow": ImageSpec(
            f"bench/slow-{len(SLOW_WEIGHTS)}x-{slow_total // MiB}m", 4001, slow_sizes
        ),
    }


def _still_upstream(url: str, image: BenchImage) -> bool:
    with httpx.Client(timeout=_CHECK_TIMEOUT) as client:
        manifest = client.head(
            f"{url}/v2/{image.repo}/manifests/{TAG}", headers={"Accept": image.media_type}
        )
        if manifest.headers.get("Docker-Content-Digest") != image.manifest_digest:
            return False
        for blob in image.blobs:
            found = client.head(f"{url}/v2/{image.repo}/blobs/{blob.digest}")
            if (
                found.status_code != 200
                or int(found.headers.get("Content-Length", -1)) != blob.size
            ):
                return False
    return True


def _generate_and_push(pusher: RegistryPusher, spec: ImageSpec, layer_dir: Path) -> BenchImage:
    layer_dir.mkdir(parents=True, exist_ok=True)
    layers = []
    paths = []
    for index, size in enumerate(spec.layer_sizes):
        path = layer_dir / f"{spec.repo.replace('/', '_')}-{index}.tar"
        print(f"  generating {path.name} ({size // MiB} MiB)", flush=True)
        layers.append(large_tar_layer(path, spec.seed + index, size))
        paths.append(path)
    # Uncompressed layers: each diff_id is the layer digest itself.
    config = image_config([layer.digest for layer in layers], flavor="oci")
    content = ImageContent(config, tuple(layers))
    print(f"  pushing {spec.repo}:{TAG}", flush=True)
    pushed = push_image(pusher, spec.repo, TAG, content, flavor="oci")
    for path in paths:  # the upstream's storage is the copy from now on
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)
    return BenchImage(
        repo=spec.repo,
        manifest_digest=pushed.digest,
        media_type=OCI_MANIFEST,
        blobs=tuple(BlobRef(blob.digest, blob.size) for blob in content.blobs),
    )


def _load_cache(path: Path) -> dict[str, BenchImage]:
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {
        repo: BenchImage(
            repo=entry["repo"],
            manifest_digest=entry["manifest_digest"],
            media_type=entry["media_type"],
            blobs=tuple(BlobRef(**blob) for blob in entry["blobs"]),
        )
        for repo, entry in raw.items()
    }


def ensure_images(upstream_url: str, workdir: Path, wanted: dict[str, ImageSpec]) -> ImageSet:
    """Every wanted image present upstream: reused when it is, generated and pushed when not."""
    cache_path = workdir / "images.json"
    cache = _load_cache(cache_path)
    found: dict[str, BenchImage] = {}
    with RegistryPusher(upstream_url, timeout=600.0) as pusher:
        for role, spec in wanted.items():
            known = cache.get(spec.repo)
            if known is None or not _still_upstream(upstream_url, known):
                known = _generate_and_push(pusher, spec, workdir / "layers")
                cache[spec.repo] = known
                cache_path.write_text(
                    json.dumps({k: asdict(v) for k, v in cache.items()}, indent=2)
                )
            found[role] = known
    return ImageSet(**found)
