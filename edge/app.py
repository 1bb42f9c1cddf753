"""The edge app: ``make_app(config)`` wires the proxy, purge, stats and operations."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator

from aiohttp import Payload, web
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.config import EdgeConfig
from edge.metrics import CacheStatus, EdgeMetrics, cache_status
from edge.policy import is_storable
from edge.proxy import Edge
from edge.purge import PURGE_DISABLED, USAGE, parse_purge
from edge.stats import EdgeReport
from media.errors import InvalidInput, SurgeError
from media.layout import FILE_ROUTE, MASTER_ROUTE, SIGNED_ROUTE, validate_delivery_path
from service.auth import TOKEN_ENV, check_bearer
from service.cors import preflight_handler
from service.errors import errors_as_json
from service.front import FAST_PATH, Answer, SimpleRequest
from service.http import (
    IN_FLIGHT,
    METRICS,
    SERVER_INFO,
    RequestMetrics,
    ServerInfo,
    readiness_response,
    track_in_flight,
)

EDGE = web.AppKey("edge", Edge)
CACHE_METRICS = web.AppKey("cache_metrics", EdgeMetrics)
READY_PROBE_TIMEOUT = 1.0
STARTED = web.AppKey("started", float)


def check_admin(request: web.Request, config: EdgeConfig) -> None:
    check_bearer(request, config.admin_token or os.environ.get(TOKEN_ENV), PURGE_DISABLED)


async def deliver(request: web.Request) -> web.StreamResponse:
    edge, metrics = request.app[EDGE], request.app[CACHE_METRICS]
    try:
        response = await edge.handle(request)
    except SurgeError:
        metrics.observe(CacheStatus.ERROR, 0)  # answered as JSON by errors_as_json
        raise
    size = _body_size(request, response)
    lower = {k.lower(): v for k, v in response.headers.items()}
    storable = is_storable("GET", response.status, lower) and size <= edge.cache.largest_cacheable
    metrics.observe(cache_status(response.headers.get("X-Cache"), storable), size)
    return response


def _body_size(request: web.Request, response: web.StreamResponse) -> int:
    """Body bytes of an answer (``body_length`` of a streamed one counts its header bytes too)."""
    if request.method == "HEAD" or response.status == 304:
        return 0
    length = response.content_length
    if length is None and isinstance(response, web.Response) and isinstance(response.body, Payload):
        length = response.body.size  # a memoryview body (a range of a cached object), not sent yet
    return length if length is not None else response.body_length


async def purge(request: web.Request) -> web.Response:
    """``PURGE /titles/<id>/...``: one object; a path ending in ``/`` purges everything below it."""
    edge = request.app[EDGE]
    check_admin(request, edge.config)
    path = request.path
    if path.endswith("/"):
        validate_delivery_path(path + "x")
        count = await edge.cache.purge_prefix(path)
    else:
        validate_delivery_path(path)
        count = int(await edge.cache.purge(path))
    return web.json_response({"purged": count}, status=200 if count else 404)


async def purge_api(request: web.Request) -> web.Response:
    """``POST /admin/purge`` with ``{"paths": [...]}`` and/or ``{"prefix": "/titles/<id>/"}``."""
    edge = request.app[EDGE]
    check_admin(request, edge.config)
    try:
        body = await request.json()
    except ValueError:
        raise InvalidInput(f"the body must be JSON: {USAGE}") from None
    wanted = parse_purge(body)
    count = 0
    for path in wanted.paths:
        count += int(await edge.cache.purge(path))
    if wanted.prefix:
        count += await edge.cache.purge_prefix(wanted.prefix)
    return web.json_response({"purged": count})


async def stats(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    now = edge.clock()
    report = EdgeReport(
        id=edge.config.edge_id,
        time=now,
        uptime_s=round(time.monotonic() - request.app[STARTED], 3),
        titles=edge.stats.rates(now),
        hit_ratio=round(edge.stats.hit_ratio, 4),
        hits=edge.stats.hits,
        misses=edge.stats.misses,
        upstream_fetches=edge.filler.upstream_fetches,
        objects_memory=len(edge.cache.memory),
        bytes_cached_memory=edge.cache.memory.used,
        objects_disk=len(edge.cache.disk) if edge.cache.disk else 0,
        bytes_cached_disk=edge.cache.disk.used if edge.cache.disk else 0,
        in_flight_requests=request.app[IN_FLIGHT].count,
        fills_in_flight=len(edge.filler.flights),
        connections=request.app[SERVER_INFO].connections,
    )
    return web.json_response(report.to_json())


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "id": request.app[EDGE].config.edge_id})


class _FailureCounts(Collector):
    """Failed upstream requests and the stale answers they caused, read from the edge when scraped."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge

    def collect(self) -> Iterator[Metric]:
        errors = CounterMetricFamily(
            "surge_edge_upstream_errors", "Failed upstream requests", labels=["upstream"]
        )
        for url in self.edge.filler.upstreams.breakers:
            errors.add_metric([url], self.edge.filler.upstreams.errors_by_url[url])
        yield errors
        yield CounterMetricFamily(
            "surge_edge_stale_on_error", "Stale answers given because upstreams failed",
            value=self.edge.stale_on_error,
        )  # fmt: skip


async def readyz(request: web.Request) -> web.Response:
    """Ready when at least one upstream (the parent, or an origin) answers."""
    found = await request.app[EDGE].filler.upstreams.reachable(READY_PROBE_TIMEOUT)
    problem = None
    if all(found.values()):
        problem = "no upstream answers: " + "; ".join(f"{url}: {why}" for url, why in found.items())
    return readiness_response({"upstream": problem})


def make_app(config: EdgeConfig) -> web.Application:
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry, "surge_edge")
    app = web.Application(middlewares=[errors_as_json])
    track_in_flight(app)
    edge = Edge(config)
    app[EDGE] = edge
    cache_metrics = EdgeMetrics(registry, edge.filler.upstreams, lambda: edge.stats.rates(edge.clock()))
    app[CACHE_METRICS] = cache_metrics

    def fast_answer(request: SimpleRequest) -> Answer | None:
        answered = edge.fast_answer(request)
        if answered is None:
            return None
        answer, source = answered
        cache_metrics.observe(cache_status(source.x_cache, storable=True), len(answer.body))
        return answer

    app[FAST_PATH] = fast_answer
    app[METRICS] = metrics
    app[SERVER_INFO] = ServerInfo()
    app[STARTED] = time.monotonic()
    cached_bytes = Gauge(
        "surge_edge_cached_bytes", "Bytes held by each cache tier", ["tier"], registry=registry
    )
    hits = Gauge("surge_edge_hit_ratio", "Share of requests answered from cache", registry=registry)
    fills = Gauge("surge_edge_fills_in_flight", "Upstream fills running now", registry=registry)
    upstream_up = Gauge(
        "surge_edge_upstream_up", "0 while an upstream is failing (its breaker open)", ["upstream"],
        registry=registry,
    )  # fmt: skip
    registry.register(_FailureCounts(edge))

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await edge.start()
        yield
        await edge.stop()

    async def handle_metrics(request: web.Request) -> web.Response:
        cached_bytes.labels("memory").set(edge.cache.memory.used)
        cached_bytes.labels("disk").set(edge.cache.disk.used if edge.cache.disk else 0)
        hits.set(edge.stats.hit_ratio)
        fills.set(len(edge.filler.flights))
        for url, breaker in edge.filler.upstreams.breakers.items():
            upstream_up.labels(url).set(0 if breaker.failing else 1)
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
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", handle_metrics)
    return app
