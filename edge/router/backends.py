"""Where edges run. One small interface; local processes on 127.0.0.1 are the embedded default.

A Kubernetes backend (scaling a Deployment) would implement the same three calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Protocol

from service.logs import log
from service.process import die_with_parent

logger = logging.getLogger("surge.fleet")
START_TIMEOUT_S = 20.0


@dataclass
class EdgeHandle:
    id: str
    url: str
    process: asyncio.subprocess.Process | None = None
    _log_task: asyncio.Task[None] | None = field(default=None, repr=False)


class EdgeBackend(Protocol):
    async def start(self, edge_id: str, parent: str | None) -> EdgeHandle: ...

    async def stop(self, handle: EdgeHandle, graceful: bool = True) -> None: ...

    def exited(self, handle: EdgeHandle) -> bool: ...


@dataclass
class LocalProcesses:
    """``surge edge`` child processes on free ports of 127.0.0.1."""

    origin: str
    edge_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    stop_timeout: float = 35.0

    async def start(self, edge_id: str, parent: str | None) -> EdgeHandle:
        command = [sys.executable, "-m", "surge.cli", "edge", "--upstream", self.origin, "--host", self.host]
        command += [
            "--port",
            "0",
            "--id",
            edge_id,
            *(["--parent", parent] if parent else []),
            *self.edge_args,
        ]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=os.environ.copy(),
            preexec_fn=die_with_parent(),  # a fleet killed outright takes its edges with it
        )
        assert process.stderr is not None
        try:
            url = await asyncio.wait_for(self._listening_url(process.stderr), START_TIMEOUT_S)
        except BaseException as err:  # cancelled too: never leave a half-started edge behind
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
            if isinstance(err, (TimeoutError, EOFError)):
                raise RuntimeError(f"edge {edge_id} did not start: {err!r}") from None
            raise
        handle = EdgeHandle(edge_id, url, process)
        handle._log_task = asyncio.create_task(self._drain(process.stderr))
        return handle

    @staticmethod
    async def _listening_url(stream: asyncio.StreamReader) -> str:
        while line := await stream.readline():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "listening":
                    return str(event["url"])
        raise EOFError("the edge exited before listening")

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        """Keep the pipe flowing; forward the edge's warnings and errors to the fleet's log."""
        while line := await stream.readline():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("level") in ("warning", "error"):
                    log(logger, "edge says", logging.WARNING, **{k: v for k, v in event.items() if k != "ts"})

    async def stop(self, handle: EdgeHandle, graceful: bool = True) -> None:
        process = handle.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout if graceful else 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if handle._log_task is not None:
            handle._log_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handle._log_task

    def exited(self, handle: EdgeHandle) -> bool:
        return handle.process is not None and handle.process.returncode is not None
