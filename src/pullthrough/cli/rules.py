"""`pullthrough rules list|get|create|update|delete|check`: the prefix rules, through the admin
API.

A running server applies a changed rule within about a second; no restart.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pullthrough.cli import render
from pullthrough.cli.options import (
    EXIT_REFUSED,
    EXIT_USAGE,
    Output,
    OutputOption,
    ServerOption,
    TokenOption,
    admin_session,
    fail,
)
from pullthrough.client.admin import path_segment

rules_app = typer.Typer(
    help="Prefix rules: which upstream a repository prefix pulls through (admin API).",
    no_args_is_help=True,
)

PrefixArgument = Annotated[
    str, typer.Argument(help="The rule's prefix: one or more path segments, e.g. docker-hub.")
]
# Options for every rule field. In `update`, a field left out keeps its value, and an empty
# string (`--credential ''`) clears an optional one back to its default.
UpstreamOption = Annotated[
    str | None, typer.Option(help="The upstream registry's base URL, e.g. https://ghcr.io.")
]
DefaultOption = Annotated[
    bool | None,
    typer.Option(
        "--default/--no-default",
        help="Unprefixed names (Docker's registry-mirrors) go to this rule.",
        show_default=False,
    ),
]
CredentialOption = Annotated[
    str | None, typer.Option(help="The stored secret to log in upstream with.")
]
MirrorOfOption = Annotated[
    list[str] | None,
    typer.Option(
        "--mirror-of",
        help="Another host this rule answers for in ?ns= mirror mode, besides its upstream's "
        "own (repeatable).",
    ),
]
TagTtlOption = Annotated[
    str | None, typer.Option(help="How long a tag is served before revalidating: 5m, 0, 1h.")
]
MaxStaleOption = Annotated[
    str | None, typer.Option(help="Serve cached content this long while upstream fails: 7d.")
]
NegativeTtlOption = Annotated[
    str | None, typer.Option(help="How long an upstream 404 is remembered: 30s.")
]
UpstreamNamespaceOption = Annotated[
    str | None, typer.Option(help="A namespace prepended to names upstream, e.g. my-org.")
]
ImplicitNamespaceOption = Annotated[
    str | None, typer.Option(help="Where one-segment names live upstream (Docker Hub: library).")
]
EagerFillOption = Annotated[
    bool | None,
    typer.Option(
        "--eager-fill/--no-eager-fill",
        help="Fetch an image's layers as soon as its manifest is fetched (on by default).",
        show_default=False,
    ),
]

# RuleInput's fields; a Rule from the API carries these plus read-only ones.
RULE_INPUT_FIELDS = (
    "prefix",
    "upstream",
    "default",
    "credential",
    "mirror_of",
    "tag_ttl",
    "max_stale",
    "negative_ttl",
    "upstream_namespace",
    "implicit_namespace",
    "eager_fill",
)


def _changes(
    *,
    upstream: str | None,
    default: bool | None,
    credential: str | None,
    mirror_of: list[str] | None,
    tag_ttl: str | None,
    max_stale: str | None,
    negative_ttl: str | None,
    upstream_namespace: str | None,
    implicit_namespace: str | None,
    eager_fill: bool | None = None,
) -> dict[str, Any]:
    """The fields given on the command line; `''` becomes None, meaning "back to the default"."""
    given: dict[str, Any] = {}
    for name, value in (
        ("upstream", upstream),
        ("default", default),
        ("credential", credential),
        ("tag_ttl", tag_ttl),
        ("max_stale", max_stale),
        ("negative_ttl", negative_ttl),
        ("upstream_namespace", upstream_namespace),
        ("implicit_namespace", implicit_namespace),
        ("eager_fill", eager_fill),
    ):
        if value is not None:
            given[name] = None if value == "" else value
    if mirror_of is not None:
        given["mirror_of"] = [host for host in mirror_of if host] or None
    return given


def _apply(body: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`body` with `changes`; a field set to None is left out, so the server's default applies
    (a null would be refused where the default is not null, like tag_ttl)."""
    merged = {**body, **changes}
    return {name: value for name, value in merged.items() if value is not None}


