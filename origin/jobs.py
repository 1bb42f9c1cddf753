"""The packaging queue: workers take queued titles from the store and run the transcoder on them.

Durable: the store is the truth. A restart puts titles that were packaging back in the queue; since the
transcoder publishes by atomic rename, nothing partial is ever served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from media.errors import InsufficientStorage, SurgeError, TranscodeFailed
from media.layout import Library
from media.title import TitleInfo
from origin.store import Status, TitleRecord, TitleStore
from service.logs import log
from service.tasks import BackgroundTasks
from transcoder.chunked import ChunkRunner
from transcoder.chunks import Chunked, Encoding, SingleProcess, slots_used
from transcoder.package import TITLE_JSON, package_title
from transcoder.plan import PackageConfig

logger = logging.getLogger("surge.jobs")
PROGRESS_WRITE_WAIT_S = 5.0
PROGRESS_PERSIST_INTERVAL_S = 1.0
Clock = Callable[[], float]


@dataclass(frozen=True)
class Retry:
    delay: float  # seconds before the title may be claimed again


@dataclass(frozen=True)
class GiveUp:
    pass


AfterFailure = Retry | GiveUp


def is_transient(error: SurgeError) -> bool:
    """A failure that says nothing about the source: ffmpeg killed by a signal (the OOM killer, an
    operator) or a full disk. Anything else would fail the same way again."""
    if isinstance(error, InsufficientStorage):
        return True
    if isinstance(error, TranscodeFailed):
        killed = error.exit_code is not None and error.exit_code < 0
        return killed or "received signal" in error.stderr_tail  # ffmpeg's own exit on SIGTERM/SIGINT
    return False


def after_failure(error: SurgeError, attempts: int, max_attempts: int, first_delay: float) -> AfterFailure:
    """Retry a transient failure with exponential backoff (``first_delay``, twice that, ...) until
    ``max_attempts`` attempts were made; then, and for any other failure, give up."""
    if is_transient(error) and attempts < max_attempts:
        return Retry(backoff(first_delay, attempts))
    return GiveUp()


def backoff(first_delay: float, attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: ``first_delay``, twice that, ..."""
    return first_delay * float(2 ** max(0, attempts - 1))


class PackagingQueue(Protocol):
    """What the admin API and the app need of a packaging queue, local (``JobQueue``) or remote
    (``origin.remote.RemoteQueue``)."""

    @property
    def running(self) -> int: ...

    def live_progress(self, title_id: str) -> float | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def wake(self) -> None: ...

    async def cancel(self, title_id: str) -> bool: ...


@dataclass
class Slots:
    """Packager slots: a title holds them all while its encoding is chosen, then one (or one per chunk
    encoded at once) until it is done."""

    total: int
    _held: dict[str, int] = field(default_factory=dict)

    @property
    def free(self) -> int:
        return self.total - sum(self._held.values())

    def hold_free(self, title_id: str) -> int:
        """``title_id`` holds every free slot (one at least); returns how many."""
        count = self.free
        if count < 1 or title_id in self._held:
            raise ValueError(f"{title_id} cannot hold {count} free slots")
        self._held[title_id] = count
        return count

    def keep(self, title_id: str, count: int) -> None:
        """``title_id`` gives back all but ``count`` of the slots it holds."""
        if not 1 <= count <= self._held.get(title_id, 0):
            raise ValueError(f"{title_id} holds {self._held.get(title_id, 0)} slots, cannot keep {count}")
        self._held[title_id] = count

    def held_by(self, title_id: str) -> int:
        return self._held.get(title_id, 0)

    def release(self, title_id: str) -> None:
        self._held.pop(title_id, None)


