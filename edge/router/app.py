"""The router: the one URL players are given. Masters point at edges; steering moves players along.

``GET /titles/<id>/master.m3u8`` (or ``/t/<id>/master.m3u8``) answers the origin's master with absolute
URIs on the title's edges: one pathway per edge with HLS Content Steering (default), or only the
preferred edge without it; ``?redirect=1`` or ``--redirect`` answers 302 to that edge instead. Media
playlists and segments go to edges directly: no redirect is ever used for media (Apple HLS authoring
spec 8.18). Other public paths (the player page, catalog, static files) are passed to the origin.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from edge.purge import PURGE_DISABLED, parse_purge
from edge.purge import USAGE as PURGE_USAGE
from edge.router.discovery import Target, target_groups
from edge.router.fleet import Fleet
from edge.router.purge import purge_fleet, purge_report
from edge.router.steering import master_for_edges, session_priority, steering_manifest
from media.errors import InvalidInput, NotFound, SurgeError
from media.hls import parse_master, render_master
from media.ids import validate_title_id
from service.auth import check_bearer
from service.cors import preflight_handler
from service.errors import errors_as_json
from service.http import METRICS, RequestMetrics, readiness_response, track_in_flight
from service.logs import log

FLEET = web.AppKey("fleet", Fleet)
SESSION = web.AppKey("origin_session", aiohttp.ClientSession)
MASTERS = web.AppKey("masters", dict)
MASTER_CACHE_S = 5.0
MASTER_GRACE_S = 86_400.0  # a published master never changes: serve the last copy while the origin fails
MASTER_CACHE_TITLES = 10_000
STATUS_PAGE = Path(__file__).with_name("status.html")
PASSED_TO_ORIGIN = ("/player/", "/static/", "/titles")
logger = logging.getLogger("surge.fleet")


class UpstreamError(SurgeError):
    status = 502


@dataclass(frozen=True)
class RouterSettings:
    origin: str
    steering: bool = True
    redirect: bool = False
    admin_token: str | None = None  # for POST /admin/purge here and on the edges; None: purging is off


SETTINGS = web.AppKey("router_settings", RouterSettings)


async def _origin_master(request: web.Request, title_id: str) -> str:
    """The origin's master playlist, kept a few seconds (it never changes once published)."""
    cache: dict[str, tuple[float, str]] = request.app[MASTERS]
    clock = request.app[FLEET].clock
    cached = cache.get(title_id)
    if cached is not None and clock() - cached[0] < MASTER_CACHE_S:
        return cached[1]
    url = f"{request.app[SETTINGS].origin}/titles/{title_id}/master.m3u8"
    try:
        try:
            async with request.app[SESSION].get(url) as response:
                if response.status == 404:
                    raise NotFound(f"no title {title_id!r}")
                if response.status != 200:
                    raise UpstreamError(f"the origin answered {response.status} for the master playlist")
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise UpstreamError(f"the origin is unreachable: {err.__class__.__name__}") from None
    except UpstreamError as err:
        if cached is not None and clock() - cached[0] < MASTER_GRACE_S:
            log(logger, "master served stale", logging.WARNING, title=title_id, error=str(err))
            return cached[1]
        raise
    cache.pop(title_id, None)
    cache[title_id] = (clock(), text)
    if len(cache) > MASTER_CACHE_TITLES:
        del cache[next(iter(cache))]  # the least recently fetched
    return text


async def master(request: web.Request) -> web.StreamResponse:
    title_id = validate_title_id(request.match_info["title_id"])
    fleet, settings = request.app[FLEET], request.app[SETTINGS]
    edges = fleet.all_active_for(title_id)
    if not edges:
        raise UpstreamError("no edge is active yet; try again in a moment")
    if settings.redirect or request.query.get("redirect") == "1":
        raise web.HTTPFound(f"{edges[0].url}/titles/{title_id}/master.m3u8")
    origin_master = parse_master(await _origin_master(request, title_id))
    steering_uri = None
    if settings.steering:
        known = ",".join(edge.id for edge in edges)
        steering_uri = f"/steer/{title_id}.json?session={secrets.token_urlsafe(6)}&known={quote(known)}"
    text = render_master(master_for_edges(origin_master, title_id, edges, steering_uri))
    return web.Response(
        text=text,
        content_type="application/vnd.apple.mpegurl",
        headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"},
    )


async def steer(request: web.Request) -> web.Response:
    title_id = validate_title_id(request.match_info["title_id"])
    fleet = request.app[FLEET]
    session = request.query.get("session", request.remote or "")
    known = [k for k in request.query.get("known", "").split(",") if k]
    active = {e.handle.id: e.ref for e in fleet.active()}
    title_edges = [ref.id for ref in fleet.edges_for(title_id)]
    priority = session_priority(title_edges, list(active), session)
    everything_known = sorted(set(known) | set(priority))
    reload_uri = f"/steer/{title_id}.json?session={quote(session)}&known={quote(','.join(everything_known))}"
    manifest = steering_manifest(priority, known, active, reload_uri, fleet.config.steering_ttl)
    return web.json_response(
        manifest, headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
    )


