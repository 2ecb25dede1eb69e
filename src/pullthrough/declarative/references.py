"""Secret values in a declarative file are references, so tokens stay out of the file itself:
`${env:NAME}` is replaced by an environment variable anywhere in a string, and a value that
starts with `file:` is the whole content of that file (its trailing newline stripped)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

FILE_PREFIX = "file:"
# `$${` is a literal `${`, as in Terraform; any other `${…}` must be `${env:NAME}`.
_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class UnresolvedReference(ValueError):
    """A reference that cannot be resolved; the message says which and what to do."""


def has_reference(text: str) -> bool:
    """Whether `text` takes anything from outside the file (and is not clear text)."""
    if text.startswith(FILE_PREFIX):
        return True
    return any(match.group(1) is not None for match in _PLACEHOLDER.finditer(text))


def substitute_env(text: str, environ: Mapping[str, str]) -> str:
    """`text` with each `${env:NAME}` replaced by the variable's value."""

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        if inner is None:
            return "${"
        kind, sep, name = inner.partition(":")
        if kind != "env" or not sep or not _ENV_NAME.fullmatch(name):
            raise UnresolvedReference(
                f"${{{inner}}} is not a reference pullthrough knows: write ${{env:NAME}} for an "
                "environment variable (or $${ for a literal ${)"
            )
        if name not in environ:
            raise UnresolvedReference(
                f"environment variable {name} is not set: export it before running pullthrough"
            )
        return environ[name]

    return _PLACEHOLDER.sub(replace, text)


def resolve(text: str, environ: Mapping[str, str], base_dir: Path) -> str:
    """The value `text` stands for. `file:` paths may use `${env:…}` and `~`; a relative path
    is taken from `base_dir` (the declarative file's directory)."""
    if not text.startswith(FILE_PREFIX):
        return substitute_env(text, environ)
    raw_path = substitute_env(text[len(FILE_PREFIX) :], environ)
    if not raw_path:
        raise UnresolvedReference("file: names no file: write file:/path/to/the/value")
    path = Path(raw_path).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UnresolvedReference(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise UnresolvedReference(f"cannot read {path}: {exc.strerror or exc}") from None
    # Editors and `echo` end files with a newline that is not part of the token.
    return content.removesuffix("\n").removesuffix("\r")
