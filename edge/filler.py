"""The edge's filler: single flight towards the upstreams (origins, or a parent edge first), the
RFC 9111 4.3.4 refresh of a stored object on a 304, and prefetch of what a playlist or CMCD says comes
next.

Rules of this file: what to store is ``edge.policy``'s decision; the filler only fetches, stores into
the cache (``edge.cache``) and feeds the waiters of each fill (``edge.singleflight``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from edge.answer import Body, Stored
from edge.cache import Cache
from edge.config import EdgeConfig
from edge.policy import conditional_headers, freshness, is_storable, updated_headers
from edge.prefetch import MAX_MAP_ENTRIES, cmcd_next_object, next_segments
from edge.singleflight import Fill, SingleFlight
from edge.store import CachedObject
from edge.upstream import Upstreams
from media.errors import SurgeError
from media.hls import parse_media
from media.layout import is_delivery_path
from media.signing import Grant, SigningKeys, make_token, signed_path

logger = logging.getLogger("surge.edge")
Clock = Callable[[], float]
READ_CHUNK = 256 * 1024
UPSTREAM_TOKEN_S = 60  # lifetime of the token an edge signs its own upstream requests with


class Filler:
    def __init__(
        self, config: EdgeConfig, cache: Cache, clock: Clock, signing_keys: SigningKeys | None
    ) -> None:
        self.config = config
        self.cache = cache
        self.clock = clock
        self.signing_keys = signing_keys
        self.flights = SingleFlight()
        self.upstreams = Upstreams(
            list(config.upstreams),
            parent=config.parent,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        )
        self.via = f"1.1 {config.edge_id}"
        self.next_after: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self.upstream_fetches = 0

    async def start(self) -> None:
        await self.upstreams.open()

    async def stop(self) -> None:
        await self.flights.close()
        await self.upstreams.close()

    def join(self, key: str, stored: tuple[Stored, Body] | None = None) -> tuple[Fill, bool]:
        """The fill in flight for ``key``, or a new one (conditional when ``stored``); the flag says it
        is new."""
        return self.flights.join(key, self._fill_runner(key, stored))

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
                self.cache.store(refreshed)
                fill.start(refreshed.status, refreshed.headers)
                fill.feed(kept)
                return
            fill.start(response.status, response.headers)
            async for chunk in response.content.iter_chunked(READ_CHUNK):
                fill.feed(chunk)
        response_time = self.clock()
        if is_storable("GET", fill.status, lower) and fill.size <= self.cache.largest_cacheable:
            obj = CachedObject(key, fill.status, fill.headers, b"".join(fill.chunks),
                               freshness(lower, request_time, response_time))  # fmt: skip
            self.cache.store(obj)
            if key.endswith(".m3u8") and fill.status == 200:
                self._learn_playlist(key, obj.body)

    def upstream_path(self, key: str, now: float) -> str:
        """What to ask upstream for ``key``: with signing on, a path signed by this edge for that object
        alone (the client's token may be bound to the client's address, or absent for a prefetch)."""
        keys = self.signing_keys
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
            if key not in self.cache:
                self.join(key)
