"""/rules: the pull-through rules, created, replaced and deleted while the server runs."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from pullthrough.api.admin.body import read_model
from pullthrough.api.admin.context import services
from pullthrough.api.admin.errors import Conflict, Invalid, NotFound, invalid_from
from pullthrough.api.admin.fields import iso_time
from pullthrough.api.admin.models import Rule, RuleInput, RuleList, RuleUpdate
from pullthrough.api.admin.replies import no_content, reply
from pullthrough.config import RuleConfig
from pullthrough.errors import NameInvalid
from pullthrough.metadata.rules import RuleConflict, StoredRule
from pullthrough.oci.names import validate_name


def render(stored: StoredRule, host: str) -> Rule:
    rule = stored.rule
    return Rule(
        prefix=rule.prefix,
        upstream=rule.upstream,
        default=rule.default,
        credential=rule.credential,
        mirror_of=None if rule.mirror_of is None else list(rule.mirror_of),
        tag_ttl=rule.tag_ttl,
        max_stale=rule.max_stale,
        negative_ttl=rule.negative_ttl,
        upstream_namespace=rule.upstream_namespace,
        implicit_namespace=rule.implicit_namespace,
        cache_prefix_url=f"{host}/{rule.prefix}",
        created_at=iso_time(stored.created_at),
        updated_at=iso_time(stored.updated_at),
    )


def _config(body: RuleInput | RuleUpdate, prefix: str) -> RuleConfig:
    settings = body.model_dump(exclude_unset=True)
    try:
        return RuleConfig.model_validate({**settings, "prefix": prefix})
    except ValidationError as exc:
        raise invalid_from(exc) from None


def _path_prefix(request: web.Request) -> str:
    prefix = request.match_info["prefix"]
    try:
        return validate_name(prefix)
    except NameInvalid as exc:
        raise Invalid(f"prefix: {exc.message}", [("prefix", exc.message)]) from None


def _missing(prefix: str) -> NotFound:
    return NotFound(f"no rule with prefix {prefix[:255]!r} (GET /api/v1/rules lists them)")


async def list_rules(request: web.Request) -> web.Response:
    stored = await services(request).rules.store.all()
    ordered = sorted(stored, key=lambda s: s.rule.prefix)
    return reply(RuleList(rules=[render(s, request.host) for s in ordered]))


async def create_rule(request: web.Request) -> web.Response:
    body = await read_model(request, RuleInput)
    book = services(request).rules
    try:
        stored = await book.store.create(_config(body, body.prefix))
    except RuleConflict as exc:
        raise Conflict(str(exc)) from None
    book.invalidate()
    return reply(render(stored, request.host), 201)


async def get_rule(request: web.Request) -> web.Response:
    prefix = request.match_info["prefix"]
    stored = await services(request).rules.store.get(prefix)
    if stored is None:
        raise _missing(prefix)
    return reply(render(stored, request.host))


async def put_rule(request: web.Request) -> web.Response:
    prefix = _path_prefix(request)
    body = await read_model(request, RuleUpdate)
    if body.prefix is not None and body.prefix != prefix:
        raise Invalid(
            f"prefix: the body says {body.prefix!r} but the path says {prefix!r}; a rule's "
            "prefix cannot change (create the new one, then delete the old)",
            [("prefix", "differs from the prefix in the path")],
        )
    book = services(request).rules
    try:
        stored, created = await book.store.put(_config(body, prefix))
    except RuleConflict as exc:
        raise Conflict(str(exc)) from None
    book.invalidate()
    return reply(render(stored, request.host), 201 if created else 200)


async def delete_rule(request: web.Request) -> web.Response:
    prefix = request.match_info["prefix"]
    book = services(request).rules
    if not await book.store.delete(prefix):
        raise _missing(prefix)
    book.invalidate()
    return no_content()
