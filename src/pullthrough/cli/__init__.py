"""The command line (typer): one module per command group, one options module (`options`), and
`main`, the `pullthrough` command's entry point."""

from pullthrough.cli.app import main

__all__ = ["main"]
