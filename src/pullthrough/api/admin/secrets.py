"""/secrets: upstream credentials, write-only. Names and times come back, values never do;
/secret-checks says whether a stored value equals a candidate, and nothing more."""

from __future__ import annotations

from aiohttp import web

from pullthrough.access.secrets import (
    SecretError,
    SecretListing,
    SecretValueInvalid,
    validate_secret_name,
)
from pullthrough.api.admin.body import read_model
from pullthrough.api.admin.context import services
from pullthrough.api.admin.errors import Conflict, Invalid, NotFound
from pullthrough.api.admin.fields import iso_time
from pullthrough.api.admin.models import (
    Secret,
    SecretCheck,
    SecretCheckResult,
    SecretList,
    SecretValue,
)
from pullthrough.api.admin.replies import no_content, reply
from pullthrough.upstream.credentials import Credential


def _render(listing: SecretListing) -> Secret:
    return Secret(
        name=listing.name,
        created_at=iso_time(listing.created_at),
        updated_at=iso_time(listing.updated_at),
    )


def _missing(name: str) -> NotFound:
    return NotFound(f"no secret named {name[:255]!r} (GET /api/v1/secrets lists them)")


async def _listing(request: web.Request, name: str) -> SecretListing | None:
    listings = await services(request).secrets.list()
    return next((listing for listing in listings if listing.name == name), None)


async def list_secrets(request: web.Request) -> web.Response:
    listings = await services(request).secrets.list()
    return reply(SecretList(secrets=[_render(listing) for listing in listings]))


async def get_secret(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    listing = await _listing(request, name)
    if listing is None:
        raise _missing(name)
    return reply(_render(listing))


async def put_secret(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        validate_secret_name(name)
    except SecretValueInvalid as exc:
        raise Invalid(f"name: {exc}", [("name", str(exc))]) from None
    body = await read_model(request, SecretValue)
    try:
        created = await services(request).secrets.put(name, Credential(body.username, body.token))
    except SecretError as exc:  # the key cannot be read or created: the operator must act
        raise Conflict(f"the secret store cannot be used: {exc}") from None
    listing = await _listing(request, name)
    if listing is None:  # deleted again in the meantime
        raise _missing(name)
    return reply(_render(listing), 201 if created else 200)


async def delete_secret(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not await services(request).secrets.delete(name):
        raise _missing(name)
    return no_content()


async def check_secret(request: web.Request) -> web.Response:
    body = await read_model(request, SecretCheck)
    try:
        matches = await services(request).secrets.matches(
            body.name, Credential(body.username, body.token)
        )
    except SecretError as exc:  # stored under another key, or no key: says which, no value
        raise Conflict(str(exc)) from None
    if matches is None:
        raise _missing(body.name)
    return reply(SecretCheckResult(name=body.name, matches=matches))
