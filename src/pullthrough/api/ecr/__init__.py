"""The ECR-compatible API: ECR's and Secrets Manager's JSON 1.1 protocol and STS's Query
protocol at `POST /`, signed with AWS access keys (Signature Version 4) of pullthrough
principals, over the same services as the admin API (endpoint.py). Loaded at its first request,
like the admin API, so a worker that only serves pulls never imports it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from pullthrough.api.access import AccessControl
    from pullthrough.api.ecr.endpoint import AwsApi
    from pullthrough.cache.service import PullThroughCache

__all__ = ["LazyAwsApi"]


class LazyAwsApi:
    """`POST /` for AWS clients; None for other requests, which are nobody's."""

    def __init__(self) -> None:
        self._api: AwsApi | None = None
        self._loading = asyncio.Lock()

    async def handle(
        self, request: web.Request, cache: PullThroughCache, access: AccessControl | None
    ) -> web.StreamResponse | None:
        from pullthrough.api.ecr.endpoint import AwsApi, is_aws_request

        if not is_aws_request(request):
            return None
        async with self._loading:
            if self._api is None:
                self._api = AwsApi(cache, access)
        return await self._api.handle(request)
