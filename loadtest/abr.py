"""Adaptive bitrate as hls.js does it for VOD: a dual-EWMA estimator, a rung chooser and an abandon rule.

The reference is hls.js 1.6.19 (the copy the player page ships): ``src/utils/ewma.ts``,
``src/utils/ewma-bandwidth-estimator.ts`` and ``src/controller/abr-controller.ts``; every setting has
hls.js's default (``src/config.ts``), and ``loadtest.player.SETTINGS`` maps hls.js's names to ours. The
rules are ours, written from what that code does; each function names the hls.js routine it follows.

Rules of this file: no clock, no I/O. Samples arrive as (seconds, bytes); decisions are functions of the
ladder, the estimate and the buffer. Times are *viewer* seconds (the player core divides wall time by the
playback speed), so the same thresholds hold at 1x and at 10x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

HLS_JS_VERSION = "1.6.19"  # package.json pins the player page's copy; the defaults below are its own
DEFAULT_TTFB = 0.1  # seconds; EwmaBandWidthEstimator's defaultTTFB (100 ms)


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

    Also the time to first byte, an EWMA with the slow half-life whose weights favour short waits
    (hls.js ``sampleTTFB``). ``min_seconds`` floors one sample's duration (hls.js ``minDelayMs``, 50 ms) so
    that tiny, instant responses do not claim infinite bandwidth.
    """

    __slots__ = ("_fast", "_slow", "_ttfb", "default", "min_seconds", "min_weight")

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
        self._ttfb = Ewma(slow_half_life)
        self.default = default
        self.min_seconds = min_seconds
        self.min_weight = min_weight

    def sample(self, seconds: float, nbytes: int) -> None:
        seconds = max(seconds, self.min_seconds)
        bits_per_second = nbytes * 8 / seconds
        self._fast.sample(seconds, bits_per_second)
        self._slow.sample(seconds, bits_per_second)

    def sample_ttfb(self, seconds: float) -> None:
        weight = math.sqrt(2) * math.exp(-(seconds**2) / 2)  # waits near a second or longer count less
        self._ttfb.sample(weight, max(seconds, 0.005))

    @property
    def can_estimate(self) -> bool:
        return self._fast.total_weight >= self.min_weight

    def estimate(self) -> float:
        if not self.can_estimate:
            return self.default
        return min(self._fast.estimate, self._slow.estimate)

    def ttfb(self) -> float:
        return self._ttfb.estimate if self._ttfb.total_weight >= self.min_weight else DEFAULT_TTFB


@dataclass(frozen=True)
class AbrConfig:
    """The hls.js settings the chooser and the abandon rule use (VOD defaults of ``src/config.ts``)."""

    down_factor: float = 0.95  # abrBandWidthFactor: share of the estimate usable to stay or go down
    up_factor: float = 0.7  # abrBandWidthUpFactor: share usable to go up (rising costs more confidence)
    max_starvation: float = 4.0  # maxStarvationDelay: stall a choice may risk when none avoids one
    fast_half_life: float = 3.0  # abrEwmaFastVoD
    slow_half_life: float = 9.0  # abrEwmaSlowVoD
    max_buffer_size: float = 60e6  # maxBufferSize, bytes: fetch ahead until this much at the rung's peak…
    max_max_buffer: float = 600.0  # maxMaxBufferLength: …but never beyond this many seconds

    def __post_init__(self) -> None:
        if not (0 < self.up_factor <= 1 and 0 < self.down_factor <= 1):
            raise ValueError("the bandwidth factors must be in (0, 1]")
        if self.max_starvation < 0:
            raise ValueError("max_starvation must not be negative")
        if self.fast_half_life <= 0 or self.slow_half_life <= 0:
            raise ValueError("the EWMA half-lives must be positive")
        if self.max_buffer_size <= 0 or self.max_max_buffer <= 0:
            raise ValueError("the buffer limits must be positive")


DEFAULT_ABR = AbrConfig()


@dataclass(frozen=True, slots=True)
class Level:
    """One rung as the chooser sees it (hls.js ``Level``)."""

    peak: float  # BANDWIDTH, bit/s (maxBitrate)
    average: float  # AVERAGE-BANDWIDTH, or BANDWIDTH when absent (averageBitrate)
    segment: float | None = None  # mean segment duration once its playlist is loaded, else None


@dataclass(frozen=True, slots=True)
class Budget:
    """What one pass of the chooser may spend (the arguments of hls.js ``findBestLevel``)."""

    bandwidth: float  # bit/s
    buffer: float  # seconds until the buffer runs dry
    max_starvation: float  # seconds of stall this pass accepts
    down_factor: float
    up_factor: float


