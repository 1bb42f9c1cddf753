"""The edge's request path: look up, decide (edge.policy), serve from cache or join the single flight.

Rules of this file: decisions come from ``edge.policy`` and ``edge.prefetch``; this module only carries
them out. The hit path is kept short: one dict lookup, one decision, one ``web.Response``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from edge.config import EdgeConfig
from edge.policy import (
    CacheControl,
    Freshness,
    Reuse,
    client_has_it,
    conditional_headers,
    decide,
    freshness,
    is_storable,
    may_serve_stale_on_error,
)
from edge.prefetch import MAX_MAP_ENTRIES, cmcd_next_object, next_segments
from edge.singleflight import Fill, SingleFlight, UpstreamFailed
from edge.stats import TitleStats
from edge.store import CachedObject, DiskEntry, DiskTier, MemoryLRU
from edge.upstream import Upstreams
from media.errors import SurgeError
from media.hls import parse_media
from media.layout import delivery_route, is_delivery_path, validate_delivery_path
from media.signing import PREFIX, Grant, Refusal, TokenChecker, make_token, signed_path
from service.front import Answer, SimpleRequest, date_line, render_head
from service.logs import log
from service.ranges import Part, RangeAnswer, Unsatisfiable, Whole, byte_range, if_range_holds
from service.tasks import BackgroundTasks

logger = logging.getLogger("surge.edge")
Clock = Callable[[], float]
READ_CHUNK = 256 * 1024
# From this size a body is written apart from the headers: on Python < 3.12.9 aiohttp joins headers and
# body into one new buffer (its SKIP_WRITELINES), a copy of the whole segment per hit.
SEPARATE_BODY_AT = 64 * 1024
UPSTREAM_TOKEN_S = 60  # lifetime of the token an edge signs its own upstream requests with


def cmcd_from_query(query: str) -> str | None:
    if "CMCD=" not in query:
        return None
    return parse_qs(query).get("CMCD", [None])[0]


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def title_of(path: str) -> str:
    """``/titles/<id>/...`` → ``<id>``; the path is already validated."""
    return path.split("/", 3)[2]


# Requests whose answer depends on more than the stored object: answered by ``Edge.handle``.
_CONDITIONS = (b"if-none-match", b"if-modified-since")
_CONDITION_NAMES = frozenset(_CONDITIONS)


class Edge:
    """Cache tiers, single flight, upstreams and stats of one edge node."""

    def __init__(self, config: EdgeConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.memory = MemoryLRU(config.cache_mem)
        self.disk = (
            DiskTier(config.cache_dir, config.cache_disk) if config.cache_dir and config.cache_disk else None
        )
        self.flights = SingleFlight()
        self.upstreams = Upstreams(
            list(config.upstreams),
            parent=config.parent,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        )
        self.stats = TitleStats()
        self.tokens = TokenChecker(config.signing_keys)
        self.via = f"1.1 {config.edge_id}"
        self.next_after: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._background = BackgroundTasks(logger, "disk write")
        self.upstream_fetches = 0
        self.stale_on_error = 0  # stale answers given because upstreams failed

    @property
    def largest_cacheable(self) -> float:
        disk = self.disk.capacity if self.disk is not None else 0
        return max(self.memory.capacity, disk) * self.config.max_object_share

    def fits_memory(self, size: int) -> bool:
        """Small enough for the memory tier; a larger object passes through it (``max_object_share``)."""
        return size <= self.memory.capacity * self.config.max_object_share

    @property
    def answer_timeout(self) -> float:
        """How long a client waits for an upstream's answer before a 504: never a hang."""
        return self.config.connect_timeout + self.config.read_timeout

    async def start(self) -> None:
        if self.disk is not None:
            kept = await asyncio.to_thread(self.disk.rebuild)
            log(logger, "disk cache index rebuilt", entries=kept, bytes=self.disk.used)
        await self.upstreams.open()

    async def stop(self) -> None:
        await self.flights.close()
        await self._background.close()
        await self.upstreams.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._background.spawn(coroutine)

    # Cache tiers.

    async def lookup(self, key: str) -> CachedObject | None:
        found = self.memory.get(key)
        if found is not None or self.disk is None:
            return found
        entry = self.disk.get(key)
        if entry is None:
            return None
        body = await self.disk.read(entry)
        if body is None:
            return None
        obj = CachedObject(key, entry.status, entry.headers, body, entry.freshness)
        if self.fits_memory(obj.size):
            # Promote a copy: the next hit is served from memory, whatever happens to the file.
            self.memory.put(CachedObject(key, entry.status, entry.headers, bytes(body), entry.freshness))
        return obj

    def store(self, obj: CachedObject) -> None:
        if self.fits_memory(obj.size):
            self.memory.put(obj)
        if self.disk is not None and obj.size <= self.disk.capacity * self.config.max_object_share:
            self._spawn(self.disk.put(obj))

    async def purge(self, key: str) -> bool:
        removed = self.memory.remove(key)
        if self.disk is not None:
            removed = await self.disk.remove(key) or removed
        return removed

    async def purge_prefix(self, prefix: str) -> int:
        keys = {k for k in self.memory.cached_keys() if k.startswith(prefix)}
        if self.disk is not None:
            keys |= {k for k in self.disk.cached_keys() if k.startswith(prefix)}
        for key in keys:
            await self.purge(key)
        return len(keys)

    # Filling from upstream.

    def _fill_runner(self, key: str, stored: CachedObject | None) -> Callable[[Fill], Awaitable[None]]:
        async def run(fill: Fill) -> None:
            await self._fill(fill, key, stored)

        return run

    async def _fill(self, fill: Fill, key: str, stored: CachedObject | None) -> None:
        headers = {"Accept-Encoding": "identity", "Via": self.via}
        if stored is not None:
            headers |= conditional_headers(stored.freshness)
        request_time = self.clock()
        self.upstream_fetches += 1
        async with self.upstreams.fetch(self.upstream_path(key, request_time), headers) as response:
            lower = {k.lower(): v for k, v in response.headers.items()}
            if response.status == 304 and stored is not None:
                # RFC 9111 4.3.4: the stored response, with the new headers, is fresh again.
                merged = stored.headers | {
                    k: v for k, v in response.headers.items() if k.lower() != "content-type"
                }
                lower = {k.lower(): v for k, v in merged.items()}
                refreshed = replace(
                    stored, headers=merged, freshness=freshness(lower, request_time, self.clock())
                )
                self.store(refreshed)
                fill.start(refreshed.status, refreshed.headers)
                fill.feed(refreshed.body)
                return
            fill.start(response.status, response.headers)
            async for chunk in response.content.iter_chunked(READ_CHUNK):
                fill.feed(chunk)
        response_time = self.clock()
        if is_storable("GET", fill.status, lower) and fill.size <= self.largest_cacheable:
            obj = CachedObject(key, fill.status, fill.headers, b"".join(fill.chunks),
                               freshness(lower, request_time, response_time))  # fmt: skip
            self.store(obj)
            if key.endswith(".m3u8") and fill.status == 200:
                self._learn_playlist(key, obj.body)

    def upstream_path(self, key: str, now: float) -> str:
        """What to ask upstream for ``key``: with signing on, a path signed by this edge for that object
        alone (the client's token may be bound to the client's address, or absent for a prefetch)."""
        keys = self.tokens.keys
        if keys is None:
            return key
        return signed_path(make_token(keys, Grant(key, int(now) + UPSTREAM_TOKEN_S)), key)

    def _learn_playlist(self, key: str, body: bytes | memoryview) -> None:
        try:
            playlist = parse_media(str(body, "utf-8", errors="replace"))
        except SurgeError:
            return  # a master playlist, or not a playlist at all: nothing to prefetch from
        for segment, following in next_segments(key, playlist, self.config.prefetch).items():
            following = tuple(path for path in following if is_delivery_path(path))
            if following:
                self.next_after[segment] = following
                self.next_after.move_to_end(segment)
        while len(self.next_after) > MAX_MAP_ENTRIES:
            self.next_after.popitem(last=False)

    def prefetch(self, path: str, cmcd: str | None) -> None:
        """Fill what follows ``path`` (learnt from its playlist, or hinted by CMCD) unless it is cached."""
        wanted = self.next_after.get(path, ())
        hinted = cmcd_next_object(cmcd, path)
        if hinted is not None and hinted not in wanted and is_delivery_path(hinted):
            wanted = (*wanted, hinted)
        for key in wanted:
            if key not in self.memory and (self.disk is None or key not in self.disk):
                self.flights.join(key, self._fill_runner(key, None))

    # Serving.

    def replayed_headers(self, obj: CachedObject | DiskEntry) -> dict[str, str]:
        """The stored headers and the edge's own, except the per-answer ``Age`` and ``X-Cache``."""
        headers = dict(obj.headers)
        headers["Via"] = self.via
        headers["X-Served-By"] = self.config.edge_id
        if obj.status == 200:
            headers["Accept-Ranges"] = "bytes"
        return headers

    def fast_answer(self, request: SimpleRequest) -> Answer | None:
        """A fresh hit from memory for a plain GET/HEAD, answered by the front (service.front) without
        aiohttp; None sends the request through ``handle``, which answers everything else."""
        headers = request.headers
        if b"range" in headers:
            return None
        path = request.path
        now = self.clock()
        if self.tokens.keys is not None or path.startswith(PREFIX):
            allowed = self.tokens.path_or_refusal(path, request.peer, now)
            if isinstance(allowed, Refusal):
                return None  # ``handle`` answers the refusal
            path = allowed
        found = self._stored_now(path)
        if found is None:
            return None
        obj, body = found
        if obj.status != 200 or decide(obj.freshness, now) is not Reuse.FRESH:
            return None
        age = b"Age: %d\r\nX-Cache: HIT\r\n%s\r\n" % (obj.freshness.age(now), date_line(now))
        route = delivery_route(path)
        if not _CONDITION_NAMES.isdisjoint(headers):
            inm, ims = (headers.get(name) for name in _CONDITIONS)
            if client_has_it(_text(inm), _text(ims), obj.freshness):
                self.stats.record(title_of(path), 0, now, hit=True)
                return Answer(render_head(304, self.replayed_headers(obj), None) + age, b"", 304, route)
        if not obj.head:
            obj.head = render_head(200, self.replayed_headers(obj), obj.size)
        head = obj.head + age
        if request.method != "GET":
            body = b""
        self.stats.record(title_of(path), len(body), now, hit=True)
        if path.endswith(".m4s"):
            cmcd = request.headers.get(b"cmcd-request")
            self.prefetch(path, cmcd.decode("latin-1") if cmcd else cmcd_from_query(request.query))
        return Answer(head, body, 200, route)

    def _stored_now(self, path: str) -> tuple[CachedObject | DiskEntry, bytes | memoryview] | None:
        """What ``lookup`` would find without waiting: a memory object, or a disk-tier body already
        mapped or mappable now that is too large to be promoted to memory (``lookup`` promotes the rest)."""
        obj = self.memory.get(path)
        if obj is not None:
            return obj, obj.body
        if self.disk is None:
            return None
        entry = self.disk.get(path)
        if entry is None or self.fits_memory(entry.size):
            return None
        body = self.disk.mapped(entry)
        return (entry, body) if body is not None else None

    def respond(self, request: web.Request, obj: CachedObject, cache: str, now: float) -> web.Response:
        headers = self.replayed_headers(obj)
        headers["Age"] = str(int(obj.freshness.age(now)))
        headers["X-Cache"] = cache
        if obj.status == 200:
            inm, ims = request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since")
            if client_has_it(inm, ims, obj.freshness):
                return web.Response(status=304, headers=headers)
            if "Range" in request.headers:
                return self._range(request, obj, headers)
        return web.Response(status=obj.status, body=obj.body, headers=headers)

    @staticmethod
    def _range(request: web.Request, obj: CachedObject, headers: dict[str, str]) -> web.Response:
        fresh = obj.freshness
        answer: RangeAnswer = Whole()
        if if_range_holds(request.headers.get("If-Range"), fresh.etag, fresh.last_modified):
            answer = byte_range(request.headers["Range"], obj.size)
        match answer:
            case Whole():
                return web.Response(status=200, body=obj.body, headers=headers)
            case Part(start, stop):
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{obj.size}"
                return web.Response(status=206, body=memoryview(obj.body)[start:stop], headers=headers)
            case Unsatisfiable():
                headers["Content-Range"] = f"bytes */{obj.size}"
                return web.Response(status=416, headers=headers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        path = self.tokens.allowed_path(request.path, request.remote or "", now)
        validate_delivery_path(path)
        obj = await self.lookup(path)
        if obj is not None:
            reuse = decide(obj.freshness, now)
            if reuse is Reuse.FRESH:
                return await self._send(request, self._served(request, path, obj, "HIT", now), obj.body)
            if reuse is Reuse.STALE_WHILE_REVALIDATE:
                self.flights.join(path, self._fill_runner(path, obj))
                return self._served(request, path, obj, "STALE", now)
            if self.upstreams.all_failing() and self._may_stand_in(obj, now):
                # Every upstream is known to be down: answer at once, and let one request try again.
                self.flights.join(path, self._fill_runner(path, obj))
                return self._served(request, path, obj, "STALE", now)
            return await self._revalidate(request, path, obj)
        return await self._miss(request, path)

    @staticmethod
    async def _send(
        request: web.Request, response: web.Response, body: bytes | memoryview
    ) -> web.StreamResponse:
        """A large whole body goes to the transport as it is, after the headers, instead of joined to them."""
        if response.status != 200 or len(body) < SEPARATE_BODY_AT or "Content-Range" in response.headers:
            return response
        stream = web.StreamResponse(status=response.status, headers=response.headers)
        stream.content_length = len(body)
        await stream.prepare(request)
        if request.method != "HEAD":
            await stream.write(body)
        await stream.write_eof()
        return stream

    def _served(
        self, request: web.Request, path: str, obj: CachedObject, cache: str, now: float
    ) -> web.Response:
        response = self.respond(request, obj, cache, now)
        self.stats.record(
            title_of(path), obj.size if request.method != "HEAD" else 0, now, hit=cache != "MISS"
        )
        if path.endswith(".m4s"):
            self.prefetch(path, request.query.get("CMCD") or request.headers.get("CMCD-Request"))
        return response

    async def _revalidate(self, request: web.Request, path: str, stale: CachedObject) -> web.StreamResponse:
        fill, _ = self.flights.join(path, self._fill_runner(path, stale))
        try:
            await fill.wait_ready(self.answer_timeout)
            await fill.body(self.config.read_timeout)
        except UpstreamFailed:
            now = self.clock()
            if self._may_stand_in(stale, now):
                return self._served(request, path, stale, "STALE", now)
            raise
        fresh = await self.lookup(path)
        if fresh is not None:
            return self._served(request, path, fresh, "HIT", self.clock())
        return await self._stream_fill(request, path, fill, "MISS")

    def _may_stand_in(self, stale: CachedObject, now: float) -> bool:
        """May ``stale`` be served because its upstreams fail (stale-if-error, or the edge's grace)?"""
        if not may_serve_stale_on_error(stale.freshness, now, self.config.stale_grace):
            return False
        self.stale_on_error += 1
        return True

    async def _miss(self, request: web.Request, path: str) -> web.StreamResponse:
        fill, new = self.flights.join(path, self._fill_runner(path, None))
        return await self._stream_fill(request, path, fill, "MISS" if new else "COALESCED")

    async def _stream_fill(
        self, request: web.Request, path: str, fill: Fill, cache: str
    ) -> web.StreamResponse:
        await fill.wait_ready(self.answer_timeout)
        now = self.clock()
        if "Range" in request.headers and fill.status == 200:
            # A Range miss fills the whole object once, then serves the range from it.
            await fill.body(self.config.read_timeout)
            obj = await self.lookup(path)
            if obj is None:
                uncached = Freshness(CacheControl(), 0.0, 0.0, now, None, None)
                obj = CachedObject(path, fill.status, fill.headers, b"".join(fill.chunks), uncached)
            return self._served(request, path, obj, cache, now)
        headers = dict(fill.headers)
        headers.update({"Age": "0", "X-Cache": cache, "Via": self.via, "X-Served-By": self.config.edge_id})
        response = web.StreamResponse(status=fill.status, headers=headers)
        length = fill.headers.get("Content-Length")
        if fill.done and fill.error is None:
            response.content_length = fill.size
        elif length is not None and length.isdigit():
            response.content_length = int(length)
        self.stats.record(title_of(path), 0, now, hit=False)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        sent = 0
        try:
            async for chunk in fill.stream(self.config.read_timeout):
                await response.write(chunk)
                sent += len(chunk)
        except UpstreamFailed as err:
            # Headers are out: all we can do is cut the connection so the client sees a short body.
            log(logger, "fill failed mid-stream", logging.WARNING, path=path, error=err.message)
            if request.transport is not None:
                request.transport.close()
            return response
        except ConnectionResetError:
            return response  # this client left; the fill goes on for the others
        finally:
            self.stats.add_bytes(title_of(path), sent, self.clock())
        await response.write_eof()
        if path.endswith(".m4s"):
            self.prefetch(path, request.query.get("CMCD") or request.headers.get("CMCD-Request"))
        return response
