"""Middlewares every surge server uses: errors as JSON, one log line and metrics per request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from media.errors import SurgeError
from service.logs import log

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
logger = logging.getLogger("surge.http")


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors and aiohttp's HTTP errors become ``{"error": "..."}`` with the right status."""
    try:
        return await handler(request)
    except SurgeError as err:
        return json_error(err.status, err.message, err.headers)
    except web.HTTPException as err:
        if err.status < 400 or err.content_type == "application/json":
            raise
        message = err.reason if err.text is None or err.text.startswith(f"{err.status}:") else err.text
        headers = {
            k: v for k, v in err.headers.items() if k.lower() in ("allow", "www-authenticate", "location")
        }
        return json_error(err.status, message, headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log(logger, "unhandled error", logging.ERROR, method=request.method, path=request.path, exc_info=True)
        return json_error(500, "internal server error")


class RequestMetrics:
    """Prometheus counters per route and status, and one JSON log line per request."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.registry = registry
        self.requests = Counter(
            f"{prefix}_requests_total", "HTTP requests", ["route", "method", "status"], registry=registry
        )
        self.bytes = Counter(
            f"{prefix}_response_bytes_total", "Response body bytes", ["route"], registry=registry
        )
        self.latency = Histogram(
            f"{prefix}_request_seconds",
            "Time to the end of the response",
            ["route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status, size = 500, 0
        try:
            response = await handler(request)
            status = response.status
            size = response.body_length or (response.content_length or 0)
            return response
        except web.HTTPException as err:
            status = err.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away
            raise
        finally:
            route = request.match_info.route.resource
            route_name = route.canonical if route is not None else "unmatched"
            elapsed = time.perf_counter() - started
            self.requests.labels(route_name, request.method, str(status)).inc()
            self.bytes.labels(route_name).inc(size)
            self.latency.labels(route_name).observe(elapsed)
            log(
                logger,
                "request",
                method=request.method,
                path=request.path_qs,
                status=status,
                bytes=size,
                ms=round(elapsed * 1000, 2),
                peer=request.remote,
            )

    async def handle_metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
