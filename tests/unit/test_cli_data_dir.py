"""The commands that work on the data directory never invent one: run where there is none, with
no configuration naming it, they say which option names it, exit 2, and create nothing.

Runs the real `pullthrough` command, in an empty working directory, as a user would.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.rig.server import pullthrough_binary

_TIMEOUT = 120.0

DATA_DIR_COMMANDS = [
    ("users", "list"),
    ("users", "delete", "bob"),
    ("apikeys", "create", "ci"),
    ("apikeys", "delete", "ci"),
    ("lifecycle", "preview"),
    ("lifecycle", "run"),
    ("lifecycle", "policy", "hub/library/alpine"),
]


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Nothing of the machine's configuration: no PULLTHROUGH_* variable, no client file.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PULLTHROUGH_")}
    environment["XDG_CONFIG_HOME"] = str(cwd / "no-client-config")
    return subprocess.run(
        [str(pullthrough_binary()), *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        env=environment,
        check=False,
    )


@pytest.mark.parametrize("command", DATA_DIR_COMMANDS, ids=" ".join)
def test_without_config_and_without_a_data_directory_is_one_line_exit_2_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # Fails on the old behaviour: `./data` was created, and `users delete bob` then said
    # "no principal named 'bob'" (exit 1), `users list` printed an empty list (exit 0).
    result = run(tmp_path, *command)

    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"pullthrough: no data directory at {tmp_path / 'data'}: ")
    assert "--config" in lines[0] and "PULLTHROUGH_CONFIG" in lines[0]
    assert "data_dir" in lines[0]
    assert not (tmp_path / "data").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_existing_default_data_directory_is_used_without_config(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()

    created = run(tmp_path, "apikeys", "create", "ci")
    listed = run(tmp_path, "users", "list")

    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("ptk_")
    assert listed.returncode == 0, listed.stderr
    assert "ci" in listed.stdout
    assert (tmp_path / "data" / "metadata.sqlite").is_file()


def test_a_data_directory_named_by_the_configuration_is_created_for_bootstrapping(
    tmp_path: Path,
) -> None:
    config = tmp_path / "pullthrough.yaml"
    config.write_text(f"data_dir: {tmp_path / 'srv'}\n")

    created = run(tmp_path, "apikeys", "create", "ops", "--config", str(config))

    assert created.returncode == 0, created.stderr
    assert (tmp_path / "srv" / "metadata.sqlite").is_file()
    assert not (tmp_path / "data").exists()
