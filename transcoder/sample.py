"""Synthetic sources from ffmpeg's lavfi generators: the demo title, and test media of any shape."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TypedDict, Unpack

import ffmpeg

from media.errors import ToolMissing, TranscodeFailed
from transcoder.run import relevant_stderr

GENERATE_TIMEOUT_S = 300.0


class Shape(TypedDict, total=False):
    """``sample_command``'s options."""

    width: int
    height: int
    duration: float
    frame_rate: int
    audio: bool
    pix_fmt: str
    video_codec: str
    pattern: str


def sample_command(
    path: Path,
    *,
    width: int = 640,
    height: int = 360,
    duration: float = 6.0,
    frame_rate: int = 30,
    audio: bool = True,
    pix_fmt: str = "yuv420p",
    video_codec: str = "libx264",
    pattern: str = "testsrc2",
) -> list[str]:
    """ffmpeg argv writing a moving test pattern (and a tone) to ``path``.

    A rotation tag needs a second pass (``rotate_command``): ffmpeg 5 honours it only on stream copy.
    ``testsrc2`` rounds odd sizes to even; ``pattern="testsrc"`` keeps them.
    """
    video = ffmpeg.input(f"{pattern}=size={width}x{height}:rate={frame_rate}:duration={duration}", f="lavfi")
    streams = [video.video]
    options: dict[str, object] = {"c:v": video_codec, "pix_fmt": pix_fmt, "preset": "ultrafast"}
    if video_codec != "libx264":
        options.pop("preset")
    if audio:
        tone = ffmpeg.input(f"sine=frequency=440:sample_rate=48000:duration={duration}", f="lavfi")
        streams.append(tone.audio)
        options |= {"c:a": "aac", "ac": 2}
    output = ffmpeg.output(*streams, str(path), **options)
    return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *output.get_args()]


def rotate_command(source: Path, path: Path, degrees: int) -> list[str]:
    output = ffmpeg.input(str(source)).output(str(path), c="copy", **{"metadata:s:v:0": f"rotate={degrees}"})
    return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *output.get_args()]


def make_sample(path: Path, *, display_rotation: int | None = None, **shape: Unpack[Shape]) -> Path:
    """Write a synthetic source to ``path`` (blocking); see ``sample_command`` for the shape options."""
    if display_rotation is None:
        _run(sample_command(path, **shape))
        return path
    upright = path.with_name(f".{path.name}.upright{path.suffix}")
    try:
        _run(sample_command(upright, **shape))
        _run(rotate_command(upright, path, display_rotation))
    finally:
        upright.unlink(missing_ok=True)
    return path


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, timeout=GENERATE_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise ToolMissing("ffmpeg is not installed (make setup installs it with apt-get)") from None
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").splitlines()
        raise TranscodeFailed(
            "could not generate the sample",
            command=command,
            exit_code=done.returncode,
            stderr_tail=relevant_stderr(stderr),
        )
