"""Sending a blob's body as it arrives: bytes are written to the response, spans of a fill's
spool file are handed to the kernel with `sendfile`, so the bytes of a cold blob never pass
through Python on their way to the client.

`sendfile` needs the bytes unframed: a response of unknown length (chunked) is sent by reading
the spans instead, as is one over TLS (asyncio's own fallback). If the pieces fail — a fill's
error, short of the blob's last byte — the connection is cut: the headers are gone, and a cut
is the only honest signal left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable

from aiohttp import web

from pullthrough.cache.fill.reading import SpoolSpan, span_bytes
from pullthrough.errors import RegistryError, UpstreamUnavailable


async def send_pieces(
    request: web.Request, response: web.StreamResponse, pieces: AsyncIterable[bytes | SpoolSpan]
) -> None:
    """Send `pieces` on the prepared `response` and end it; cut the connection when they fail
    (a RegistryError) or a span's bytes are missing from its file, and when the client is
    gone (an OSError)."""
    try:
        async for piece in pieces:
            if isinstance(piece, bytes):
                await response.write(piece)
            elif response.chunked:
                async for chunk in span_bytes(piece):
                    if not chunk:
                        raise UpstreamUnavailable("a fill's spool file lost bytes it wrote")
                    await response.write(chunk)
            else:
                await _sendfile(request, piece)
    except (RegistryError, OSError):
        if request.transport is not None:
            request.transport.abort()
        return
    await response.write_eof()


async def _sendfile(request: web.Request, span: SpoolSpan) -> None:
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went away")
    loop = asyncio.get_running_loop()
    sent = await loop.sendfile(transport, span.file, span.offset, span.count)
    if sent != span.count:
        raise UpstreamUnavailable("a fill's spool file lost bytes it wrote")
