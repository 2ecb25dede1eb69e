"""The session's secret check finds a registered value in a log, as itself or inside a Basic
header, and nothing in a clean log."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.rig.secret_watch import SecretWatch, register_command

PASSWORD = "s3cret-Value-4412"


def test_a_value_and_its_basic_header_are_found_in_a_log(tmp_path: Path) -> None:
    watch = SecretWatch()
    watch.secret(PASSWORD, "a password")
    watch.secret("short", "too short to search for")
    clean = tmp_path / "clean.log"
    clean.write_text('{"message": "GET /v2/ 401", "user": "alice"}\nshort\n')
    leaky = tmp_path / "leaky.log"
    lines = ["first line"]
    for name in ("a", "al", "ali", "alice"):  # the value at each offset of a base64 group
        header = base64.b64encode(f"{name}:{PASSWORD}".encode()).decode()
        lines.append(f'{{"authorization": "Basic {header}"}}')
    lines.append(f'{{"message": "password {PASSWORD}"}}')
    leaky.write_text("\n".join(lines) + "\n")
    watch.log(clean)
    watch.log(leaky)
    leaks = watch.leaks()
    assert {leak.log for leak in leaks} == {leaky}
    assert sorted({leak.line_number for leak in leaks}) == [2, 3, 4, 5, 6]
    assert all(PASSWORD not in leak.what for leak in leaks)


def test_commands_register_their_stdin_secret_fields_and_printed_keys() -> None:
    from tests.rig.secret_watch import WATCH

    register_command(("apikeys", "create", "ci"), "", "ci-key-0123456789abcdef\n")
    register_command(
        ("secrets", "put", "hub"),
        '{"username": "robot-account", "accessToken": "tok-98765432"}',
        "",
    )
    assert WATCH.knows("ci-key-0123456789abcdef") == "output of `pullthrough apikeys create`"
    assert WATCH.knows("tok-98765432") == "stdin of `pullthrough secrets put`, field accessToken"
    assert WATCH.knows("robot-account") is None
