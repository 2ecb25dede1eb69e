"""Where a registry client reports each HTTP request it sent upstream, as it is answered: for
metrics and the log line that ties it to the client request that caused it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from yarl import URL

from pullthrough.upstream.faults import UpstreamName


class RequestObserver(Protocol):
    def answered(
        self,
        upstream: UpstreamName,
        method: str,
        url: URL,
        status: int | None,
        seconds: float,
        headers: Mapping[str, str] | None,
    ) -> None:
        """`method url` to `upstream` got `status` and `headers` after `seconds` (until the
        headers); `status` and `headers` are None when no response came."""
