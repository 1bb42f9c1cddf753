"""The edge app: ``make_app(config)`` wires the proxy, purge, stats and operations."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from edge.config import EdgeConfig
from edge.proxy import Edge, validate_path
from media.errors import InvalidInput, SurgeError
from media.layout import FILE_ROUTE, MASTER_ROUTE, SIGNED_ROUTE
from service.cors import preflight_handler
from service.front import FAST_PATH
from service.http import (
    IN_FLIGHT,
    METRICS,
    SERVER_INFO,
    RequestMetrics,
    ServerInfo,
    errors_as_json,
    track_in_flight,
)

EDGE = web.AppKey("edge", Edge)
STARTED = web.AppKey("started", float)
TOKEN_ENV = "SURGE_ADMIN_TOKEN"


class Forbidden(SurgeError):
    status = 403


class Unauthorized(SurgeError):
    status = 401
    headers = {"WWW-Authenticate": 'Bearer realm="surge edge"'}  # noqa: RUF012


def check_admin(request: web.Request, config: EdgeConfig) -> None:
    token = config.admin_token or os.environ.get(TOKEN_ENV)
    if not token:
        raise Forbidden(f"purging is disabled: start the edge with {TOKEN_ENV} or --admin-token")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("missing admin token: send Authorization: Bearer <token>")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Forbidden("wrong admin token")


async def deliver(request: web.Request) -> web.StreamResponse:
    return await request.app[EDGE].handle(request)


async def purge(request: web.Request) -> web.Response:
    """``PURGE /titles/<id>/...``: one object; a path ending in ``/`` purges everything below it."""
    edge = request.app[EDGE]
    check_admin(request, edge.config)
    path = request.path
    if path.endswith("/"):
        validate_path(path + "x")
        count = await edge.purge_prefix(path)
    else:
        validate_path(path)
        count = int(await edge.purge(path))
    return web.json_response({"purged": count}, status=200 if count else 404)


async def purge_api(request: web.Request) -> web.Response:
    """``POST /admin/purge`` with ``{"paths": [...]}`` and/or ``{"prefix": "/titles/<id>/"}``."""
    edge = request.app[EDGE]
    check_admin(request, edge.config)
    try:
        body = await request.json()
    except ValueError:
        raise InvalidInput('the body must be JSON: {"paths": [...]} or {"prefix": "/titles/<id>/"}') from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    paths, prefix = body.get("paths", []), body.get("prefix")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise InvalidInput("paths must be a list of strings")
    if prefix is not None and (not isinstance(prefix, str) or not prefix.startswith("/titles/")):
        raise InvalidInput("prefix must start with /titles/")
    count = 0
    for path in paths:
        validate_path(path)
        count += int(await edge.purge(path))
    if prefix:
        count += await edge.purge_prefix(prefix)
    return web.json_response({"purged": count})


async def stats(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    now = edge.clock()
    return web.json_response(
        {
            "id": edge.config.edge_id,
            "time": now,
            "uptime_s": round(time.monotonic() - request.app[STARTED], 3),
            "titles": edge.stats.rates(now),
            "hit_ratio": round(edge.stats.hit_ratio, 4),
            "hits": edge.stats.hits,
            "misses": edge.stats.misses,
            "upstream_fetches": edge.upstream_fetches,
            "objects_memory": len(edge.memory),
            "bytes_cached_memory": edge.memory.used,
            "objects_disk": len(edge.disk) if edge.disk else 0,
            "bytes_cached_disk": edge.disk.used if edge.disk else 0,
            "in_flight_requests": request.app[IN_FLIGHT].count,
            "fills_in_flight": len(edge.flights),
            "connections": request.app[SERVER_INFO].connections,
        }
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "id": request.app[EDGE].config.edge_id})


def make_app(config: EdgeConfig) -> web.Application:
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry, "surge_edge")
    app = web.Application(middlewares=[errors_as_json])
    track_in_flight(app)
    edge = Edge(config)
    app[EDGE] = edge
    app[FAST_PATH] = edge.fast_answer
    app[METRICS] = metrics
    app[SERVER_INFO] = ServerInfo()
    app[STARTED] = time.monotonic()
    cached_bytes = Gauge(
        "surge_edge_cached_bytes", "Bytes held by each cache tier", ["tier"], registry=registry
    )
    hits = Gauge("surge_edge_hit_ratio", "Share of requests answered from cache", registry=registry)
    fills = Gauge("surge_edge_fills_in_flight", "Upstream fills running now", registry=registry)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await edge.start()
        yield
        await edge.stop()

    async def handle_metrics(request: web.Request) -> web.Response:
        cached_bytes.labels("memory").set(edge.memory.used)
        cached_bytes.labels("disk").set(edge.disk.used if edge.disk else 0)
        hits.set(edge.stats.hit_ratio)
        fills.set(len(edge.flights))
        return await metrics.handle_metrics(request)

    app.cleanup_ctx.append(lifecycle)
    preflight = preflight_handler(config.cors_origin)
    for pattern in (MASTER_ROUTE, FILE_ROUTE):
        resource = app.router.add_resource(pattern)
        resource.add_route("GET", deliver)
        resource.add_route("HEAD", deliver)
        resource.add_route("PURGE", purge)
        resource.add_route("OPTIONS", preflight)
        signed = app.router.add_resource(SIGNED_ROUTE + pattern)
        for method, handler in (("GET", deliver), ("HEAD", deliver), ("OPTIONS", preflight)):
            signed.add_route(method, handler)
    for prefix in ("/titles/{title_id}/", "/titles/{title_id}/{rendition}/"):
        app.router.add_route("PURGE", prefix, purge)
    app.router.add_post("/admin/purge", purge_api)
    app.router.add_get("/stats", stats)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", handle_metrics)
    return app
