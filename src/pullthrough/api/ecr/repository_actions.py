"""ECR's per-repository actions over what the cache holds: repositories, images and tags (the
admin API's inventory), manifests through the cache's own pull (BatchGetImage fetches a missing
one upstream, as ECR's pull-through cache does), layers, and lifecycle policies with their
preview (the lifecycle package's parser and evaluation)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pullthrough.access.import_check import ImportCheck, import_anything
from pullthrough.api.ecr.call import Body, Call, Operation, Reply
from pullthrough.api.ecr.errors import AwsError, invalid_parameter
from pullthrough.api.ecr.scan_actions import scan_summary
from pullthrough.api.ecr.shapes import member, page, repository_arn, text, texts
from pullthrough.errors import (
    Denied,
    DigestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    RegistryError,
)
from pullthrough.lifecycle.lifecycle_policy import LifecyclePolicy, LifecyclePolicyError
from pullthrough.metadata.aws_keys import LifecyclePreviews
from pullthrough.metadata.inventory import ImageSummary, RepositorySummary
from pullthrough.metadata.space import SpaceStore
from pullthrough.oci.digest import Digest


def _missing_repository(call: Call, name: str) -> AwsError:
    return AwsError(
        "RepositoryNotFoundException",
        f"The repository with name '{name[:255]}' does not exist in the registry with id "
        f"'{call.aws.account_id}' (the cache creates it on its first pull)",
    )


async def _repository(call: Call, name: str) -> RepositorySummary:
    found = await call.services.inventory.repository(name)
    if found is None:
        raise _missing_repository(call, name)
    return found


async def _images(call: Call, name: str) -> list[ImageSummary]:
    found = await call.services.inventory.images(name)
    if found is None:
        raise _missing_repository(call, name)
    return found


def _paged(reply: Reply, key: str, items: list[Any], body: Body) -> Reply:
    chunk, next_token = page(items, body)
    reply[key] = chunk
    if next_token:
        reply["nextToken"] = next_token
    return reply


# -- repositories and images ------------------------------------------------------------------


async def describe_repositories(call: Call, body: Body) -> Reply:
    names = texts(body, "repositoryNames")
    if names is None:
        summaries = await call.services.inventory.repositories(None, None)
    else:
        summaries = [await _repository(call, name) for name in names]
    repositories = []
    for summary in summaries:
        settings = await call.services.templates.settings(summary.name)
        repositories.append(
            {
                "repositoryArn": repository_arn(call.aws, summary.name),
                "registryId": call.aws.account_id,
                "repositoryName": summary.name,
                "repositoryUri": f"{call.host}/{summary.name}",
                "createdAt": summary.created_at,
                "imageTagMutability": "MUTABLE",
                "imageScanningConfiguration": {
                    "scanOnPush": bool(settings and settings.scan_on_pull)
                },
                "encryptionConfiguration": {"encryptionType": "AES256"},
            }
        )
    return _paged({}, "repositories", repositories, body)


def _image_ids(body: Body, *, required: bool) -> list[tuple[str | None, str | None]]:
    ids = member(body, "imageIds", list, required=required) or []
    wanted: list[tuple[str | None, str | None]] = []
    for entry in ids:
        if not isinstance(entry, dict):
            raise invalid_parameter("Invalid parameter: 'imageIds' holds objects")
        digest, tag = entry.get("imageDigest"), entry.get("imageTag")
        if not isinstance(digest, str | None) or not isinstance(tag, str | None):
            raise invalid_parameter("Invalid parameter: imageDigest and imageTag are strings")
        wanted.append((digest, tag))
    return wanted


def _matches(image: ImageSummary, digest: str | None, tag: str | None) -> bool:
    return (digest is None or image.digest == digest) and (tag is None or tag in image.tags)


def _image_detail(call: Call, image: ImageSummary) -> Reply:
    detail: Reply = {
        "registryId": call.aws.account_id,
        "repositoryName": image.repository,
        "imageDigest": image.digest,
        "imageSizeInBytes": image.size_bytes,
        "imagePushedAt": image.cached_at,  # when the cache stored it: a cache's "push"
        "imageManifestMediaType": image.media_type,
        "imageStatus": "ACTIVE",
    }
    if image.tags:
        detail["imageTags"] = list(image.tags)
    if image.last_pulled_at is not None:
        detail["lastRecordedPullTime"] = image.last_pulled_at
    return detail


def _tag_status(body: Body) -> str:
    filter_ = member(body, "filter", dict) or {}
    status = filter_.get("tagStatus", "ANY")
    if status not in ("TAGGED", "UNTAGGED", "ANY"):
        raise invalid_parameter("Invalid parameter: filter.tagStatus is TAGGED, UNTAGGED or ANY")
    return str(status)


def _by_status(images: list[ImageSummary], status: str) -> list[ImageSummary]:
    if status == "TAGGED":
        return [i for i in images if i.tags]
    if status == "UNTAGGED":
        return [i for i in images if not i.tags]
    return images


async def describe_images(call: Call, body: Body) -> Reply:
    name = text(body, "repositoryName")
    images = _by_status(await _images(call, name), _tag_status(body))
    wanted = _image_ids(body, required=False)
    if wanted:
        chosen: list[ImageSummary] = []
        for digest, tag in wanted:
            found = [i for i in images if _matches(i, digest, tag)]
            if not found:
                shown = f"imageDigest={digest}" if digest else f"imageTag={tag}"
                raise AwsError(
                    "ImageNotFoundException",
                    f"The image with imageId {{{shown}}} does not exist within the repository "
                    f"with name '{name}' in the registry with id '{call.aws.account_id}'",
                )
            chosen.extend(i for i in found if i not in chosen)
        images = chosen
    reply = _paged({}, "imageDetails", images, body)
    reply["imageDetails"] = [
        {**_image_detail(call, i), **await scan_summary(call, name, i.digest)}
        for i in reply["imageDetails"]
    ]
    return reply


async def list_images(call: Call, body: Body) -> Reply:
    name = text(body, "repositoryName")
    ids: list[Reply] = []
    for image in _by_status(await _images(call, name), _tag_status(body)):
        if image.tags:
            ids.extend({"imageDigest": image.digest, "imageTag": tag} for tag in image.tags)
        else:
            ids.append({"imageDigest": image.digest})
    return _paged({}, "imageIds", ids, body)


async def _may_import(call: Call, repository: str) -> ImportCheck:
    if call.access is None:
        return import_anything
    return await call.access.pull_check(call.principal, repository)


async def batch_get_image(call: Call, body: Body) -> Reply:
    name = text(body, "repositoryName")
    cache = call.services.cache
    try:
        route = (await cache.rules.router()).resolve(name)
    except (NameInvalid, NameUnknown):
        raise _missing_repository(call, name) from None
    accepted_types = texts(body, "acceptedMediaTypes")
    accepted = frozenset(accepted_types) if accepted_types else None
    may_import = await _may_import(call, route.repository)
    images: list[Reply] = []
    failures: list[Reply] = []
    for digest, tag in _image_ids(body, required=True):
        image_id = {k: v for k, v in (("imageDigest", digest), ("imageTag", tag)) if v}
        if digest is None and tag is None:
            failures.append(
                {
                    "imageId": {},
                    "failureCode": "MissingDigestAndTag",
                    "failureReason": "give imageDigest or imageTag",
                }
            )
            continue
        try:
            answer = await cache.manifests.pull(
                route, digest or str(tag), accepted, may_import, with_body=True
            )
        except DigestInvalid as exc:
            failures.append(_failure(image_id, "InvalidImageDigest", exc.message))
            continue
        except ManifestUnknown as exc:
            failures.append(_failure(image_id, "ImageNotFound", exc.message))
            continue
        except Denied as exc:
            raise AwsError("AccessDeniedException", exc.message) from None
        except RegistryError as exc:
            raise AwsError("UnableToGetUpstreamImageException", exc.message) from None
        manifest = answer.manifest
        if digest is not None and tag is not None and manifest.digest != digest:
            failures.append(
                _failure(image_id, "ImageTagDoesNotMatchDigest", f"{tag} is {manifest.digest}")
            )
            continue
        images.append(
            {
                "registryId": call.aws.account_id,
                "repositoryName": name,
                "imageId": {**image_id, "imageDigest": manifest.digest},
                "imageManifest": manifest.content.decode("utf-8"),
                "imageManifestMediaType": manifest.media_type,
            }
        )
    return {"images": images, "failures": failures}


def _failure(image_id: Reply, code: str, reason: str) -> Reply:
    return {"imageId": image_id, "failureCode": code, "failureReason": reason}


# -- layers -----------------------------------------------------------------------------------


async def _layer(call: Call, name: str, digest: str) -> int | None:
    """The layer's size when `name` may serve it from the cache; None when it cannot."""
    size, linked = await call.services.cache.metadata.blobs.for_repository(name, digest)
    return size if size is not None and linked else None


