"""The two renderers of an edge's served decision (``edge.answer``): bytes for the front's fast path,
a response for aiohttp. Neither decides anything: status, headers and body come from ``answer.reply``.
"""

from __future__ import annotations

from aiohttp import web

from edge.answer import Hit, Reply, Served, per_answer_lines, reply, stored_headers
from media.layout import delivery_route
from service.front import Answer, render_head


def front_answer(served: Served, method: str, now: float, via: str, edge_id: str) -> Answer:
    """The answer as bytes. A whole hit reuses the stored object's rendered headers (``Stored.head``):
    only ``Age``, ``X-Cache`` and ``Date`` change from one hit to the next."""
    route = delivery_route(served.key)
    if isinstance(served, Hit):
        stored = served.stored
        if not stored.head:
            stored.head = render_head(stored.status, stored_headers(stored, via, edge_id), stored.size)
        per_answer = per_answer_lines(stored.freshness.age(now), served.source.x_cache, now)
        body = served.body if method != "HEAD" else b""
        return Answer(stored.head + per_answer + b"\r\n", body, stored.status, route)
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
