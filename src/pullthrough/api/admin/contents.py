"""/repositories, /images, /tags: what the cache holds, read-only."""

from __future__ import annotations

from aiohttp import web

from pullthrough.api.admin.context import services
from pullthrough.api.admin.errors import NotFound
from pullthrough.api.admin.fields import iso_or_none, iso_time
from pullthrough.api.admin.models import (
    Image,
    ImageList,
    Repository,
    RepositoryList,
    Tag,
    TagList,
)
from pullthrough.api.admin.query import integer_parameter, text_parameter
from pullthrough.api.admin.replies import reply
from pullthrough.metadata.inventory import ImageSummary, RepositorySummary, TagSummary

MAX_LIMIT = 10_000


def _repository(summary: RepositorySummary) -> Repository:
    return Repository(
        name=summary.name,
        rule=summary.rule,
        created_at=iso_time(summary.created_at),
        image_count=summary.image_count,
        tag_count=summary.tag_count,
        size_bytes=summary.size_bytes,
        last_pulled_at=iso_or_none(summary.last_pulled_at),
        pull_count=summary.pull_count,
    )


def _image(summary: ImageSummary) -> Image:
    return Image(
        repository=summary.repository,
        digest=summary.digest,
        media_type=summary.media_type,
        size_bytes=summary.size_bytes,
        tags=list(summary.tags),
        platforms=list(summary.platforms),
        cached_at=iso_time(summary.cached_at),
        last_pulled_at=iso_or_none(summary.last_pulled_at),
        pull_count=summary.pull_count,
        rule=summary.rule,
    )


def _tag(summary: TagSummary) -> Tag:
    return Tag(name=summary.name, digest=summary.digest, updated_at=iso_time(summary.updated_at))


def _missing(name: str) -> NotFound:
    return NotFound(
        f"the cache holds no repository {name[:255]!r} (GET /api/v1/repositories lists them)"
    )


def _repository_parameter(request: web.Request) -> str:
    name = text_parameter(request, "repository", required=True)
    assert name is not None  # required
    return name


async def list_repositories(request: web.Request) -> web.Response:
    prefix = text_parameter(request, "prefix")
    limit = integer_parameter(request, "limit", 1, MAX_LIMIT)
    found = await services(request).inventory.repositories(prefix, limit)
    return reply(RepositoryList(repositories=[_repository(s) for s in found]))


async def get_repository(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    found = await services(request).inventory.repository(name)
    if found is None:
        raise _missing(name)
    return reply(_repository(found))


async def list_images(request: web.Request) -> web.Response:
    name = _repository_parameter(request)
    found = await services(request).inventory.images(name)
    if found is None:
        raise _missing(name)
    return reply(ImageList(images=[_image(s) for s in found]))


async def list_tags(request: web.Request) -> web.Response:
    name = _repository_parameter(request)
    found = await services(request).inventory.tags(name)
    if found is None:
        raise _missing(name)
    return reply(TagList(tags=[_tag(s) for s in found]))
