"""Packaging jobs leased to workers on other machines: which jobs to hand out, when a lease has run out,
what a failure leads to.

Rules of this file: no I/O and no clock. ``now`` is wall-clock seconds (``time.time()``), since a lease is
stored and must mean the same to an origin restarted meanwhile. Decisions are closed types.

- A lease is granted with ``start_timeout`` (placing the worker and starting it may take a while) and
  renewed by the worker with ``duration`` each time; a lease not renewed before it expires is lost.
- A worker that never renewed its lease never started the job: losing it says nothing about the job,
  which goes back to the queue without a failure counted.
- "The same way": two failures with the same ``Failure.signature`` — the worker lost twice, ffmpeg
  exiting with the same code twice, the origin rejecting the output for the same kind of reason twice.
  Messages are not compared (they carry temporary paths and machine names).
- A title encoded in chunks on several workers: each chunk is leased, lost, retried and failed as a whole
  title would be; a chunk that fails the same way twice fails its title. Chunks of titles already started
  get free units before any queued title (a started title finishes first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from origin.jobs import AfterFailure, GiveUp, Retry, backoff
from transcoder.chunks import Chunk


@dataclass(frozen=True)
class Lease:
    job_id: str
    expires: float  # wall-clock seconds
    started: bool  # the worker has renewed it at least once


class FailureKind(StrEnum):
    WORKER_LOST = "worker lost"  # the lease expired after the worker had started: machine or process gone
    WORKER_ERROR = "worker error"  # the worker reported an error (ffmpeg failed, bad source, full disk)
    REJECTED = "rejected"  # the origin's checks refused what the worker sent
    ORIGIN_ERROR = "origin error"  # the origin's own part of a title in chunks failed (its audio)


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    reason: str  # for people: the title's error
    cause: str = ""  # what tells two failures of one kind apart: error class and exit code

    @property
    def signature(self) -> str:
        return f"{self.kind}:{self.cause}"


def worker_lost(seconds_silent: float) -> Failure:
    return Failure(
        FailureKind.WORKER_LOST,
        f"the packaging worker stopped answering (no lease renewal for {seconds_silent:.0f} s)",
    )


def worker_error(error_type: str, message: str, exit_code: int | None) -> Failure:
    cause = error_type if exit_code is None else f"{error_type}:{exit_code}"
    return Failure(FailureKind.WORKER_ERROR, message, cause)


def rejected(error_type: str, message: str) -> Failure:
    return Failure(FailureKind.REJECTED, f"the packaged output was rejected: {message}", error_type)


def origin_error(error_type: str, message: str, exit_code: int | None) -> Failure:
    cause = error_type if exit_code is None else f"{error_type}:{exit_code}"
    return Failure(FailureKind.ORIGIN_ERROR, message, cause)


def in_chunk(failure: Failure, chunk: Chunk) -> Failure:
    """``failure`` of one chunk's worker, said of that chunk (the signature stays that of the failure)."""
    span = f"chunk {chunk.index} ({chunk.start:g}-{chunk.start + chunk.duration:g} s)"
    return Failure(failure.kind, f"{span}: {failure.reason}", failure.cause)


def chunk_key(title_id: str, index: int) -> str:
    """A chunk's name among the queue's keys (title ids hold no "/")."""
    return f"{title_id}/{index}"


def expired(leases: Iterable[Lease], now: float) -> list[Lease]:
    """The leases that have run out at ``now`` (the instant of expiry included)."""
    return [lease for lease in leases if now >= lease.expires]


def jobs_to_lease(
    queued: Sequence[str], backoff_until: Mapping[str, float], capacity: int, leased: int, now: float
) -> list[str]:
    """The oldest queued jobs (``queued`` is oldest first) not waiting out a backoff, as many as there are
    free worker units (``capacity`` in the cluster minus the ``leased`` jobs holding one)."""
    free = max(0, capacity - leased)
    ready = [job for job in queued if backoff_until.get(job, 0.0) <= now]
    return ready[:free]


@dataclass(frozen=True)
class Units:
    """How the free worker units of one dispatch round are spent."""

    chunks: list[str]  # chunk keys to lease now, in order
    free: int  # units left for queued titles


def spend_units(queued_chunks: Sequence[str], backoff_until: Mapping[str, float], capacity: int, busy: int,
                now: float) -> Units:  # fmt: skip
    """Queued chunks of titles already in chunks (oldest title first, in order) take free units first;
    ``busy``: units held by leases now (whole titles and chunks)."""
    chunks = jobs_to_lease(queued_chunks, backoff_until, capacity, busy, now)
    return Units(chunks, max(0, capacity - busy - len(chunks)))


@dataclass(frozen=True)
class Renewed:
    expires: float


@dataclass(frozen=True)
class Refused:
    reason: str


Renewal = Renewed | Refused


def renew(lease: Lease | None, now: float, duration: float) -> Renewal:
    """A worker's renewal: a live lease runs ``duration`` more seconds; an expired one stays lost even if
    the origin has not reclaimed it yet (another worker may get the job any moment)."""
    if lease is None:
        return Refused("no lease on this job: it was finished, cancelled or given to another worker")
    if now >= lease.expires:
        return Refused(f"the lease expired {now - lease.expires:.1f} s ago")
    return Renewed(now + duration)


@dataclass(frozen=True)
class Requeue:
    """A lease lost before its worker started: the job goes back as it was, no attempt counted."""


AfterLoss = Requeue | AfterFailure


def after_expiry(lease: Lease, attempts: int, previous: str | None, max_attempts: int,
                 first_delay: float, duration: float) -> AfterLoss:  # fmt: skip
    """What an expired lease leads to."""
    if not lease.started:
        return Requeue()
    return after_remote_failure(worker_lost(duration), attempts, previous, max_attempts, first_delay)


def after_remote_failure(
    failure: Failure, attempts: int, previous: str | None, max_attempts: int, first_delay: float
) -> AfterFailure:
    """Another try elsewhere (after a backoff), unless this is the second failure the same way in a row
    (``previous``: the last failure's signature) or the attempts are used up. Unlike a local job, a
    failure that looks permanent is tried once more: it may be the worker's machine (a missing or broken
    ffmpeg, a full disk) rather than the source."""
    if previous == failure.signature or attempts >= max_attempts:
        return GiveUp()
    return Retry(backoff(first_delay, attempts))


def give_up_reason(failure: Failure, previous: str | None) -> str:
    if previous == failure.signature:
        return f"failed twice the same way: {failure.reason}"
    return failure.reason
