"""Run the `pullthrough` command line as an operator does, against a test server's admin API,
with nothing of the machine's own client configuration leaking in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.rig.secret_watch import register_command, register_secret
from tests.rig.server import PullthroughServer, pullthrough_binary

CLI_TIMEOUT = 600.0


def client_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("PULLTHROUGH_SERVER", "PULLTHROUGH_TOKEN")
    }
    # No client file of the machine's either. (Not via PULLTHROUGH_CLIENT_CONFIG: the commands
    # that read a server configuration take every PULLTHROUGH_* variable as a setting.)
    environment.pop("PULLTHROUGH_CLIENT_CONFIG", None)
    environment["XDG_CONFIG_HOME"] = str(Path("/nonexistent/pullthrough-test-config"))
    # rich draws for a wide terminal, so table cells (digests, URLs) stay on one line.
    environment["COLUMNS"] = "250"
    return {**environment, **(extra or {})}


def pullthrough_cli(
    server: PullthroughServer | None,
    *args: str,
    token: str | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`pullthrough <args> --server <server> [--token …]`; the caller checks `returncode`."""
    command = [str(pullthrough_binary()), *args]
    if server is not None:
        command += ["--server", server.url]
    if token is not None:
        command += ["--token", token]
    result = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=client_environment(env),
        check=False,
    )
    register_command(args, stdin or "", result.stdout)
    if token is not None:
        register_secret(token, "a --token given to the command line")
    return result


def admin_ok(
    server: PullthroughServer, *args: str, token: str | None = None, stdin: str | None = None
) -> str:
    """The standard output of a command that must succeed."""
    result = pullthrough_cli(server, *args, token=token, stdin=stdin)
    assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
    return result.stdout


def refusal(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one line a refused command prints on stderr."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pullthrough: "), lines[0]
    return lines[0]
