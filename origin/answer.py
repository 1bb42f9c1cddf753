"""What the origin answers a request for a published file, decided once as a value of a closed type.

Rules of this file: no I/O, no clock reads, no aiohttp. ``decide`` is a function of the published file
(its representations and their validators, known once it was first found) and the request's facts; the
front's fast path and aiohttp (``origin.delivery``) only render its value, and every header of such an
answer comes from ``reply``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from media.errors import SurgeError
from service.conditional import etag_matches, if_match_holds, not_modified_since, unmodified_since
from service.facts import RequestFacts
from service.front import http_date
from service.ranges import Part, Unsatisfiable, Whole, byte_range, if_range_holds


@dataclass(frozen=True)
class Representation:
    """One file as sent: the file itself, or its precompressed ``.gz`` twin."""

    path: Path
    size: int
    etag: str  # strong, from the file's mtime and size (as aiohttp's FileResponse makes it)
    last_modified: str
    body: bytes | None  # in memory, or None: read from ``path`` when sent
    gzipped: bool = False
    head: bytes = b""  # a whole 200's status line and headers, less Date (the front's)


@dataclass(frozen=True)
class Published:
    headers: dict[str, str]  # Content-Type, Cache-Control, Vary, CORS
    plain: Representation
    gzipped: Representation | None

    @property
    def memory(self) -> int:
        """Bytes held in memory."""
        return sum(len(r.body) for r in (self.plain, self.gzipped) if r is not None and r.body is not None)


class PreconditionFailed(SurgeError):
    status = 412


class RangeNotSatisfiable(SurgeError):
    status = 416


@dataclass(frozen=True, slots=True)
class Hit:
    published: Published
    chosen: Representation


@dataclass(frozen=True, slots=True)
class NotModified:
    published: Published
    chosen: Representation


@dataclass(frozen=True, slots=True)
class Partial:
    published: Published
    chosen: Representation
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class Reject:
    """An error answer (412, 416), rendered by the one error funnel (service.errors)."""

    error: SurgeError


Served = Hit | NotModified | Partial
Decision = Served | Reject


def choose(published: Published, facts: RequestFacts) -> Representation:
    """The ``.gz`` playlist to a client that accepts gzip (Apple HLS authoring spec 10.1)."""
    if published.gzipped is not None and facts.accepts_gzip:
        return published.gzipped
    return published.plain


def decide(published: Published, facts: RequestFacts) -> Decision:
    """RFC 9110 13.2.2's order: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since, then
    Range with If-Range (14, 13.1.5)."""
    chosen = choose(published, facts)
    if facts.if_match is not None:
        if not if_match_holds(facts.if_match, chosen.etag):
            return Reject(PreconditionFailed("precondition failed: If-Match"))
    elif facts.if_unmodified_since is not None and not unmodified_since(
        facts.if_unmodified_since, chosen.last_modified
    ):
        return Reject(PreconditionFailed("precondition failed: If-Unmodified-Since"))
    if facts.if_none_match is not None:
        if etag_matches(facts.if_none_match, chosen.etag):
            return NotModified(published, chosen)
    elif facts.if_modified_since is not None and not_modified_since(
        facts.if_modified_since, chosen.last_modified
    ):
        return NotModified(published, chosen)
    if facts.range is None or not if_range_holds(facts.if_range, chosen.etag, chosen.last_modified):
        return Hit(published, chosen)
    match byte_range(facts.range, chosen.size):
        case Whole():
            return Hit(published, chosen)
        case Part(start, stop):
            return Partial(published, chosen, start, stop)
        case Unsatisfiable():
            error = RangeNotSatisfiable("range not satisfiable")
            cors = {k: v for k, v in published.headers.items() if k.startswith("Access-Control-")}
            error.headers = cors | {"Content-Range": f"bytes */{chosen.size}"}
            return Reject(error)


def file_headers(published: Published, chosen: Representation) -> dict[str, str]:
    """The headers every answer for this representation carries, whatever the request."""
    headers = published.headers | {
        "ETag": chosen.etag,
        "Last-Modified": chosen.last_modified,
        "Accept-Ranges": "bytes",
    }
    if chosen.gzipped:
        headers["Content-Encoding"] = "gzip"
    return headers


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # every header but Content-Length
    content_length: int | None  # None: none (304)
    start: int  # the body is ``chosen`` [start, stop); empty for HEAD and 304
    stop: int


def reply(served: Served, method: str, now: float) -> Reply:
    chosen = served.chosen
    headers = file_headers(served.published, chosen) | {"Date": http_date(now)}  # RFC 9110 6.6.1
    head_only = method == "HEAD"
    match served:
        case Hit():
            return Reply(200, headers, chosen.size, 0, 0 if head_only else chosen.size)
        case NotModified():
            return Reply(304, headers, None, 0, 0)
        case Partial(start=start, stop=stop):
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{chosen.size}"
            return Reply(206, headers, stop - start, start, start if head_only else stop)
