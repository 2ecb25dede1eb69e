"""/rules: the pull-through rules, created, replaced and deleted while the server runs, and
checked against their upstream."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from pullthrough.access.rule_credentials import SecretMissing
from pullthrough.access.secrets import SecretError
from pullthrough.api.admin.body import read_model
from pullthrough.api.admin.context import services
from pullthrough.api.admin.errors import Conflict, Invalid, NotFound, invalid_from
from pullthrough.api.admin.fields import iso_time
from pullthrough.api.admin.models import Rule, RuleCheckResult, RuleInput, RuleList, RuleUpdate
from pullthrough.api.admin.query import text_parameter
from pullthrough.api.admin.replies import no_content, reply
from pullthrough.cache.rule_check import ImageToCheck, check_rule
from pullthrough.config import RuleConfig
from pullthrough.errors import NameInvalid, RegistryError
from pullthrough.metadata.rules import RuleConflict, StoredRule
from pullthrough.oci.names import validate_name

# `name:tag` or `name@sha256:<64 hex>` under the rule's prefix.
IMAGE_MAX_LENGTH = 400


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
        eager_fill=rule.eager_fill,
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


async def _require_secret(request: web.Request, rule: RuleConfig) -> None:
    """A rule may name only a secret the server has: otherwise every pull through it fails."""
    try:
        await services(request).cache.upstreams.credential_now(rule)
    except SecretMissing as exc:
        raise Invalid(
            f"credential: {exc}; then create the rule again",
            [("credential", f"no secret named {exc.name!r}")],
        ) from None
    except SecretError:
        pass  # it is there; `pullthrough rules check` says whether it can be opened


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
    config = _config(body, body.prefix)
    await _require_secret(request, config)
    try:
        stored = await book.store.create(config)
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
    config = _config(body, prefix)
    await _require_secret(request, config)
    try:
        stored, created = await book.store.put(config)
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


async def check_rule_upstream(request: web.Request) -> web.Response:
    prefix = request.match_info["prefix"]
    stored = await services(request).rules.store.get(prefix)
    if stored is None:
        raise _missing(prefix)
    rule = stored.rule
    image_text = text_parameter(request, "image", max_length=IMAGE_MAX_LENGTH)
    image = None
    if image_text is not None:
        try:
            image = ImageToCheck.parse(rule, image_text)
        except RegistryError as exc:
            raise Invalid(f"image: {exc.message}", [("image", exc.message)]) from None
        except ValueError as exc:
            raise Invalid(f"image: {exc}", [("image", str(exc))]) from None
    check = await check_rule(services(request).cache.upstreams, rule, image)
    return reply(
        RuleCheckResult(
            prefix=rule.prefix,
            upstream=rule.upstream,
            credential=rule.credential,
            image=image_text,
            ok=check.ok,
            result=check.result,
            message=check.message,
        )
    )