@rules_app.command("list")
def rules_list(
    ctx: typer.Context,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Every rule, sorted by prefix."""
    with admin_session(ctx, server, token) as client:
        document = client.get("/rules")
    if output is Output.json:
        render.print_json(document)
        return
    render.print_rows(
        ("prefix", "upstream", "default", "credential", "tag ttl", "max stale", "pull as"),
        (
            (
                render.cell(rule["prefix"]),
                render.cell(rule["upstream"]),
                "yes" if rule.get("default") else "",
                render.cell(rule.get("credential")),
                render.duration(rule.get("tag_ttl")),
                render.duration(rule.get("max_stale")),
                render.cell(f"{rule.get('cache_prefix_url', rule['prefix'])}/<image>"),
            )
            for rule in document["rules"]
        ),
        "no rules: add one with `pullthrough rules create PREFIX --upstream URL`",
    )


@rules_app.command("get")
def rules_get(
    ctx: typer.Context,
    prefix: PrefixArgument,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """One rule, every field."""
    with admin_session(ctx, server, token) as client:
        rule = client.get(f"/rules/{path_segment(prefix)}")
    _show(rule, output)


@rules_app.command("create")
def rules_create(
    ctx: typer.Context,
    prefix: PrefixArgument,
    upstream: UpstreamOption = None,
    default: DefaultOption = None,
    credential: CredentialOption = None,
    mirror_of: MirrorOfOption = None,
    tag_ttl: TagTtlOption = None,
    max_stale: MaxStaleOption = None,
    negative_ttl: NegativeTtlOption = None,
    upstream_namespace: UpstreamNamespaceOption = None,
    implicit_namespace: ImplicitNamespaceOption = None,
    eager_fill: EagerFillOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Add a rule; refused (409) when the prefix exists or it would be a second default."""
    if not upstream:
        fail("a new rule needs --upstream URL (the registry's base URL)", EXIT_USAGE)
    body = _apply(
        {"prefix": prefix},
        _changes(
            upstream=upstream,
            default=default,
            credential=credential,
            mirror_of=mirror_of,
            tag_ttl=tag_ttl,
            max_stale=max_stale,
            negative_ttl=negative_ttl,
            upstream_namespace=upstream_namespace,
            implicit_namespace=implicit_namespace,
            eager_fill=eager_fill,
        ),
    )
    with admin_session(ctx, server, token) as client:
        rule = client.post("/rules", body)
    _saved(rule, "created", output)


@rules_app.command("update")
def rules_update(
    ctx: typer.Context,
    prefix: PrefixArgument,
    upstream: UpstreamOption = None,
    default: DefaultOption = None,
    credential: CredentialOption = None,
    mirror_of: MirrorOfOption = None,
    tag_ttl: TagTtlOption = None,
    max_stale: MaxStaleOption = None,
    negative_ttl: NegativeTtlOption = None,
    upstream_namespace: UpstreamNamespaceOption = None,
    implicit_namespace: ImplicitNamespaceOption = None,
    eager_fill: EagerFillOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Change the given fields of a rule; the others keep their values ('' clears one)."""
    changes = _changes(
        upstream=upstream,
        default=default,
        credential=credential,
        mirror_of=mirror_of,
        tag_ttl=tag_ttl,
        max_stale=max_stale,
        negative_ttl=negative_ttl,
        upstream_namespace=upstream_namespace,
        implicit_namespace=implicit_namespace,
        eager_fill=eager_fill,
    )
    if not changes:
        fail("give at least one field to change, e.g. --tag-ttl 10m", EXIT_USAGE)
    path = f"/rules/{path_segment(prefix)}"
    with admin_session(ctx, server, token) as client:
        current = client.get(path)
        body = _apply({name: current.get(name) for name in RULE_INPUT_FIELDS}, changes)
        rule = client.put(path, body)
    _saved(rule, "updated", output)


@rules_app.command("delete")
def rules_delete(
    ctx: typer.Context,
    prefix: PrefixArgument,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Remove a rule; what it cached stays until lifecycle rules or GC remove it."""
    with admin_session(ctx, server, token) as client:
        client.delete(f"/rules/{path_segment(prefix)}")
    typer.echo(f"deleted rule {prefix}")


@rules_app.command("check")
def rules_check(
    ctx: typer.Context,
    prefix: PrefixArgument,
    image: Annotated[
        str | None,
        typer.Option(
            help="An image under the rule (library/nginx:1.27): HEAD its manifest upstream "
            "instead of only logging in."
        ),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Try the rule's upstream with its credential, as ECR's validate-pull-through-cache-rule:
    exit 0 when it authenticates (or needs no credential), 1 when not."""
    params = {"image": image} if image is not None else None
    with admin_session(ctx, server, token) as client:
        result = client.request("POST", f"/rules/{path_segment(prefix)}/check", params=params)
    if output is Output.json:
        render.print_json(result)
    elif result["ok"]:
        typer.echo(f"rule {prefix}: ok ({result['result']}): {result['message']}")
    if not result["ok"]:
        if output is not Output.json:
            fail(f"rule {prefix} check failed ({result['result']}): {result['message']}")
        raise typer.Exit(EXIT_REFUSED)


def _saved(rule: dict[str, Any], what: str, output: Output) -> None:
    if output is Output.json:
        render.print_json(rule)
        return
    target = rule.get("cache_prefix_url") or rule["prefix"]
    typer.echo(f"{what} rule {rule['prefix']}: pull {target}/<image> from {rule['upstream']}")


def _show(rule: dict[str, Any], output: Output) -> None:
    if output is Output.json:
        render.print_json(rule)
        return
    render.print_fields(
        [
            ("prefix", render.cell(rule["prefix"])),
            ("upstream", render.cell(rule["upstream"])),
            ("default", render.cell(bool(rule.get("default")))),
            ("credential", render.cell(rule.get("credential"))),
            ("mirror of", render.cell(rule.get("mirror_of"))),
            ("tag ttl", render.duration(rule.get("tag_ttl"))),
            ("max stale", render.duration(rule.get("max_stale"))),
            ("negative ttl", render.duration(rule.get("negative_ttl"))),
            ("upstream namespace", render.cell(rule.get("upstream_namespace"))),
            ("implicit namespace", render.cell(rule.get("implicit_namespace"))),
            ("eager fill", render.cell(bool(rule.get("eager_fill", True)))),
            ("pull as", render.cell(f"{rule.get('cache_prefix_url', rule['prefix'])}/<image>")),
            ("created", render.cell(rule.get("created_at"))),
            ("updated", render.cell(rule.get("updated_at"))),
        ]
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.add_typer(rules_app, name="rules")
