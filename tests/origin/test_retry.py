"""Which packaging failures are retried, and after how long (pure)."""

from __future__ import annotations

import pytest

from media.errors import DamagedMedia, InsufficientStorage, SurgeError, TranscodeFailed
from origin.jobs import GiveUp, Retry, after_failure, is_transient


def ffmpeg_failed(exit_code: int, stderr: str = "") -> TranscodeFailed:
    return TranscodeFailed("packaging failed", command=["ffmpeg"], exit_code=exit_code, stderr_tail=stderr)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ffmpeg_failed(-9), True),  # SIGKILL: the OOM killer, kill -9
        (ffmpeg_failed(255, "Exiting normally, received signal 15."), True),  # ffmpeg's own SIGTERM exit
        (InsufficientStorage("the disk is full"), True),
        (ffmpeg_failed(1, "Invalid data found when processing input"), False),
        (DamagedMedia("the source is truncated"), False),
        (SurgeError("anything else"), False),
    ],
)
def test_transient_failures(error: SurgeError, transient: bool) -> None:
    assert is_transient(error) is transient


def test_backoff_doubles_until_the_last_attempt() -> None:
    killed = ffmpeg_failed(-9)
    assert [after_failure(killed, attempt, 4, 2.0) for attempt in (1, 2, 3, 4)] == [
        Retry(2.0), Retry(4.0), Retry(8.0), GiveUp()
    ]  # fmt: skip
    assert after_failure(killed, 1, 1, 2.0) == GiveUp()
    assert after_failure(DamagedMedia("truncated"), 1, 4, 2.0) == GiveUp()
