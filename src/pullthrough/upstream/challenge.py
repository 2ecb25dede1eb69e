"""Parsing `WWW-Authenticate` challenges (RFC 7235): schemes, quoted parameters, several per header.

Registries send `Bearer realm="https://auth.example/token",service="x",scope="repository:a:pull"`;
scopes may hold commas (`repository:a:pull,push`) and one header may carry several challenges
(`Basic realm="x", Bearer realm="y"`), so a split on commas is not enough.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
_SPACE = re.compile(r"[ \t]*")


@dataclass(frozen=True)
class Challenge:
    """One challenge: a scheme and its parameters, scheme and parameter names lower-cased."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None

    def param(self, name: str) -> str | None:
        return self.params.get(name.lower())


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Every challenge in the given `WWW-Authenticate` header values, in order.

    Malformed input never raises: parsing stops at the first thing that is not a challenge and
    returns what was understood, since a partly usable challenge beats none.
    """
    challenges: list[Challenge] = []
    for header in headers:
        challenges.extend(_Parser(header).challenges())
    return challenges


class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def challenges(self) -> list[Challenge]:
        found: list[Challenge] = []
        while True:
            self._skip_separators()
            scheme = self._match(_TOKEN)
            if scheme is None:
                return found
            found.append(self._challenge(scheme.lower()))

    def _challenge(self, scheme: str) -> Challenge:
        params: dict[str, str] = {}
        self._match(_SPACE)
        if self._starts_param():
            while True:
                name, value = self._param()
                params[name] = value
                start = self._pos
                self._skip_separators()
                # After a comma comes either another parameter of this challenge or the next
                # challenge's scheme; only `name=` tells them apart.
                if self._pos == start or not self._starts_param():
                    self._pos = start
                    return Challenge(scheme, params)
        token68 = self._token68()
        return Challenge(scheme, params, token68)

    def _starts_param(self) -> bool:
        token = _TOKEN.match(self._text, self._pos)
        if token is None:
            return False
        rest = _SPACE.match(self._text, token.end())
        end = rest.end() if rest else token.end()
        # `name=` but not a token68 ending in `=` followed by nothing/a comma.
        if not self._text.startswith("=", end):
            return False
        after = _SPACE.match(self._text, end + 1)
        nxt = after.end() if after else end + 1
        return nxt < len(self._text) and self._text[nxt] not in ",="

    def _param(self) -> tuple[str, str]:
        name = self._match(_TOKEN) or ""
        self._match(_SPACE)
        self._pos += 1  # the "=" that _starts_param saw
        self._match(_SPACE)
        quoted = _QUOTED.match(self._text, self._pos)
        if quoted is not None:
            self._pos = quoted.end()
            return name.lower(), _QUOTED_PAIR.sub(r"\1", quoted.group(1))
        value = self._match(_TOKEN) or ""
        return name.lower(), value

    def _token68(self) -> str | None:
        start = self._pos
        token = self._match(_TOKEN68)
        if token is None:
            return None
        end = _SPACE.match(self._text, self._pos)
        nxt = end.end() if end else self._pos
        if nxt < len(self._text) and self._text[nxt] != ",":
            self._pos = start  # not a token68 after all; leave it for the next challenge
            return None
        return token

    def _skip_separators(self) -> None:
        while self._pos < len(self._text) and self._text[self._pos] in " \t,":
            self._pos += 1

    def _match(self, pattern: re.Pattern[str]) -> str | None:
        match = pattern.match(self._text, self._pos)
        if match is None:
            return None
        self._pos = match.end()
        return match.group(0)
