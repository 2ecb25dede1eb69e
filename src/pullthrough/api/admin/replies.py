"""Admin responses: a model as JSON with a status, or 204 with nothing."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel


def reply(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


def no_content() -> web.Response:
    return web.Response(status=204)
