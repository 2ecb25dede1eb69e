"""Log lines are written by a thread of each process: every line reaches stderr, as one JSON
object, by the time the process has ended — a forked worker's too."""

from __future__ import annotations

import json
import subprocess
import sys

_PROGRAM = """
import logging, os
from pullthrough.telemetry.logs import configure_logging, request_line, stop_logging

access = logging.getLogger("pullthrough.access")

def requests(count, who):
    for i in range(count):
        request_line(access, f"GET /v2/{who}/{i} 200", {
            "request_id": f"{who}-{i}", "method": "GET", "path": f"/v2/{who}/{i}",
            "status": 200, "duration_ms": 0.5, "remote": "127.0.0.1", "cache": "hit",
        })

configure_logging("info")
requests(500, "parent")
child = os.fork()
if child == 0:  # as a worker does: a writer of its own, stopped before the process ends
    configure_logging("info")
    requests(500, "child")
    logging.getLogger("pullthrough.worker").warning("child done")
    stop_logging()
    os._exit(0)
os.waitpid(child, 0)
requests(500, "parent-after")
logging.getLogger("pullthrough.server").info("parent done %d", child)
# No stop: the writer is stopped, and what it holds written, at exit.
"""


def test_every_line_is_written_once_by_the_end_of_each_process() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    access = [line for line in lines if line["logger"] == "pullthrough.access"]
    ids = [line["request_id"] for line in access]
    assert len(ids) == len(set(ids)) == 1500
    parent_pid = next(line["pid"] for line in access if line["request_id"] == "parent-0")
    child_pid = next(line["pid"] for line in access if line["request_id"] == "child-0")
    assert parent_pid != child_pid
    assert {line["pid"] for line in access if line["request_id"].startswith("child-")} == {
        child_pid
    }
    first = next(line for line in access if line["request_id"] == "child-7")
    assert first == {
        "time": first["time"],
        "level": "info",
        "logger": "pullthrough.access",
        "pid": child_pid,
        "message": "GET /v2/child/7 200",
        "request_id": "child-7",
        "method": "GET",
        "path": "/v2/child/7",
        "status": 200,
        "duration_ms": 0.5,
        "remote": "127.0.0.1",
        "cache": "hit",
    }
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-01-01T00:00:00.000Z")
    messages = {line["message"] for line in lines if line["logger"] != "pullthrough.access"}
    assert messages == {"child done", f"parent done {child_pid}"}
