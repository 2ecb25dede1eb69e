"""The dashboard in process, without a browser: loaded only when opened, open with auth off,
and its listings' search, sort, pages and CSV (tests/e2e drives it in chromium)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from pullthrough.api.app import build_app
from pullthrough.api.ui.session import _safe_next
from pullthrough.api.ui.tables import Column, csv_response, listing
from pullthrough.config import Settings

_PROGRAM = """
import asyncio, json, sys
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pullthrough.api.app import build_app
from pullthrough.config import Settings

WATCHED = ("pullthrough.api.ui", "jinja2", "aiohttp_jinja2", "pullthrough.api.admin")

def loaded():
    return [name for name in WATCHED if name in sys.modules]

async def main():
    report = {}
    async with TestClient(TestServer(build_app(Settings(data_dir=sys.argv[1])))) as client:
        report["v2_status"] = (await client.get("/v2/")).status
        report["after_pull_path"] = loaded()
        report["ui_status"] = (await client.get("/ui/")).status
        report["after_ui"] = loaded()
    print(json.dumps(report))

asyncio.run(main())
"""


def test_the_dashboard_loads_at_its_first_request_and_without_the_admin_api(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["v2_status"] == 200
    assert report["after_pull_path"] == []
    assert report["ui_status"] == 200
    assert report["after_ui"] == ["pullthrough.api.ui", "jinja2", "aiohttp_jinja2"]


# The request log's fields are kept under plain string keys on the request (api/middleware.py).
async def test_with_auth_off_every_page_is_open_and_says_so(tmp_path: Path) -> None:
    async with TestClient(TestServer(build_app(Settings(data_dir=tmp_path / "data")))) as client:
        for path in ("/ui/", "/ui/upstreams", "/ui/repositories", "/ui/rules", "/ui/space"):
            response = await client.get(path, allow_redirects=False)
            assert response.status == 200, path
            text = await response.text()
            assert "authentication off" in text
            assert response.headers["Cache-Control"] == "no-store"
        missing = await client.get("/ui/repository?name=up/nothing")
        assert missing.status == 404
        assert "up/nothing" in await missing.text()
        assert (await client.get("/ui", allow_redirects=False)).headers["Location"] == "/ui/"


@dataclass(frozen=True)
class _Repo:
    name: str
    size: int
    pulled: float | None


COLUMNS: list[Column[_Repo]] = [
    Column("name", "Name", lambda r: r.name),
    Column("size", "Size", lambda r: r.size, numeric=True),
    Column("pulled", "Pulled", lambda r: r.pulled, as_text=lambda v: f"t{v:g}"),
]
ROWS = [
    _Repo("up/b", 30, 2.0),
    _Repo("up/a", 10, None),
    _Repo("hub/c", 20, 1.0),
    _Repo("=cmd", 5, 3.0),
]


def _listing(query: str) -> list[str]:
    request = make_mocked_request("GET", f"/ui/repositories?{query}")
    page = listing(request, ROWS, COLUMNS, searched=lambda r: r.name, default_sort="name")
    return [row.name for row in page.rows]


def test_listings_search_sort_and_cut_into_pages() -> None:
    assert _listing("") == ["=cmd", "hub/c", "up/a", "up/b"]
    assert _listing("q=UP/") == ["up/a", "up/b"]
    assert _listing("sort=size&order=desc") == ["up/b", "hub/c", "up/a", "=cmd"]
    # Rows without a value come last, whichever the order.
    assert _listing("sort=pulled") == ["hub/c", "up/b", "=cmd", "up/a"]
    assert _listing("sort=pulled&order=desc") == ["=cmd", "up/b", "hub/c", "up/a"]
    assert _listing("sort=size&per_page=3&page=2") == ["up/b"]
    assert _listing("sort=size&per_page=3&page=99") == ["up/b"]  # the last page
    assert _listing("sort=nonsense&per_page=0") == ["=cmd"]  # at least one per page


def test_page_links_keep_the_search_and_flip_the_order() -> None:
    request = make_mocked_request("GET", "/ui/repositories?q=up&sort=size&page=2&per_page=1")
    page = listing(request, ROWS, COLUMNS, searched=lambda r: r.name, default_sort="name")
    assert page.total == 2
    assert page.link(page=1) == "?q=up&sort=size&order=asc&page=1&per_page=1"
    assert page.sort_link("size") == "?q=up&sort=size&order=desc&page=1&per_page=1"
    assert page.sort_link("name") == "?q=up&sort=name&order=asc&page=1&per_page=1"
    assert page.csv_link() == "?q=up&sort=size&order=asc&per_page=1&format=csv"


def test_csv_has_every_column_and_no_cell_a_spreadsheet_would_run() -> None:
    response = csv_response(ROWS, COLUMNS, "repositories.csv")
    assert response.content_type == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="repositories.csv"'
    assert response.text is not None
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["name", "size", "pulled"]
    assert rows[1:] == [
        ["up/b", "30", "t2"],
        ["up/a", "10", ""],
        ["hub/c", "20", "t1"],
        ["'=cmd", "5", "t3"],
    ]


def test_after_login_only_a_dashboard_path_is_followed() -> None:
    assert _safe_next("/ui/repositories?q=x") == "/ui/repositories?q=x"
    for target in (None, "", "https://evil.example/", "//evil.example/ui", "/ui//evil", "/v2/"):
        assert _safe_next(target) == "/ui/"
