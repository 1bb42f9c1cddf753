"""The edge's request path: look up, decide (``edge.answer``), then carry the decision out: render an
answer from cache (``edge.render``), revalidate, or join the single flight.

Rules of this file: decisions come from ``edge.answer``, ``edge.policy`` and ``edge.prefetch``; this
module only carries them out. The front's fast path and aiohttp's handler share every step but the
rendering.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, assert_never

from aiohttp import web

from edge.answer import (
    Body,
    Decision,
    Hit,
    Miss,
    NotModified,
    Partial,
    RangeNotSatisfiable,
    Revalidate,
    Served,
    Source,
    Stored,
    decide,
    per_answer_headers,
    reply,
    serve,
    stale_on_error,
)
from edge.config import EdgeConfig
from edge.policy import CacheControl, Freshness, conditional_headers, freshness, is_storable, updated_headers
from edge.prefetch import MAX_MAP_ENTRIES, cmcd_next_object, next_segments
from edge.render import aiohttp_answer, front_answer
from edge.singleflight import Fill, SingleFlight, UpstreamFailed
from edge.stats import TitleStats
from edge.store import CachedObject, DiskTier, MemoryLRU
from edge.upstream import Upstreams
from media.errors import InvalidInput, SurgeError
from media.hls import parse_media
from media.ids import is_title_id
from media.layout import is_safe_component
from media.signing import PREFIX, Grant, Refusal, TokenChecker, make_token, signed_path
from service.facts import RequestFacts, facts_of_request, facts_of_simple
from service.front import Answer, SimpleRequest
from service.logs import log

logger = logging.getLogger("surge.edge")
Clock = Callable[[], float]
READ_CHUNK = 256 * 1024
UPSTREAM_TOKEN_S = 60  # lifetime of the token an edge signs its own upstream requests with


def title_of(path: str) -> str:
    """``/titles/<id>/...`` → ``<id>``; the path is already validated."""
    return path.split("/", 3)[2]


def is_delivery_path(path: str) -> bool:
    """``/titles/<id>/master.m3u8`` or ``/titles/<id>/<rendition>/<file>``, every component safe."""
    parts = path.split("/")
    if len(parts) not in (4, 5) or parts[1] != "titles" or not is_title_id(parts[2]):
        return False
    return all(is_safe_component(part) for part in parts[3:])


def validate_path(path: str) -> None:
    if not is_delivery_path(path):
        raise InvalidInput("invalid path")


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
        self._background: set[asyncio.Task[None]] = set()
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
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.upstreams.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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

    def _fill_runner(self, key: str, stored: tuple[Stored, Body] | None) -> Callable[[Fill], Awaitable[None]]:
        async def run(fill: Fill) -> None:
            await self._fill(fill, key, stored)

        return run

    async def _fill(self, fill: Fill, key: str, found: tuple[Stored, Body] | None) -> None:
        headers = {"Accept-Encoding": "identity", "Via": self.via}
        if found is not None:
            headers |= conditional_headers(found[0].freshness)
        request_time = self.clock()
        self.upstream_fetches += 1
        async with self.upstreams.fetch(self.upstream_path(key, request_time), headers) as response:
            lower = {k.lower(): v for k, v in response.headers.items()}
            if response.status == 304 and found is not None:
                # RFC 9111 4.3.4: the stored response, with the new headers, is fresh again.
                stored, body = found
                merged = updated_headers(stored.headers, response.headers)
                lower = {k.lower(): v for k, v in merged.items()}
                kept = bytes(body)
                refreshed = CachedObject(key, stored.status, merged, kept,
                                         freshness(lower, request_time, self.clock()))  # fmt: skip
                self.store(refreshed)
                fill.start(refreshed.status, refreshed.headers)
                fill.feed(kept)
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

    def _learn_playlist(self, key: str, body: Body) -> None:
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

    # Serving: look up, decide (edge.answer), carry the decision out; the front and aiohttp render it.

    def key_of(self, facts: RequestFacts, now: float) -> str:
        """The cache key of a delivery request: its path, a signed one's token checked and taken out;
        Forbidden (403) or InvalidInput (400) otherwise."""
        path = self.tokens.allowed_path(facts.path, facts.peer, now)
        validate_path(path)
        return path

    def decision(
        self, key: str, found: tuple[Stored, Body] | None, facts: RequestFacts, now: float
    ) -> Decision:
        grace = self.config.stale_grace
        decision = decide(key, found, facts, now, upstreams_failing=False, stale_grace=grace)
        if isinstance(decision, Revalidate) and self.upstreams.all_failing():
            # Only a Revalidate depends on upstreams: the breakers are asked then alone.
            decision = decide(key, found, facts, now, upstreams_failing=True, stale_grace=grace)
        return decision

    def served(self, served: Served, facts: RequestFacts, body_bytes: int, now: float) -> None:
        """What follows an answer from cache: stats, a refresh behind a stale answer, prefetch."""
        source = served.source
        if source is not Source.FRESH:
            if source.on_error:
                self.stale_on_error += 1
            if source.refresh:
                self.flights.join(served.key, self._fill_runner(served.key, (served.stored, served.body)))
        self.stats.record(title_of(served.key), body_bytes, now, hit=source.hit)
        if served.key.endswith(".m4s"):
            self.prefetch(served.key, facts.cmcd)

    def fast_answer(self, request: SimpleRequest) -> tuple[Answer, Source] | None:
        """The decision for a plain GET/HEAD, rendered by the front (service.front) when it needs no
        waiting: an answer from memory (or a mapped disk body too large for memory). None sends the
        request through ``handle``, which answers everything (misses, revalidations, refusals)."""
        facts = facts_of_simple(request)
        now = self.clock()
        path = facts.path
        if self.tokens.keys is not None or path.startswith(PREFIX):
            allowed = self.tokens.path_or_refusal(path, facts.peer, now)
            if isinstance(allowed, Refusal):
                return None  # ``handle`` answers the refusal
            path = allowed
        found = self._stored_now(path)
        if found is None:
            return None
        decision = self.decision(path, found, facts, now)
        match decision:
            case Hit() | NotModified() | Partial() | RangeNotSatisfiable():
                answer = front_answer(decision, facts.method, now, self.via, self.config.edge_id)
                self.served(decision, facts, len(answer.body), now)
                return answer, decision.source
            case Revalidate() | Miss():
                return None
            case _:
                assert_never(decision)

    def _stored_now(self, path: str) -> tuple[Stored, Body] | None:
        """What ``found`` would find without waiting: a memory object, or a disk-tier body already
        mapped or mappable now that is too large to be promoted to memory (``found`` promotes the rest)."""
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

    async def found(self, key: str) -> tuple[Stored, Body] | None:
        obj = await self.lookup(key)
        return (obj, obj.body) if obj is not None else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        facts = facts_of_request(request)
        key = self.key_of(facts, now)
        decision = self.decision(key, await self.found(key), facts, now)
        match decision:
            case Hit() | NotModified() | Partial() | RangeNotSatisfiable():
                return await self._render(request, decision, facts, now)
            case Revalidate():
                return await self._revalidate(request, decision, facts)
            case Miss(key=key):
                fill, new = self.flights.join(key, self._fill_runner(key, None))
                return await self._stream_fill(
                    request, facts, key, fill, Source.FILLED if new else Source.COALESCED
                )
            case _:
                assert_never(decision)

    async def _render(
        self, request: web.Request, served: Served, facts: RequestFacts, now: float
    ) -> web.StreamResponse:
        rendered = reply(served, facts.method, now, self.via, self.config.edge_id)
        self.served(served, facts, len(rendered.body), now)
        return await aiohttp_answer(request, rendered)

    async def _revalidate(
        self, request: web.Request, decision: Revalidate, facts: RequestFacts
    ) -> web.StreamResponse:
        key = decision.key
        stale = (decision.stored, await self._body_of(decision.stored))
        fill, _ = self.flights.join(key, self._fill_runner(key, stale))
        try:
            await fill.wait_ready(self.answer_timeout)
            await fill.body(self.config.read_timeout)
        except UpstreamFailed:
            now = self.clock()
            stand_in = stale_on_error(key, stale, facts, now, self.config.stale_grace)
            if stand_in is None:
                raise
            return await self._render(request, stand_in, facts, now)
        found = await self.found(key)
        if found is not None:
            return await self._render(request, serve(key, *found, facts, Source.FRESH), facts, self.clock())
        return await self._stream_fill(request, facts, key, fill, Source.FILLED)

    async def _body_of(self, stored: Stored) -> Body:
        if isinstance(stored, CachedObject):
            return stored.body
        body = await self.disk.read(stored) if self.disk is not None else None
        return body if body is not None else b""

    async def _stream_fill(
        self, request: web.Request, facts: RequestFacts, key: str, fill: Fill, source: Source
    ) -> web.StreamResponse:
        await fill.wait_ready(self.answer_timeout)
        now = self.clock()
        if facts.range is not None and fill.status == 200:
            # A Range miss fills the whole object once, then serves the range from it.
            await fill.body(self.config.read_timeout)
            found = await self.found(key)
            if found is None:
                uncached = Freshness(CacheControl(), 0.0, 0.0, now, None, None)
                obj = CachedObject(key, fill.status, fill.headers, b"".join(fill.chunks), uncached)
                found = (obj, obj.body)
            return await self._render(request, serve(key, *found, facts, source), facts, now)
        headers = dict(fill.headers)
        headers.update(per_answer_headers(0, source.x_cache, now))
        headers.update({"Via": self.via, "X-Served-By": self.config.edge_id})
        response = web.StreamResponse(status=fill.status, headers=headers)
        length = fill.headers.get("Content-Length")
        if fill.done and fill.error is None:
            response.content_length = fill.size
        elif length is not None and length.isdigit():
            response.content_length = int(length)
        self.stats.record(title_of(key), 0, now, hit=False)
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
            log(logger, "fill failed mid-stream", logging.WARNING, path=key, error=err.message)
            if request.transport is not None:
                request.transport.close()
            return response
        except ConnectionResetError:
            return response  # this client left; the fill goes on for the others
        finally:
            self.stats.add_bytes(title_of(key), sent, self.clock())
        await response.write_eof()
        if key.endswith(".m4s"):
            self.prefetch(key, facts.cmcd)
        return response
