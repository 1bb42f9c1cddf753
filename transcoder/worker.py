"""Packaging on another machine: one task from the origin, carried out through the origin's internal HTTP
routes (origin/workers.py), whoever started it (a Ray actor, origin/ray_packagers.py, or a child process,
``python -m transcoder.worker`` with the task as JSON on stdin).

Every kind of task (a whole title, or one chunk of a title's video encoded on several machines at once)
goes the same way: renew the lease at once and then every ``renew_every`` seconds
(with the progress), fetch the source, produce the kind's files in a temporary directory with the
transcoder's own code, upload each under ``upload_url``, then ``POST control_url/done``, whose answer
is the origin's verdict. A failure is reported to ``control_url/failed``. A refused renewal means the
lease is lost (expired, the title deleted): the work stops at once and nothing more is sent.

The token is sent only in the Authorization header, never in a URL or a log line.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp

from media.errors import SurgeError
from media.ladder import Rung
from transcoder.chunked import encode_video_chunk
from transcoder.chunks import Chunk
from transcoder.package import encode_title, plan_title
from transcoder.plan import PackageConfig

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0  # between two reads of an answer
DONE_TIMEOUT_S = 600.0  # the origin checks every segment of the title before it answers
CHUNK = 1024 * 1024
SOURCE_NAME = "source"
OUTPUT_DIR = "out"


class TaskKind(StrEnum):
    # ffmpeg's output for the whole title (renditions, segments, raw playlists); the origin completes
    # it with finish_title and publishes it.
    PACKAGE_TITLE = "package-title"
    # One chunk's video, every rung (transcoder/chunked.py ``encode_video_chunk``): the origin plans the
    # chunks, encodes the audio once and assembles the title when every chunk is in.
    ENCODE_CHUNK = "encode-chunk"


@dataclass(frozen=True)
class WorkerTask:
    kind: TaskKind
    job_id: str  # the title id
    source_url: str  # GET: the source file
    upload_url: str  # PUT upload_url + relative path, for every file produced (ends with "/")
    control_url: str  # POST control_url + /renew, /done, /failed
    token: str = field(repr=False)  # the job's lease token: Authorization: Bearer <token>
    config: PackageConfig = field(default_factory=PackageConfig)
    renew_every: float = 10.0  # seconds between renewals (a third of the lease)
    chunk: Chunk | None = None  # ENCODE_CHUNK: which part of the title's video

    def __post_init__(self) -> None:
        if (self.kind is TaskKind.ENCODE_CHUNK) != (self.chunk is not None):
            raise ValueError(f"a {self.kind} task {'needs' if self.chunk is None else 'takes no'} chunk")

    def to_json(self) -> str:
        data = asdict(self)
        data["config"]["ladder"] = [[r.width, r.height, r.bitrate] for r in self.config.ladder]
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> WorkerTask:
        data = json.loads(text)
        config = dict(data.pop("config"))
        config["ladder"] = tuple(Rung(*rung) for rung in config["ladder"])
        chunk = data.pop("chunk", None)
        return cls(**data | {"kind": TaskKind(data["kind"]), "config": PackageConfig(**config),
                             "chunk": None if chunk is None else Chunk(**chunk)})  # fmt: skip


class LeaseLost(SurgeError):
    """The origin no longer leases this job to us (expired, deleted, given to another worker)."""

    status = 409


@dataclass(frozen=True)
class Outcome:
    """How a task ended, as the origin said: ``ready``, ``queued`` (to be tried again), ``failed``, or
    ``lost`` (the lease was lost; the origin decides on its own)."""

    state: str
    detail: str = ""


async def run_task(task: WorkerTask, workdir: Path, node: str | None = None) -> Outcome:
    """Carry out ``task`` in ``workdir`` (an empty directory of this machine); ``node``: this machine's
    address, shown in the title's status."""
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
    headers = {"Authorization": f"Bearer {task.token}"}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        origin = Origin(session, task, node)
        try:
            lease_seconds = await origin.renew()
        except LeaseLost as err:
            return Outcome("lost", err.message)
        work = asyncio.create_task(_work(origin, workdir))
        keeper = asyncio.create_task(origin.keep_lease(lease_seconds))
        try:
            await asyncio.wait({work, keeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for running in (work, keeper):
                running.cancel()
            await asyncio.gather(work, keeper, return_exceptions=True)
        if not work.cancelled() and work.exception() is None:
            return work.result()
        error = (work.exception() if not work.cancelled() else None) or keeper.exception()
        if isinstance(error, LeaseLost):
            return Outcome("lost", error.message)
        if not isinstance(error, Exception):
            raise AssertionError(f"the work ended without a result: {error!r}")
        try:
            return await origin.report_failure(error)
        except (LeaseLost, SurgeError, aiohttp.ClientError, TimeoutError) as report_error:
            return Outcome("lost", f"{error}; the failure could not be reported: {report_error}")


async def _work(origin: Origin, workdir: Path) -> Outcome:
    task = origin.task
    source = workdir / SOURCE_NAME
    output = workdir / OUTPUT_DIR
    await asyncio.to_thread(output.mkdir)
    await origin.fetch_source(source)
    match task.kind:
        case TaskKind.PACKAGE_TITLE:
            await produce_title(task, source, output, origin.set_progress)
        case TaskKind.ENCODE_CHUNK:
            await produce_chunk(task, source, output, origin.set_progress)
    await origin.upload_tree(output)
    return await origin.done()


async def produce_title(
    task: WorkerTask, source: Path, output: Path, on_progress: Callable[[float], None]
) -> None:
    """``TaskKind.PACKAGE_TITLE``: ffmpeg's output for the whole title into ``output``."""
    plan = await asyncio.to_thread(plan_title, source, task.config)
    await encode_title(plan, output, task.config, on_progress)


async def produce_chunk(
    task: WorkerTask, source: Path, output: Path, on_progress: Callable[[float], None]
) -> None:
    """``TaskKind.ENCODE_CHUNK``: one chunk's video into ``output/<rendition>/``. The plan is made here from
    the same source and settings as the origin's (planning is deterministic), so every chunk is encoded
    alike wherever it runs."""
    assert task.chunk is not None  # WorkerTask checks it
    plan = await asyncio.to_thread(plan_title, source, task.config)
    await encode_video_chunk(source, task.chunk, plan, output, on_progress,
                             stall_timeout=task.config.stall_timeout)  # fmt: skip


@dataclass
class Origin:
    """The origin's internal routes, as one task uses them."""

    session: aiohttp.ClientSession
    task: WorkerTask
    node: str | None
    progress: float = 0.0
    clock: Callable[[], float] = time.monotonic

    def set_progress(self, fraction: float) -> None:
        self.progress = fraction

    async def _call(self, method: str, url: str, **options: Any) -> dict[str, Any]:
        async with self.session.request(method, url, **options) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = {}
            if response.status in (401, 403, 404):
                raise LeaseLost(str(body.get("error") or f"HTTP {response.status}"))
            if response.status >= 400 and response.status != 422:
                raise SurgeError(f"the origin answered {method} {url} with {response.status}: "
                                 f"{body.get('error', '')}")  # fmt: skip
            return body if isinstance(body, dict) else {}

    async def renew(self) -> float:
        """Renew the lease; the seconds it now runs."""
        body = await self._call("POST", f"{self.task.control_url}/renew",
                                json={"progress": round(self.progress, 4), "worker": self.node})  # fmt: skip
        return float(body.get("expires_in", 0.0))

    async def keep_lease(self, lease_seconds: float) -> None:
        """Renew every ``renew_every`` seconds until cancelled. Raises ``LeaseLost`` when the origin
        refuses, or when it has not answered for as long as the lease ran (it is lost by then)."""
        answered = self.clock()
        while True:
            await asyncio.sleep(self.task.renew_every)
            try:
                # An answer is still in time until the lease runs out (a busy link, a lost SYN's 1 s).
                patience = max(1.0, lease_seconds - self.task.renew_every)
                lease_seconds = await asyncio.wait_for(self.renew(), patience)
                answered = self.clock()
            except (aiohttp.ClientError, TimeoutError, SurgeError) as err:
                if isinstance(err, LeaseLost) or self.clock() - answered >= lease_seconds:
                    raise LeaseLost(f"the lease could not be renewed: {err or 'timed out'}") from None

    async def fetch_source(self, path: Path) -> None:
        async with self.session.get(self.task.source_url) as response:
            if response.status in (401, 403, 404):
                raise LeaseLost(f"the source was refused: HTTP {response.status}")
            if response.status != 200:
                raise SurgeError(f"fetching the source answered HTTP {response.status}")
            with path.open("wb") as handle:
                async for chunk in response.content.iter_chunked(CHUNK):
                    await asyncio.to_thread(handle.write, chunk)

    async def upload_tree(self, directory: Path) -> None:
        files = await asyncio.to_thread(lambda: sorted(p for p in directory.rglob("*") if p.is_file()))
        for path in files:
            relative = path.relative_to(directory).as_posix()
            with path.open("rb") as handle:
                await self._call("PUT", self.task.upload_url + relative, data=handle,
                                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip

    async def done(self) -> Outcome:
        body = await self._call("POST", f"{self.task.control_url}/done",
                                timeout=aiohttp.ClientTimeout(total=DONE_TIMEOUT_S))  # fmt: skip
        return Outcome(str(body.get("status", "")), str(body.get("error") or ""))

    async def report_failure(self, error: Exception) -> Outcome:
        body = await self._call("POST", f"{self.task.control_url}/failed", json=failure_report(error))
        return Outcome(str(body.get("status", "")), str(body.get("error") or ""))


def failure_report(error: Exception) -> dict[str, Any]:
    """What the origin needs to decide on a failure: the error's class (its kind), the message, and
    ffmpeg's exit code when there is one."""
    message = error.message if isinstance(error, SurgeError) else f"internal error: {error!r}"
    exit_code = getattr(error, "exit_code", None)
    return {"type": error.__class__.__name__, "message": message,
            "exit_code": exit_code if isinstance(exit_code, int) else None}  # fmt: skip


async def run_in_temporary_directory(
    task: WorkerTask, node: str | None, run: Callable[[WorkerTask, Path, str | None], Awaitable[Outcome]]
) -> Outcome:
    """``run`` in a fresh temporary directory, removed afterwards whatever happens."""
    with tempfile.TemporaryDirectory(prefix="surge-worker-") as directory:
        return await run(task, Path(directory), node)


def main() -> int:
    """``python -m transcoder.worker``: one task, as JSON on stdin (never on the command line)."""
    task = WorkerTask.from_json(sys.stdin.read())
    outcome = asyncio.run(run_in_temporary_directory(task, socket.gethostname(), run_task))
    print(json.dumps(asdict(outcome)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
