"""Run one ffmpeg process: progress from ``-progress pipe:1``, stderr kept for errors, stopped on cancel.

The only module that starts ffmpeg. Failures become ``TranscodeFailed`` carrying the command, the exit
code and the stderr lines that explain it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import signal
from collections.abc import Callable
from fractions import Fraction

from media.errors import ToolMissing, TranscodeFailed
from service.process import die_with_parent
from transcoder.progress import ProgressReader

ProgressCallback = Callable[[float], None]
STDERR_LINES_KEPT = 200
STDERR_LINES_REPORTED = 6
TERMINATE_GRACE_S = 5.0


def relevant_stderr(lines: list[str], limit: int = STDERR_LINES_REPORTED) -> str:
    """The lines that explain a failure: errors first, else the last lines; joined with ' | '."""
    cleaned = [line.strip() for line in lines if line.strip()]
    markers = (
        "error",
        "invalid",
        "could not",
        "cannot",
        "no such",
        "failed",
        "unable",
        "not found",
        "denied",
    )
    errors = [line for line in cleaned if any(marker in line.lower() for marker in markers)]
    chosen = (errors or cleaned)[-limit:]
    return " | ".join(chosen)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (ffmpeg finishes its current write and exits), then SIGKILL after a grace period."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), TERMINATE_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def run_ffmpeg(
    command: list[str],
    duration: float,
    on_progress: ProgressCallback | None = None,
    stall_timeout: float = 120.0,
    frame_rate: Fraction | None = None,
) -> None:
    """Run ``command`` to completion. Raises ``TranscodeFailed``; on cancellation ffmpeg is stopped first.
    Progress is the output time over ``duration`` (counted in frames at ``frame_rate`` when given)."""
    if shutil.which(command[0]) is None:
        raise ToolMissing(f"{command[0]} is not installed (make setup installs it with apt-get)")
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Own process group: a Ctrl-C at the terminal reaches us, and we stop ffmpeg in order.
        start_new_session=True,
        preexec_fn=die_with_parent(),
    )
    assert process.stdout is not None and process.stderr is not None
    stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
    reader = ProgressReader(duration, frame_rate)

    async def read_progress() -> None:
        assert process.stdout is not None
        while True:
            try:
                line = await asyncio.wait_for(process.stdout.readline(), stall_timeout)
            except TimeoutError:
                stderr_tail.append(f"error: ffmpeg made no progress for {stall_timeout:.0f} s; stopped")
                await _stop(process)
                return
            if not line:
                return
            fraction = reader.feed(line.decode(errors="replace"))
            if fraction is not None and on_progress is not None:
                on_progress(fraction)

    async def read_stderr() -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            stderr_tail.append(line.decode(errors="replace").rstrip())

    try:
        await asyncio.gather(read_progress(), read_stderr())
        exit_code = await process.wait()
    except BaseException:
        await asyncio.shield(_stop(process))
        raise
    if exit_code != 0:
        raise TranscodeFailed(
            f"packaging failed: ffmpeg was killed by {signal.Signals(-exit_code).name}"
            if exit_code < 0 and -exit_code in signal.valid_signals()
            else "packaging failed",
            command=command,
            exit_code=exit_code,
            stderr_tail=relevant_stderr(list(stderr_tail)),
        )
