"""The one error funnel: every error answer of a surge server, from the error tree (``media.errors``)
or aiohttp's HTTP errors, is ``{"error": "<message>"}`` with its status, made by ``error_parts`` and
rendered by aiohttp (``errors_as_json``, ``json_error``) or as bytes by the front (its 408).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from media.errors import SurgeError
from service.logs import log

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
logger = logging.getLogger("surge.http")
JSON = "application/json; charset=utf-8"  # as aiohttp's json_response sends it
CLIENT_CLOSED = 499


def error_parts(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of an error answer."""
    return status, {**(headers or {}), "Content-Type": JSON}, json.dumps({"error": message}).encode()


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    status, all_headers, body = error_parts(status, message, headers)
    return web.Response(status=status, headers=all_headers, body=body)


def surge_error(err: SurgeError) -> web.Response:
    return json_error(err.status, err.message, err.headers)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors and aiohttp's HTTP errors become ``{"error": "..."}`` with the right status."""
    try:
        return await handler(request)
    except SurgeError as err:
        return surge_error(err)
    except web.HTTPException as err:
        if err.status < 400 or err.content_type == "application/json":
            raise
        message = err.reason if err.text is None or err.text.startswith(f"{err.status}:") else err.text
        headers = {
            k: v for k, v in err.headers.items() if k.lower() in ("allow", "www-authenticate", "location")
        }
        return json_error(err.status, message, headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        if client_gone(request):
            # nginx's 499: the client closed the connection (an aborted upload); no answer reaches it.
            return json_error(CLIENT_CLOSED, "the client closed the connection")
        log(logger, "unhandled error", logging.ERROR, method=request.method, path=request.path, exc_info=True)
        return json_error(500, "internal server error")


def client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
