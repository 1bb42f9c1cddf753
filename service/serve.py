"""Serve aiohttp apps until SIGINT/SIGTERM, then shut down gracefully.

Shutdown order (after uvicorn's): stop accepting, let in-flight requests finish within a bound, then run
each app's cleanup (which stops background work such as packaging jobs or edge processes), last
started first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from media.errors import SurgeError
from service.front import FAST_PATH, FrontServer, FrontSettings
from service.http import IN_FLIGHT, METRICS, SERVER_INFO, SITE_NAME, AccessLog, FastAccess
from service.logs import LIFECYCLE_LOGGER, log
from service.tls import TlsFiles, reload, scheme, server_context
from service.urls import advertised_url

logger = logging.getLogger(LIFECYCLE_LOGGER)
access_logger = logging.getLogger("surge.access")
# Set to 1, every request goes through aiohttp's handlers: the same answers (each is decided once and
# only rendered by either path), for comparing the two paths or ruling the front out.
NO_FAST_PATH_ENV = "SURGE_NO_FAST_PATH"
# aiohttp's keep-alive timer cannot see the requests the front answers itself, so the front closes idle
# connections (FrontSettings.idle_timeout) and aiohttp's timer is pushed out of the way.
AIOHTTP_KEEPALIVE = 7 * 24 * 3600.0


@dataclass
class Site:
    # An app, or a factory called once the sites before it listen (to learn, say, their port).
    app: web.Application | Callable[[], web.Application]
    host: str
    port: int
    on_listening: Callable[[str], None] | None = None
    name: str = "server"
    # What others use to reach it (service/urls.py): a whole URL, or a host name for the bound port.
    advertise_url: str | None = None
    public_host: str | None = None


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 30.0,
    on_listening: Callable[[str], None] | None = None,
    access_log: bool = True,
    header_timeout: float = 10.0,
    keepalive_timeout: float = 75.0,
    name: str = "server",
    advertise_url: str | None = None,
    public_host: str | None = None,
    tls: TlsFiles | None = None,
) -> None:
    await serve_all(
        [Site(app, host, port, on_listening, name, advertise_url, public_host)],
        shutdown_timeout=shutdown_timeout,
        access_log=access_log,
        header_timeout=header_timeout,
        keepalive_timeout=keepalive_timeout,
        tls=tls,
    )


def _reload_tls(context: ssl.SSLContext, tls: TlsFiles) -> None:
    try:
        reload(context, tls)
    except SurgeError as err:
        log(logger, "certificate reload failed; the old one stays", logging.ERROR, error=err.message)
    else:
        log(logger, "certificate reloaded", cert=str(tls.cert))


async def serve_all(
    sites: list[Site],
    *,
    shutdown_timeout: float = 30.0,
    access_log: bool = True,
    header_timeout: float = 10.0,
    keepalive_timeout: float = 75.0,
    tls: TlsFiles | None = None,
) -> None:
    """With ``tls``, every site speaks HTTPS with one context, reloaded from the files on SIGHUP."""
    context = server_context(tls) if tls is not None else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if context is not None and tls is not None:
        loop.add_signal_handler(signal.SIGHUP, _reload_tls, context, tls)
    runners: list[web.AppRunner] = []
    apps: list[web.Application] = []
    accesses: list[FastAccess] = []
    fronts: list[FrontServer] = []
    try:
        for site in sites:
            app = site.app if isinstance(site.app, web.Application) else site.app()
            app[SITE_NAME] = site.name
            FrontServer.install(app)
            apps.append(app)
            runner = web.AppRunner(
                app,
                # The access logger always runs: it also feeds metrics and the in-flight count; the
                # format string only says whether it writes a log line.
                access_log=access_logger,
                access_log_class=AccessLog.for_app(app),
                access_log_format=AccessLog.LINE if access_log else AccessLog.SILENT,
                shutdown_timeout=shutdown_timeout,
                keepalive_timeout=AIOHTTP_KEEPALIVE,
            )
            await runner.setup()
            runners.append(runner)
            if (info := app.get(SERVER_INFO)) is not None:
                info.server = runner.server
            access = FastAccess(app.get(METRICS), site.name, access_log)
            accesses.append(access)
            settings = FrontSettings(
                header_timeout=header_timeout,
                idle_timeout=keepalive_timeout,
                responder=None if os.environ.get(NO_FAST_PATH_ENV) == "1" else app.get(FAST_PATH),
                on_answer=access.observe,
            )
            front = FrontServer(runner, site.host, site.port, settings, ssl_context=context)
            await front.start()
            fronts.append(front)
            bound = front.addresses[0]
            url = advertised_url(
                site.host,
                bound[1],
                hostname=socket.gethostname(),
                scheme=scheme(tls),
                advertise_url=site.advertise_url,
                public_host=site.public_host,
            )
            log(logger, "listening", url=url, bound=f"{bound[0]}:{bound[1]}", name=site.name)
            if site.on_listening is not None:
                site.on_listening(url)
        await stop.wait()
        trackers = [tracker for app in apps if (tracker := app.get(IN_FLIGHT)) is not None]
        log(logger, "shutting down", in_flight=sum(t.count for t in trackers), timeout_s=shutdown_timeout)
        for front in fronts:
            front.stop()  # stop accepting; connections already open keep being served
        for tracker in trackers:
            if not await tracker.wait_idle(shutdown_timeout):
                log(logger, "in-flight requests cut off", logging.WARNING, in_flight=tracker.count)
    finally:
        # Signal handlers stay until the loop closes: a second SIGTERM must not kill a draining or
        # exiting server (it would exit by signal, not 0).
        for runner in reversed(runners):
            await runner.cleanup()
        for access in accesses:
            access.flush()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, log, logger, "already stopping")
        log(logger, "stopped")
