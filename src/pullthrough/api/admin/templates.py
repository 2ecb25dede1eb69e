"""/templates: repository creation templates, copied onto repositories the cache creates
afterwards (lifecycle policy, scan on pull)."""

from __future__ import annotations

import json
import re

from aiohttp import web

from pullthrough.api.admin.body import read_model
from pullthrough.api.admin.context import services
from pullthrough.api.admin.errors import Conflict, Invalid, NotFound
from pullthrough.api.admin.fields import TEMPLATE_PREFIX_PATTERN, iso_time
from pullthrough.api.admin.models import Template, TemplateInput, TemplateList, TemplateUpdate
from pullthrough.api.admin.replies import no_content, reply
from pullthrough.metadata.templates import CreationTemplate

_PREFIX = re.compile(TEMPLATE_PREFIX_PATTERN)


def _render(template: CreationTemplate) -> Template:
    policy = template.lifecycle_policy
    return Template(
        prefix=template.prefix,
        description=template.description,
        applied_for=list(template.applied_for),
        lifecycle_policy=None if policy is None else json.loads(policy),
        scan_on_pull=template.scan_on_pull,
        created_at=iso_time(template.created_at),
        updated_at=iso_time(template.updated_at),
    )


def _template(body: TemplateInput | TemplateUpdate, prefix: str) -> CreationTemplate:
    policy = body.lifecycle_policy
    return CreationTemplate(
        prefix=prefix,
        lifecycle_policy=None if policy is None else json.dumps(policy),
        scan_on_pull=body.scan_on_pull,
        description=body.description,
        applied_for=tuple(body.applied_for),
    )


async def _find(request: web.Request, prefix: str) -> CreationTemplate | None:
    templates = await services(request).templates.all()
    return next((t for t in templates if t.prefix == prefix), None)


async def _saved(request: web.Request, prefix: str) -> CreationTemplate:
    found = await _find(request, prefix)
    if found is None:  # deleted again in the meantime
        raise _missing(prefix)
    return found


def _missing(prefix: str) -> NotFound:
    return NotFound(f"no template for prefix {prefix[:255]!r} (GET /api/v1/templates lists them)")


async def list_templates(request: web.Request) -> web.Response:
    templates = await services(request).templates.all()
    return reply(TemplateList(templates=[_render(t) for t in templates]))


async def create_template(request: web.Request) -> web.Response:
    body = await read_model(request, TemplateInput)
    if await _find(request, body.prefix) is not None:
        raise Conflict(
            f"a template for prefix {body.prefix!r} exists: replace it (PUT) or delete it first"
        )
    await services(request).templates.put(_template(body, body.prefix))
    return reply(_render(await _saved(request, body.prefix)), 201)


async def get_template(request: web.Request) -> web.Response:
    prefix = request.match_info["prefix"]
    found = await _find(request, prefix)
    if found is None:
        raise _missing(prefix)
    return reply(_render(found))


async def put_template(request: web.Request) -> web.Response:
    prefix = request.match_info["prefix"]
    if len(prefix) > 255 or not _PREFIX.fullmatch(prefix):
        problem = "ROOT, or a repository name prefix such as docker-hub"
        raise Invalid(f"prefix: {problem}, not {prefix[:80]!r}", [("prefix", problem)])
    body = await read_model(request, TemplateUpdate)
    if body.prefix is not None and body.prefix != prefix:
        raise Invalid(
            f"prefix: the body says {body.prefix!r} but the path says {prefix!r}",
            [("prefix", "differs from the prefix in the path")],
        )
    existed = await _find(request, prefix) is not None
    await services(request).templates.put(_template(body, prefix))
    return reply(_render(await _saved(request, prefix)), 200 if existed else 201)


async def delete_template(request: web.Request) -> web.Response:
    prefix = request.match_info["prefix"]
    if not await services(request).templates.delete(prefix):
        raise _missing(prefix)
    return no_content()
