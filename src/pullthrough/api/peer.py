"""The fills endpoint other replicas read: `GET /_pullthrough/fills/<algorithm>:<hex>`.

A replica that does not lead a blob's fill streams it from the one that does
(`cache/fill/peer.py`). This endpoint streams this host's fill of the blob as it grows — this
worker's own, or another worker's followed through its record (`cache/fill/follow.py`) — or,
with no fill running, the stored blob. It lies outside `/v2/`, so no repository name can reach it.

- 401 UNAUTHORIZED, and no bytes, without a live peer token for the digest
  (`access/peer_tokens.py`): outside clients never read blobs by digest around the registry
  policy.
- 200: the bytes from `?offset=N` on (default 0), as they arrive. Headers:
  `X-Pullthrough-Offset` (N), `X-Pullthrough-Fill-State` (`running`, `verified`, `committed`
  when the answer began), `X-Pullthrough-Blob-Size` and `Content-Length` when the size is
  known, `Docker-Content-Digest`. The last byte goes only once the digest is verified; when the
  fill fails, the connection is cut short, so a peer never takes a wrong blob as whole.
- 404 BLOB_UNKNOWN: this host has neither a fill of the blob nor a stored copy.
- 416 when the offset lies past the end; the fill's own error when it failed before the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from aiohttp import web

from pullthrough.access.peer_tokens import PeerTokens
from pullthrough.api.blob_body import send_pieces
from pullthrough.api.middleware import API_VERSION_HEADERS
from pullthrough.cache.fill.peer import (
    FILLS_PATH,
    OFFSET_HEADER,
    SIZE_HEADER,
    STATE_HEADER,
    host_fill,
)
from pullthrough.cache.fill.reading import SpoolSpan, read_stored
from pullthrough.cache.fill.state import FillState
from pullthrough.cache.service import PullThroughCache
from pullthrough.errors import BlobUnknown, RangeNotSatisfiable, RequestInvalid
from pullthrough.oci.digest import Digest
from pullthrough.storage.layout import DataLayout, blob_key


class PeerFills:
    """The endpoint's one handler, over the cache of this worker."""

    def __init__(self, cache: PullThroughCache, tokens: PeerTokens) -> None:
        self._cache = cache
        self._tokens = tokens

    async def get(self, request: web.Request) -> web.StreamResponse:
        text = request.match_info["digest"]
        self._tokens.check(request.headers.get("Authorization"), text)
        digest = Digest.parse(text)
        offset = _offset(request.query.get("offset", "0"))
        cache = self._cache
        key = blob_key(digest.algorithm, digest.hex)
        fill = await host_fill(
            digest,
            leading=cache.blobs.fills,
            locks=cache.locks,
            driver=cache.driver,
            spool_dir=DataLayout(cache.settings.data_dir.resolve()).temp_dir,
            deadline=cache.settings.fill_deadline,
            own_url=cache.settings.advertised_url,
        )
        if fill is not None:
            await fill.wait_started()
            pieces = fill.spans(offset, None)
            return await _send(request, digest, offset, fill.size, fill.state, pieces)
        stored = await cache.driver.stat(key)
        if stored is None:
            raise BlobUnknown(f"this replica has no fill and no stored copy of {digest}")
        chunks = read_stored(cache.driver, key, offset, None)
        return await _send(request, digest, offset, stored.size, FillState.COMMITTED, chunks)


PEER_FILLS_KEY = web.AppKey("peer_fills", PeerFills)


def add_peer_routes(app: web.Application, cache_key: web.AppKey[PullThroughCache]) -> None:
    """Register the fills endpoint; it is built once the cache (under `cache_key`) is open."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        cache = app[cache_key]
        app[PEER_FILLS_KEY] = PeerFills(cache, cache.peers.tokens)
        yield

    async def handler(request: web.Request) -> web.StreamResponse:
        return await request.app[PEER_FILLS_KEY].get(request)

    app.cleanup_ctx.append(context)
    app.router.add_get(FILLS_PATH + "{digest}", handler, allow_head=False)


def _offset(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise RequestInvalid(f"offset={text[:40]!r} is not a byte position")
    return int(text)


async def _send(
    request: web.Request,
    digest: Digest,
    offset: int,
    size: int | None,
    state: FillState,
    pieces: AsyncIterable[bytes | SpoolSpan],
) -> web.StreamResponse:
    """Stream `pieces` (the blob from `offset` on); cut the connection if they fail."""
    if size is not None and offset > size:
        raise RangeNotSatisfiable(f"offset {offset} lies past the end of {digest} ({size} bytes)")
    headers = {
        **API_VERSION_HEADERS,
        "Docker-Content-Digest": str(digest),
        "Content-Type": "application/octet-stream",
        OFFSET_HEADER: str(offset),
        STATE_HEADER: state.value,
    }
    response = web.StreamResponse(headers=headers)
    if size is not None:
        response.headers[SIZE_HEADER] = str(size)
        response.content_length = size - offset
    await response.prepare(request)
    # The last byte is held back until verified: a peer never has the whole of a wrong blob.
    await send_pieces(request, response, pieces)
    return response
