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
from media.layout import Library, is_safe_component
from origin.cache_headers import cors_headers, delivery_headers, preflight_headers
from origin.keys import CONFIG, LIBRARY, STORE
from origin.store import Status


class PublishedFiles:
    """Published files already checked (inside the library, a regular file), with their headers.

    Titles never change once published, so the checks (a path resolution and a stat, off the loop)
    are done once per file; deleting a title forgets its files.
    """

    LIMIT = 100_000

    def __init__(self) -> None:
        self._known: dict[tuple[str, ...], tuple[Path, dict[str, str]]] = {}

    async def find(self, request: web.Request, *components: str) -> tuple[Path, dict[str, str]]:
        key = (request.match_info["title_id"], *components)
        known = self._known.get(key)
        if known is not None:
            return known
        title_id = key[0]
        if not is_title_id(title_id) or not all(is_safe_component(c) for c in components):
            raise InvalidInput("invalid path")
        config = request.app[CONFIG]
        headers = delivery_headers(components[-1], config.playlist_max_age)
        if headers is None:
            raise NotFound("not found")
        path = await asyncio.to_thread(_checked, request.app[LIBRARY], title_id, components)
        if len(self._known) >= self.LIMIT:
            self._known.clear()
        self._known[key] = (path, headers | cors_headers(config.cors_origin))
        return self._known[key]

    def forget(self, title_id: str) -> None:
        for key in [k for k in self._known if k[0] == title_id]:
            del self._known[key]


def _checked(library: Library, title_id: str, components: tuple[str, ...]) -> Path:
    path = library.title_file(title_id, *components)
    if not path.is_file():
        raise NotFound("not found")
    return path


PUBLISHED = web.AppKey("published_files", PublishedFiles)


async def _serve(request: web.Request, *components: str) -> web.StreamResponse:
    path, headers = await request.app[PUBLISHED].find(request, *components)
    return web.FileResponse(path, headers=headers)


async def master(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "master.m3u8")


async def rendition_file(request: web.Request) -> web.StreamResponse:
    return await _serve(request, request.match_info["rendition"], request.match_info["file"])


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
    app[PUBLISHED] = PublishedFiles()
    for path, handler in (
        ("/titles", catalog),
        ("/titles/{title_id}/master.m3u8", master),
        ("/titles/{title_id}/{rendition}/{file}", rendition_file),
    ):
        resource = app.router.add_resource(path)
        resource.add_route("GET", handler)
        resource.add_route("HEAD", handler)
        resource.add_route("OPTIONS", preflight)