def _fetch_time(
    level: Level, bitrate: float, usable: float, fragment: float, ttfb: float, playlist: float
) -> float:
    """Seconds to load a segment of ``level`` (hls.js ``getTimeToLoadFrag``): a switch to a rung whose
    playlist is not loaded yet also pays for that playlist."""
    duration = level.segment or fragment
    time = ttfb + bitrate * duration / usable
    return time + (ttfb + playlist if level.segment is None else 0.0)


def find_best(
    levels: Sequence[Level],
    budget: Budget,
    *,
    base: int,
    top: int,
    fragment: float,
    ttfb: float,
    playlist: float,
    allowed: Sequence[bool] | None = None,
) -> int | None:
    """The highest rung up to ``top`` whose bitrate fits the usable bandwidth and whose next segment loads
    within the buffer plus the stall accepted (hls.js ``findBestLevel``); None when no rung does.

    ``base`` is the rung of the last segment loaded: rungs above it are up-switches and use ``up_factor``.
    With two segments buffered and no stall accepted, the average bitrate stands in for the peak.
    """
    deadline = budget.buffer + budget.max_starvation
    use_average = bool(fragment) and budget.buffer >= 2 * fragment and budget.max_starvation == 0
    for index in range(top, -1, -1):
        if allowed is not None and not allowed[index]:
            continue  # hls.js skips rungs with a load error, other than the current one
        level = levels[index]
        usable = budget.bandwidth * (budget.up_factor if index > base else budget.down_factor)
        bitrate = level.average if use_average else level.peak
        if usable < bitrate:
            continue
        fetch = _fetch_time(level, bitrate, usable, fragment, ttfb, playlist)
        if fetch <= ttfb or fetch < deadline:
            return index
    return None


def first_level(
    levels: Sequence[Level], estimate: float, config: AbrConfig, *, ttfb: float = DEFAULT_TTFB
) -> int:
    """The start rung (hls.js ``firstAutoLevel`` with ``startLevel`` unset, so no bitrate test): the highest
    rung whose peak the estimate covers in full, with no buffer and ``maxStarvationDelay`` to spend."""
    bandwidth = max(estimate, min(level.peak for level in levels))  # getStartCodecTier's minBitrate floor
    budget = Budget(bandwidth, 0.0, config.max_starvation, 1.0, 1.0)
    best = find_best(levels, budget, base=0, top=len(levels) - 1, fragment=0.0, ttfb=ttfb, playlist=0.0)
    return 0 if best is None else best


def next_level(
    levels: Sequence[Level],
    current: int,
    estimate: float,
    buffer: float,
    *,
    fragment: float,
    ttfb: float,
    playlist: float,
    allowed: Sequence[bool] | None = None,
    config: AbrConfig | None = None,
) -> int:
    """The rung of the next segment once playing has begun (hls.js ``getNextABRAutoLevel``).

    First the best rung that cannot stall; failing that, the best that stalls at most ``maxStarvationDelay``
    (capped at a segment); failing that, the lowest rung when it is cheaper than ``current``.
    ``current`` is the rung of the last segment loaded, ``fragment`` that segment's duration.
    """
    config = config or DEFAULT_ABR
    if len(levels) <= 1:
        return current
    top = len(levels) - 1
    starvation = min(fragment, config.max_starvation) if fragment else config.max_starvation
    # No stall first (only worth trying with something buffered), then up to ``starvation`` of stall.
    for accepted in (0.0, starvation) if buffer > 0 else (starvation,):
        budget = Budget(estimate, buffer, accepted, config.down_factor, config.up_factor)
        best = find_best(
            levels,
            budget,
            base=current,
            top=top,
            fragment=fragment,
            ttfb=ttfb,
            playlist=playlist,
            allowed=allowed,
        )
        if best is not None:
            return best
    lowest = next((i for i in range(len(levels)) if allowed is None or allowed[i]), 0)
    return lowest if levels[lowest].peak < levels[current].peak else current


def buffer_goal(peak: float, max_buffer: float, config: AbrConfig) -> float:
    """Seconds to buffer ahead at a rung of ``peak`` bit/s (hls.js ``getMaxBufferLength``):
    ``maxBufferLength`` at least, more while ``maxBufferSize`` bytes allow, at most ``maxMaxBufferLength``."""
    return min(max(8 * config.max_buffer_size / peak, max_buffer), config.max_max_buffer)


