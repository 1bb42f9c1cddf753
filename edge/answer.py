"""What an edge answers a delivery request, decided once as a value of a closed type.

Rules of this file: no I/O, no clock reads, no aiohttp. ``decide`` is a function of what is stored, the
request's facts and ``now``; the front's fast path (``edge.render.front_answer``) and aiohttp
(``edge.render.aiohttp_answer``) only render its value, and every header of an answer from cache —
the stored ones, ``Via``, ``X-Served-By``, ``Age``, ``X-Cache``, ``Date``, ``Content-Range`` — comes
from ``reply`` below. Reuse rules themselves (RFC 9111, RFC 5861) are ``edge.policy``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edge.policy import Reuse, client_has_it, may_serve_stale_on_error
from edge.policy import decide as reuse_of
from edge.store import CachedObject, DiskEntry
from service.facts import RequestFacts
from service.front import date_line, http_date
from service.ranges import Part, Unsatisfiable, Whole, byte_range, if_range_holds

Stored = CachedObject | DiskEntry
Body = bytes | memoryview


class Source(Enum):
    """Where a served answer's object comes from, and so its ``X-Cache`` word."""

    FRESH = "fresh"  # HIT
    FILLED = "filled"  # MISS: this request's fill brought it
    COALESCED = "coalesced"  # COALESCED: another request's fill brought it
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"  # STALE (RFC 5861 3); refreshed in the background
    UPSTREAMS_DOWN = "upstreams-down"  # STALE (RFC 5861 4): every upstream is failing; one retry behind
    STALE_IF_ERROR = "stale-if-error"  # STALE (RFC 5861 4): this request's revalidation just failed

    @property
    def x_cache(self) -> str:
        return _FLAGS[self._value_][0]

    @property
    def refresh(self) -> bool:
        """Start (or join) a fill from upstream behind this answer."""
        return _FLAGS[self._value_][1]

    @property
    def hit(self) -> bool:
        """Answered from what was stored before the request came (the hit ratio's numerator)."""
        return _FLAGS[self._value_][2]

    @property
    def on_error(self) -> bool:
        """Stale because upstreams fail (``surge_edge_stale_on_error_total``)."""
        return _FLAGS[self._value_][3]


# By value (a str hashes faster than an Enum member): X-Cache, refresh, hit, on_error.
_FLAGS: dict[str, tuple[str, bool, bool, bool]] = {
    Source.FRESH.value: ("HIT", False, True, False),
    Source.FILLED.value: ("MISS", False, False, False),
    Source.COALESCED.value: ("COALESCED", False, False, False),
    Source.STALE_WHILE_REVALIDATE.value: ("STALE", True, True, False),
    Source.UPSTREAMS_DOWN.value: ("STALE", True, True, True),
    Source.STALE_IF_ERROR.value: ("STALE", False, True, True),
}


@dataclass(frozen=True, slots=True)
class Hit:
    """The stored response, whole (its own status: 200, or a stored 301/410...)."""

    key: str
    stored: Stored
    body: Body
    source: Source


@dataclass(frozen=True, slots=True)
class NotModified:
    """304 to a client whose validators match (RFC 9110 13.2.2)."""

    key: str
    stored: Stored
    body: Body
    source: Source


@dataclass(frozen=True, slots=True)
class Partial:
    """206 with ``[start, stop)`` of the stored body (RFC 9110 14)."""

    key: str
    stored: Stored
    body: Body
    source: Source
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class RangeNotSatisfiable:
    """416 with ``Content-Range: bytes */size``."""

    key: str
    stored: Stored
    body: Body
    source: Source


@dataclass(frozen=True, slots=True)
class Revalidate:
    """Stored, but upstream must be asked first (conditionally, with its validators)."""

    key: str
    stored: Stored


@dataclass(frozen=True, slots=True)
class Miss:
    """Nothing stored: join (or start) the single flight for ``key``."""

    key: str


Served = Hit | NotModified | Partial | RangeNotSatisfiable
Decision = Served | Revalidate | Miss


