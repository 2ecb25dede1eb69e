"""`pullthrough scan|findings|sbom|gate`: scanning cached images and the gate's overrides,
through the admin API."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from pullthrough.cli import render
from pullthrough.cli.options import (
    EXIT_REFUSED,
    Output,
    OutputOption,
    ServerOption,
    TokenOption,
    admin_session,
    fail,
)
from pullthrough.client.admin import AdminClient, path_segment

gate_app = typer.Typer(help="The scanning gate's per-digest overrides (admin API).")

ImageArgument = Annotated[
    str,
    typer.Argument(
        help="A cached image: REPOSITORY:TAG or REPOSITORY@DIGEST, e.g. "
        "docker-hub/library/nginx:1.27 (a tag defaults to latest)."
    ),
]
_SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
# How often `scan --wait` looks, and for how long at most.
_WAIT_POLL_SECONDS = 1.0
_WAIT_MAX_SECONDS = 600.0


def split_image(image: str) -> tuple[str, str]:
    """`repo:tag` / `repo@sha256:…` → (repository, tag or digest)."""
    image = image.strip()
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, digest
    name, _, last = image.rpartition("/")
    if ":" in last:
        last, tag = last.split(":", 1)
        return f"{name}/{last}" if name else last, tag
    return image, "latest"


def _findings(client: AdminClient, repository: str, reference: str, severity: str | None) -> Any:
    params = {"repository": repository, "reference": reference}
    if severity:
        params["severity"] = severity
    return client.get("/findings", params=params)


def _summary(document: dict[str, Any]) -> str:
    counts = document["imageScanFindings"]["findingSeverityCounts"]
    return severity_summary(counts) or "no findings"


def severity_summary(counts: dict[str, int] | None) -> str:
    """`2 CRITICAL, 1 HIGH`; empty when there are none."""
    return ", ".join(f"{counts[s]} {s}" for s in _SEVERITIES if counts and counts.get(s))


def scan(
    ctx: typer.Context,
    image: ImageArgument,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the scan has finished.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Scan a cached image now (every platform of a multi-arch image); an image not cached yet
    is fetched through the cache first."""
    repository, reference = split_image(image)
    with admin_session(ctx, server, token) as client:
        document = client.post("/scans", {"repository": repository, "reference": reference})
        if wait:
            digest = document["imageId"]["imageDigest"]
            deadline = time.monotonic() + _WAIT_MAX_SECONDS
            while document["imageScanStatus"]["status"] in ("PENDING", "IN_PROGRESS"):
                if time.monotonic() > deadline:
                    fail(f"the scan of {repository}@{digest} has not finished yet")
                time.sleep(_WAIT_POLL_SECONDS)
                document = _findings(client, repository, digest, None)
    if output is Output.json:
        render.print_json(document)
        return
    status = document["imageScanStatus"]
    digest = document["imageId"]["imageDigest"]
    line = f"{repository}@{digest}: {status['status']}"
    if status["status"] == "COMPLETE":
        line += f" ({_summary(document)})"
    elif status["status"] == "FAILED":
        line += f": {status['description']}"
    else:
        line += " (see it with `pullthrough findings`)"
    render.console().print(line, markup=False, highlight=False)
    if status["status"] == "FAILED":
        raise typer.Exit(EXIT_REFUSED)


def findings(
    ctx: typer.Context,
    image: ImageArgument,
    severity: Annotated[
        str | None,
        typer.Option(help="Only findings at this severity or above: CRITICAL, HIGH, MEDIUM, LOW."),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """An image's findings; for a multi-arch image or its tag, every platform's, each finding
    with the platforms it affects."""
    repository, reference = split_image(image)
    with admin_session(ctx, server, token) as client:
        document = _findings(client, repository, reference, severity.upper() if severity else None)
    if output is Output.json:
        render.print_json(document)
        return
    status = document["imageScanStatus"]
    platforms = ", ".join(
        f"{p['platform']} {p['status'].lower()}" for p in document.get("platforms", [])
    )
    render.console().print(
        f"{repository}@{document['imageId']['imageDigest']}: {status['status']} "
        f"({_summary(document)}; {platforms})",
        markup=False,
        highlight=False,
    )
    render.print_rows(
        ("severity", "advisory", "package", "version", "fixed in", "platforms"),
        (
            (
                finding["severity"],
                finding["name"],
                finding["package_name"],
                finding["package_version"],
                render.cell(finding.get("fixed_in")),
                ", ".join(finding["platforms"]),
            )
            for finding in document["imageScanFindings"]["findings"]
        ),
        "no findings" + (f" at {severity.upper()} or above" if severity else ""),
    )


def sbom(
    ctx: typer.Context,
    image: ImageArgument,
    platform: Annotated[
        str | None, typer.Option(help="For a multi-arch image: which platform (linux/arm64).")
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Print an image's SBOM (CycloneDX JSON)."""
    repository, reference = split_image(image)
    params = {"repository": repository, "reference": reference}
    if platform:
        params["platform"] = platform
    with admin_session(ctx, server, token) as client:
        document = client.get("/sbom", params=params)
    render.print_json(document)


@gate_app.command("list")
def gate_list(
    ctx: typer.Context,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Digests an admin let through the gate."""
    with admin_session(ctx, server, token) as client:
        document = client.get("/gate/overrides")
    if output is Output.json:
        render.print_json(document)
        return
    render.print_rows(
        ("digest", "reason", "since"),
        (
            (o["digest"], render.cell(o["reason"]), render.ago(o["created_at"]))
            for o in document["overrides"]
        ),
        "no overrides: `pullthrough gate override IMAGE@DIGEST --reason …` adds one",
    )


def _digest_of(image: str) -> str:
    if image.startswith("sha256:"):
        return image
    _repository, reference = split_image(image)
    if not reference.startswith("sha256:"):
        fail(f"{image}: name the image by digest (REPOSITORY@sha256:…): an override is per digest")
    return reference


@gate_app.command("override")
def gate_override(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="REPOSITORY@sha256:… or a bare digest.")],
    reason: Annotated[str, typer.Option(help="Why it may be served (kept with it).")],
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Let an image (or a whole multi-arch image, by its index digest) through the gate."""
    digest = _digest_of(image)
    with admin_session(ctx, server, token) as client:
        client.put(f"/gate/overrides/{path_segment(digest)}", {"reason": reason})
    render.console().print(f"{digest} may be pulled whatever its findings", highlight=False)


@gate_app.command("remove")
def gate_remove(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="REPOSITORY@sha256:… or a bare digest.")],
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Remove an override: the gate judges the image by its findings again."""
    digest = _digest_of(image)
    with admin_session(ctx, server, token) as client:
        client.delete(f"/gate/overrides/{path_segment(digest)}")
    render.console().print(f"{digest} is judged by its findings again", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command()(scan)
    app.command()(findings)
    app.command()(sbom)
    app.add_typer(gate_app, name="gate")