async def purge(request: web.Request) -> web.Response:
    """``POST /admin/purge`` (the edge's body: paths and/or a prefix) on every edge; a report per edge."""
    token = request.app[SETTINGS].admin_token
    check_bearer(request, token, PURGE_DISABLED)
    assert token is not None
    try:
        wanted = parse_purge(await request.json())
    except ValueError:
        raise InvalidInput(f"the body must be JSON: {PURGE_USAGE}") from None
    for title in wanted.titles():
        request.app[MASTERS].pop(title, None)
    edges = [(e.handle.id, e.handle.url) for e in request.app[FLEET].edges.values() if e.handle.url]
    outcomes = await purge_fleet(request.app[SESSION], edges, token, wanted)
    status, body = purge_report(outcomes)
    log(logger, "purge", prefix=wanted.prefix, paths=len(wanted.paths), edges=len(edges),
        purged=body["purged"], failed=body["failed"])  # fmt: skip
    return web.json_response(body, status=status)


async def fleet_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[FLEET].snapshot())


async def status_page(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATUS_PAGE, headers={"Content-Type": "text/html; charset=utf-8"})


async def healthz(request: web.Request) -> web.Response:
    active = len(request.app[FLEET].active())
    return web.json_response({"status": "ok" if active else "starting", "active_edges": active},
                             status=200 if active else 503)  # fmt: skip


async def readyz(request: web.Request) -> web.Response:
    """Ready when at least one edge is active (players given a master have somewhere to go)."""
    active = len(request.app[FLEET].active())
    return readiness_response({"edges": None if active else "no active edge yet"})


async def prometheus_targets(request: web.Request) -> web.Response:
    """Prometheus ``http_sd_config``: every edge (whatever its state) and the fleet itself."""
    edges = [
        Target("edge", e.handle.id, e.handle.url, e.status)
        for e in request.app[FLEET].edges.values()
        if e.handle.url  # a pending edge has no address yet
    ]
    itself = Target("fleet", "fleet", f"{request.scheme}://{request.host}", "active")
    return web.json_response(target_groups([itself, *edges]), headers={"Cache-Control": "no-store"})


async def pass_to_origin(request: web.Request) -> web.StreamResponse:
    """The player page, static files and the catalog, as the origin serves them."""
    path = request.path
    if path.startswith("/player/"):
        path = "/" + path.removeprefix("/player/")
    url = request.app[SETTINGS].origin + path
    try:
        async with request.app[SESSION].get(url, params=request.query) as response:
            body = await response.read()
            kept = ("content-type", "cache-control", "etag", "last-modified")
            headers = {k: v for k, v in response.headers.items() if k.lower() in kept}
            return web.Response(status=response.status, body=body, headers=headers)
    except (aiohttp.ClientError, TimeoutError) as err:
        raise UpstreamError(f"the origin is unreachable: {err.__class__.__name__}") from None


def make_app(fleet: Fleet, settings: RouterSettings) -> web.Application:
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry, "surge_fleet")
    app = web.Application(middlewares=[errors_as_json])
    track_in_flight(app)
    app[FLEET] = fleet
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[MASTERS] = {}
    edges_gauge = Gauge("surge_fleet_edges", "Edges by state", ["state"], registry=registry)
    demand_gauge = Gauge("surge_fleet_demand_rps", "Requests/s over all edges", registry=registry)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=10, sock_connect=2)
        app[SESSION] = aiohttp.ClientSession(timeout=timeout)
        try:
            await fleet.start()
        except BaseException:
            await app[SESSION].close()
            raise
        yield
        await fleet.stop()
        await app[SESSION].close()

    async def handle_metrics(request: web.Request) -> web.Response:
        states = dict.fromkeys(("pending", "starting", "warming", "active", "draining", "standby"), 0)
        for edge in fleet.edges.values():
            states[edge.status] += 1
        for state, count in states.items():
            edges_gauge.labels(state).set(count)
        demand_gauge.set(sum(fleet.demand.values()))
        return await metrics.handle_metrics(request)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/titles/{title_id}/master.m3u8", master)
    app.router.add_get("/t/{title_id}/master.m3u8", master)
    app.router.add_get("/steer/{title_id}.json", steer)
    app.router.add_get("/fleet", fleet_status)
    app.router.add_post("/admin/purge", purge)
    app.router.add_get("/", status_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/prometheus/targets", prometheus_targets)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/titles", pass_to_origin)
    app.router.add_get("/player/", pass_to_origin)
    app.router.add_get("/static/{path:.+}", pass_to_origin)
    for path in ("/titles/{title_id}/master.m3u8", "/t/{title_id}/master.m3u8", "/steer/{title_id}.json"):
        app.router.add_route("OPTIONS", path, preflight_handler("*"))
    return app
