"""A secret's name and value, checked without the store: `{"username": …, "accessToken": …}`,
the shape ECR's pull-through cache uses (`password` is accepted for `accessToken`). Light enough
for the command line, which checks a value before sending it to the server."""

from __future__ import annotations

import json
import re

from pullthrough.upstream.credentials import Credential

# AWS Secrets Manager's alphabet, so ECR-style names (`ecr-pullthroughcache/docker-hub`) fit.
_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,255}$")
_USERNAME = "username"
_TOKEN = "accessToken"  # noqa: S105 - a field name
_TOKEN_ALIAS = "password"  # noqa: S105 - a field name
_FIELDS = (_USERNAME, _TOKEN, _TOKEN_ALIAS)


class SecretError(Exception):
    """Something about a secret the operator must fix; the message says what, never a value."""


class SecretValueInvalid(SecretError):
    """A value that is not `{"username": …, "accessToken": …}`, or a malformed name."""


class SecretUnreadable(SecretError):
    """A stored secret that cannot be opened: no key, another key, or a tampered row."""


def validate_secret_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise SecretValueInvalid(
            f"{name[:80]!r} is not a secret name: use 1-255 letters, digits and / _ + = . @ - "
            "(e.g. pullthrough/docker-hub)"
        )
    return name


def credential_from_json(text: str | bytes) -> Credential:
    """The credential in a secret's JSON value. Errors name fields, never echo values."""
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise SecretValueInvalid(
            'the secret value is not JSON: give {"username": "…", "accessToken": "…"}'
        ) from None
    if not isinstance(document, dict):
        raise SecretValueInvalid(
            'the secret value must be a JSON object: {"username": "…", "accessToken": "…"}'
        )
    unknown = sorted(str(key) for key in document if key not in _FIELDS)
    if unknown:
        raise SecretValueInvalid(
            f"unknown field(s) {', '.join(repr(k[:40]) for k in unknown)} in the secret value; "
            f"it holds {_USERNAME!r} and {_TOKEN!r} (or {_TOKEN_ALIAS!r})"
        )
    if _TOKEN in document and _TOKEN_ALIAS in document:
        raise SecretValueInvalid(
            f"give either {_TOKEN!r} or {_TOKEN_ALIAS!r} in the secret value, not both"
        )
    username = document.get(_USERNAME)
    token = document.get(_TOKEN, document.get(_TOKEN_ALIAS))
    if not isinstance(username, str) or not username:
        raise SecretValueInvalid(f"the secret value needs a non-empty string {_USERNAME!r}")
    if not isinstance(token, str) or not token:
        raise SecretValueInvalid(
            f"the secret value needs a non-empty string {_TOKEN!r} (or {_TOKEN_ALIAS!r})"
        )
    if ":" in username:
        raise SecretValueInvalid(f"{_USERNAME!r} cannot contain ':' (HTTP Basic splits on it)")
    return Credential(username, token)


def credential_to_json(credential: Credential) -> bytes:
    return json.dumps(
        {_USERNAME: credential.username, _TOKEN: credential.password}, separators=(",", ":")
    ).encode("utf-8")
