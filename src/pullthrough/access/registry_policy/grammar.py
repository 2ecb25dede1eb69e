"""What every part of a registry policy document shares: the error type, IAM wildcards, and
checks on JSON values that name the offending field."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pullthrough import jsondoc
from pullthrough.jsondoc import json_type


class PolicyError(ValueError):
    """A policy document that cannot be used, with a message pointing at the offending part:
    `Statement[2] (Sid "PullOrg"): Action "registry:Pul" is not a known action (known: …)`.

    Statements are numbered from 0, in document order. `statement` and `sid` are None for
    document-level errors (bad JSON, an unsupported Version)."""

    def __init__(
        self, detail: str, *, statement: int | None = None, sid: str | None = None
    ) -> None:
        self.detail = detail
        self.statement = statement
        self.sid = sid
        super().__init__(
            f"{statement_label(statement, sid)}: {detail}" if statement is not None else detail
        )

    def at(self, statement: int, sid: str | None) -> PolicyError:
        """This error, placed in a statement (parsers below the statement level raise it bare)."""
        return PolicyError(self.detail, statement=statement, sid=sid)


def statement_label(index: int, sid: str | None) -> str:
    return f'Statement[{index}] (Sid "{sid}")' if sid is not None else f"Statement[{index}]"


def compile_wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """IAM's wildcards, for `fullmatch`: `*` is any run of characters, `/` included (so
    `repository/docker-hub/*` covers `docker-hub/library/nginx`), `?` is exactly one."""
    pieces: list[str] = []
    for char in pattern:
        if char == "*":
            if pieces[-1:] != [".*"]:  # runs of stars mean the same; collapsing avoids backtracking
                pieces.append(".*")
        elif char == "?":
            pieces.append(".")
        else:
            pieces.append(re.escape(char))
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(pieces), flags)


def load_json(document: str | bytes) -> Any:
    try:
        return jsondoc.loads(document)
    except UnicodeDecodeError as exc:
        raise PolicyError(f"the policy is not UTF-8 text: {exc}") from None
    except ValueError as exc:  # JSONDecodeError, and NaN/Infinity
        raise PolicyError(f"the policy is not valid JSON: {exc}") from None


def json_object(value: Any, field: str) -> Mapping[str, Any]:
    """`value` as a JSON object whose keys each appear once."""
    if not isinstance(value, Mapping):
        raise PolicyError(f"{field} must be a JSON object, not {json_type(value)}")
    duplicates = jsondoc.duplicate_keys(value)
    if duplicates:
        raise PolicyError(f'{field} has the key "{duplicates[0]}" more than once')
    for key in value:
        if not isinstance(key, str):
            raise PolicyError(f"{field} has a key that is not a string: {key!r}")
    return value


def string_list(value: Any, field: str) -> tuple[str, ...]:
    """A field that IAM lets be one string or a list of them, as a tuple."""
    if isinstance(value, str):
        values: tuple[Any, ...] = (value,)
    elif isinstance(value, list | tuple) and value:
        values = tuple(value)
    elif isinstance(value, list | tuple):
        raise PolicyError(f"{field} is an empty list: give at least one value")
    else:
        raise PolicyError(f"{field} must be a string or a list of strings, not {json_type(value)}")
    for item in values:
        if not isinstance(item, str):
            shown = json.dumps(item) if not isinstance(item, Mapping | list) else json_type(item)
            raise PolicyError(f"{field} must hold only strings; found {shown}")
        if not item:
            raise PolicyError(f"{field} has an empty string")
    return values
