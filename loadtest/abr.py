"""Adaptive bitrate, after hls.js: a dual-EWMA throughput estimator and a buffer-aware rung chooser.

Rules of this file: no clock, no I/O. Samples arrive as (seconds, bytes); the chooser is a function of the
ladder, the estimate and the buffer. Times are *viewer* seconds (the player core divides wall time by the
playback speed), so the same thresholds hold at 1x and at 10x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


class Ewma:
    """Exponentially weighted moving average whose weights are durations (hls.js ``utils/ewma.ts``)."""

    __slots__ = ("_alpha", "_estimate", "total_weight")

    def __init__(self, half_life: float) -> None:
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        self._alpha = math.exp(math.log(0.5) / half_life)
        self._estimate = 0.0
        self.total_weight = 0.0

    def sample(self, weight: float, value: float) -> None:
        adjusted = self._alpha**weight
        self._estimate = value * (1 - adjusted) + adjusted * self._estimate
        self.total_weight += weight

    @property
    def estimate(self) -> float:
        # Undo the bias toward the initial 0 while few samples have been seen.
        zero_factor = 1 - self._alpha**self.total_weight
        return self._estimate / zero_factor if zero_factor else self._estimate


class BandwidthEstimator:
    """Throughput in bit/s: the lower of a fast and a slow EWMA, so drops show at once and rises slowly.

    Defaults are hls.js's VOD ones (``abrEwmaFastVoD`` 3, ``abrEwmaSlowVoD`` 9, ``abrEwmaDefaultEstimate``
    500 kbit/s, ``minDelayMs`` 50 — a floor on one sample's duration so that tiny, instant responses do
    not claim infinite bandwidth).
    """

    __slots__ = ("_fast", "_slow", "default", "min_seconds", "min_weight")

    def __init__(
        self,
        *,
        fast_half_life: float = 3.0,
        slow_half_life: float = 9.0,
        default: float = 500_000.0,
        min_seconds: float = 0.05,
        min_weight: float = 0.001,
    ) -> None:
        self._fast = Ewma(fast_half_life)
        self._slow = Ewma(slow_half_life)
        self.default = default
        self.min_seconds = min_seconds
        self.min_weight = min_weight

    def sample(self, seconds: float, nbytes: int) -> None:
        seconds = max(seconds, self.min_seconds)
        bits_per_second = nbytes * 8 / seconds
        self._fast.sample(seconds, bits_per_second)
        self._slow.sample(seconds, bits_per_second)

    def estimate(self) -> float:
        if self._fast.total_weight < self.min_weight:
            return self.default
        return min(self._fast.estimate, self._slow.estimate)


@dataclass(frozen=True)
class AbrConfig:
    """Safety factors (hls.js ``abrBandWidthFactor`` / ``abrBandWidthUpFactor``) and starvation budget."""

    down_factor: float = 0.95  # share of the estimate usable to stay on or go below the current rung
    up_factor: float = 0.7  # share usable to go above it: rising costs more confidence than staying
    # Viewer seconds a fetch may take beyond the buffer while nothing plays (start-up, stall);
    # hls.js ``maxLoadingDelay``. While playing, a fetch must fit in the buffer.
    max_starvation: float = 4.0

    def __post_init__(self) -> None:
        if not (0 < self.up_factor <= 1 and 0 < self.down_factor <= 1):
            raise ValueError("the bandwidth factors must be in (0, 1]")
        if self.max_starvation < 0:
            raise ValueError("max_starvation must not be negative")


DEFAULT_ABR = AbrConfig()


def choose_rung(
    bitrates: Sequence[float],
    current: int | None,
    estimate: float,
    buffer: float,
    segment: float,
    *,
    playing: bool,
    allowed: Sequence[bool] | None = None,
    config: AbrConfig | None = None,
) -> int:
    """Index of the highest allowed rung the estimate can sustain and fetch before the buffer runs dry.

    ``bitrates`` ascend; ``estimate`` is in bit/s and ``buffer``/``segment`` in seconds, all in viewer time.
    ``current`` is the rung of the last segment (None before the first). Falls back to the lowest allowed
    rung (or the lowest rung when none is allowed) when nothing qualifies: the emergency down-switch.
    """
    config = config or DEFAULT_ABR
    candidates = [i for i in range(len(bitrates)) if allowed is None or allowed[i]]
    if not candidates:
        return 0
    budget = buffer + (0.0 if playing else config.max_starvation)
    for index in reversed(candidates):
        factor = config.up_factor if current is None or index > current else config.down_factor
        usable = estimate * factor
        if bitrates[index] > usable:
            continue  # cannot sustain this rung
        if bitrates[index] * segment / usable > budget:
            continue  # the next segment would arrive after the buffer ran out
        return index
    return candidates[0]
