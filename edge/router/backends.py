"""Where edges run. One small interface; local processes are the embedded default, and
``edge/router/ray_backend.py`` places edges on the machines of a Ray cluster.

A backend starts ``surge edge`` somewhere and reports the URL players reach it at (its advertised URL,
never a loopback one unless the edges bind loopback). ``start`` returns once the edge listens; it sets
``handle.node`` as soon as a machine is chosen, so that an edge still waiting for a machine shows as
``pending``. A backend whose edges outlive the fleet (``keeps_edges``) hands them to the next fleet
through ``adopt``.
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
    url: str = ""  # the advertised URL, once the edge listens
    node: str | None = None  # the machine's address, once one is chosen
    parent: str | None = None  # the URL it fills from first


@dataclass
class ProcessHandle(EdgeHandle):
    process: asyncio.subprocess.Process | None = None
    _log_task: asyncio.Task[None] | None = field(default=None, repr=False)


class EdgeBackend(Protocol):
    keeps_edges: bool  # edges outlive the fleet and are adopted by the next one

    async def open(self) -> None: ...

    def new_handle(self, edge_id: str, parent: str | None) -> EdgeHandle: ...

    async def start(self, handle: EdgeHandle) -> None: ...

    async def stop(self, handle: EdgeHandle, graceful: bool = True) -> None: ...

    def exited(self, handle: EdgeHandle) -> bool: ...

    async def adopt(self) -> list[EdgeHandle]: ...

    async def close(self) -> None: ...


def edge_command(
    origin: str,
    edge_id: str,
    host: str,
    parent: str | None,
    edge_args: tuple[str, ...],
    public_host: str | None,
) -> list[str]:
    """``surge edge`` on a free port of ``host``, filling from ``parent`` first, then ``origin``."""
    return [
        sys.executable, "-m", "surge.cli", "edge", "--upstream", origin, "--host", host, "--port", "0",
        "--id", edge_id,
        *(["--parent", parent] if parent else []),
        *(["--public-host", public_host] if public_host else []),
        *edge_args,
    ]  # fmt: skip


@dataclass
class LocalProcesses:
    """``surge edge`` child processes of the fleet, on free ports of ``host`` (127.0.0.1 by default).

    Edges bound to every address (``0.0.0.0``) advertise ``public_host`` (else the machine's name)."""

    origin: str
    edge_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    public_host: str | None = None
    stop_timeout: float = 35.0
    keeps_edges: bool = False

    async def open(self) -> None:
        return None

    def new_handle(self, edge_id: str, parent: str | None) -> ProcessHandle:
        return ProcessHandle(edge_id, parent=parent)

    async def start(self, handle: EdgeHandle) -> None:
        assert isinstance(handle, ProcessHandle)
        handle.node = self.public_host or self.host
        command = edge_command(self.origin, handle.id, self.host, handle.parent, self.edge_args,
                               self.public_host)  # fmt: skip
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
                raise RuntimeError(f"edge {handle.id} did not start: {err!r}") from None
            raise
        handle.url, handle.process = url, process
        handle._log_task = asyncio.create_task(self._drain(process.stderr))

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
        assert isinstance(handle, ProcessHandle)
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
        process = handle.process if isinstance(handle, ProcessHandle) else None
        return process is not None and process.returncode is not None

    async def adopt(self) -> list[EdgeHandle]:
        return []  # child processes die with the fleet: nothing to adopt

    async def close(self) -> None:
        return None
