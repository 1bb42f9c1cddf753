"""Public delivery of published titles: catalog, playlists, init and media segments.

Every request for a published file is decided once (``origin.answer.decide``: 200, 304, 206, 412, 416)
and rendered by the front's fast path (``Delivery.fast_answer``, a file in memory) or by aiohttp (``serve``,
everything else, and bodies read from disk). Small published files are kept in memory; larger ones are
read in chunks off the loop (under uvloop, aiohttp's sendfile path falls back to such copies anyway).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path
from typing import assert_never

from aiohttp import web

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
from origin.answer import (
    Hit,
    NotModified,
    Partial,
    Published,
    Reject,
    Representation,
    Served,
    decide,
    file_headers,
    reply,
)
from origin.cache_headers import delivery_headers
from origin.keys import CONFIG, LIBRARY, STORE, TOKENS
from origin.store import Status
from service.cors import cors_headers, preflight_handler
from service.facts import RequestFacts, facts_of_request, facts_of_simple
from service.front import FAST_PATH, Answer, SimpleRequest, date_line, render_head

Clock = Callable[[], float]
READ_CHUNK = 256 * 1024


class PublishedFiles:
    """Published files already checked (inside the library, a regular file), with their headers and
    validators, and the small ones kept in memory.

    Titles never change once published, so the checks (a path resolution and a stat, off the loop)
    are done once per file. Deleting a title forgets its files.
    """

    LIMIT = 100_000
    MAX_FILE = 4 * 1024 * 1024

    def __init__(self, memory_budget: int) -> None:
        self.memory_budget = memory_budget
        self.memory_used = 0
        self._known: dict[tuple[str, ...], Published] = {}

    async def find(self, app: web.Application, key: tuple[str, ...]) -> Published:
        """``key`` is ``(title_id, *components)``; NotFound or InvalidInput otherwise."""
        known = self._known.get(key)
        if known is not None:
            return known
        title_id, *components = key
        validate_delivery_parts(title_id, *components)
        config = app[CONFIG]
        headers = delivery_headers(components[-1], config.playlist_max_age)
        if headers is None:
            raise NotFound("not found")
        headers |= cors_headers(config.cors_origin)
        room = self.memory_budget - self.memory_used
        published = await asyncio.to_thread(_load, app[LIBRARY], title_id, tuple(components), room, headers)
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


def _representation(path: Path, room: int, *, gzipped: bool = False) -> Representation | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    body = path.read_bytes() if stat.st_size <= min(PublishedFiles.MAX_FILE, room) else None
    return Representation(
        path=path,
        size=stat.st_size,
        etag=f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',  # as aiohttp's FileResponse makes it
        last_modified=formatdate(math.ceil(stat.st_mtime), usegmt=True),  # as aiohttp rounds it
        body=body,
        gzipped=gzipped,
    )


def _load(
    library: Library, title_id: str, components: tuple[str, ...], room: int, headers: dict[str, str]
) -> Published:
    path = library.title_file(title_id, *components)
    if not path.is_file():
        raise NotFound("not found")
    plain = _representation(path, room)
    if plain is None:
        raise NotFound("not found")
    gzipped = None
    if path.suffix == ".m3u8":
        gzipped = _representation(path.with_name(path.name + ".gz"), room - plain.size, gzipped=True)
    published = Published(headers, plain, gzipped)
    gzipped = _with_head(published, gzipped) if gzipped is not None else None
    return replace(published, plain=_with_head(published, plain), gzipped=gzipped)


def _with_head(published: Published, chosen: Representation) -> Representation:
    if chosen.body is None:
        return chosen
    return replace(chosen, head=render_head(200, file_headers(published, chosen), chosen.size))


PUBLISHED = web.AppKey("published_files", PublishedFiles)


def key_of(tokens: TokenChecker, facts: RequestFacts, now: float) -> tuple[str, ...]:
    """``(title_id, *components)`` of a delivery path, a signed one's token checked and taken out;
    Forbidden (403) otherwise."""
    path = tokens.allowed_path(facts.path, facts.peer, now)
    return tuple(path.split("/")[2:])


class Delivery:
    """The published-file routes: look up, decide (``origin.answer``), render."""

    def __init__(self, files: PublishedFiles, tokens: TokenChecker, clock: Clock) -> None:
        self.files = files
        self.tokens = tokens
        self.clock = clock

    async def serve(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        facts = facts_of_request(request)
        key = key_of(self.tokens, facts, now)
        published = await self.files.find(request.app, key)
        decision = decide(published, facts)
        match decision:
            case Hit() | NotModified() | Partial():
                return await _render(request, decision, facts, now)
            case Reject(error=error):
                raise error
            case _:
                assert_never(decision)

    def fast_answer(self, request: SimpleRequest) -> Answer | None:
        """The decision for a plain GET/HEAD of a published file already in memory, rendered by the
        front (service.front) without aiohttp; None sends the request through ``serve``, which answers
        everything (files not found yet, bodies on disk, errors)."""
        path = request.path
        now = self.clock()
        tokens = self.tokens
        if tokens.keys is not None or path.startswith(PREFIX):
            allowed = tokens.path_or_refusal(path, request.peer, now)
            if isinstance(allowed, Refusal):
                return None  # ``serve`` answers the refusal
            path = allowed
        parts = path.split("/")
        if len(parts) not in (4, 5) or parts[1] != "titles":
            return None
        published = self.files.known(tuple(parts[2:]))
        if published is None:
            return None
        facts = facts_of_simple(request)
        decision = decide(published, facts)
        match decision:
            case Hit(chosen=chosen) if chosen.body is not None:
                whole = chosen.body if facts.method == "GET" else b""
                return Answer(chosen.head + date_line(now) + b"\r\n", whole, 200, delivery_route(path))
            case Hit() | NotModified() | Partial():
                if decision.chosen.body is None:
                    return None
                rendered = reply(decision, facts.method, now)
                head = render_head(rendered.status, rendered.headers, rendered.content_length) + b"\r\n"
                body = memoryview(decision.chosen.body)[rendered.start : rendered.stop]
                return Answer(head, body, rendered.status, delivery_route(path))
            case Reject():
                return None  # the error funnel (service.http.errors_as_json) renders it
            case _:
                assert_never(decision)


async def _render(
    request: web.Request, served: Served, facts: RequestFacts, now: float
) -> web.StreamResponse:
    rendered = reply(served, facts.method, now)
    response = web.StreamResponse(status=rendered.status, headers=rendered.headers)
    if rendered.content_length is not None:
        response.content_length = rendered.content_length
    await response.prepare(request)
    chosen = served.chosen
    if rendered.stop > rendered.start:
        if chosen.body is not None:
            await response.write(memoryview(chosen.body)[rendered.start : rendered.stop])
        else:
            await _send_file(response, chosen.path, rendered.start, rendered.stop)
    await response.write_eof()
    return response


async def _send_file(response: web.StreamResponse, path: Path, start: int, stop: int) -> None:
    """``[start, stop)`` of a published file, read off the loop in chunks."""
    with await asyncio.to_thread(open, path, "rb") as file:
        position = start
        while position < stop:
            size = min(READ_CHUNK, stop - position)
            chunk = await asyncio.to_thread(os.pread, file.fileno(), size, position)
            if not chunk:
                raise NotFound("the file shrank while it was sent")  # published files never change
            await response.write(chunk)
            position += len(chunk)


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
    delivery = Delivery(files, tokens, time.time)
    app[FAST_PATH] = delivery.fast_answer
    preflight = preflight_handler(app[CONFIG].cors_origin)
    for path, handler in (
        ("/titles", catalog),
        (MASTER_ROUTE, delivery.serve),
        (FILE_ROUTE, delivery.serve),
        (SIGNED_ROUTE + MASTER_ROUTE, delivery.serve),
        (SIGNED_ROUTE + FILE_ROUTE, delivery.serve),
    ):
        resource = app.router.add_resource(path)
        resource.add_route("GET", handler)
        resource.add_route("HEAD", handler)
        resource.add_route("OPTIONS", preflight)
