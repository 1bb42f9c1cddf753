"""The facts of a GET/HEAD request that an answer depends on, read the same way from either request
shape: the front's ``SimpleRequest`` (bytes, lower-case names) and aiohttp's request."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import parse_qs

from aiohttp import web

from service.front import SimpleRequest


class RequestFacts(NamedTuple):
    """Immutable; a named tuple because one is made per request on the fast path (a third of a frozen
    dataclass's cost)."""

    method: str  # "GET" or "HEAD"
    path: str  # as requested: a signed path still carries its token
    query: str = ""
    peer: str = ""
    range: str | None = None
    if_range: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_match: str | None = None
    if_unmodified_since: str | None = None
    accept_encoding: str = ""
    cmcd_request: str | None = None  # the CMCD-Request header

    @property
    def cmcd(self) -> str | None:
        """CTA-5004 data: the ``CMCD`` query argument, else the ``CMCD-Request`` header (a player sends
        one or the other; the query is what every player can send, so it wins)."""
        if "CMCD=" in self.query:
            found = parse_qs(self.query).get("CMCD")
            if found:
                return found[0]
        return self.cmcd_request

    @property
    def accepts_gzip(self) -> bool:
        return accepts_gzip(self.accept_encoding)


def accepts_gzip(accept_encoding: str) -> bool:
    """RFC 9110 12.5.3: ``gzip`` (or ``x-gzip``, or ``*``) listed with a weight above 0."""
    lower = accept_encoding.lower()
    if "gzip" not in lower and "*" not in lower:
        return False
    weights: dict[str, float] = {}
    for item in lower.split(","):
        coding, _, parameters = item.partition(";")
        weight = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        weights[coding.strip()] = weight
    for coding in ("gzip", "x-gzip"):
        if coding in weights:
            return weights[coding] > 0
    return weights.get("*", 0.0) > 0


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


# Header names (lower-case) of the facts; a request with none of them is the common case.
_FACT_HEADERS = frozenset(
    (b"range", b"if-range", b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since",
     b"accept-encoding", b"cmcd-request")
)  # fmt: skip


def facts_of_simple(request: SimpleRequest) -> RequestFacts:
    headers = request.headers
    if _FACT_HEADERS.isdisjoint(headers):
        return RequestFacts(request.method, request.path, request.query, request.peer)
    return RequestFacts(
        request.method,
        request.path,
        request.query,
        request.peer,
        range=_text(headers.get(b"range")),
        if_range=_text(headers.get(b"if-range")),
        if_none_match=_text(headers.get(b"if-none-match")),
        if_modified_since=_text(headers.get(b"if-modified-since")),
        if_match=_text(headers.get(b"if-match")),
        if_unmodified_since=_text(headers.get(b"if-unmodified-since")),
        accept_encoding=headers.get(b"accept-encoding", b"").decode("latin-1"),
        cmcd_request=_text(headers.get(b"cmcd-request")),
    )


def facts_of_request(request: web.BaseRequest) -> RequestFacts:
    headers = request.headers
    return RequestFacts(
        request.method,
        request.path,
        request.query_string,
        request.remote or "",
        range=headers.get("Range"),
        if_range=headers.get("If-Range"),
        if_none_match=headers.get("If-None-Match"),
        if_modified_since=headers.get("If-Modified-Since"),
        if_match=headers.get("If-Match"),
        if_unmodified_since=headers.get("If-Unmodified-Since"),
        accept_encoding=headers.get("Accept-Encoding", ""),
        cmcd_request=headers.get("CMCD-Request"),
    )
