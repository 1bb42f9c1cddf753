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

from service.logs import log

logger = logging.getLogger("surge.serve")


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 30.0,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0]
        url = f"http://{bound[0]}:{bound[1]}" if ":" not in bound[0] else f"http://[{bound[0]}]:{bound[1]}"
        log(logger, "listening", url=url)
        if on_listening is not None:
            on_listening(url)
        await stop.wait()
        log(logger, "shutting down", in_flight_timeout_s=shutdown_timeout)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
        log(logger, "stopped")