# --- the abandon rule ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Loading:
    """A video segment in flight, as the abandon rule sees it. Seconds are viewer seconds."""

    rung: int
    duration: float  # the segment's media seconds
    elapsed: float  # since the request was sent
    ttfb: float | None  # when its first byte came, None before
    loaded: int  # bytes so far


@dataclass(frozen=True, slots=True)
class KeepLoading:
    pass


@dataclass(frozen=True, slots=True)
class SwitchDown:
    """The segment will not arrive before the buffer runs dry, and a lower rung's would: drop the request
    now and load the same segment from ``rung``.

    Whatever abort hls.js's rule arms, the request goes at once: on ``FRAG_LOAD_EMERGENCY_ABORTED`` the
    stream controller goes idle and loads the next fragment from the new level
    (``onFragLoadEmergencyAborted``), and its fragment loader holds one request at a time
    (``FragmentLoader.load`` aborts the one before). Seen in the abr-fidelity bench: the replacement is
    requested within a millisecond of the rule firing, the segment it replaces ends there.
    """

    rung: int  # load the next segments from here
    # hls.js ``abortAndSwitch`` ran first (the rest of the segment would take over twice the replacement's
    # load time, on a rung above the lowest): the rung goes lower still (``lowest_switch``) and the
    # estimate restarts from that rung's bitrate.
    lowest: bool
    sample: bool  # the partial download is a throughput sample (bytes have arrived)
    # After sampling, an estimate that would still go up from this bit/s restarts from it (hls.js
    # ``resetEstimator``): a download this slow says the old estimate is stale.
    reset_to: float


Abandon = KeepLoading | SwitchDown


def abandon_rule(
    levels: Sequence[Level],
    loading: Loading,
    *,
    buffer: float,
    estimate: float,
    ttfb: float,
    playlist: float,
) -> Abandon:
    """hls.js ``_abandonRulesCheck``, checked every 100 ms while a segment above the lowest rung loads.

    It waits half the segment's duration, then compares the time the rest of it needs at the rate seen so
    far with the buffer left. When the buffer runs out first, it looks down the ladder for the highest rung
    whose segment loads within the buffer (and within a segment's duration) at that rate; if one does
    sooner than the current request would finish, it switches there, dropping the request (``SwitchDown``).
    """
    rung, duration = loading.rung, loading.duration
    if rung <= 0 or loading.elapsed <= max(ttfb, duration / 2):
        return KeepLoading()
    first_byte = loading.loaded > 0 and loading.ttfb is not None
    streaming = loading.elapsed - (loading.ttfb or 0.0) if first_byte else loading.elapsed
    if first_byte and streaming < 1:
        streaming = min(loading.elapsed, loading.loaded * 8 / estimate)
    rate = loading.loaded / streaming if first_byte and streaming > 0 else 0.0  # bytes/s
    expected = max(loading.loaded, round(duration * levels[rung].average / 8))
    remaining = (expected - loading.loaded) / rate if rate else expected * 8 / estimate + ttfb
    if remaining <= buffer:
        return KeepLoading()
    bandwidth = rate * 8 if rate else estimate
    target, replacement = rung - 1, math.inf
    while target > 0:
        level = levels[target]
        replacement = _fetch_time(level, level.peak, bandwidth, duration, ttfb, playlist)
        if replacement < min(buffer, duration + ttfb):
            break
        target -= 1
    if replacement >= remaining or replacement > duration * 10:
        return KeepLoading()
    budget = Budget(levels[target].peak, 0.0, buffer, 1.0, 1.0)
    best = find_best(levels, budget, base=rung, top=target, fragment=duration, ttfb=ttfb, playlist=playlist)
    chosen = target if best is None else best
    lowest = chosen > 0 and remaining > 2 * replacement
    return SwitchDown(chosen, lowest, first_byte, levels[target].peak)


def lowest_switch(
    levels: Sequence[Level], top: int, buffer: float, *, fragment: float, ttfb: float, playlist: float
) -> int:
    """The rung hls.js drops to when it aborts a request (``abortAndSwitch``): the best at or below ``top``
    at the lowest rung's bitrate, with the buffer as the stall it accepts; the lowest when none fits."""
    budget = Budget(levels[0].peak, 0.0, buffer, 1.0, 1.0)
    best = find_best(levels, budget, base=top, top=top, fragment=fragment, ttfb=ttfb, playlist=playlist)
    return 0 if best is None else best
