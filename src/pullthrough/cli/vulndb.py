"""`pullthrough vulndb`: the local vulnerability database — import OSV records, sync OSV's
archives, say what is loaded. These work on the server's metadata database (`--config`), with
the server running or not: a change bumps the `vulndb` revision, and a running server rescans
the cached images it concerns."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pullthrough.cli import render
from pullthrough.cli.options import (
    EXIT_REFUSED,
    EXIT_USAGE,
    ConfigOption,
    Output,
    fail,
    run_on_metadata,
)

if TYPE_CHECKING:  # the database and the matching code load only for these commands
    from pullthrough.scanning.vulndb import ImportReport, SyncReport, VulnDbStatus

vulndb_app = typer.Typer(
    help="The local vulnerability database (OSV advisories): import, sync, status.",
    no_args_is_help=True,
)

ReportOption = Annotated[
    Output, typer.Option("--output", "-o", help="table for people; json for scripts.")
]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@vulndb_app.command("import")
def vulndb_import(
    path: Annotated[
        Path,
        typer.Argument(
            help="An OSV JSON file (one record or a list), a directory of them, or a zip such "
            "as OSV's <ecosystem>/all.zip."
        ),
    ],
    output: ReportOption = Output.table,
    config: ConfigOption = None,
) -> None:
    """Import OSV records; a record already held is replaced only by a newer `modified`."""
    from pullthrough.scanning.vulndb import VulnerabilityDatabase

    if not path.exists():
        fail(f"cannot import {path}: no such file or directory", EXIT_USAGE)
    report: ImportReport = run_on_metadata(
        config, lambda m, _s: VulnerabilityDatabase(m.engine).import_path(path)
    )
    if output is Output.json:
        render.print_json(report.to_json())
    else:
        ecosystems = ", ".join(sorted(report.ecosystems)) or "-"
        typer.echo(
            f"{path}: {_plural(report.records, 'record')} read, {report.written} new or newer, "
            f"{report.unchanged} unchanged; ecosystems: {ecosystems}"
        )
    for line in report.invalid:
        typer.echo(f"pullthrough: skipped {line}", err=True)
    if report.invalid:
        fail(f"{_plural(len(report.invalid), 'record')} could not be read (above)", EXIT_REFUSED)


@vulndb_app.command("sync")
def vulndb_sync(
    url: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the archives, <url>/<ecosystem>/all.zip (default: the "
            "configuration's vulndb.url, OSV's public bucket)."
        ),
    ] = None,
    ecosystem: Annotated[
        list[str] | None,
        typer.Option(
            "--ecosystem",
            "-e",
            help="An OSV ecosystem to sync, e.g. Debian, Alpine, PyPI (repeatable; default: "
            "the configuration's vulndb.ecosystems).",
        ),
    ] = None,
    output: ReportOption = Output.table,
    config: ConfigOption = None,
) -> None:
    """Download the archives that changed since the last sync and import what moved in them."""
    from pullthrough.scanning.vulndb import VulnerabilityDatabase

    report: SyncReport = run_on_metadata(
        config,
        lambda m, s: VulnerabilityDatabase(m.engine).sync(
            url or s.vulndb.url, ecosystem or s.vulndb.ecosystems
        ),
    )
    if output is Output.json:
        render.print_json(report.to_json())
    else:
        table = render.table("ecosystem", "archive", "written", "unchanged", "url")
        for archive in report.archives:
            result = archive.report
            table.add_row(
                render.cell(archive.ecosystem),
                "unchanged (304)" if archive.outcome == "unchanged" else archive.outcome,
                str(result.written) if result else "-",
                str(result.unchanged) if result else "-",
                render.cell(archive.url),
            )
        render.console().print(table)
    for archive in report.archives:
        if archive.report is not None and archive.report.invalid:
            count = _plural(len(archive.report.invalid), "record")
            typer.echo(
                f"pullthrough: {archive.ecosystem}: skipped {count} that could not be read, "
                f"first: {archive.report.invalid[0]}",
                err=True,
            )
    for failed in report.failed:
        typer.echo(f"pullthrough: {failed.ecosystem}: {failed.message}", err=True)
    if report.failed:
        raise typer.Exit(EXIT_REFUSED)


@vulndb_app.command("status")
def vulndb_status(output: ReportOption = Output.table, config: ConfigOption = None) -> None:
    """What is loaded per ecosystem, how new it is, and where and when it was read."""
    from pullthrough.scanning.vulndb import VulnerabilityDatabase

    status: VulnDbStatus = run_on_metadata(
        config, lambda m, _s: VulnerabilityDatabase(m.engine).status()
    )
    document = status.to_json()
    if output is Output.json:
        render.print_json(document)
        return
    render.print_rows(
        ("ecosystem", "advisories", "withdrawn", "newest modified", "read", "from"),
        (
            (
                render.cell(e["ecosystem"]),
                str(e["records"]),
                str(e["withdrawn"]),
                render.clock(e["newest_modified"]),
                render.ago(e["checked_at"]),
                render.cell(e["source"] or "-"),
            )
            for e in document["ecosystems"]
        ),
        "The vulnerability database is empty: `pullthrough vulndb sync`, or "
        "`pullthrough vulndb import FILE|DIR|ZIP` offline.",
    )
    if document["archives"]:
        render.print_rows(
            ("archive", "records", "checked", "downloaded", "etag", "url"),
            (
                (
                    render.cell(a["ecosystem"]),
                    str(a["records"]),
                    render.ago(a["checked_at"]),
                    render.ago(a["fetched_at"]),
                    render.cell(a["etag"] or "-"),
                    render.cell(a["url"]),
                )
                for a in document["archives"]
            ),
            "",
            title="Synced archives",
        )


def register(app: typer.Typer) -> None:
    app.add_typer(vulndb_app, name="vulndb")
