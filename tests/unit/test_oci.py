"""Digests, tags and manifest parsing."""

from __future__ import annotations

import json

import pytest

from pullthrough.errors import DigestInvalid, ManifestInvalid, TagInvalid
from pullthrough.oci import mediatypes
from pullthrough.oci.digest import Digest
from pullthrough.oci.manifest import parse_manifest
from pullthrough.oci.names import validate_tag

HEX = "a" * 64


def test_digest_round_trip() -> None:
    digest = Digest.parse(f"sha256:{HEX}")
    assert str(digest) == f"sha256:{HEX}"
    assert Digest.of(b"") == Digest.parse(
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(
    "text",
    ["sha256:abc", f"sha256:{HEX.upper()}", f"md5:{HEX}", HEX, f"sha256:{HEX}0", "sha256:", ":"],
)
def test_bad_digests(text: str) -> None:
    with pytest.raises(DigestInvalid):
        Digest.parse(text)


@pytest.mark.parametrize("tag", ["latest", "v1.2.3", "_x", "A" * 128])
def test_good_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".hidden", "-x", "a" * 129, "a b", "a+b"])
def test_bad_tags(tag: str) -> None:
    with pytest.raises(TagInvalid):
        validate_tag(tag)


def _descriptor(media_type: str, fill: str, size: int = 10) -> dict[str, object]:
    return {"mediaType": media_type, "digest": f"sha256:{fill * 64}", "size": size}


def test_image_manifest_lists_config_and_layers() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": _descriptor("application/vnd.oci.image.config.v1+json", "c"),
        "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", "1")],
        "subject": _descriptor(mediatypes.OCI_MANIFEST, "5"),
    }
    parsed = parse_manifest(json.dumps(doc).encode(), None)
    assert parsed.media_type == mediatypes.OCI_MANIFEST
    assert [d.digest[-1] for d in parsed.blobs] == ["c", "1"]
    assert parsed.subject is not None and parsed.subject.digest.endswith("5")
    assert parsed.artifact_type is None


def test_artifact_type_from_config_media_type() -> None:
    doc = {
        "schemaVersion": 2,
        "config": _descriptor("application/vnd.example+json", "c"),
        "layers": [],
    }
    parsed = parse_manifest(json.dumps(doc).encode(), mediatypes.OCI_MANIFEST)
    assert parsed.artifact_type == "application/vnd.example+json"


def test_index_lists_children() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [
            _descriptor(mediatypes.OCI_MANIFEST, "1"),
            _descriptor(mediatypes.OCI_MANIFEST, "2"),
        ],
    }
    parsed = parse_manifest(json.dumps(doc).encode(), f"{mediatypes.OCI_INDEX}; charset=utf-8")
    assert parsed.is_index
    assert len(parsed.children) == 2
    assert parsed.blobs == ()


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", json.dumps({"layers": [{"digest": "sha256:zz", "size": 1}]}).encode()],
)
def test_invalid_manifests(content: bytes) -> None:
    with pytest.raises(ManifestInvalid):
        parse_manifest(content, mediatypes.OCI_MANIFEST)


def test_accept_parsing() -> None:
    assert mediatypes.parse_accept(None) is None
    assert mediatypes.parse_accept("*/*") is None
    accepted = mediatypes.parse_accept(f"{mediatypes.OCI_MANIFEST}; q=0.5, {mediatypes.OCI_INDEX}")
    assert accepted == frozenset({mediatypes.OCI_MANIFEST, mediatypes.OCI_INDEX})