async def batch_check_layer_availability(call: Call, body: Body) -> Reply:
    name = text(body, "repositoryName")
    await _repository(call, name)
    layers: list[Reply] = []
    failures: list[Reply] = []
    for digest in texts(body, "layerDigests") or []:
        if not Digest.is_digest(digest):
            failures.append(
                {
                    "layerDigest": digest,
                    "failureCode": "InvalidLayerDigest",
                    "failureReason": "not a digest (sha256:<64 hex>)",
                }
            )
            continue
        size = await _layer(call, name, digest)
        layer: Reply = {
            "layerDigest": digest,
            "layerAvailability": "UNAVAILABLE" if size is None else "AVAILABLE",
        }
        if size is not None:
            layer["layerSize"] = size
        layers.append(layer)
    return {"layers": layers, "failures": failures}


async def get_download_url_for_layer(call: Call, body: Body) -> Reply:
    name = text(body, "repositoryName")
    digest = text(body, "layerDigest")
    await _repository(call, name)
    if not Digest.is_digest(digest) or await _layer(call, name, digest) is None:
        raise AwsError(
            "LayersNotFoundException",
            f"The layer {digest[:100]!r} is not cached in repository '{name}': pull its image "
            "first",
        )
    # The registry's own blob URL: a GET with the registry login (get-login-password) streams
    # it, with Range support.
    return {"downloadUrl": f"{call.origin}/v2/{name}/blobs/{digest}", "layerDigest": digest}


