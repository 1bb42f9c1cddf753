"""The packaging queue with workers on other machines (``surge origin --packagers ray|processes``).

The store stays the one source of truth: a job is leased to a worker, with a per-job token (only its
SHA-256 is stored) and an expiry the worker renews while it works (origin/leasing.py decides). The worker
fetches the source and sends its files back into ``staging/<id>.<attempt>/`` through the internal routes
(origin/workers.py); the origin then runs the transcoder's own checks (``finish_title``) and publishes by
rename, as for a local job. A lease that runs out (a lost worker or machine) puts the job back in the
queue, its staging removed; a backend runs the workers (``PackagerBackend``: Ray actors, or child
processes of this machine).

A long title, when more than one worker unit is free, is encoded in chunks on several workers
(``ChunkedTitle``): the origin plans the chunks (transcoder/chunks.py), leases each chunk on its own (the
store's chunk leases; a lost chunk runs again elsewhere, a chunk failing the same way twice fails the
title), encodes the audio once itself, and when every chunk is in assembles them, checks and publishes
as for any title. The chunk's token decides where its files go (``staging/<id>.<tag>/.chunks/``), so
workers use the same routes for both kinds of task. An origin restarted meanwhile starts such a title
over (its chunk workers' tokens are refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from media.errors import InsufficientStorage, InvalidInput, PayloadTooLarge, SurgeError
from media.layout import Library, safe_join
from media.title import TitleInfo
from origin import leasing
from origin.jobs import GiveUp, Retry, disk_free
from origin.leasing import Failure, Lease, Requeue
from origin.store import ChunkRow, ChunkState, LeaseRow, Status, TitleStore
from service.auth import Forbidden
from service.logs import log
from service.process import die_with_parent
from transcoder.chunked import CHUNKS_DIR, assemble_chunks, chunk_dir
from transcoder.chunks import (
    Chunk,
    Chunked,
    ChunkProgress,
    Encoding,
    SingleProcess,
    choose_encoding,
    seeks_accurately,
)
from transcoder.command import build_audio_command
from transcoder.package import TITLE_JSON, finish_title, make_output_dirs, out_of_space, plan_title, publish
from transcoder.plan import PackageConfig, PackagePlan
from transcoder.run import run_ffmpeg
from transcoder.worker import TaskKind, WorkerTask

logger = logging.getLogger("surge.jobs")
Clock = Callable[[], float]
INTERNAL_PREFIX = "/internal/jobs"
MAX_DEPTH = 4  # rendition/file, or under a sub-path such as chunks/<n>/rendition/file
UPLOAD_CHUNK = 1024 * 1024
TRASH_PREFIX = ".trash-"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def lease_tag(token_digest: str) -> str:
    """A lease's public name, unique per lease (its token's hash, shortened; the token stays secret)."""
    return token_digest[:12]


def staging_path(library: Library, job_id: str, tag: str) -> Path:
    """Where the files of one lease go: ``staging/<id>.<lease tag>`` (DESIGN.md "On disk")."""
    return library.staging_dir / f"{job_id}.{tag}"


def split_upload_path(text: str) -> list[str]:
    """``360p/seg_00001.m4s`` → its components; each a plain name (no ``..``, no dot files, no empty
    component), at most ``MAX_DEPTH`` of them. Raises ``InvalidInput`` (400)."""
    components = text.split("/")
    if not 1 <= len(components) <= MAX_DEPTH:
        raise InvalidInput(f"invalid file path {text!r}: 1 to {MAX_DEPTH} components")
    for component in components:
        if not component or component.startswith(".") or ".." in component:
            raise InvalidInput(f"invalid file path {text!r}")
    return components


def chunk_lease_dir(staging: Path, index: int, tag: str) -> Path:
    """Where one chunk lease's files go; renamed to the chunk's own directory when the chunk is done (a
    worker whose lease was lost cannot write into its successor's files)."""
    return staging / CHUNKS_DIR / f"{index:05d}.{tag}"


@dataclass
class ChunkedTitle:
    """A title being encoded in chunks on several workers: what the origin keeps while it coordinates
    (the chunks and their leases are in the store)."""

    title_id: str
    name: str
    staging: Path
    plan: PackagePlan
    chunks: tuple[Chunk, ...]
    attempts: int
    last_failure: str | None
    progress: ChunkProgress
    workers: set[str] = field(default_factory=set)
    audio: asyncio.Task[None] | None = None
    audio_done: bool = False


class PackagerBackend(Protocol):
    """Runs worker tasks somewhere: ``start`` returns at once; ``stop`` ends a run (by the name it was
    started with) whether it is still waiting for a machine, working or already gone."""

    async def open(self) -> None: ...

    async def capacity(self) -> int: ...

    async def start(self, task: WorkerTask, name: str) -> None: ...

    async def stop(self, name: str) -> None: ...

    async def close(self) -> None: ...


@dataclass
class ProcessPackagers:
    """Workers as child processes of the origin (``python -m transcoder.worker``), through the same HTTP
    routes as workers on other machines: no cluster needed to check a setup."""

    slots: int
    _running: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    _reapers: set[asyncio.Task[None]] = field(default_factory=set)

    async def open(self) -> None:
        return None

    async def capacity(self) -> int:
        return self.slots

    async def start(self, task: WorkerTask, name: str) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "transcoder.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent(),
        )  # fmt: skip
        assert process.stdin is not None
        process.stdin.write(task.to_json().encode())  # the token on stdin, never on a command line
        process.stdin.close()
        self._running[name] = process
        reaper = asyncio.create_task(self._reap(name, process))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)

    async def _reap(self, name: str, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        if self._running.get(name) is process:
            del self._running[name]

    async def stop(self, name: str) -> None:
        process = self._running.pop(name, None)
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def close(self) -> None:
        for name in list(self._running):
            await self.stop(name)
        await asyncio.gather(*self._reapers, return_exceptions=True)


@dataclass(frozen=True)
class Verdict:
    """What the origin answers a worker that finished or failed (``status`` of the title afterwards)."""

    status: str
    error: str | None = None


class RemoteQueue:
    """``PackagingQueue`` with the work done by workers that a ``PackagerBackend`` starts."""

    def __init__(
        self,
        library: Library,
        store: TitleStore,
        config: PackageConfig,
        backend: PackagerBackend,
        *,
        lease_duration: float = 30.0,
        start_timeout: float = 120.0,
        max_attempts: int = 3,
        retry_delay: float = 2.0,
        max_file: int = 4 * 1024**3,
        min_free_disk: int = 0,
        clock: Clock = time.time,
        tick: float = 0.5,
    ) -> None:
        self.library = library
        self.store = store
        self.config = config
        self.backend = backend
        self.lease_duration = lease_duration
        self.start_timeout = start_timeout
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_file = max_file
        self.min_free_disk = min_free_disk
        self.clock = clock
        self.tick = tick
        self.origin_url: str | None = None  # the advertised URL, known once the origin listens
        self._backoff: dict[str, float] = {}
        self._progress: dict[str, float] = {}
        self._leased = 0
        self._finishing: dict[str, asyncio.Event] = {}
        self._chunked: dict[str, ChunkedTitle] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    # --- PackagingQueue

    @property
    def running(self) -> int:
        return self._leased

    def live_progress(self, title_id: str) -> float | None:
        return self._progress.get(title_id)

    def advertise(self, url: str) -> None:
        """The URL workers reach this origin by (its advertised URL: service/urls.py)."""
        self.origin_url = url.rstrip("/")
        self.wake()

    async def start(self) -> None:
        leases = await self.store.leases()
        kept = {staging_path(self.library, row.id, lease_tag(row.token_hash)).name for row in leases}
        await asyncio.to_thread(self._clean_leftovers, kept)
        requeued = await self.store.requeue_interrupted(keep_leases=True)
        if requeued:
            log(logger, "requeued interrupted jobs", count=requeued)
        if leases:
            log(logger, "leases kept from the last run", count=len(leases))
        await self.backend.open()
        self._loop = asyncio.create_task(self._run(), name="packager dispatch")

    def _clean_leftovers(self, kept: set[str]) -> None:
        """Staging of a previous run is garbage, except that of leases still running (their workers may
        go on); partial uploads too."""
        self.library.ensure_dirs()
        for leftover in self.library.staging_dir.iterdir():
            if leftover.name not in kept:
                shutil.rmtree(leftover, ignore_errors=True)
        for partial in self.library.uploads_dir.glob("*.part"):
            partial.unlink(missing_ok=True)

    async def stop(self) -> None:
        """Stop dispatching. Leases stay: their workers go on, and a restarted origin honours them."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        # Titles in chunks start over on the next start (their chunk leases are dropped then).
        for job in self._chunked.values():
            if job.audio is not None:
                job.audio.cancel()
        for running in self._background:
            running.cancel()
        pending = [job.audio for job in self._chunked.values() if job.audio is not None]
        await asyncio.gather(*pending, *self._background, return_exceptions=True)
        await self.backend.close()

    def wake(self) -> None:
        self._wake.set()

    async def cancel(self, title_id: str) -> bool:
        """The title is being deleted: end its lease, stop its worker, remove its staging."""
        finishing = self._finishing.get(title_id)
        if finishing is not None:
            await finishing.wait()  # never delete under a publish
        job = self._chunked.pop(title_id, None)
        if job is not None:
            rows = await self.store.chunk_rows(title_id)
            await self.store.end_chunked(title_id, status=Status.QUEUED, progress=0.0)
            await self._discard_chunked(job, rows)
            return True
        lease = next((row for row in await self.store.leases() if row.id == title_id), None)
        if lease is None:
            return False
        await self.store.end_lease(title_id, lease.token_hash, status=Status.QUEUED, progress=0.0)
        await self._discard(lease)
        return True

    # --- dispatch

    async def _run(self) -> None:
        while True:
            try:
                await self.dispatch()
            except (sqlite3.Error, OSError, SurgeError) as err:  # a full disk, a cluster that does not answer
                log(logger, "packaging dispatch stalled", logging.ERROR, error=str(err))
            except Exception:  # a bug: keep the queue alive, say what happened
                log(logger, "packaging dispatch crashed", logging.ERROR, exc_info=True)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)

    async def dispatch(self) -> None:
        """One round: reclaim expired leases (of whole titles and of chunks), then lease queued chunks and
        queued jobs to free worker units."""
        now = self.clock()
        leases = await self.store.leases()
        for row in leasing.expired([self._lease(r) for r in leases], now):
            if row.job_id not in self._finishing:
                await self._expire(next(r for r in leases if r.id == row.job_id))
        for chunk_row in await self.store.chunk_rows():
            if chunk_row.state is ChunkState.LEASED and now >= (chunk_row.expires or 0.0):
                await self._expire_chunk(chunk_row)
        leases = await self.store.leases()
        chunk_rows = [r for r in await self.store.chunk_rows() if r.title_id in self._chunked]
        busy = len(leases) + sum(1 for r in chunk_rows if r.state is ChunkState.LEASED)
        self._leased = busy
        if self.origin_url is None:
            return
        started = list(self._chunked)  # titles in the order they were started
        waiting = sorted((r for r in chunk_rows if r.state is ChunkState.QUEUED),
                         key=lambda r: (started.index(r.title_id), r.chunk.index))  # fmt: skip
        queued_chunks = {leasing.chunk_key(r.title_id, r.chunk.index): r for r in waiting}
        queued = [record.id for record in reversed(await self.store.list(Status.QUEUED))]
        if not queued and not queued_chunks:
            return
        capacity = await self.backend.capacity()
        units = leasing.spend_units(list(queued_chunks), self._backoff, capacity, busy, now)
        for key in units.chunks:
            waiting_chunk = queued_chunks[key]
            if (job := self._chunked.get(waiting_chunk.title_id)) is not None:
                await self._lease_chunk(job, waiting_chunk.chunk)
        free = units.free
        for job_id in leasing.jobs_to_lease(queued, self._backoff, free, 0, now):
            if free <= 0:
                break
            free -= await self._lease_title(job_id, free)

    @staticmethod
    def _lease(row: LeaseRow) -> Lease:
        return Lease(row.id, row.expires, row.started)

    async def _lease_title(self, job_id: str, free: int) -> int:
        """Lease a queued title, whole or in chunks; the worker units it took."""
        published = self.library.title_dir(job_id) / TITLE_JSON
        if await asyncio.to_thread(published.is_file):
            # Published just before a crash, before the store heard of it (or by surge demo).
            info = TitleInfo.from_json(await asyncio.to_thread(published.read_text))
            await self.store.update(job_id, status=Status.READY, progress=1.0, duration=info.duration)
            return 0
        encoding, plan = await self._choose_encoding(job_id, free)
        match encoding:
            case SingleProcess():
                await self._lease_job(job_id)
                return 1
            case Chunked(chunks=chunks, parallel=parallel):
                assert plan is not None
                return await self._start_chunked(job_id, plan, chunks, parallel)

    async def _choose_encoding(self, job_id: str, free: int) -> tuple[Encoding, PackagePlan | None]:
        """Chunks on several workers for a long title when more than one unit is free (the source is
        probed here only then); else the whole title on one worker."""
        if free <= 1 or self.config.chunk_seconds <= 0:
            return SingleProcess(), None
        try:
            plan = await asyncio.to_thread(plan_title, self.library.source_path(job_id), self.config)
        except (SurgeError, OSError) as err:  # the worker will meet it too, and report it
            log(logger, "no chunks: the source cannot be planned", logging.WARNING, title=job_id,
                error=err.message if isinstance(err, SurgeError) else str(err))  # fmt: skip
            return SingleProcess(), None
        encoding = choose_encoding(plan.duration, plan.segment_duration, self.config.chunk_seconds, free,
                                   seekable=seeks_accurately(plan.source_facts.container))  # fmt: skip
        return encoding, plan

    async def _lease_job(self, job_id: str) -> None:
        assert self.origin_url is not None
        token = secrets.token_urlsafe(32)
        digest = token_hash(token)
        tag = lease_tag(digest)
        others = {r.id for r in await self.store.list(Status.QUEUED)} - {job_id}
        record = await self.store.lease_next(digest, self.clock() + self.start_timeout, others)
        if record is None:
            return  # deleted meanwhile
        self._backoff.pop(job_id, None)
        self._leased += 1
        await asyncio.to_thread(staging_path(self.library, job_id, tag).mkdir, parents=True,
                                exist_ok=True)  # fmt: skip
        jobs = f"{self.origin_url}{INTERNAL_PREFIX}/{job_id}"
        task = WorkerTask(TaskKind.PACKAGE_TITLE, job_id, source_url=f"{jobs}/source",
                          upload_url=f"{jobs}/files/", control_url=jobs, token=token, config=self.config,
                          renew_every=self.lease_duration / 3)  # fmt: skip
        self._progress[job_id] = 0.0
        log(logger, "packaging leased", title=job_id, attempt=record.attempts)
        try:
            await self.backend.start(task, run_name(job_id, tag))
        except (SurgeError, OSError) as err:  # the lease runs out and the job goes back to the queue
            log(logger, "packaging worker not started", logging.WARNING, title=job_id, error=str(err))

    async def _expire(self, row: LeaseRow) -> None:
        decision = leasing.after_expiry(self._lease(row), row.attempts, row.last_failure, self.max_attempts,
                                        self.retry_delay, self.lease_duration)  # fmt: skip
        match decision:
            case Requeue():
                error = (
                    f"the worker given this job did not start within {self.start_timeout:g} s "
                    "(can workers reach this origin's advertised URL?); waiting for another"
                )
                if await self.store.end_lease(row.id, row.token_hash, uncount=True, status=Status.QUEUED,
                                              progress=0.0, error=error):  # fmt: skip
                    log(logger, "packaging worker never started", logging.WARNING, title=row.id)
                    await self._discard(row)
            case Retry() | GiveUp():
                await self._fail(row, leasing.worker_lost(self.lease_duration), stop_worker=True)

    async def _fail(self, row: LeaseRow, failure: Failure, stop_worker: bool = False) -> Verdict:
        """``stop_worker``: the worker is lost (a worker that reported the failure itself is left to end
        on its own, cleaning up its machine's temporary files)."""
        decision = leasing.after_remote_failure(failure, row.attempts, row.last_failure, self.max_attempts,
                                                self.retry_delay)  # fmt: skip
        match decision:
            case Retry(delay):
                verdict = Verdict(
                    str(Status.QUEUED),
                    f"attempt {row.attempts} failed, retrying in {delay:g} s: {failure.reason}",
                )
                ended = await self.store.end_lease(
                    row.id,
                    row.token_hash,
                    status=Status.QUEUED,
                    progress=0.0,
                    error=verdict.error,
                    last_failure=failure.signature,
                )
                if ended:
                    self._backoff[row.id] = self.clock() + delay
            case GiveUp():
                verdict = Verdict(str(Status.FAILED), leasing.give_up_reason(failure, row.last_failure))
                ended = await self.store.end_lease(
                    row.id,
                    row.token_hash,
                    status=Status.FAILED,
                    error=verdict.error,
                    last_failure=failure.signature,
                )
        if ended:
            log(
                logger,
                "packaging failed",
                logging.WARNING,
                title=row.id,
                attempt=row.attempts,
                worker=row.worker,
                outcome=verdict.status,
                error=failure.reason,
            )
            await self._discard(row, stop_worker)
        self.wake()
        return verdict

    async def _discard(self, row: LeaseRow, stop_worker: bool = True) -> None:
        """After a lease ended without a publish: its staging gone, its worker stopped."""
        self._progress.pop(row.id, None)
        if stop_worker:
            await self.backend.stop(run_name(row.id, lease_tag(row.token_hash)))
        await asyncio.to_thread(remove_staging, staging_path(self.library, row.id, lease_tag(row.token_hash)))

    # --- titles in chunks

    async def _start_chunked(self, job_id: str, plan: PackagePlan, chunks: tuple[Chunk, ...],
                             parallel: int) -> int:  # fmt: skip
        """Claim the title, plan its chunks in the store, start its audio here and lease its first
        ``parallel`` chunks; the units taken."""
        others = {r.id for r in await self.store.list(Status.QUEUED)} - {job_id}
        last_failure = await self.store.last_failure(job_id)
        record = await self.store.claim_next(others)
        if record is None:
            return 0  # deleted meanwhile
        self._backoff.pop(job_id, None)
        # Known at once, so that a deletion from now on finds it (and every step below checks for one).
        staging = staging_path(self.library, job_id, secrets.token_hex(6))
        job = ChunkedTitle(job_id, record.name, staging, plan, chunks, record.attempts, last_failure,
                           ChunkProgress(chunks))  # fmt: skip
        self._chunked[job_id] = job
        self._progress[job_id] = 0.0
        try:
            await asyncio.to_thread(_make_chunked_staging, plan, staging)
        except OSError as err:  # a full disk, say: this attempt fails as any other would
            await self._end_chunked(job, leasing.origin_error(
                err.__class__.__name__, f"the staging directory cannot be made: {err}", None))  # fmt: skip
            return 0
        if self._chunked.get(job_id) is job:
            await self.store.start_chunks(job_id, chunks)
        if self._chunked.get(job_id) is not job:  # deleted meanwhile: undo what was made after the deletion
            await self.store.end_chunked(job_id)
            await asyncio.to_thread(remove_staging, staging)
            return 0
        log(logger, "packaging in chunks", title=job_id, chunks=len(chunks), parallel=parallel,
            attempt=record.attempts)  # fmt: skip
        if plan.audio is None:
            job.audio_done = True
        else:
            job.audio = asyncio.create_task(self._encode_audio(job), name=f"audio of {job_id}")
            job.audio.add_done_callback(lambda audio: self._after_audio(job, audio))
        for chunk in chunks[:parallel]:
            await self._lease_chunk(job, chunk)
        return parallel

    async def _lease_chunk(self, job: ChunkedTitle, chunk: Chunk) -> None:
        assert self.origin_url is not None
        token = secrets.token_urlsafe(32)
        digest = token_hash(token)
        tag = lease_tag(digest)
        if not await self.store.lease_chunk(
            job.title_id, chunk.index, digest, self.clock() + self.start_timeout
        ):
            return
        self._backoff.pop(leasing.chunk_key(job.title_id, chunk.index), None)
        try:  # not parents=True: a title ended meanwhile has no staging, and gets none back
            await asyncio.to_thread(chunk_lease_dir(job.staging, chunk.index, tag).mkdir)
        except FileNotFoundError:
            return
        jobs = f"{self.origin_url}{INTERNAL_PREFIX}/{job.title_id}"
        task = WorkerTask(TaskKind.ENCODE_CHUNK, job.title_id, source_url=f"{jobs}/source",
                          upload_url=f"{jobs}/files/", control_url=jobs, token=token, config=self.config,
                          renew_every=self.lease_duration / 3, chunk=chunk)  # fmt: skip
        self._leased += 1
        log(logger, "chunk leased", title=job.title_id, chunk=chunk.index)
        name = run_name(job.title_id, tag)
        try:
            await self.backend.start(task, name)
        except (SurgeError, OSError) as err:  # the lease runs out and the chunk goes back to the queue
            log(logger, "packaging worker not started", logging.WARNING, title=job.title_id,
                chunk=chunk.index, error=str(err))  # fmt: skip
        if self._chunked.get(job.title_id) is not job:
            await self.backend.stop(name)  # the title ended while its worker was being started

    async def _encode_audio(self, job: ChunkedTitle) -> None:
        """The title's audio, once, by this origin: no AAC priming gap at any join of the chunks."""
        command = build_audio_command(job.plan.source, job.plan, job.staging)
        await run_ffmpeg(command, job.plan.duration, None, self.config.stall_timeout)

    def _after_audio(self, job: ChunkedTitle, audio: asyncio.Task[None]) -> None:
        if audio.cancelled() or self._chunked.get(job.title_id) is not job:
            return
        error = audio.exception()
        if error is None:
            job.audio_done = True
            self._spawn(self._maybe_finish(job))
        elif isinstance(error, SurgeError | OSError):
            message = error.message if isinstance(error, SurgeError) else str(error)
            failure = leasing.origin_error(error.__class__.__name__, f"encoding the audio failed: {message}",
                                           getattr(error, "exit_code", None))  # fmt: skip
            self._spawn(self._end_chunked(job, failure))
        else:
            log(logger, "audio encoding crashed", logging.ERROR, title=job.title_id, error=repr(error))
            self._spawn(self._end_chunked(job, leasing.origin_error("InternalError", repr(error), None)))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _maybe_finish(self, job: ChunkedTitle) -> None:
        """Every chunk in and the audio done: assemble, check and publish the title."""
        title_id = job.title_id
        if not job.audio_done or title_id in self._finishing:
            return
        rows = await self.store.chunk_rows(title_id)
        if len(rows) != len(job.chunks) or any(row.state is not ChunkState.DONE for row in rows):
            return
        if self._chunked.get(title_id) is not job or title_id in self._finishing:
            return  # ended, or being finished, meanwhile
        self._finishing[title_id] = asyncio.Event()
        try:
            try:
                info = await asyncio.to_thread(self._finish_chunked, job)
            except (SurgeError, OSError) as err:
                message = err.message if isinstance(err, SurgeError) else str(err)
                await self._end_chunked(job, leasing.rejected(err.__class__.__name__, message))
                return
            except Exception as err:  # a bug: no lease is left to run out, so end the attempt here
                log(
                    logger,
                    "finishing a title in chunks crashed",
                    logging.ERROR,
                    title=title_id,
                    exc_info=True,
                )
                await self._end_chunked(job, leasing.rejected("InternalError", repr(err)))
                return
            del self._chunked[title_id]
            await self.store.end_chunked(title_id, status=Status.READY, progress=1.0, duration=info.duration,
                                         error=None, last_failure=None)  # fmt: skip
            self._progress.pop(title_id, None)
            log(logger, "packaged", title=title_id, chunks=len(job.chunks), workers=sorted(job.workers),
                attempt=job.attempts)  # fmt: skip
            self.wake()
        finally:
            self._finishing.pop(title_id).set()

    def _finish_chunked(self, job: ChunkedTitle) -> TitleInfo:
        destination = self.library.title_dir(job.title_id)
        try:
            assemble_chunks(job.staging, job.plan, job.chunks, job.staging / CHUNKS_DIR)
            created = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
            info = finish_title(job.staging, job.plan, job.title_id, job.name, created)
            publish(job.staging, destination, replace=True)
        except BaseException:
            remove_staging(job.staging)
            raise
        return info

    async def _end_chunked(self, job: ChunkedTitle, failure: Failure, *, give_up: str | None = None,
                           spare: str | None = None) -> Verdict:  # fmt: skip
        """The title's attempt in chunks failed: tried again whole (after a backoff), or ``failed``
        (``give_up``: the reason, when a chunk failed the same way twice). ``spare``: a worker left to end
        on its own (it reported the failure)."""
        title_id = job.title_id
        if self._chunked.get(title_id) is not job:
            return Verdict(str(Status.QUEUED), "this title's attempt has already ended")
        del self._chunked[title_id]
        decision = GiveUp() if give_up is not None else leasing.after_remote_failure(
            failure, job.attempts, job.last_failure, self.max_attempts, self.retry_delay)  # fmt: skip
        match decision:
            case Retry(delay):
                retrying = f"attempt {job.attempts} failed, retrying in {delay:g} s"
                verdict = Verdict(str(Status.QUEUED), f"{retrying}: {failure.reason}")
                fields: dict[str, Any] = {"status": Status.QUEUED, "progress": 0.0}
                self._backoff[title_id] = self.clock() + delay
            case GiveUp():
                verdict = Verdict(str(Status.FAILED),
                                  give_up or leasing.give_up_reason(failure, job.last_failure))  # fmt: skip
                fields = {"status": Status.FAILED}
        rows = await self.store.chunk_rows(title_id)
        await self.store.end_chunked(title_id, error=verdict.error, last_failure=failure.signature, **fields)
        log(logger, "packaging failed", logging.WARNING, title=title_id, attempt=job.attempts,
            outcome=verdict.status, error=verdict.error)  # fmt: skip
        await self._discard_chunked(job, rows, spare)
        self.wake()
        return verdict

    async def _discard_chunked(
        self, job: ChunkedTitle, rows: list[ChunkRow], spare: str | None = None
    ) -> None:
        """After a title in chunks ended without a publish: its audio stopped, its chunk workers stopped,
        its staging gone."""
        self._progress.pop(job.title_id, None)
        for key in [k for k in self._backoff if k.startswith(f"{job.title_id}/")]:
            del self._backoff[key]
        if job.audio is not None:
            job.audio.cancel()
            await asyncio.gather(job.audio, return_exceptions=True)
        for row in rows:
            if row.state is ChunkState.LEASED and row.token_hash is not None:
                name = run_name(job.title_id, lease_tag(row.token_hash))
                if name != spare:
                    await self.backend.stop(name)
        await asyncio.to_thread(remove_staging, job.staging)

    async def _expire_chunk(self, row: ChunkRow) -> None:
        job = self._chunked.get(row.title_id)
        if job is None or row.title_id in self._finishing:
            return
        assert row.token_hash is not None and row.expires is not None
        lease = Lease(row.title_id, row.expires, row.started)
        decision = leasing.after_expiry(lease, row.attempts, row.last_failure, self.max_attempts,
                                        self.retry_delay, self.lease_duration)  # fmt: skip
        match decision:
            case Requeue():
                if await self.store.end_chunk(row.title_id, row.chunk.index, row.token_hash,
                                              ChunkState.QUEUED, uncount=True):  # fmt: skip
                    log(logger, "chunk worker never started", logging.WARNING, title=row.title_id,
                        chunk=row.chunk.index)  # fmt: skip
                    await self._discard_chunk(job, row)
            case Retry() | GiveUp():
                await self._fail_chunk(job, row, leasing.worker_lost(self.lease_duration), stop_worker=True)

    async def _fail_chunk(self, job: ChunkedTitle, row: ChunkRow, failure: Failure,
                          stop_worker: bool = False) -> Verdict:  # fmt: skip
        """One chunk failed: it runs again elsewhere (after a backoff), unless it failed the same way
        twice (or used up its attempts): then the title fails with the reason."""
        assert row.token_hash is not None
        failure = leasing.in_chunk(failure, row.chunk)
        decision = leasing.after_remote_failure(failure, row.attempts, row.last_failure, self.max_attempts,
                                                self.retry_delay)  # fmt: skip
        log(logger, "chunk failed", logging.WARNING, title=row.title_id, chunk=row.chunk.index,
            attempt=row.attempts, worker=row.worker, error=failure.reason)  # fmt: skip
        name = run_name(row.title_id, lease_tag(row.token_hash))
        match decision:
            case Retry(delay):
                if await self.store.end_chunk(row.title_id, row.chunk.index, row.token_hash,
                                              ChunkState.QUEUED, last_failure=failure.signature):  # fmt: skip
                    self._backoff[leasing.chunk_key(row.title_id, row.chunk.index)] = self.clock() + delay
                    await self._discard_chunk(job, row, stop_worker)
                self.wake()
                return Verdict(str(Status.QUEUED), f"attempt {row.attempts} of this chunk failed, "
                                                   f"retrying in {delay:g} s: {failure.reason}")  # fmt: skip
            case GiveUp():
                reason = leasing.give_up_reason(failure, row.last_failure)
                return await self._end_chunked(
                    job, failure, give_up=reason, spare=None if stop_worker else name
                )

    async def _discard_chunk(self, job: ChunkedTitle, row: ChunkRow, stop_worker: bool = True) -> None:
        """After a chunk's lease ended without its files: its worker stopped, its files gone."""
        assert row.token_hash is not None
        tag = lease_tag(row.token_hash)
        if stop_worker:
            await self.backend.stop(run_name(row.title_id, tag))
        await asyncio.to_thread(remove_staging, chunk_lease_dir(job.staging, row.chunk.index, tag))

    async def _complete_chunk(self, job: ChunkedTitle, row: ChunkRow) -> Verdict:
        """The chunk's worker has sent everything: the files become the chunk's, the lease ends, and the
        title is finished when it was the last part missing."""
        assert row.token_hash is not None
        received = chunk_lease_dir(job.staging, row.chunk.index, lease_tag(row.token_hash))
        target = chunk_dir(job.staging / CHUNKS_DIR, row.chunk)
        try:  # in place before the lease ends: whoever sees the chunk done finds its files
            await asyncio.to_thread(received.rename, target)
        except FileNotFoundError:
            raise Forbidden("this chunk's lease has ended") from None
        if not await self.store.end_chunk(row.title_id, row.chunk.index, row.token_hash, ChunkState.DONE):
            await asyncio.to_thread(remove_staging, target)
            raise Forbidden("this chunk's lease has ended")
        self._progress[job.title_id] = job.progress.update(row.chunk.index, 1.0)
        log(logger, "chunk encoded", title=row.title_id, chunk=row.chunk.index, worker=row.worker,
            attempt=row.attempts)  # fmt: skip
        self._spawn(self._maybe_finish(job))
        self.wake()
        return Verdict("done")

    # --- what the internal routes ask (origin/workers.py)

    async def authorize(self, job_id: str, token: str) -> LeaseRow | ChunkRow:
        """The live lease of ``job_id`` held with ``token`` (of the whole title, or of one of its chunks);
        else ``Forbidden`` (403): a wrong token, or one whose lease ended or ran out, or a job being
        finished (no more files)."""
        given = token_hash(token)
        for row in await self.store.leases():
            if row.id == job_id and hmac.compare_digest(given, row.token_hash):
                if self.clock() >= row.expires:
                    raise Forbidden("this job's lease has expired")
                return row
        for chunk_row in await self.store.chunk_rows(job_id):
            if chunk_row.token_hash is not None and hmac.compare_digest(given, chunk_row.token_hash):
                if chunk_row.title_id not in self._chunked:
                    break
                if self.clock() >= (chunk_row.expires or 0.0):
                    raise Forbidden("this chunk's lease has expired")
                return chunk_row
        raise Forbidden("no lease on this job for this token")

    async def renew(self, job_id: str, token: str, progress: float, worker: str | None) -> float:
        """Extend the lease; the seconds it now runs."""
        row = await self.authorize(job_id, token)
        now = self.clock()
        if isinstance(row, ChunkRow):
            assert row.expires is not None and row.token_hash is not None
            lease = Lease(row.title_id, row.expires, row.started)
        else:
            lease = self._lease(row)
        match leasing.renew(lease, now, self.lease_duration):
            case leasing.Renewed(expires):
                if isinstance(row, ChunkRow):
                    await self._renew_chunk(row, expires, progress, worker)
                    return expires - now
                if not await self.store.renew_lease(job_id, row.token_hash, expires, progress, worker):
                    raise Forbidden("this job's lease has ended")
                self._progress[job_id] = progress
                return expires - now
            case leasing.Refused(reason):
                raise Forbidden(reason)

    async def _renew_chunk(self, row: ChunkRow, expires: float, progress: float, worker: str | None) -> None:
        """A chunk's renewal; the title's progress is its chunks' (weighted by their length), and its
        ``worker`` every machine its chunks ran on."""
        assert row.token_hash is not None
        job = self._chunked.get(row.title_id)
        if job is None or not await self.store.renew_chunk(row.title_id, row.chunk.index, row.token_hash,
                                                           expires, progress, worker):  # fmt: skip
            raise Forbidden("this chunk's lease has ended")
        fraction = self._progress[row.title_id] = job.progress.update(row.chunk.index, progress)
        if worker is not None and worker not in job.workers:
            job.workers.add(worker)
            await self.store.update(row.title_id, progress=fraction, worker=", ".join(sorted(job.workers)))
        else:
            await self.store.update(row.title_id, progress=fraction)

    def source(self, job_id: str) -> Path:
        return self.library.source_path(job_id)

    async def receive(self, job_id: str, token: str, path: str, declared: int | None,
                      chunks: AsyncIterator[bytes]) -> int:  # fmt: skip
        """Write one file of the worker's output into the lease's staging, atomically (a temporary name,
        then a rename); the bytes written."""
        components = split_upload_path(path)
        row = await self.authorize(job_id, token)
        if job_id in self._finishing:
            raise Forbidden("this job is being finished: no more files")
        if declared is not None and declared > self.max_file:
            raise PayloadTooLarge(f"a file of {declared} bytes is over the {self.max_file} byte limit")
        staging = self._files_of(row)
        try:
            target = await asyncio.to_thread(_prepare_target, staging, components)
        except FileNotFoundError:
            raise Forbidden("this job's lease has ended") from None
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        written = 0
        try:
            with await asyncio.to_thread(partial.open, "wb") as handle:
                async for chunk in chunks:
                    written += len(chunk)
                    if written > self.max_file:
                        raise PayloadTooLarge(f"the file is over the {self.max_file} byte limit")
                    await asyncio.to_thread(handle.write, chunk)
            if await asyncio.to_thread(disk_free, staging) < self.min_free_disk:
                raise InsufficientStorage("the origin's disk is too full to take this file")
            await asyncio.to_thread(os.replace, partial, target)
        except FileNotFoundError:
            raise Forbidden("this job's lease has ended") from None
        except OSError as err:
            if out_of_space(err, None):
                raise InsufficientStorage("the origin's disk filled up") from err
            raise
        finally:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
        return written

    def _files_of(self, row: LeaseRow | ChunkRow) -> Path:
        """Where the files sent with a lease go: the lease's staging, or its chunk's directory in the
        title's staging (the token decides, not the path sent)."""
        if isinstance(row, LeaseRow):
            return staging_path(self.library, row.id, lease_tag(row.token_hash))
        job = self._chunked.get(row.title_id)
        if job is None or row.token_hash is None:
            raise Forbidden("this chunk's lease has ended")
        return chunk_lease_dir(job.staging, row.chunk.index, lease_tag(row.token_hash))

    async def complete(self, job_id: str, token: str) -> Verdict:
        """The worker has sent everything: check, complete and publish as a local job would be (a chunk:
        kept until the title's every part is in)."""
        row = await self.authorize(job_id, token)
        if isinstance(row, ChunkRow):
            return await self._complete_chunk(self._chunked_of(row), row)
        if job_id in self._finishing:
            raise Forbidden("this job is already being finished")
        self._finishing[job_id] = asyncio.Event()
        try:
            record = await self.store.get(job_id)
            assert record is not None  # a leased title is in the store
            try:
                info = await asyncio.to_thread(self._finish, row, record.name)
            except (SurgeError, OSError) as err:
                message = err.message if isinstance(err, SurgeError) else str(err)
                return await self._fail(row, leasing.rejected(err.__class__.__name__, message))
            ended = await self.store.end_lease(
                job_id,
                row.token_hash,
                status=Status.READY,
                progress=1.0,
                duration=info.duration,
                error=None,
                last_failure=None,
            )
            self._progress.pop(job_id, None)
            if not ended:  # pragma: no cover - deletions wait for _finishing
                return Verdict(str(Status.QUEUED), "the lease ended meanwhile")
            log(logger, "packaged", title=job_id, worker=row.worker, attempt=row.attempts)
            self.wake()
            return Verdict(str(Status.READY))
        finally:
            self._finishing.pop(job_id).set()

    def _finish(self, row: LeaseRow, name: str) -> TitleInfo:
        staging = staging_path(self.library, row.id, lease_tag(row.token_hash))
        destination = self.library.title_dir(row.id)
        try:
            plan = plan_title(self.library.source_path(row.id), self.config)
            created = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
            info = finish_title(staging, plan, row.id, name, created)
            publish(staging, destination, replace=True)
        except BaseException:
            remove_staging(staging)
            raise
        assert (destination / TITLE_JSON).is_file()
        return info

    async def failed(self, job_id: str, token: str, report: dict[str, Any]) -> Verdict:
        row = await self.authorize(job_id, token)
        error_type, message, exit_code = _failure_report(report)
        failure = leasing.worker_error(error_type, message, exit_code)
        if isinstance(row, ChunkRow):
            return await self._fail_chunk(self._chunked_of(row), row, failure)
        return await self._fail(row, failure)

    def _chunked_of(self, row: ChunkRow) -> ChunkedTitle:
        job = self._chunked.get(row.title_id)
        if job is None:
            raise Forbidden("this chunk's lease has ended")
        return job


def run_name(job_id: str, tag: str) -> str:
    """The name of the worker run of one lease (a Ray actor's name)."""
    return f"packager-{job_id}-{tag}"


def _make_chunked_staging(plan: PackagePlan, staging: Path) -> None:
    (staging / CHUNKS_DIR).mkdir(parents=True)
    make_output_dirs(plan, staging)


def _prepare_target(staging: Path, components: list[str]) -> Path:
    """The file's path in ``staging``, its directories made one by one (never ``staging`` itself: gone,
    it means the lease ended)."""
    directory = staging
    if not staging.is_dir():
        raise FileNotFoundError(staging)
    for component in components[:-1]:
        directory = safe_join(directory, component)
        directory.mkdir(exist_ok=True)
    return safe_join(directory, components[-1])


def remove_staging(staging: Path) -> None:
    """Out of the way by one rename first (an upload still writing then fails to place its file), then
    deleted."""
    trash = staging.with_name(f"{TRASH_PREFIX}{staging.name}.{uuid.uuid4().hex}")
    try:
        staging.rename(trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)  # a file an upload placed during the first pass


def _failure_report(report: dict[str, Any]) -> tuple[str, str, int | None]:
    error_type, message, exit_code = report.get("type"), report.get("message"), report.get("exit_code")
    if not isinstance(error_type, str) or not error_type.isidentifier() or not isinstance(message, str):
        raise InvalidInput('expected {"type": "ErrorClass", "message": "...", "exit_code": N or null}')
    if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)):
        raise InvalidInput("exit_code must be a whole number or null")
    return error_type, message[:2000], exit_code
