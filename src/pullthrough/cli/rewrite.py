"""`pullthrough rewrite FILE…`: point the image references in Kubernetes manifests, Helm values
and Compose files at the cache, with the rules the server has.

Exit codes: 0 done (or nothing to change); 1 the server refused or failed; 2 a usage error or a
file that cannot be read, parsed or written (nothing is written then); 3 `--check` found
references to rewrite.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from pullthrough.cli.options import (
    EXIT_USAGE,
    ServerOption,
    TokenOption,
    admin_session,
    fail,
)
from pullthrough.client.admin import AdminClient
from pullthrough.client.naming import CacheNaming
from pullthrough.client.rewrite import RewriteResult, YamlInvalid, rewrite_text
from pullthrough.config import RuleConfig
from pullthrough.oci.reference import ReferenceInvalid

EXIT_PENDING = 3
STDIN = "-"
_STDIN_NAME = "<stdin>"


@dataclass(frozen=True, slots=True)
class _Input:
    path: Path | None  # None for stdin
    text: str

    @property
    def name(self) -> str:
        return _STDIN_NAME if self.path is None else str(self.path)


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("rewrite")(rewrite)


def rewrite(
    ctx: typer.Context,
    files: Annotated[
        list[str],
        typer.Argument(
            help="YAML files to rewrite in place (- reads stdin and writes stdout).",
            metavar="FILE",
            show_default=False,
        ),
    ],
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 3 if any reference would change."),
    ] = False,
    diff: Annotated[
        bool, typer.Option("--diff", help="Print a unified diff instead of writing.")
    ] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    cache: Annotated[
        str | None,
        typer.Option(
            "--cache",
            help="host:port that image references through the cache start with "
            "(default: the server URL's), when nodes reach the cache by another name.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Point image references in Kubernetes, Helm values and Compose YAML at the cache.

    `nginx:1.27` becomes `<cache>/docker-hub/library/nginx:1.27`; comments stay byte for byte.

    References no rule caches are left as they are and listed on stderr.
    """
    if [str(f) for f in files].count(STDIN) > 1:
        fail("- (stdin) can be given only once", EXIT_USAGE)
    inputs = [_read(f) for f in files]
    naming = _naming(ctx, server, token, cache)
    results: list[tuple[_Input, RewriteResult]] = []
    errors: list[str] = []
    for source in inputs:
        try:
            results.append((source, rewrite_text(source.text, naming)))
        except YamlInvalid as exc:
            errors.append(f"{source.name}: {exc}")
    if errors:  # then nothing is written, not even the files that were fine
        for error in errors:
            typer.echo(f"pullthrough: {error}", err=True)
        raise typer.Exit(EXIT_USAGE)
    writing = not check and not diff
    # With stdin, stdout carries the YAML: the list of changes goes to stderr.
    report_to_stderr = writing and any(source.path is None for source, _ in results)
    for source, result in results:
        for skipped in result.skipped:
            typer.echo(
                f"{source.name}:{skipped.line}: left {skipped.reference} as is: {skipped.reason}",
                err=True,
            )
        if diff:
            _print_diff(source, result)
        else:
            for change in result.changes:
                line = f"{source.name}:{change.line}: {change.old} -> {change.new}"
                typer.echo(line, err=report_to_stderr)
        if writing:
            _write(source, result)
    pending = sum(len(result.changes) for _, result in results)
    if check and pending:
        typer.echo(
            f"pullthrough: {pending} image reference{'s' if pending > 1 else ''} would be "
            "rewritten; run without --check to rewrite them",
            err=True,
        )
        raise typer.Exit(EXIT_PENDING)


def _read(name: str) -> _Input:
    if name == STDIN:
        data = sys.stdin.buffer.read()
        path = None
    else:
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {name}: {exc.strerror or exc}", EXIT_USAGE)
    try:
        # Bytes, not text mode: text mode would turn \r\n into \n, and the file must not change.
        return _Input(path, data.decode("utf-8"))
    except UnicodeDecodeError:
        fail(f"{path or _STDIN_NAME} is not UTF-8 text", EXIT_USAGE)


def _naming(
    ctx: typer.Context, server: str | None, token: str | None, cache: str | None
) -> CacheNaming:
    with admin_session(ctx, server, token) as client:
        rules = _rules(client)
        cache_host = cache or client.settings.cache_host
    try:
        # Docker reads `docker-hub/x` as a Docker Hub repository, and so must a rewrite.
        return CacheNaming(rules, cache_host, bare_prefixes=False)
    except ReferenceInvalid as exc:
        fail(f"--cache: {exc}", EXIT_USAGE)


def _rules(client: AdminClient) -> list[RuleConfig]:
    answer: Any = client.get("/rules")
    if not isinstance(answer, dict) or not isinstance(answer.get("rules"), list):
        fail(f"{client.settings.server}: GET /api/v1/rules did not answer with a list of rules")
    try:
        return [
            RuleConfig.model_validate(
                {k: v for k, v in rule.items() if k in RuleConfig.model_fields}
            )
            for rule in answer["rules"]
        ]
    except (AttributeError, ValidationError) as exc:
        summary = " ".join(str(exc).split())
        fail(f"{client.settings.server}: a rule from GET /api/v1/rules is not valid: {summary}")


def _print_diff(source: _Input, result: RewriteResult) -> None:
    if not result.changed:
        return
    name = source.name
    lines = difflib.unified_diff(
        source.text.splitlines(keepends=True),
        result.text.splitlines(keepends=True),
        fromfile=f"a/{name}" if source.path else name,
        tofile=f"b/{name}" if source.path else name,
    )
    for line in lines:
        if not line.endswith(("\n", "\r")):
            line += "\n\\ No newline at end of file\n"
        typer.echo(line, nl=False)


def _write(source: _Input, result: RewriteResult) -> None:
    if source.path is None:
        sys.stdout.flush()
        out = sys.stdout.buffer
        out.write(result.text.encode("utf-8"))
        out.flush()
        return
    if not result.changed:
        return
    try:
        _replace_file(source.path, result.text.encode("utf-8"))
    except OSError as exc:
        fail(f"cannot write {source.path}: {exc.strerror or exc}", EXIT_USAGE)


def _replace_file(path: Path, data: bytes) -> None:
    """Write all of `data` or nothing: a temporary file beside the target, renamed over it,
    with the target's permissions. Through a symlink, the file it points to is replaced."""
    target = path.resolve()
    mode = stat.S_IMODE(target.stat().st_mode)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