class JobQueue:
    def __init__(
        self,
        library: Library,
        store: TitleStore,
        config: PackageConfig,
        concurrency: int,
        *,
        max_attempts: int = 3,
        retry_delay: float = 2.0,
        clock: Clock = time.monotonic,
        chunk_runner: ChunkRunner | None = None,  # None: a chunked title's chunks are encoded here
    ) -> None:
        self.library = library
        self.store = store
        self.config = config
        self.concurrency = concurrency
        self._slots = Slots(concurrency)
        self._claiming = asyncio.Lock()
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.clock = clock
        self.chunk_runner = chunk_runner
        self._not_before: dict[str, float] = {}  # titles waiting out a retry's backoff
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[TitleInfo]] = {}
        self._progress: dict[str, float] = {}
        self._background = BackgroundTasks(logger, "progress write")

    @property
    def running(self) -> int:
        return len(self._running)

    def live_progress(self, title_id: str) -> float | None:
        return self._progress.get(title_id)

    async def start(self) -> None:
        await asyncio.to_thread(self._clean_leftovers)
        requeued = await self.store.requeue_interrupted()
        if requeued:
            log(logger, "requeued interrupted jobs", count=requeued)
        self._workers = [
            asyncio.create_task(self._work(), name=f"packager-{i}") for i in range(self.concurrency)
        ]
        self._wake.set()

    def _clean_leftovers(self) -> None:
        """Staging directories and partial uploads of a previous run are garbage: only we write there."""
        self.library.ensure_dirs()
        for leftover in self.library.staging_dir.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
        for partial in self.library.uploads_dir.glob("*.part"):
            partial.unlink(missing_ok=True)

    async def stop(self) -> None:
        """Stop the workers; a job being packaged stops (ffmpeg included) and goes back to the queue."""
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        await self._background.wait(within=PROGRESS_WRITE_WAIT_S)  # the last progress writes land
        await self._background.close()

    def wake(self) -> None:
        self._wake.set()

    async def cancel(self, title_id: str) -> bool:
        """Stop the job packaging ``title_id``, if any, and wait until its staging is gone."""
        job = self._running.get(title_id)
        if job is None:
            return False
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await job
        return True

    async def _work(self) -> None:
        while True:
            # Cleared before looking, so a wake-up (an upload, slots given back) while looking is not lost.
            self._wake.clear()
            now = self.clock()
            for title_id in [t for t, due in self._not_before.items() if due <= now]:
                del self._not_before[title_id]
            try:
                record = await self._claim()
                if record is not None:
                    try:
                        await self._package(record)
                    finally:
                        self._slots.release(record.id)
                    self._wake.set()  # its slots are free again for a worker that waits for one
                    continue
            except (sqlite3.Error, OSError):
                # The store cannot write (a full disk): the title stays where it was; try again later.
                log(logger, "packaging queue stalled", logging.ERROR, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            waits = [due - now for due in self._not_before.values()]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(waits) if waits else None)

    async def _claim(self) -> TitleRecord | None:
        """The next title, holding every free slot until its encoding is chosen. One claim at a time, so
        that a title counts the slots free when it is claimed."""
        async with self._claiming:
            if self._slots.free == 0:
                return None
            record = await self.store.claim_next(exclude=set(self._not_before))
            if record is not None:
                self._slots.hold_free(record.id)
            return record

    async def _package(self, record: TitleRecord) -> None:
        destination = self.library.title_dir(record.id)
        if await asyncio.to_thread((destination / TITLE_JSON).is_file):
            # Published just before a crash, before the store heard of it.
            info = TitleInfo.from_json(await asyncio.to_thread((destination / TITLE_JSON).read_text))
            await self.store.update(record.id, status=Status.READY, progress=1.0, duration=info.duration)
            return
        log(logger, "packaging", title=record.id, attempt=record.attempts)
        started = self.clock()
        last_persist = [0.0]

        def on_progress(fraction: float) -> None:
            self._progress[record.id] = fraction
            if self.clock() - last_persist[0] >= PROGRESS_PERSIST_INTERVAL_S:
                last_persist[0] = self.clock()
                self._background.spawn(self._persist_progress(record.id, fraction))

        def on_encoding(encoding: Encoding) -> None:
            self._slots.keep(record.id, slots_used(encoding))
            self._wake.set()
            match encoding:
                case Chunked(chunks=chunks, parallel=parallel):
                    log(logger, "packaging in chunks", title=record.id, chunks=len(chunks), parallel=parallel)
                case SingleProcess():
                    pass

        slots = self._slots.held_by(record.id)
        job = asyncio.create_task(
            package_title(
                self.library.source_path(record.id),
                destination,
                self.config,
                name=record.name,
                title_id=record.id,
                staging_root=self.library.staging_dir,
                replace=True,
                on_progress=on_progress,
                slots=slots,
                chunk_runner=self.chunk_runner,
                on_encoding=on_encoding,
            )
        )
        self._running[record.id] = job
        try:
            info = await job
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # Shutting down: the job goes back to the queue for the next start.
                await asyncio.shield(self.store.update(record.id, status=Status.QUEUED, progress=0.0))
                log(logger, "packaging interrupted", title=record.id)
                raise
            log(logger, "packaging cancelled", title=record.id)  # deleted while packaging
            return
        except SurgeError as err:
            match after_failure(err, record.attempts, self.max_attempts, self.retry_delay):
                case Retry(delay):
                    self._not_before[record.id] = self.clock() + delay
                    error = f"attempt {record.attempts} failed, retrying in {delay:g} s: {err.message}"
                    await self.store.update(record.id, status=Status.QUEUED, progress=0.0, error=error)
                    log(logger, "packaging failed, will retry", logging.WARNING, title=record.id,
                        attempt=record.attempts, delay_s=delay, error=err.message)  # fmt: skip
                case GiveUp():
                    await self.store.update(record.id, status=Status.FAILED, error=err.message)
                    log(logger, "packaging failed", logging.WARNING, title=record.id,
                        attempt=record.attempts, error=err.message)  # fmt: skip
            return
        except Exception as err:  # a bug, not bad input: keep the queue alive, say what happened
            await self.store.update(record.id, status=Status.FAILED, error=f"internal error: {err!r}")
            log(logger, "packaging crashed", logging.ERROR, title=record.id, exc_info=True)
            return
        finally:
            self._running.pop(record.id, None)
            self._progress.pop(record.id, None)
        await self.store.update(record.id, status=Status.READY, progress=1.0, duration=info.duration)
        log(logger, "packaged", title=record.id, seconds=round(self.clock() - started, 2))

    async def _persist_progress(self, title_id: str, fraction: float) -> None:
        try:
            await self.store.update(title_id, progress=fraction)
        except (sqlite3.Error, OSError) as err:  # a full disk: live progress is still answered
            log(logger, "progress not saved", logging.WARNING, title=title_id, error=str(err))


async def add_title(
    store: TitleStore, library: Library, source: Path, title_id: str, name: str
) -> TitleRecord:
    """A source file becomes a queued title: moved to ``sources/<id>/source`` (unless already there) and
    recorded in the store. The one way in, for uploads and the demo; the queue must then be woken."""
    destination = library.source_path(title_id)
    if source != destination:
        await asyncio.to_thread(destination.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(source.rename, destination)
    return await store.insert(title_id, name)


def remove_title_files(library: Library, title_id: str) -> None:
    """Unpublish first (one rename, so readers see all or nothing), then delete at leisure."""
    published = library.title_dir(title_id)
    if published.exists():
        trash = library.staging_dir / f".deleted-{title_id}-{time.monotonic_ns()}"
        published.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(library.source_path(title_id).parent, ignore_errors=True)


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free
