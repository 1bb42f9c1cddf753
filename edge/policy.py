"""HTTP cache rules for a shared cache (RFC 9111, RFC 5861), as pure functions of headers and ``now``.

Rules of this file: no I/O, no clock reads; every time is a float of seconds passed in by the caller.
Written here rather than taken from a library: hishel's RFC 9111 core is built around its own request
and response models and an httpx-style client, while the edge needs a handful of decisions over plain
header dicts on its hot path (see the table tests in tests/edge/test_policy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from service.conditional import etag_matches, not_modified_since, parse_http_date

# RFC 9111 4.2.2: a heuristic lifetime is at most this share of the time since Last-Modified...
HEURISTIC_FRACTION = 0.1
# ... and we cap it, as most caches do, at one day.
HEURISTIC_CAP_S = 86_400.0
# RFC 9110 15.1 (heuristically cacheable) intersected with what an HLS edge should keep.
CACHEABLE_STATUSES = frozenset({200, 203, 300, 301, 308, 410})


@dataclass(frozen=True)
class CacheControl:
    max_age: int | None = None
    s_maxage: int | None = None
    no_store: bool = False
    no_cache: bool = False
    private: bool = False
    public: bool = False
    immutable: bool = False
    must_revalidate: bool = False
    stale_while_revalidate: int = 0
    stale_if_error: int = 0


def _seconds(value: str) -> int | None:
    try:
        number = int(value.strip().strip('"'))
    except ValueError:
        return None
    return max(0, number)


def parse_cache_control(value: str | None) -> CacheControl:
    """RFC 9111 5.2: comma-separated directives, case-insensitive names, unknown ones ignored."""
    if not value:
        return CacheControl()
    seconds: dict[str, int] = {}  # max-age, s-maxage, stale-while-revalidate, stale-if-error
    flags: set[str] = set()
    for part in value.split(","):
        name, _, argument = part.strip().partition("=")
        name = name.strip().lower()
        if name in ("max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"):
            number = _seconds(argument)
            if number is None:
                # RFC 9111 4.2.1: an invalid max-age makes the response stale.
                seconds.update({name: 0} if name in ("max-age", "s-maxage") else {})
                continue
            seconds[name] = number
        elif name in ("no-store", "private", "public", "immutable", "must-revalidate", "proxy-revalidate"):
            flags.add("must-revalidate" if name == "proxy-revalidate" else name)
        elif name == "no-cache" and not argument:
            # A qualified no-cache (no-cache="Set-Cookie") only restricts those fields: not our case.
            flags.add("no-cache")
    return CacheControl(
        max_age=seconds.get("max-age"),
        s_maxage=seconds.get("s-maxage"),
        no_store="no-store" in flags,
        no_cache="no-cache" in flags,
        private="private" in flags,
        public="public" in flags,
        immutable="immutable" in flags,
        must_revalidate="must-revalidate" in flags,
        stale_while_revalidate=seconds.get("stale-while-revalidate", 0),
        stale_if_error=seconds.get("stale-if-error", 0),
    )


@dataclass(frozen=True)
class Freshness:
    """What a stored response's headers say about its reuse, computed once when it is stored."""

    cache_control: CacheControl
    lifetime: float  # RFC 9111 4.2.1
    initial_age: float  # RFC 9111 4.2.3 corrected_initial_age
    response_time: float  # when we received it (our clock)
    etag: str | None
    last_modified: str | None

    def age(self, now: float) -> float:
        return self.initial_age + max(0.0, now - self.response_time)


def is_storable(method: str, status: int, headers: dict[str, str]) -> bool:
    """RFC 9111 3: may a shared cache store this response? ``headers`` keys are lower-case."""
    if method not in ("GET", "HEAD") or status not in CACHEABLE_STATUSES:
        return False
    cc = parse_cache_control(headers.get("cache-control"))
    if cc.no_store or cc.private or "authorization" in headers:
        return False
    return "vary" not in headers or headers["vary"].strip().lower() in ("accept-encoding", "origin")