def serve(key: str, stored: Stored, body: Body, facts: RequestFacts, source: Source) -> Served:
    """How a stored object answers this request: conditionals first (RFC 9110 13.2.2), then Range."""
    if stored.status != 200:
        return Hit(key, stored, body, source)
    fresh = stored.freshness
    if (facts.if_none_match is not None or facts.if_modified_since is not None) and client_has_it(
        facts.if_none_match, facts.if_modified_since, fresh
    ):
        return NotModified(key, stored, body, source)
    if facts.range is None or not if_range_holds(facts.if_range, fresh.etag, fresh.last_modified):
        return Hit(key, stored, body, source)
    match byte_range(facts.range, stored.size):
        case Whole():
            return Hit(key, stored, body, source)
        case Part(start, stop):
            return Partial(key, stored, body, source, start, stop)
        case Unsatisfiable():
            return RangeNotSatisfiable(key, stored, body, source)


def decide(
    key: str,
    found: tuple[Stored, Body] | None,
    facts: RequestFacts,
    now: float,
    *,
    upstreams_failing: bool,
    stale_grace: float,
) -> Decision:
    """The answer to ``facts`` for ``key`` given what is stored (RFC 9111 4, RFC 5861)."""
    if found is None:
        return Miss(key)
    stored, body = found
    match reuse_of(stored.freshness, now):
        case Reuse.FRESH:
            return serve(key, stored, body, facts, Source.FRESH)
        case Reuse.STALE_WHILE_REVALIDATE:
            return serve(key, stored, body, facts, Source.STALE_WHILE_REVALIDATE)
        case Reuse.REVALIDATE:
            if upstreams_failing:
                # Every upstream is known to be down: answer at once, and let one request try again.
                stand_in = stale_on_error(key, found, facts, now, stale_grace, Source.UPSTREAMS_DOWN)
                if stand_in is not None:
                    return stand_in
            return Revalidate(key, stored)


def stale_on_error(
    key: str,
    found: tuple[Stored, Body],
    facts: RequestFacts,
    now: float,
    stale_grace: float,
    source: Source = Source.STALE_IF_ERROR,
) -> Served | None:
    """The stale answer that may stand in while upstreams fail (RFC 5861 4, or the edge's grace as
    Varnish's), or None (must-revalidate, no-cache, too old)."""
    stored, body = found
    if not may_serve_stale_on_error(stored.freshness, now, stale_grace):
        return None
    return serve(key, stored, body, facts, source)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # every header but Content-Length, which the renderer adds from ``body``
    body: Body  # empty for HEAD and bodiless statuses
    content_length: int | None  # None: no Content-Length (304)


def stored_headers(stored: Stored, via: str, edge_id: str) -> dict[str, str]:
    """The stored response's headers and the edge's own: the part of every answer that does not change
    from one answer to the next (the front keeps it rendered, ``Stored.head``)."""
    headers = dict(stored.headers)
    headers.pop("Content-Length", None)
    headers["Via"] = via
    headers["X-Served-By"] = edge_id
    if stored.status == 200:
        headers["Accept-Ranges"] = "bytes"
    return headers


def per_answer_headers(age: float, x_cache: str, now: float) -> dict[str, str]:
    """``Age`` (RFC 9111 5.1), ``X-Cache`` and ``Date``: a cache that forwards a response without its own
    Date adds one (RFC 9110 6.6.1)."""
    return {"Age": str(int(age)), "X-Cache": x_cache, "Date": http_date(now)}


def per_answer_lines(age: float, x_cache: str, now: float) -> bytes:
    """``per_answer_headers`` as header lines, made without a dict (the front's whole hits)."""
    return b"Age: %d\r\nX-Cache: %s\r\n%s" % (age, x_cache.encode(), date_line(now))


def reply(served: Served, method: str, now: float, via: str, edge_id: str) -> Reply:
    """Status, headers and body of a served decision; ``method`` HEAD sends no body."""
    stored = served.stored
    headers = stored_headers(stored, via, edge_id)
    headers |= per_answer_headers(stored.freshness.age(now), served.source.x_cache, now)
    head_only = method == "HEAD"
    match served:
        case Hit(body=body):
            return Reply(stored.status, headers, b"" if head_only else body, stored.size)
        case NotModified():
            return Reply(304, headers, b"", None)
        case Partial(body=body, start=start, stop=stop):
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{stored.size}"
            part = b"" if head_only else memoryview(body)[start:stop]
            return Reply(206, headers, part, stop - start)
        case RangeNotSatisfiable():
            headers["Content-Range"] = f"bytes */{stored.size}"
            return Reply(416, headers, b"", 0)
