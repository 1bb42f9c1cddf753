"""One upstream fetch per object, however many clients want it; its bytes reach every waiter as they arrive.

A ``Fill`` is owned by the ``SingleFlight`` table, not by any client: a waiter that goes away stops
reading, and the fill carries on for the others (and for the cache).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from media.errors import SurgeError
from service.tasks import BackgroundTasks

logger = logging.getLogger("surge.edge")


class UpstreamFailed(SurgeError):
    """The fill could not get the object: 502 (bad answer, refused) or 504 (timed out)."""

    status = 502


class UpstreamTimeout(UpstreamFailed):
    status = 504


@dataclass
class Fill:
    key: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes | memoryview] = field(default_factory=list)  # a stored body may be a view
    size: int = 0
    done: bool = False
    error: SurgeError | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)  # status and headers are known
    _progress: asyncio.Event = field(default_factory=asyncio.Event)  # a chunk arrived, or the end

    # Producer side (the fill task).

    def start(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers
        self._ready.set()

    def feed(self, chunk: bytes | memoryview) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._ready.set()
        self._wake()

    def fail(self, error: SurgeError) -> None:
        self.error = error
        self.finish()

    def _wake(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    # Consumer side (clients).

    async def wait_ready(self, limit: float) -> None:
        """Until status and headers are known; raises the fill's error, or 504 after ``limit`` seconds."""
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(asyncio.shield(self._ready.wait()), limit)
            except TimeoutError:
                raise UpstreamTimeout(f"upstream did not answer within {limit:.0f} s") from None
        if self.error is not None and not self.chunks:
            raise self.error

    async def stream(self, idle_timeout: float) -> AsyncIterator[bytes | memoryview]:
        """Every chunk from the first, as they arrive. Raises if the fill fails or stalls midway."""
        index = 0
        while True:
            while index < len(self.chunks):
                yield self.chunks[index]
                index += 1
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            progress = self._progress
            try:
                await asyncio.wait_for(asyncio.shield(progress.wait()), idle_timeout)
            except TimeoutError:
                raise UpstreamTimeout(f"upstream stalled for {idle_timeout:.0f} s") from None

    async def body(self, idle_timeout: float) -> bytes:
        async for _ in self.stream(idle_timeout):
            pass
        return b"".join(self.chunks)


FillRunner = Callable[[Fill], Awaitable[None]]


class SingleFlight:
    def __init__(self) -> None:
        self._fills: dict[str, Fill] = {}
        self._tasks = BackgroundTasks(logger, "fill")

    def __len__(self) -> int:
        return len(self._fills)

    def get(self, key: str) -> Fill | None:
        return self._fills.get(key)

    def join(self, key: str, run: FillRunner) -> tuple[Fill, bool]:
        """The fill in flight for ``key``, or a new one running ``run``; the flag says it is new."""
        existing = self._fills.get(key)
        if existing is not None:
            return existing, False
        fill = Fill(key)
        self._fills[key] = fill
        self._tasks.spawn(self._run(fill, run), name=f"fill {key}")
        return fill, True

    async def _run(self, fill: Fill, run: FillRunner) -> None:
        try:
            await run(fill)
            if not fill.done:
                fill.finish()
        except SurgeError as err:
            fill.fail(err)
        except asyncio.CancelledError:
            fill.fail(UpstreamFailed("the edge is shutting down"))
            raise
        except Exception as err:  # keep waiters from hanging on a bug; they get a 502
            fill.fail(UpstreamFailed(f"fill failed: {err!r}"))
        finally:
            self._fills.pop(fill.key, None)

    async def close(self) -> None:
        await self._tasks.close()
