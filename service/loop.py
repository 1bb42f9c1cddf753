"""The one place that picks the event loop: uvloop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop. Ctrl-C cancels it (so cleanup runs) and then raises KeyboardInterrupt."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def run_server(main: Coroutine[Any, Any, T]) -> T:
    """``run`` for a server that exits when it returns: once it has shut down, a late SIGTERM or
    SIGINT (a supervisor repeating itself) is ignored, so the exit status stays 0."""
    try:
        return run(main)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
