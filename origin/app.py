"""The origin app: ``make_app(config)`` wires delivery, admin, jobs and operations."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from media.errors import SurgeError
from media.layout import Library
from origin import admin, delivery, workers
from origin import web as web_pages
from origin.auth import load_or_create_token
from origin.config import OriginConfig
from origin.fleet import FLEET_LINK, FleetLink
from origin.jobs import JobQueue, PackagingQueue
from origin.keys import CONFIG, LIBRARY, QUEUE, STORE, TOKEN
from origin.remote import PackagerBackend, ProcessPackagers, RemoteQueue
from origin.store import TitleStore
from origin.workers import REMOTE
from service.errors import errors_as_json
from service.http import METRICS, RequestMetrics, readiness_response, track_in_flight
from service.logs import log

logger = logging.getLogger("surge.origin")
BACKEND = web.AppKey("packager_backend", PackagerBackend)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    config, library = app[CONFIG], app[LIBRARY]
    library.ensure_dirs()
    token, source = load_or_create_token(library.admin_token_path, config.admin_token)
    app[TOKEN] = token
    log(logger, "admin token", source=source)
    store = TitleStore(library.jobs_db_path)
    await store.open()
    app[STORE] = store
    queue: PackagingQueue
    if config.packagers == "local":
        queue = JobQueue(library, store, config.package, config.jobs,
                         max_attempts=config.packaging_attempts, retry_delay=config.retry_delay)  # fmt: skip
    else:
        queue = app[REMOTE] = RemoteQueue(
            library, store, config.package, app.get(BACKEND) or _backend(config),
            lease_duration=config.lease_duration, start_timeout=config.lease_start_timeout,
            max_attempts=config.packaging_attempts, retry_delay=config.retry_delay,
            max_file=config.max_upload, min_free_disk=config.min_free_disk,
        )  # fmt: skip
    app[QUEUE] = queue
    await queue.start()
    try:
        yield
    finally:
        await queue.stop()
        await store.close()


def _backend(config: OriginConfig) -> PackagerBackend:
    if config.packagers == "processes":
        return ProcessPackagers(config.jobs)
    try:
        from origin.ray_packagers import RayPackagers
    except ImportError:
        raise SurgeError("--packagers ray needs the ray package: pip install 'surge[ray]'") from None
    return RayPackagers(config.ray_address, config.ray_namespace)


def on_listening(app: web.Application, url: str) -> None:
    """The origin's advertised URL is known: workers on other machines get it in their tasks."""
    if (remote := app.get(REMOTE)) is not None:
        remote.advertise(url)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _library_problem(library: Library) -> str | None:
    for directory in (library.titles_dir, library.uploads_dir):
        if not directory.is_dir():
            return f"{directory} is not a directory"
    if not os.access(library.uploads_dir, os.W_OK):
        return f"{library.uploads_dir} is not writable"
    return None


async def readyz(request: web.Request) -> web.Response:
    """Ready when the title store answers and the library is in place (and takes uploads)."""
    app = request.app
    store = app.get(STORE)
    store_problem = None if store is not None else "not open yet"
    if store is not None:
        try:
            await store.counts()
        except Exception as err:  # closed, locked, damaged: whatever it is, not ready
            store_problem = f"{err.__class__.__name__}: {err}"
    library_problem = await asyncio.to_thread(_library_problem, app[LIBRARY])
    return readiness_response({"store": store_problem, "library": library_problem})


def make_app(config: OriginConfig, packagers: PackagerBackend | None = None) -> web.Application:
    """``packagers``: who runs the workers of ``--packagers ray|processes`` (default: as configured)."""
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry, "surge_origin")
    jobs_gauge = Gauge("surge_origin_titles", "Titles by status", ["status"], registry=registry)
    running_gauge = Gauge("surge_origin_jobs_running", "Packaging jobs running now", registry=registry)
    app = web.Application(middlewares=[errors_as_json, admin.require_admin])
    track_in_flight(app)
    app[CONFIG] = config
    app[LIBRARY] = Library(config.data)
    app[METRICS] = metrics
    app[FLEET_LINK] = FleetLink(config.fleet)
    if packagers is not None:
        app[BACKEND] = packagers
    app.cleanup_ctx.append(_resources)

    async def handle_metrics(request: web.Request) -> web.Response:
        for status, count in (await app[STORE].counts()).items():
            jobs_gauge.labels(status).set(count)
        running_gauge.set(app[QUEUE].running)
        return await metrics.handle_metrics(request)

    delivery.add_routes(app)
    if config.packagers != "local":
        workers.add_routes(app)
    admin.add_routes(app)
    web_pages.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", handle_metrics)
    return app
