"""Background tasks: kept until done, failures logged with their traceback, cancelled and awaited on close."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from service.tasks import BackgroundTasks
from tests.service.logcapture import json_lines_of, lines

LOGGER = "surge.test-tasks"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    with json_lines_of(LOGGER) as stream:
        yield stream


async def test_a_finished_task_is_forgotten_and_its_result_kept() -> None:
    tasks = BackgroundTasks(logging.getLogger(LOGGER))

    async def answer() -> int:
        return 42

    task = tasks.spawn(answer(), name="answer")
    assert len(tasks) == 1 and task.get_name() == "answer"
    assert await task == 42
    await asyncio.sleep(0)  # the done callback runs after the awaiters
    assert len(tasks) == 0


async def test_a_failure_is_logged_with_its_traceback(captured: io.StringIO) -> None:
    tasks = BackgroundTasks(logging.getLogger(LOGGER), "disk write")

    async def broken() -> None:
        raise OSError("the disk said no")

    tasks.spawn(broken(), name="write seg_1")
    await tasks.wait(within=5)
    await asyncio.sleep(0)
    [line] = lines(captured)
    assert line["event"] == "disk write failed" and line["level"] == "error" and line["task"] == "write seg_1"
    exception = line["exception"]
    assert isinstance(exception, dict)
    assert exception["type"] == "OSError" and exception["message"] == "the disk said no"
    assert any("broken" in frame for frame in exception["traceback"])
    assert len(tasks) == 0


async def test_close_cancels_and_awaits_every_task(captured: io.StringIO) -> None:
    tasks = BackgroundTasks(logging.getLogger(LOGGER))
    cleaned: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(name)

    spawned = [tasks.spawn(forever(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    await tasks.close(within=5)
    assert sorted(cleaned) == ["a", "b"] and all(task.cancelled() for task in spawned)
    await asyncio.sleep(0)
    assert len(tasks) == 0 and lines(captured) == []  # a cancellation is not a failure


async def test_close_is_bounded_by_its_timeout() -> None:
    tasks = BackgroundTasks(logging.getLogger(LOGGER))
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # ignores cancellation until released

    task = tasks.spawn(stubborn())
    await asyncio.sleep(0)
    await tasks.close(within=0.05)
    assert not task.done()
    release.set()
    await task


async def test_wait_returns_when_the_tasks_are_done_without_cancelling_them() -> None:
    tasks = BackgroundTasks(logging.getLogger(LOGGER))
    slow = tasks.spawn(asyncio.sleep(0.01, result="slept"))
    await tasks.wait(within=5)
    assert slow.result() == "slept"
    never = tasks.spawn(asyncio.Event().wait())
    await tasks.wait(within=0.01)
    assert not never.done()
    await tasks.close()
    assert never.cancelled()
