"""Downloading OSV's per-ecosystem archives (`<base URL>/<ecosystem>/all.zip`) with
conditional requests: the ETag and Last-Modified of the copy last imported are sent back, and an
archive that has not changed is answered 304 and not downloaded again."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp

DEFAULT_URL = "https://osv-vulnerabilities.storage.googleapis.com"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Fetched:
    """A changed archive, written to `path`, with the validators to send next time."""

    path: Path
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class NotModified:
    pass


def archive_url(base_url: str, ecosystem: str) -> str:
    return f"{base_url.rstrip('/')}/{quote(ecosystem, safe=':')}/all.zip"


class ArchiveError(Exception):
    """An archive could not be downloaded; the message names its URL and what went wrong."""


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    etag: str | None,
    last_modified: str | None,
    into: Path,
) -> Fetched | NotModified:
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        async with session.get(url, headers=headers) as response:
            if response.status == 304:
                return NotModified()
            if response.status != 200:
                raise ArchiveError(f"GET {url} answered {response.status} {response.reason}")
            with into.open("wb") as file:
                async for chunk in response.content.iter_chunked(_CHUNK):
                    await asyncio.to_thread(file.write, chunk)
            return Fetched(
                into, response.headers.get("ETag"), response.headers.get("Last-Modified")
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ArchiveError(f"GET {url} failed: {exc or type(exc).__name__}") from None
