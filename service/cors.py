"""CORS (Fetch standard, 3.2): the headers every surge server sends on public answers, and its preflight
answer, so that a player page from another origin can read playlists and segments with Range or CMCD
headers, whichever server (origin, edge, fleet) it talks to. With them goes ``Timing-Allow-Origin``
(W3C Resource Timing): without it a browser hides a cross-origin response's connection, request and
first-byte times from the page, which is what a player's QoE analytics measure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

EXPOSED_HEADERS = "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, Age, Content-Encoding"


def cors_headers(allow_origin: str) -> dict[str, str]:
    """``allow_origin`` ``""`` turns CORS off."""
    if not allow_origin:
        return {}
    return {
        "Access-Control-Allow-Origin": allow_origin,
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        "Timing-Allow-Origin": allow_origin,
    }


def preflight_headers(allow_origin: str, requested_headers: str | None) -> dict[str, str]:
    if not allow_origin:
        return {}
    return cors_headers(allow_origin) | {
        "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Allow-Headers": requested_headers or "Range, If-None-Match, If-Modified-Since",
        "Access-Control-Max-Age": "86400",
    }


def preflight_handler(allow_origin: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An ``OPTIONS`` handler: 204 with the preflight headers."""

    async def preflight(request: web.Request) -> web.Response:
        requested = request.headers.get("Access-Control-Request-Headers")
        return web.Response(status=204, headers=preflight_headers(allow_origin, requested))

    return preflight
