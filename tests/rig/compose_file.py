"""deploy/compose.yaml read as a compose implementation reads it: YAML (merge keys included) and
the `${VAR}`, `${VAR:-default}` and `${VAR:?error}` interpolation the file uses, from a `.env`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
REPLICAS = ("pullthrough-1", "pullthrough-2", "pullthrough-3")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class ComposeRefused(Exception):
    """A `${VAR:?error}` whose variable is unset: compose stops with the error."""


def interpolate(text: str, dot_env: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if dot_env.get(name):
            return dot_env[name]
        if operator in (":?", "?"):
            raise ComposeRefused(f"{name}: {argument}")
        return argument or ""

    return _VARIABLE.sub(value, text)


def load_compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def service_environment(service: Mapping[str, Any], dot_env: Mapping[str, str]) -> dict[str, str]:
    """The variables the service's container gets from the file (not the image's own)."""
    return {
        key: interpolate(str(value), dot_env)
        for key, value in service.get("environment", {}).items()
    }