# -- lifecycle policies -----------------------------------------------------------------------


def _policy(text_: str) -> str:
    try:
        LifecyclePolicy.parse(text_)
    except LifecyclePolicyError as exc:
        raise AwsError(
            "InvalidParameterException", f"Invalid parameter at 'LifecyclePolicyText': {exc}"
        ) from None
    return text_


async def _policy_of(call: Call, name: str) -> str:
    await _repository(call, name)
    settings = await call.services.templates.settings(name)
    if settings is None or not settings.lifecycle_policy:
        raise AwsError(
            "LifecyclePolicyNotFoundException",
            f"Lifecycle policy does not exist for the repository with name '{name}' in the "
            f"registry with id '{call.aws.account_id}'",
        )
    return settings.lifecycle_policy


async def put_lifecycle_policy(call: Call, body: Body) -> Reply:
    name = text(body, "repositoryName")
    policy = _policy(text(body, "lifecyclePolicyText"))
    if not await call.services.templates.set_lifecycle_policy(name, policy):
        raise _missing_repository(call, name)
    return {
        "registryId": call.aws.account_id,
        "repositoryName": name,
        "lifecyclePolicyText": policy,
    }


async def get_lifecycle_policy(call: Call, body: Body) -> Reply:
    name = text(body, "repositoryName")
    policy = await _policy_of(call, name)
    return {
        "registryId": call.aws.account_id,
        "repositoryName": name,
        "lifecyclePolicyText": policy,
    }


async def delete_lifecycle_policy(call: Call, body: Body) -> Reply:
    name = text(body, "repositoryName")
    policy = await _policy_of(call, name)
    await call.services.templates.set_lifecycle_policy(name, None)
    return {
        "registryId": call.aws.account_id,
        "repositoryName": name,
        "lifecyclePolicyText": policy,
    }


async def start_lifecycle_policy_preview(call: Call, body: Body) -> Reply:
    name = text(body, "repositoryName")
    given = member(body, "lifecyclePolicyText", str)
    policy = _policy(given) if given else await _policy_of(call, name)
    await _repository(call, name)
    await LifecyclePreviews(call.services.cache.metadata.engine).start(name, policy)
    return {
        "registryId": call.aws.account_id,
        "repositoryName": name,
        "lifecyclePolicyText": policy,
        # The preview is evaluated when it is read, so it is never behind the cache.
        "status": "COMPLETE",
    }


async def get_lifecycle_policy_preview(call: Call, body: Body) -> Reply:
    name = text(body, "repositoryName")
    await _repository(call, name)
    engine = call.services.cache.metadata.engine
    policy = await LifecyclePreviews(engine).policy(name)
    if policy is None:
        raise AwsError(
            "LifecyclePolicyPreviewNotFoundException",
            f"There is no dry run for the repository with name '{name}' in the registry with id "
            f"'{call.aws.account_id}': start one with StartLifecyclePolicyPreview",
        )
    expiries = LifecyclePolicy.parse(policy).evaluate(
        await SpaceStore(engine).images(name), time.time()
    )
    wanted = _image_ids(body, required=False)
    if wanted:
        expiries = [
            e
            for e in expiries
            if any(
                (d is None or e.image.digest == d) and (t is None or t in e.image.tags)
                for d, t in wanted
            )
        ]
    results = [
        {
            "imageTags": list(e.image.tags),
            "imageDigest": e.image.digest,
            "imagePushedAt": e.image.cached_at,
            "action": {"type": "EXPIRE"},
            "appliedRulePriority": e.rule_priority,
        }
        for e in expiries
    ]
    reply: Reply = {
        "registryId": call.aws.account_id,
        "repositoryName": name,
        "lifecyclePolicyText": policy,
        "status": "COMPLETE",
        "summary": {"expiringImageTotalCount": len(results)},
    }
    return _paged(reply, "previewResults", results, body)


OPERATIONS: Mapping[str, Operation] = {
    "DescribeRepositories": Operation(describe_repositories),
    "DescribeImages": Operation(describe_images, per_repository=True),
    "ListImages": Operation(list_images, per_repository=True),
    "BatchGetImage": Operation(batch_get_image, per_repository=True),
    "BatchCheckLayerAvailability": Operation(batch_check_layer_availability, per_repository=True),
    "GetDownloadUrlForLayer": Operation(get_download_url_for_layer, per_repository=True),
    "PutLifecyclePolicy": Operation(put_lifecycle_policy, per_repository=True),
    "GetLifecyclePolicy": Operation(get_lifecycle_policy, per_repository=True),
    "DeleteLifecyclePolicy": Operation(delete_lifecycle_policy, per_repository=True),
    "StartLifecyclePolicyPreview": Operation(start_lifecycle_policy_preview, per_repository=True),
    "GetLifecyclePolicyPreview": Operation(get_lifecycle_policy_preview, per_repository=True),
}
