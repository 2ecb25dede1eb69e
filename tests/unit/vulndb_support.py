"""OSV records and archives for the vulnerability database's tests, and a local stand-in for
OSV's bucket (`/<ecosystem>/all.zip` with ETags) that counts what it is asked."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web


def osv(
    ident: str,
    ecosystem: str,
    name: str,
    fixed: str,
    modified: str = "2024-05-01T10:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": ident,
        "modified": modified,
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": name},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}
                ],
            }
        ],
        **extra,
    }


def zipped(*records: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for record in records:
            archive.writestr(f"{record['id']}.json", json.dumps(record))
    return buffer.getvalue()


class ArchiveServer:
    """OSV's bucket as far as sync uses it: `/<ecosystem>/all.zip` with an ETag and
    Last-Modified, 304 to a matching If-None-Match; every request counted."""

    def __init__(self) -> None:
        self.archives: dict[str, bytes] = {}
        self.requests: list[tuple[str, int]] = []  # (ecosystem, status answered)
        self.url = ""
        # False: a server that sends only Last-Modified (each archive's, from `modified`).
        self.etags = True
        self.modified: dict[str, str] = {}

    def etag(self, ecosystem: str) -> str:
        return '"' + hashlib.sha256(self.archives[ecosystem]).hexdigest()[:16] + '"'

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ecosystem = request.match_info["ecosystem"]
        if ecosystem not in self.archives:
            self.requests.append((ecosystem, 404))
            raise web.HTTPNotFound()
        etag = self.etag(ecosystem)
        last_modified = self.modified.get(ecosystem, "Wed, 01 May 2024 10:00:00 GMT")
        headers = {"Last-Modified": last_modified}
        if self.etags:
            headers["ETag"] = etag
        if self.etags and request.headers.get("If-None-Match") == etag:
            self.requests.append((ecosystem, 304))
            return web.Response(status=304, headers=headers)
        if not self.etags and request.headers.get("If-Modified-Since") == last_modified:
            self.requests.append((ecosystem, 304))
            return web.Response(status=304, headers=headers)
        self.requests.append((ecosystem, 200))
        return web.Response(
            body=self.archives[ecosystem], headers=headers, content_type="application/zip"
        )


@pytest.fixture
async def archive_server() -> AsyncIterator[ArchiveServer]:
    server = ArchiveServer()
    app = web.Application()
    app.router.add_get("/osv/{ecosystem}/all.zip", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}/osv"
    try:
        yield server
    finally:
        await runner.cleanup()
