"""Leasing decisions (origin/leasing.py), as tables around a fixed wall-clock instant ``T0``."""

from __future__ import annotations

import pytest

from origin import leasing
from origin.jobs import AfterFailure, GiveUp, Retry
from origin.leasing import Failure, FailureKind, Lease, Refused, Renewed, Requeue
from transcoder.chunks import Chunk

T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("expires", "now", "is_expired"),
    [
        (T0 + 10, T0, False),
        (T0 + 0.001, T0, False),
        (T0, T0, True),  # the instant of expiry belongs to the next holder
        (T0 - 5, T0, True),
    ],
)
def test_expired(expires: float, now: float, is_expired: bool) -> None:
    lease = Lease("a-title", expires, started=True)
    assert leasing.expired([lease, Lease("far", T0 + 999, False)], now) == ([lease] if is_expired else [])


@pytest.mark.parametrize(
    ("queued", "backoff", "capacity", "leased", "chosen"),
    [
        (["old", "new"], {}, 2, 0, ["old", "new"]),
        (["old", "new"], {}, 1, 0, ["old"]),  # oldest first
        (["old", "new"], {}, 2, 2, []),  # every unit busy
        (["old", "new"], {}, 1, 3, []),  # units lost (a machine gone) while its leases run
        (["old", "new"], {"old": T0 + 1}, 1, 0, ["new"]),  # "old" waits out its backoff
        (["old", "new"], {"old": T0}, 1, 0, ["old"]),  # backoff over at T0
        ([], {}, 4, 0, []),
        (["old"], {}, 0, 0, []),  # no machine offers a unit
    ],
)
def test_jobs_to_lease(
    queued: list[str], backoff: dict[str, float], capacity: int, leased: int, chosen: list[str]
) -> None:
    assert leasing.jobs_to_lease(queued, backoff, capacity, leased, T0) == chosen


@pytest.mark.parametrize(
    ("lease", "now", "expected"),
    [
        (Lease("t", T0 + 3, False), T0, Renewed(T0 + 30)),
        (Lease("t", T0 + 3, True), T0 + 2.9, Renewed(T0 + 32.9)),
        (Lease("t", T0 + 3, True), T0 + 3, Refused("the lease expired 0.0 s ago")),
        (Lease("t", T0, True), T0 + 4.25, Refused("the lease expired 4.2 s ago")),
    ],
)
def test_renew(lease: Lease, now: float, expected: leasing.Renewal) -> None:
    assert leasing.renew(lease, now, 30.0) == expected


def test_renew_without_a_lease_is_refused_with_the_reason() -> None:
    match leasing.renew(None, T0, 30.0):
        case Refused(reason):
            assert "finished, cancelled or given to another worker" in reason
        case Renewed():
            pytest.fail("a job without a lease was renewed")


LOST = leasing.worker_lost(3)
FFMPEG_1 = leasing.worker_error("TranscodeFailed", "packaging failed (ffmpeg exit 1): /tmp/a/x: bad", 1)
FFMPEG_1_ELSEWHERE = leasing.worker_error("TranscodeFailed", "packaging failed (ffmpeg exit 1): /tmp/b/x", 1)
FFMPEG_KILLED = leasing.worker_error("TranscodeFailed", "ffmpeg was killed by SIGKILL", -9)
DAMAGED = leasing.worker_error("DamagedMedia", "the source is truncated", None)
REJECTED_DAMAGED = leasing.rejected("DamagedMedia", "a segment lasts 9 s")


@pytest.mark.parametrize(
    ("failure", "attempts", "previous", "expected"),
    [
        # A lost worker: the job runs again elsewhere; lost twice in a row: failed.
        (LOST, 1, None, Retry(2.0)),
        (LOST, 2, LOST.signature, GiveUp()),
        (LOST, 2, FFMPEG_1.signature, Retry(4.0)),  # lost after another kind of failure
        # ffmpeg's same exit code twice is the same way, whatever paths its message names.
        (FFMPEG_1, 1, None, Retry(2.0)),
        (FFMPEG_1_ELSEWHERE, 2, FFMPEG_1.signature, GiveUp()),
        (FFMPEG_KILLED, 2, FFMPEG_1.signature, Retry(4.0)),  # another exit code: another way
        # Even a failure that looks permanent gets one more machine: it may be this one's fault.
        (DAMAGED, 1, None, Retry(2.0)),
        (DAMAGED, 2, DAMAGED.signature, GiveUp()),
        # The worker reporting an error and the origin rejecting the output are different ways.
        (REJECTED_DAMAGED, 2, DAMAGED.signature, Retry(4.0)),
        (REJECTED_DAMAGED, 2, REJECTED_DAMAGED.signature, GiveUp()),
        # Attempts used up.
        (LOST, 3, FFMPEG_1.signature, GiveUp()),
        (FFMPEG_KILLED, 3, LOST.signature, GiveUp()),
    ],
)
def test_after_remote_failure(
    failure: Failure, attempts: int, previous: str | None, expected: AfterFailure
) -> None:
    assert leasing.after_remote_failure(failure, attempts, previous, 3, 2.0) == expected


