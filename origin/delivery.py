"""Public delivery of published titles: catalog, playlists, init and media segments.

Small published files are answered from memory; aiohttp's FileResponse does the rest of the HTTP work
(strong ETag, Last-Modified, 304, 412, Range 206/416, HEAD, and the precompressed ``.gz`` playlist when
the client accepts gzip).
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import time
from dataclasses import dataclass, replace
from email.utils import formatdate
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from media.errors import NotFound
from media.layout import (
    FILE_ROUTE,
    MASTER_ROUTE,
    SIGNED_ROUTE,
    Library,
    delivery_route,
    validate_delivery_parts,
)
from media.signing import PREFIX, Refusal, TokenChecker
from origin.cache_headers import delivery_headers
from origin.keys import CONFIG, LIBRARY, STORE, TOKENS
from origin.store import Status
from service.cors import cors_headers, preflight_handler
from service.front import FAST_PATH, Answer, FastResponder, SimpleRequest, date_line, render_head
from service.http import json_error
from service.ranges import Unsatisfiable, byte_range, if_range_holds


@dataclass(frozen=True)
class Representation:
    body: bytes
    etag: str  # the same validator FileResponse computes, so conditional requests agree
    last_modified: str
    gzipped: bool = False
    head: bytes = b""  # the response's status line and headers, less Date (for the front's fast path)


@dataclass(frozen=True)
class Published:
    path: Path
    headers: dict[str, str]
    plain: Representation | None  # in memory when small enough
    gzipped: Representation | None

    @property
    def memory(self) -> int:
        """Bytes held in memory."""
        return sum(len(r.body) for r in (self.plain, self.gzipped) if r is not None)


class PublishedFiles:
    """Published files already checked (inside the library, a regular file), with their headers, and
    the small ones kept in memory.

    Titles never change once published, so the checks (a path resolution and a stat, off the loop)
    are done once per file, and plain GET/HEAD answers come from memory in one write: under uvloop,
    FileResponse cannot use sendfile and copies through the thread pool instead. Conditional and
    Range requests still go to FileResponse. Deleting a title forgets its files.
    """

    LIMIT = 100_000
    MAX_FILE = 4 * 1024 * 1024

    def __init__(self, memory_budget: int) -> None:
        self.memory_budget = memory_budget
        self.memory_used = 0
        self._known: dict[tuple[str, ...], Published] = {}

    async def find(self, request: web.Request, *components: str) -> Published:
        key = (request.match_info["title_id"], *components)
        known = self._known.get(key)
        if known is not None:
            return known
        title_id = key[0]
        validate_delivery_parts(title_id, *components)
        config = request.app[CONFIG]
        headers = delivery_headers(components[-1], config.playlist_max_age)
        if headers is None:
            raise NotFound("not found")
        room = self.memory_budget - self.memory_used
        published = await asyncio.to_thread(_load, request.app[LIBRARY], title_id, components, room)
        headers |= cors_headers(config.cors_origin)
        published = replace(
            published,
            headers=headers,
            plain=_with_head(published.plain, headers),
            gzipped=_with_head(published.gzipped, headers),
        )
        if len(self._known) >= self.LIMIT:
            self._known.clear()
            self.memory_used = 0
        self.memory_used += published.memory
        self._known[key] = published
        return published

    def known(self, key: tuple[str, ...]) -> Published | None:
        """Already found: ``(title_id, *components)``."""
        return self._known.get(key)

    def forget(self, title_id: str) -> None:
        for key in [k for k in self._known if k[0] == title_id]:
            self.memory_used -= self._known.pop(key).memory


def answer_headers(headers: dict[str, str], chosen: Representation) -> dict[str, str]:
    """The headers of a 200 answer from memory: the file's own and the chosen representation's."""
    answer = headers | {"ETag": chosen.etag, "Last-Modified": chosen.last_modified, "Accept-Ranges": "bytes"}
    if chosen.gzipped:
        answer["Content-Encoding"] = "gzip"
    return answer


def _with_head(chosen: Representation | None, headers: dict[str, str]) -> Representation | None:
    if chosen is None:
        return None
    return replace(chosen, head=render_head(200, answer_headers(headers, chosen), len(chosen.body)))


def _representation(path: Path, room: int, *, gzipped: bool = False) -> Representation | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    if stat.st_size > min(PublishedFiles.MAX_FILE, room):
        return None
    return replace(_validators(stat), body=path.read_bytes(), gzipped=gzipped)


def _validators(stat: os.stat_result) -> Representation:
    """The ETag and Last-Modified FileResponse sends for a file, with no body."""
    return Representation(
        body=b"",
        etag=f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
        last_modified=formatdate(math.ceil(stat.st_mtime), usegmt=True),  # as aiohttp rounds it
    )


def _load(library: Library, title_id: str, components: tuple[str, ...], room: int) -> Published:
    path = library.title_file(title_id, *components)
    if not path.is_file():
        raise NotFound("not found")
    plain = _representation(path, room)
    gzipped = None
    if path.suffix == ".m3u8" and plain is not None:
        gzipped = _representation(path.with_name(path.name + ".gz"), room - len(plain.body), gzipped=True)
    return Published(path, {}, plain, gzipped)


PUBLISHED = web.AppKey("published_files", PublishedFiles)
# Requests FileResponse answers better: conditional (304/412) and partial (206/416).
_FILE_RESPONSE_HEADERS = ("Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since")
_FILE_RESPONSE_FAST = frozenset(name.lower().encode() for name in _FILE_RESPONSE_HEADERS)


def _choose(published: Published, accept_encoding: str) -> Representation | None:
    if published.gzipped is not None and "gzip" in accept_encoding.lower():
        return published.gzipped
    return published.plain


async def _serve(request: web.Request, *components: str) -> web.StreamResponse:
    request.app[TOKENS].allowed_path(request.path, request.remote or "", time.time())
    published = await request.app[PUBLISHED].find(request, *components)
    if "Range" in request.headers:
        return await _serve_range(request, published)
    if published.plain is None or any(h in request.headers for h in _FILE_RESPONSE_HEADERS):
        return web.FileResponse(published.path, headers=published.headers)
    chosen = _choose(published, request.headers.get("Accept-Encoding", ""))
    assert chosen is not None
    return web.Response(body=chosen.body, headers=answer_headers(published.headers, chosen))


async def _serve_range(request: web.Request, published: Published) -> web.StreamResponse:
    """The cases FileResponse gets wrong: ``bytes=-0`` (416) and a failed If-Range (the whole body,
    RFC 9110 13.1.5); it serves every other range itself."""
    stat = await asyncio.to_thread(published.path.stat)
    plain = _validators(stat)
    if not if_range_holds(request.headers.get("If-Range"), plain.etag, plain.last_modified):
        response = web.FileResponse(published.path, headers=published.headers)
        await response.prepare(request.clone(headers=_without(request.headers, "Range", "If-Range")))
        return response
    if byte_range(request.headers["Range"], stat.st_size) == Unsatisfiable():
        headers = cors_headers(request.app[CONFIG].cors_origin) | {"Content-Range": f"bytes */{stat.st_size}"}
        return json_error(416, "range not satisfiable", headers)
    return web.FileResponse(published.path, headers=published.headers)


def _without(headers: CIMultiDictProxy[str], *names: str) -> CIMultiDict[str]:
    kept = CIMultiDict(headers)
    for name in names:
        kept.popall(name, None)
    return kept


def fast_answer(files: PublishedFiles, tokens: TokenChecker, request: SimpleRequest) -> Answer | None:
    """A published file already in memory, for a plain GET/HEAD, answered by the front (service.front)
    without aiohttp; None sends the request through the routes below, which answer everything else."""
    path = request.path
    now = time.time()
    if tokens.keys is not None or path.startswith(PREFIX):
        allowed = tokens.path_or_refusal(path, request.peer, now)
        if isinstance(allowed, Refusal):
            return None  # ``_serve`` answers the refusal
        path = allowed
    parts = path.split("/")
    if len(parts) not in (4, 5) or parts[1] != "titles":
        return None
    published = files.known(tuple(parts[2:]))
    if published is None or published.plain is None:
        return None
    headers = request.headers
    if not _FILE_RESPONSE_FAST.isdisjoint(headers):
        return None
    chosen = _choose(published, headers.get(b"accept-encoding", b"").decode("latin-1"))
    assert chosen is not None
    head = chosen.head + date_line(now) + b"\r\n"
    body = chosen.body if request.method == "GET" else b""
    return Answer(head, body, 200, delivery_route(path))


async def master(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "master.m3u8")


async def rendition_file(request: web.Request) -> web.StreamResponse:
    return await _serve(request, request.match_info["rendition"], request.match_info["file"])


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
    files = PublishedFiles(app[CONFIG].delivery_memory)
    app[PUBLISHED] = files
    tokens = TokenChecker(app[CONFIG].signing_keys)
    app[TOKENS] = tokens
    fast: FastResponder = functools.partial(fast_answer, files, tokens)
    app[FAST_PATH] = fast
    preflight = preflight_handler(app[CONFIG].cors_origin)
    for path, handler in (
        ("/titles", catalog),
        (MASTER_ROUTE, master),
        (FILE_ROUTE, rendition_file),
        (SIGNED_ROUTE + MASTER_ROUTE, master),
        (SIGNED_ROUTE + FILE_ROUTE, rendition_file),
    ):
        resource = app.router.add_resource(path)
        resource.add_route("GET", handler)
        resource.add_route("HEAD", handler)
        resource.add_route("OPTIONS", preflight)
