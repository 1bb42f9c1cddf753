"""The edge's server: look up in the cache (``edge.cache``), decide (``edge.answer``), then carry the
decision out: render an answer from cache (``edge.render``), revalidate, or join the filler's single
flight (``edge.filler``).

Rules of this file: decisions come from ``edge.answer``, ``edge.policy`` and ``edge.prefetch``; this
module only carries them out. The front's fast path and aiohttp's handler share every step but the
rendering.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import assert_never

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
from edge.cache import Cache
from edge.config import EdgeConfig
from edge.filler import Filler
from edge.policy import CacheControl, Freshness
from edge.render import aiohttp_answer, front_answer
from edge.singleflight import Fill, UpstreamFailed
from edge.stats import TitleStats
from edge.store import CachedObject
from media.layout import title_of, validate_delivery_path
from media.signing import PREFIX, Refusal, TokenChecker
from service.facts import RequestFacts, facts_of_request, facts_of_simple
from service.front import Answer, SimpleRequest
from service.logs import log

logger = logging.getLogger("surge.edge")
Clock = Callable[[], float]


class Edge:
    """One edge node's request path: the cache (``edge.cache``), the filler (``edge.filler``) and the
    per-title stats; it decides each answer (``edge.answer``) and renders it for the front or aiohttp."""

    def __init__(self, config: EdgeConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.cache = Cache(config)
        self.tokens = TokenChecker(config.signing_keys)
        self.filler = Filler(config, self.cache, clock, config.signing_keys)
        self.stats = TitleStats()
        self.via = f"1.1 {config.edge_id}"
        self.stale_on_error = 0  # stale answers given because upstreams failed

    @property
    def answer_timeout(self) -> float:
        """How long a client waits for an upstream's answer before a 504: never a hang."""
        return self.config.connect_timeout + self.config.read_timeout

    async def start(self) -> None:
        await self.cache.start()
        await self.filler.start()

    async def stop(self) -> None:
        await self.filler.stop()
        await self.cache.stop()

    # Serving: look up, decide (edge.answer), carry the decision out; the front and aiohttp render it.

    def key_of(self, facts: RequestFacts, now: float) -> str:
        """The cache key of a delivery request: its path, a signed one's token checked and taken out;
        Forbidden (403) or InvalidInput (400) otherwise."""
        path = self.tokens.allowed_path(facts.path, facts.peer, now)
        validate_delivery_path(path)
        return path

    def decision(
        self, key: str, found: tuple[Stored, Body] | None, facts: RequestFacts, now: float
    ) -> Decision:
        grace = self.config.stale_grace
        decision = decide(key, found, facts, now, upstreams_failing=False, stale_grace=grace)
        if isinstance(decision, Revalidate) and self.filler.upstreams.all_failing():
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
                self.filler.join(served.key, (served.stored, served.body))
        self.stats.record(title_of(served.key), body_bytes, now, hit=source.hit)
        if served.key.endswith(".m4s"):
            self.filler.prefetch(served.key, facts.cmcd)

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
        found = self.cache.stored_now(path)
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

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        facts = facts_of_request(request)
        key = self.key_of(facts, now)
        decision = self.decision(key, await self.cache.found(key), facts, now)
        match decision:
            case Hit() | NotModified() | Partial() | RangeNotSatisfiable():
                return await self._render(request, decision, facts, now)
            case Revalidate():
                return await self._revalidate(request, decision, facts)
            case Miss(key=key):
                fill, new = self.filler.join(key)
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
        stale = (decision.stored, await self.cache.body_of(decision.stored))
        fill, _ = self.filler.join(key, stale)
        try:
            await fill.wait_ready(self.answer_timeout)
            await fill.body(self.config.read_timeout)
        except UpstreamFailed:
            now = self.clock()
            stand_in = stale_on_error(key, stale, facts, now, self.config.stale_grace)
            if stand_in is None:
                raise
            return await self._render(request, stand_in, facts, now)
        found = await self.cache.found(key)
        if found is not None:
            return await self._render(request, serve(key, *found, facts, Source.FRESH), facts, self.clock())
        return await self._stream_fill(request, facts, key, fill, Source.FILLED)

    async def _stream_fill(
        self, request: web.Request, facts: RequestFacts, key: str, fill: Fill, source: Source
    ) -> web.StreamResponse:
        await fill.wait_ready(self.answer_timeout)
        now = self.clock()
        if facts.range is not None and fill.status == 200:
            # A Range miss fills the whole object once, then serves the range from it.
            await fill.body(self.config.read_timeout)
            found = await self.cache.found(key)
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
            self.filler.prefetch(key, facts.cmcd)
        return response
