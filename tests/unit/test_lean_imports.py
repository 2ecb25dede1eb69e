"""A worker imports what serving needs and nothing else: the admin API, plan/apply, the command
line's command groups and the S3 driver load only when something uses them.

Each check runs in a fresh interpreter, so what this test process has imported does not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Serving with the default settings: the app started, a pull-path request and an admin request
# answered in process, the loaded modules reported after each.
_PROGRAM = """
import asyncio, json, sys
from aiohttp.test_utils import TestClient, TestServer
from pullthrough.api.app import build_app
from pullthrough.config import Settings

def loaded():
    return sorted(sys.modules)

async def main():
    report = {}
    app = build_app(Settings(data_dir=sys.argv[1]))
    async with TestClient(TestServer(app)) as client:
        report["started"] = loaded()
        response = await client.get("/v2/")
        report["v2_status"] = response.status
        report["after_pull_path"] = loaded()
        response = await client.get("/api/v1/rules")
        report["admin_status"] = response.status
        report["admin_body"] = await response.json()
        report["after_admin"] = loaded()
        response = await client.get("/api/v1/rules/no-such-rule")  # a path parameter
        report["admin_missing_status"] = response.status
    print(json.dumps(report))

asyncio.run(main())
"""

# Loaded only on use: none of these may be in a worker that has served only pulls.
_NOT_FOR_SERVING = (
    "pullthrough.api.admin",
    "pullthrough.api.admin.operations",
    "pullthrough.api.admin.openapi",
    "pullthrough.declarative",
    "pullthrough.cli.declarative",
    "pullthrough.cli.access",
    "pullthrough.storage.s3",
    "aiobotocore",
    "botocore",
    "typer",
    "ruamel",
)


def _serving_report(tmp_path: Path) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return report


def _loaded_of(modules: object, names: tuple[str, ...]) -> set[str]:
    assert isinstance(modules, list)
    return {name for name in names if name in modules}


def test_serving_loads_no_admin_api_declarative_cli_or_s3_until_used(tmp_path: Path) -> None:
    report = _serving_report(tmp_path)
    assert report["v2_status"] == 200
    assert _loaded_of(report["started"], _NOT_FOR_SERVING) == set()
    assert _loaded_of(report["after_pull_path"], _NOT_FOR_SERVING) == set()
    # The first admin request loads the admin API, and it answers as always.
    assert report["admin_status"] == 200
    assert report["admin_missing_status"] == 404
    assert isinstance(report["admin_body"], dict)
    assert _loaded_of(report["after_admin"], ("pullthrough.api.admin.operations",)) == {
        "pullthrough.api.admin.operations"
    }
    assert _loaded_of(report["after_admin"], ("pullthrough.declarative", "aiobotocore")) == set()


def test_serve_command_loads_no_other_command_group() -> None:
    program = (
        "import sys; sys.argv = ['pullthrough', 'serve', '--help']\n"
        "from pullthrough.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "prefixes = ('pullthrough.cli.', 'pullthrough.declarative')\n"
        "print([m for m in sys.modules if m.startswith(prefixes)])"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    loaded = set(json.loads(result.stdout.splitlines()[-1].replace("'", '"')))
    assert loaded <= {"pullthrough.cli.app", "pullthrough.cli.options"}
