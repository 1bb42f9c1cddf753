"""Tasks nobody awaits one by one: kept referenced until done (the loop holds only weak references), a
failure logged with its traceback the moment it happens (never lost), every task cancelled and awaited on
``close``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from service.logs import log

T = TypeVar("T")


class BackgroundTasks:
    def __init__(self, logger: logging.Logger, what: str = "background task") -> None:
        self.logger = logger
        self.what = what  # named in the log line of a failure
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved: asyncio never warns about it again
        if error is not None:
            log(self.logger, f"{self.what} failed", logging.ERROR, exc_info=error, task=task.get_name())

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    async def wait(self, within: float | None = None) -> None:
        """Until every task now running is done, or ``within`` seconds passed (they go on)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)

    async def close(self, within: float | None = None) -> None:
        """Cancel every task and wait for them to end (at most ``within`` seconds when given)."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=within)
