"""/registry-policy: the IAM-style document deciding who may pull, import and administer.
A change is answered once every worker decides by it (the ACCESS revision has propagated)."""

from __future__ import annotations

import json

from aiohttp import web

from pullthrough.access.registry_policy.document import PolicyDocument, PolicyError
from pullthrough.api.admin.body import read_document
from pullthrough.api.admin.context import services
from pullthrough.api.admin.errors import Invalid
from pullthrough.api.admin.fields import iso_or_none
from pullthrough.api.admin.models import RegistryPolicy
from pullthrough.api.admin.replies import no_content, reply
from pullthrough.metadata.revisions import propagated


async def _current(request: web.Request) -> RegistryPolicy:
    stored = await services(request).policy.policy()
    if stored is None:
        return RegistryPolicy(policy=None, updated_at=None)
    document, updated_at = stored
    return RegistryPolicy(policy=json.loads(document), updated_at=iso_or_none(updated_at))


async def get_policy(request: web.Request) -> web.Response:
    return reply(await _current(request))


async def put_policy(request: web.Request) -> web.Response:
    document = await read_document(request)
    try:
        policy = PolicyDocument.parse(document)
    except PolicyError as exc:
        field = "body" if exc.statement is None else f"Statement.{exc.statement}"
        raise Invalid(str(exc), [(field, exc.detail)]) from None
    await services(request).policy.put_policy(json.dumps(policy.to_json()))
    await propagated()
    return reply(await _current(request))


async def delete_policy(request: web.Request) -> web.Response:
    await services(request).policy.delete_policy()
    await propagated()
    return no_content()
