"""`pullthrough mirror-config containerd|docker|cri-o`: client configuration for the cache.

The rules come from the running server's admin API, so the output matches what it routes.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from pullthrough.cli.options import (
    EXIT_REFUSED,
    EXIT_USAGE,
    ServerOption,
    TokenOption,
    admin_session,
    client_settings,
    fail,
)
from pullthrough.client.admin import AdminClient
from pullthrough.client.mirror_config import (
    CONTAINERD_CERTS_DIR,
    DOCKER_DAEMON_JSON,
    REGISTRIES_DROP_IN,
    CacheAddress,
    ConfigFile,
    ContainerdMode,
    MirrorConfigError,
    containerd_hosts,
    docker_daemon_json,
    merged_daemon_json,
    printed,
    registries_conf,
)
from pullthrough.config import RuleConfig


class MirrorClient(StrEnum):
    containerd = "containerd"
    docker = "docker"
    cri_o = "cri-o"


class Mode(StrEnum):
    ns = "ns"
    override_path = "override_path"


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("mirror-config")(mirror_config)


def mirror_config(
    ctx: typer.Context,
    client: Annotated[
        MirrorClient, typer.Argument(help="The runtime to configure: containerd, docker, cri-o.")
    ],
    mode: Annotated[
        Mode | None,
        typer.Option(
            help="containerd only: `ns` mirrors to the cache root (the server routes by "
            "registry host), `override_path` to each rule's prefix. Default: ns."
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Write the files under DIR (e.g. /etc/containerd/certs.d) instead of printing "
            "them; an existing daemon.json keeps its other keys.",
        ),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    cache_url: Annotated[
        str | None,
        typer.Option(help="The cache as the clients reach it, if not the --server URL."),
    ] = None,
) -> None:
    """Print (or write) the configuration that makes a runtime pull through this cache."""
    if mode is not None and client != MirrorClient.containerd:
        fail("--mode applies to containerd only", EXIT_USAGE)
    try:
        cache = CacheAddress.parse(cache_url or client_settings(server, token).server)
    except MirrorConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    with admin_session(ctx, server, token) as admin:
        rules = _rules(admin)
    try:
        files, destination = _generate(client, rules, cache.url, mode or Mode.ns)
    except MirrorConfigError as exc:
        fail(str(exc), EXIT_REFUSED)
    if directory is None:
        typer.echo(_printed(client, files, destination), nl=False)
        return
    try:
        for file in files:
            _write(directory / file.path, file)
    except OSError as exc:
        fail(f"cannot write under {directory}: {exc.strerror or exc}", EXIT_USAGE)
    except MirrorConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def _rules(admin: AdminClient) -> list[RuleConfig]:
    listed: list[dict[str, Any]] = admin.get("/rules")["rules"]
    fields = RuleConfig.model_fields
    try:
        return [
            RuleConfig.model_validate({k: v for k, v in rule.items() if k in fields})
            for rule in listed
        ]
    except ValidationError as exc:
        fail(f"the server sent a rule this client cannot read: {exc}", EXIT_REFUSED)


def _generate(
    client: MirrorClient, rules: list[RuleConfig], cache_url: str, mode: Mode
) -> tuple[list[ConfigFile], PurePosixPath]:
    if client == MirrorClient.containerd:
        containerd_mode: ContainerdMode = "ns" if mode == Mode.ns else "override_path"
        return containerd_hosts(rules, cache_url, containerd_mode), CONTAINERD_CERTS_DIR
    if client == MirrorClient.docker:
        return [docker_daemon_json(rules, cache_url)], DOCKER_DAEMON_JSON.parent
    return [registries_conf(rules, cache_url)], REGISTRIES_DROP_IN.parent


def _printed(client: MirrorClient, files: list[ConfigFile], destination: PurePosixPath) -> str:
    if client == MirrorClient.docker:
        # JSON has no comments: print the document alone, so `> daemon.json` works.
        return files[0].text
    return printed(files, destination)


def _write(path: Path, file: ConfigFile) -> None:
    text = file.text
    if path.name == DOCKER_DAEMON_JSON.name and path.exists():
        text = merged_daemon_json(path.read_text(encoding="utf-8"), json.loads(file.text))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {path}")
