"""The web pages: ``/`` the player (hls.js), ``/admin/`` the upload page, and their files under ``/static/``.

The pages are plain HTML, CSS and vanilla JS in ``origin/web/``; hls.js is copied from npm into
``origin/web/vendor/`` by ``make setup``. A missing file is a JSON 404 like every other unknown path, so
the origin runs without hls.js and the player page says how to install it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from media.errors import NotFound
from media.layout import is_safe_component

WEB_DIR = Path(__file__).with_name("web")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",  # RFC 9239
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# Revalidate every time (FileResponse answers 304 from ETag/Last-Modified): a `make setup` that
# upgrades hls.js or an edited page shows up on the next load, at the cost of one tiny round trip.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def static_path(root: Path, relative: str) -> Path | None:
    """``root/relative`` for a servable file name, or None; components are plain names, never ``..``."""
    components = relative.split("/")
    if not all(is_safe_component(c) for c in components) or Path(relative).suffix not in CONTENT_TYPES:
        return None
    return root.joinpath(*components)


async def _send(path: Path | None) -> web.FileResponse:
    if path is None or not await asyncio.to_thread(path.is_file):
        raise NotFound("not found")
    return web.FileResponse(path, headers=HEADERS | {"Content-Type": CONTENT_TYPES[path.suffix]})


async def player_page(_request: web.Request) -> web.FileResponse:
    return await _send(WEB_DIR / "index.html")


async def admin_page(_request: web.Request) -> web.FileResponse:
    return await _send(WEB_DIR / "admin.html")


async def admin_redirect(_request: web.Request) -> web.StreamResponse:
    # One canonical URL for the page, as a web server does for a directory.
    raise web.HTTPMovedPermanently("/admin/")


async def static_file(request: web.Request) -> web.FileResponse:
    return await _send(static_path(WEB_DIR, request.match_info["path"]))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", player_page)
    app.router.add_get("/admin/", admin_page)
    app.router.add_get("/admin", admin_redirect)
    app.router.add_get("/static/{path:.+}", static_file)
