"""Public delivery of published titles: catalog, playlists, init and media segments.

aiohttp's FileResponse does the HTTP work (strong ETag, Last-Modified, 304, 412, Range 206/416, HEAD,
sendfile off the loop, and the precompressed ``.gz`` playlist when the client accepts gzip).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from media.errors import InvalidInput, NotFound
from media.ids import is_title_id
from media.layout import is_safe_component
from origin.cache_headers import cors_headers, delivery_headers, preflight_headers
from origin.keys import CONFIG, LIBRARY, STORE
from origin.store import Status


def _published_file(request: web.Request, *components: str) -> Path:
    title_id = request.match_info["title_id"]
    if not is_title_id(title_id) or not all(is_safe_component(c) for c in components):
        raise InvalidInput("invalid path")
    return request.app[LIBRARY].title_file(title_id, *components)


async def _serve(request: web.Request, path: Path) -> web.StreamResponse:
    headers = delivery_headers(path.name, request.app[CONFIG].playlist_max_age)
    if headers is None or not await asyncio.to_thread(path.is_file):
        raise NotFound("not found")
    return web.FileResponse(path, headers=headers | cors_headers(request.app[CONFIG].cors_origin))


async def master(request: web.Request) -> web.StreamResponse:
    return await _serve(request, _published_file(request, "master.m3u8"))


async def rendition_file(request: web.Request) -> web.StreamResponse:
    return await _serve(
        request, _published_file(request, request.match_info["rendition"], request.match_info["file"])
    )


async def preflight(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    headers = preflight_headers(config.cors_origin, request.headers.get("Access-Control-Request-Headers"))
    return web.Response(status=204, headers=headers)


async def catalog(request: web.Request) -> web.Response:
    records = await request.app[STORE].list(Status.READY)
    titles = [
        {
            "id": r.id,
            "name": r.name,
            "duration": r.duration,
            "created": r.created,
            "master": r.to_json()["master"],
        }
        for r in records
    ]
    return web.json_response({"titles": titles}, headers=cors_headers(request.app[CONFIG].cors_origin))


def add_routes(app: web.Application) -> None:
    for path, handler in (
        ("/titles", catalog),
        ("/titles/{title_id}/master.m3u8", master),
        ("/titles/{title_id}/{rendition}/{file}", rendition_file),
    ):
        resource = app.router.add_resource(path)
        resource.add_route("GET", handler)
        resource.add_route("HEAD", handler)
        resource.add_route("OPTIONS", preflight)
