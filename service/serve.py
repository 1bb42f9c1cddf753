"""Serve an aiohttp app until SIGINT/SIGTERM, then shut down gracefully.

Shutdown order (after uvicorn's): stop accepting, let in-flight requests finish within a bound, then run
the app's cleanup (which stops background work such as packaging jobs).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from service.http import IN_FLIGHT, SERVER_INFO, AccessLog
from service.logs import log

logger = logging.getLogger("surge.serve")
access_logger = logging.getLogger("surge.access")


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 30.0,
    on_listening: Callable[[str], None] | None = None,
    access_log: bool = True,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(
        app,
        # The access logger always runs: it also feeds metrics and the in-flight count; the format
        # string only says whether it writes a log line.
        access_log=access_logger,
        access_log_class=AccessLog,
        access_log_format=AccessLog.LINE if access_log else AccessLog.SILENT,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    if (info := app.get(SERVER_INFO)) is not None:
        info.server = runner.server
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0]
        url = f"http://{bound[0]}:{bound[1]}" if ":" not in bound[0] else f"http://[{bound[0]}]:{bound[1]}"
        log(logger, "listening", url=url)
        if on_listening is not None:
            on_listening(url)
        await stop.wait()
        tracker = app.get(IN_FLIGHT)
        log(logger, "shutting down", in_flight=tracker.count if tracker else None, timeout_s=shutdown_timeout)
        for running_site in list(runner.sites):
            await running_site.stop()  # stop accepting; connections already open keep being served
        if tracker is not None and not await tracker.wait_idle(shutdown_timeout):
            log(logger, "in-flight requests cut off", logging.WARNING, in_flight=tracker.count)
    finally:
        # Signal handlers stay until cleanup ends: a second SIGTERM must not kill a draining server.
        await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log(logger, "stopped")
