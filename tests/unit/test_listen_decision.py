"""Listening where other machines reach the server with auth off is refused by `serve` only:
the offline commands run with the same settings (a container's environment, say) anywhere.

Runs the real `pullthrough` command, as a user (or an image's entrypoint) would.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.rig.server import pullthrough_binary

_TIMEOUT = 120.0


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PULLTHROUGH_")} | {
        "PULLTHROUGH_DATA_DIR": str(tmp_path / "data"),
        **env,
    }
    return subprocess.run(
        [str(pullthrough_binary()), *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
    )


def test_serve_on_an_open_address_with_auth_off_is_refused_naming_the_choice(
    tmp_path: Path,
) -> None:
    served = run(tmp_path, "serve", PULLTHROUGH_LISTEN="0.0.0.0:5000")
    assert served.returncode == 2
    assert "configuration error" in served.stderr
    assert "listen: 0.0.0.0:5000 is reachable from other machines and auth is off" in served.stderr
    assert "auth.allow_anonymous: true" in served.stderr


def test_migrate_runs_with_the_settings_of_an_open_server(tmp_path: Path) -> None:
    migrated = run(tmp_path, "migrate", PULLTHROUGH_LISTEN="0.0.0.0:5000")
    assert migrated.returncode == 0, migrated.stderr
    assert "metadata database:" in migrated.stdout
    assert (tmp_path / "data" / "metadata.sqlite").is_file()