def freshness(headers: dict[str, str], request_time: float, response_time: float) -> Freshness:
    """Lifetime and initial age of a response received at ``response_time`` (RFC 9111 4.2)."""
    cc = parse_cache_control(headers.get("cache-control"))
    date = parse_http_date(headers.get("date"))
    if cc.s_maxage is not None:
        lifetime: float = cc.s_maxage
    elif cc.max_age is not None:
        lifetime = cc.max_age
    elif "expires" in headers:
        expires = parse_http_date(headers["expires"])
        lifetime = (
            max(0.0, expires - (date if date is not None else response_time)) if expires is not None else 0.0
        )
    else:
        last_modified = parse_http_date(headers.get("last-modified"))
        base = date if date is not None else response_time
        lifetime = (
            min(HEURISTIC_CAP_S, HEURISTIC_FRACTION * max(0.0, base - last_modified))
            if last_modified is not None
            else 0.0
        )
    age_value = _seconds(headers.get("age", "0")) or 0
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    response_delay = max(0.0, response_time - request_time)
    initial_age = max(apparent_age, age_value + response_delay)
    return Freshness(
        cache_control=cc,
        lifetime=float(lifetime),
        initial_age=initial_age,
        response_time=response_time,
        etag=headers.get("etag"),
        last_modified=headers.get("last-modified"),
    )


class Reuse(Enum):
    FRESH = "fresh"  # serve it
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"  # serve it, refresh it in the background
    REVALIDATE = "revalidate"  # ask upstream first (conditionally when we hold a validator)


def decide(stored: Freshness, now: float) -> Reuse:
    """RFC 9111 4.2 and 4.3, RFC 5861 3. Client Cache-Control is not honoured, as in Varnish and most CDNs."""
    cc = stored.cache_control
    if cc.no_cache:
        return Reuse.REVALIDATE
    age = stored.age(now)
    if age < stored.lifetime:
        return Reuse.FRESH
    if not cc.must_revalidate and age < stored.lifetime + cc.stale_while_revalidate:
        return Reuse.STALE_WHILE_REVALIDATE
    return Reuse.REVALIDATE


def may_serve_stale_on_error(stored: Freshness, now: float, grace: float = 0.0) -> bool:
    """RFC 5861 4: stale-if-error lets a stale response stand in when upstream fails; the edge's own
    ``grace`` (as Varnish's) extends that window for responses that say less. must-revalidate and
    no-cache forbid it (RFC 9111 5.2.2.2, 5.2.2.4)."""
    cc = stored.cache_control
    if cc.must_revalidate or cc.no_cache:
        return False
    return stored.age(now) < stored.lifetime + max(cc.stale_if_error, grace)


def conditional_headers(stored: Freshness) -> dict[str, str]:
    """Validators for a revalidation request (RFC 9111 4.3.1)."""
    headers = {}
    if stored.etag:
        headers["If-None-Match"] = stored.etag
    if stored.last_modified:
        headers["If-Modified-Since"] = stored.last_modified
    return headers


def client_has_it(if_none_match: str | None, if_modified_since: str | None, stored: Freshness) -> bool:
    """RFC 9110 13.2.2: does a client's conditional GET get 304 from this stored 200? If-None-Match,
    when sent, decides alone."""
    if if_none_match is not None:
        return etag_matches(if_none_match, stored.etag)
    return if_modified_since is not None and not_modified_since(if_modified_since, stored.last_modified)


# RFC 9111 3.2: fields a 304 does not update (it has no body of its own to describe).
_KEPT_ON_UPDATE = frozenset({"content-length", "content-type", "content-encoding", "content-range"})


def updated_headers(stored: dict[str, str], not_modified: dict[str, str]) -> dict[str, str]:
    """RFC 9111 4.3.4: the stored response's headers updated with those of the 304 that revalidated
    it (same names replaced, whatever their case), except the fields describing the stored body."""
    new = {name: value for name, value in not_modified.items() if name.lower() not in _KEPT_ON_UPDATE}
    replaced = {name.lower() for name in new}
    kept = {name: value for name, value in stored.items() if name.lower() not in replaced}
    return kept | new
