"""ffmpeg's ``-progress`` output (key=value lines, a block per report) → fraction done (pure)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from fractions import Fraction


@dataclass
class ProgressReader:
    """Feed it lines; it answers the fraction done (0.0-1.0) when a report completes, else ``None``.

    With ``frame_rate``, the time done is counted in frames: with ``-copyts`` ffmpeg reports ``out_time``
    from its first muxed packet, seconds behind the encoder.
    """

    duration: float
    frame_rate: Fraction | None = None
    _out_time: float = field(default=0.0, init=False)

    def feed(self, line: str) -> float | None:
        key, _, value = line.strip().partition("=")
        if key == "frame" and self.frame_rate:
            with contextlib.suppress(ValueError):
                self._out_time = max(self._out_time, float(int(value) / self.frame_rate))
            return None
        if key in ("out_time_us", "out_time_ms") and not self.frame_rate:
            # Both are microseconds (out_time_ms is misnamed in ffmpeg); "N/A" before the first frame.
            with contextlib.suppress(ValueError):
                self._out_time = max(self._out_time, int(value) / 1_000_000)
            return None
        if key == "progress":
            if value == "end":
                return 1.0
            return self.fraction
        return None

    @property
    def fraction(self) -> float:
        if self.duration <= 0:
            return 0.0
        # Never report 1.0 before ffmpeg says "end": the playlists are written last.
        return min(0.99, self._out_time / self.duration)
