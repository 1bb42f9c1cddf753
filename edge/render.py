"""The two renderers of an edge's served decision (``edge.answer``): bytes for the front's fast path,
a response for aiohttp. Neither decides anything: status, headers and body come from ``answer.reply``.

The facts a decision reads are taken from either request shape here, the same way.
"""

from __future__ import annotations

from aiohttp import web

from edge.answer import Hit, Reply, RequestFacts, Served, per_answer_headers, reply, stored_headers
from media.layout import delivery_route
from service.front import Answer, SimpleRequest, header_lines, render_head


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def facts_of_simple(request: SimpleRequest) -> RequestFacts:
    headers = request.headers
    return RequestFacts(
        request.method,
        request.path,
        request.query,
        request.peer,
        range=_text(headers.get(b"range")),
        if_range=_text(headers.get(b"if-range")),
        if_none_match=_text(headers.get(b"if-none-match")),
        if_modified_since=_text(headers.get(b"if-modified-since")),
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
        cmcd_request=headers.get("CMCD-Request"),
    )


def front_answer(served: Served, method: str, now: float, via: str, edge_id: str) -> Answer:
    """The answer as bytes. A whole hit reuses the stored object's rendered headers (``Stored.head``):
    only ``Age``, ``X-Cache`` and ``Date`` change from one hit to the next."""
    route = delivery_route(served.key)
    if isinstance(served, Hit):
        stored = served.stored
        if not stored.head:
            stored.head = render_head(stored.status, stored_headers(stored, via, edge_id), stored.size)
        per_answer = per_answer_headers(stored.freshness.age(now), served.source.x_cache, now)
        body = served.body if method != "HEAD" else b""
        return Answer(stored.head + header_lines(per_answer) + b"\r\n", body, stored.status, route)
    rendered = reply(served, method, now, via, edge_id)
    head = render_head(rendered.status, rendered.headers, rendered.content_length) + b"\r\n"
    return Answer(head, rendered.body, rendered.status, route)


async def aiohttp_answer(request: web.BaseRequest, rendered: Reply) -> web.StreamResponse:
    """The answer through aiohttp; a large body goes to the transport as it is, after the headers (on
    Python < 3.12.9 aiohttp would otherwise join them into one new buffer: a copy of the segment)."""
    response = web.StreamResponse(status=rendered.status, headers=rendered.headers)
    if rendered.content_length is not None:
        response.content_length = rendered.content_length
    await response.prepare(request)
    if rendered.body:
        await response.write(rendered.body)
    await response.write_eof()
    return response
