"""The web dashboard under /ui: server-rendered pages (aiohttp-jinja2) over the stores the
admin API reads, behind the same authentication, with htmx and uPlot vendored under `static/`
(no build step). Loaded at its first request, like the admin API (`api/app.py`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from pullthrough import __version__
from pullthrough.api.access import AccessControl
from pullthrough.api.request_ids import request_id_of
from pullthrough.api.ui import pages, session
from pullthrough.api.ui.formatting import FILTERS
from pullthrough.api.ui.services import UI_SERVICES, DashboardServices
from pullthrough.cache.service import PullThroughCache

__all__ = ["UI_ROOT", "build_dashboard"]

log = logging.getLogger(__name__)

UI_ROOT = "/ui"
_HERE = Path(__file__).parent

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_dashboard(cache: PullThroughCache, access: AccessControl | None) -> web.Application:
    """The dashboard's application; its routes are full paths under /ui."""
    app = web.Application()
    app[UI_SERVICES] = DashboardServices.open(cache, access)
    templates = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
        autoescape=True,
        filters=FILTERS,
    )
    templates.globals["static"] = _static_url
    app.router.add_get(UI_ROOT, _page(_to_overview, public=True))
    app.router.add_get(UI_ROOT + "/", _page(pages.overview))
    app.router.add_get(UI_ROOT + "/upstreams", _page(pages.upstreams))
    app.router.add_get(UI_ROOT + "/repositories", _page(pages.repositories))
    app.router.add_get(UI_ROOT + "/repository", _page(pages.repository))
    app.router.add_get(UI_ROOT + "/image", _page(pages.image))
    app.router.add_get(UI_ROOT + "/rules", _page(pages.rules))
    app.router.add_get(UI_ROOT + "/space", _page(pages.space))
    app.router.add_get(session.LOGIN_PATH, _page(_login_form, public=True))
    app.router.add_post(session.LOGIN_PATH, _page(_login, public=True))
    app.router.add_post(UI_ROOT + "/logout", _page(_logout, public=True))
    app.router.add_static(UI_ROOT + "/static", _HERE / "static")
    return app


def _static_url(path: str) -> str:
    # The release in the URL: a browser never keeps last release's script or stylesheet.
    return f"{UI_ROOT}/static/{path}?v={__version__}"


def _page(handler: Handler, *, public: bool = False) -> Handler:
    """`handler` behind an admin's session (unless `public`: the login form), with a failure
    rendered as a page. A wrapper, not a middleware: the serving application hands each /ui
    request straight to the handler this application's router found (`api/app.py`)."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            if not public:
                access = request.app[UI_SERVICES].access
                viewer = await session.viewer(request, access)
                request[session.VIEWER_KEY] = viewer
            response = await handler(request)
        except session.NotAnAdmin as refused:
            response = pages.render(request, "refused.html", title="Not allowed", why=str(refused))
            response.set_status(403)
        except pages.NotCached as missing:
            response = pages.render(request, "refused.html", title="Not found", why=str(missing))
            response.set_status(404)
        except (web.HTTPException, asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("dashboard error", extra={"request_id": request_id_of(request)})
            why = f"internal error; quote request id {request_id_of(request)} when reporting"
            response = pages.render(request, "refused.html", title="Error", why=why)
            response.set_status(500)
        # Pages show who is logged in and what the cache holds: never kept by a shared cache.
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return endpoint


async def _to_overview(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(UI_ROOT + "/")


async def _login_form(request: web.Request) -> web.StreamResponse:
    return pages.render(request, "login.html", title="Log in", error=None, username="")


async def _login(request: web.Request) -> web.StreamResponse:
    access = request.app[UI_SERVICES].access
    form = await request.post()
    username = str(form.get("username", ""))
    if access is None:
        raise web.HTTPSeeOther(UI_ROOT + "/")
    if not session.check_csrf(request, form.get(session.CSRF_FIELD)):
        error = "the form expired: log in again"
    else:
        try:
            return await session.log_in(request, access, username, str(form.get("password", "")))
        except session.LoginRefused as refused:
            error = str(refused)
    response = pages.render(request, "login.html", title="Log in", error=error, username=username)
    response.set_status(401)
    return response


async def _logout(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not session.check_csrf(request, form.get(session.CSRF_FIELD)):
        raise web.HTTPForbidden(text="the form expired: reload the page", content_type="text/plain")
    return session.log_out(request)
