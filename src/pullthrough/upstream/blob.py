"""An upstream blob download in progress: an open response read chunk by chunk, never whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

import aiohttp

from pullthrough.upstream.faults import Transient, UpstreamName, translate_exception
from pullthrough.upstream.retries import UpstreamTimeouts


class UpstreamBlob:
    """The body of an upstream blob response, from byte `offset` on.

    `status` is 200 (the whole blob; `offset` is 0 even if a range was asked for and ignored) or
    206 (a resumed download). `total_size` is the full blob's size when the upstream said it.
    Use as an async context manager, or call `close()`: an abandoned body holds a connection.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        upstream: UpstreamName,
        what: str,
        timeouts: UpstreamTimeouts,
        status: int,
        offset: int,
        total_size: int | None,
    ) -> None:
        self._response = response
        self._upstream = upstream
        self._what = what
        self._timeouts = timeouts
        self.status = status
        self.offset = offset
        self.total_size = total_size
        self.received = 0  # body bytes read so far

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body in the pieces the connection delivered them in: never joined or split, so
        no byte is copied on the way.

        A dropped connection or a stalled read raises UpstreamUnavailable / UpstreamTimeout,
        naming the upstream and how far the download got, so the caller can resume from there.
        """
        try:
            async for chunk, _ in self._response.content.iter_chunks():
                self.received += len(chunk)
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            at = self.offset + self.received
            doing = f"reading {self._what} (connection lost at byte {at})"
            error = translate_exception(exc, self._upstream, doing, self._timeouts)
            # Mid-body there is nothing to retry here: the caller resumes with a Range request.
            raise (error.error if isinstance(error, Transient) else error) from exc

    async def close(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # fully read: the connection can be reused
        else:
            self._response.close()  # mid-body: the connection is unusable, drop it

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
