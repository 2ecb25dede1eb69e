"""Help screens are whole: no option name, URL or sentence is cut short ("…"), whether help goes
to a pipe (COLUMNS unset, or a narrow COLUMNS) or to a narrow terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

PULLTHROUGH = Path(sys.executable).parent / "pullthrough"


def help_env(columns: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    if columns is not None:
        env["COLUMNS"] = columns
    return env


def assert_whole(text: str) -> None:
    assert "--no-all-platforms" in text  # rich cut it to `--no-all-platfo…` at 80 columns
    assert "http://127.0.0.1:5000" in text
    assert "…" not in text.replace("sha256:…", "")  # the help text's own ellipsis stays


@pytest.mark.parametrize("columns", [None, "60"])
def test_help_sent_to_a_pipe_is_whole(columns: str | None) -> None:
    result = subprocess.run(
        [str(PULLTHROUGH), "prefetch", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=help_env(columns),
    )
    assert_whole(result.stdout)
    [concurrency] = [line for line in result.stdout.splitlines() if "--concurrency" in line]
    assert "Downloads (and images) at once. [default: 4]" in concurrency


def test_help_on_a_narrow_terminal_is_whole() -> None:
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 60, 0, 0))  # 60 columns
    process = subprocess.Popen(
        [str(PULLTHROUGH), "prefetch", "--help"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=help_env(None),
    )
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the command has exited
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0
    # Colours and styles aside, the text is whole (the terminal wraps lines wider than it).
    assert_whole(re.sub(r"\x1b\[[0-9;]*m", "", output.decode(errors="replace")))