@pytest.mark.parametrize(
    ("lease", "attempts", "previous", "expected"),
    [
        (Lease("t", T0, started=False), 1, None, Requeue()),  # never started: nothing counted
        (Lease("t", T0, started=False), 3, LOST.signature, Requeue()),
        (Lease("t", T0, started=True), 1, None, Retry(2.0)),
        (Lease("t", T0, started=True), 2, LOST.signature, GiveUp()),
    ],
)
def test_after_expiry(lease: Lease, attempts: int, previous: str | None, expected: leasing.AfterLoss) -> None:
    assert leasing.after_expiry(lease, attempts, previous, 3, 2.0, 3.0) == expected


def test_failure_signatures_compare_kind_and_cause_not_message() -> None:
    assert FFMPEG_1.signature == FFMPEG_1_ELSEWHERE.signature
    assert len({LOST.signature, FFMPEG_1.signature, FFMPEG_KILLED.signature, DAMAGED.signature,
                REJECTED_DAMAGED.signature}) == 5  # fmt: skip
    assert LOST.kind is FailureKind.WORKER_LOST and REJECTED_DAMAGED.kind is FailureKind.REJECTED


def test_give_up_reason_says_when_it_failed_twice_the_same_way() -> None:
    assert leasing.give_up_reason(LOST, LOST.signature) == f"failed twice the same way: {LOST.reason}"
    assert leasing.give_up_reason(FFMPEG_KILLED, LOST.signature) == FFMPEG_KILLED.reason
    assert "no lease renewal for 3 s" in LOST.reason


@pytest.mark.parametrize(
    ("queued", "backoff", "capacity", "busy", "expected"),
    [
        (["t/0", "t/1", "t/2"], {}, 2, 0, leasing.Units(["t/0", "t/1"], 0)),  # chunks first, in order
        (["t/2"], {}, 3, 1, leasing.Units(["t/2"], 1)),  # one unit left for a queued title
        (["t/1"], {"t/1": T0 + 1}, 2, 1, leasing.Units([], 1)),  # a chunk waiting out its backoff
        ([], {}, 2, 3, leasing.Units([], 0)),  # units lost while leases run
        ([], {}, 0, 0, leasing.Units([], 0)),  # no machine offers a unit
    ],
)
def test_spend_units(
    queued: list[str], backoff: dict[str, float], capacity: int, busy: int, expected: leasing.Units
) -> None:
    assert leasing.spend_units(queued, backoff, capacity, busy, T0) == expected


def test_a_chunk_failure_names_its_chunk_and_fails_the_same_way_as_the_failure() -> None:
    chunk = Chunk(1, 6.0, 6.0, False)
    failure = leasing.in_chunk(LOST, chunk)
    assert failure.reason.startswith("chunk 1 (6-12 s): the packaging worker stopped answering")
    assert failure.signature == LOST.signature  # lost twice, on any two chunks' attempts: the same way
    again = leasing.in_chunk(FFMPEG_1_ELSEWHERE, chunk)
    assert (
        leasing.after_remote_failure(again, 2, leasing.in_chunk(FFMPEG_1, chunk).signature, 3, 2.0)
        == GiveUp()
    )
    assert leasing.give_up_reason(again, FFMPEG_1.signature).startswith("failed twice the same way: chunk 1 ")
    assert leasing.chunk_key("a-title", 3) == "a-title/3"


def test_the_origins_own_failure_is_a_kind_of_its_own() -> None:
    audio = leasing.origin_error("TranscodeFailed", "encoding the audio failed: exit 1", 1)
    assert audio.signature == "origin error:TranscodeFailed:1" and audio.signature != FFMPEG_1.signature
