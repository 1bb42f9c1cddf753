"""Counting what happened: request latencies, cache and edge breakdowns, viewer experience, per second.

Rules of this file: no clock, no I/O; callers pass the times. Request latencies go into log-bucketed
histograms (bounded memory whatever the run's length, 1 % precision), each second's too: histograms merge
bucket by bucket, so the numbers of several generators add up to exactly what one would have counted.
Every ``merge_*`` function is pure: it returns a new value and leaves its inputs alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtest.player import SessionResult

SATURATED = 0.9  # share of one core above which the generator itself is the bottleneck
STARVED = 0.1  # share of a second spent waiting for a CPU (other programs) that skews latencies
MAX_KEYS = 64  # distinct X-Cache / X-Served-By values kept; the rest count as "other"
NO_HEADER = "-"


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class LogHistogram:
    """Counts of positive values in buckets growing by ``growth``; percentiles within that ratio."""

    __slots__ = ("_buckets", "_log_growth", "count", "max", "min", "smallest", "total")

    def __init__(self, smallest: float = 1e-5, growth: float = 1.01) -> None:
        self.smallest = smallest
        self._log_growth = math.log(growth)
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def add(self, value: float) -> None:
        index = 0 if value <= self.smallest else math.ceil(math.log(value / self.smallest) / self._log_growth)
        self._buckets[index] = self._buckets.get(index, 0) + 1
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def merged(self, other: LogHistogram) -> LogHistogram:
        """Both histograms' counts in one, bucket by bucket: the histogram of both sets of values."""
        if (self.smallest, self._log_growth) != (other.smallest, other._log_growth):
            raise ValueError("only histograms with the same buckets merge")
        merged = LogHistogram(self.smallest)
        merged._log_growth = self._log_growth
        merged._buckets = dict(self._buckets)
        for index, count in other._buckets.items():
            merged._buckets[index] = merged._buckets.get(index, 0) + count
        merged.count = self.count + other.count
        merged.total = self.total + other.total
        merged.min = min(self.min, other.min)
        merged.max = max(self.max, other.max)
        return merged

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogHistogram):
            return NotImplemented
        mine = (self.smallest, self._log_growth, self._buckets, self.count, self.total, self.min, self.max)
        return mine == (other.smallest, other._log_growth, other._buckets, other.count, other.total,
                        other.min, other.max)  # fmt: skip

    __hash__ = None  # type: ignore[assignment]  # mutable

    def percentile(self, q: float) -> float | None:
        """Nearest rank: the upper edge of the bucket holding it, clamped to the values really seen."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                edge = self.smallest * math.exp(index * self._log_growth)
                return min(max(edge, self.min), self.max)
        return self.max

    def summary(self, scale: float = 1000.0) -> dict[str, float | None]:
        """p50/p95/p99/max/mean, multiplied by ``scale`` (seconds → ms by default), rounded."""

        def scaled(value: float | None) -> float | None:
            return None if value is None else round(value * scale, 3)

        return {
            "p50": scaled(self.percentile(50)),
            "p95": scaled(self.percentile(95)),
            "p99": scaled(self.percentile(99)),
            "max": scaled(self.max if self.count else None),
            "mean": scaled(self.total / self.count if self.count else None),
        }


@dataclass
class _TypeStats:
    requests: int = 0
    bytes: int = 0
    errors: int = 0
    latency: LogHistogram = field(default_factory=LogHistogram)
    ttfb: LogHistogram = field(default_factory=LogHistogram)


@dataclass
class Window:
    """One second of requests, closed by ``Recorder.close_window``."""

    requests: int = 0
    bytes: int = 0
    errors: int = 0
    latency: LogHistogram = field(default_factory=LogHistogram)


def _bucket(table: dict[str, list[int]], key: str) -> list[int]:
    row = table.get(key)
    if row is None:
        row = table.setdefault(key if len(table) < MAX_KEYS else "other", [0, 0])
    return row


class Recorder:
    """Every request's outcome. ``record`` is on the hot path: a few dict updates and two log()s."""

    def __init__(self) -> None:
        self.types: dict[str, _TypeStats] = {}
        self.errors_by_kind: dict[str, int] = {}
        self.x_cache: dict[str, list[int]] = {}  # value -> [requests, bytes]
        self.served_by: dict[str, list[int]] = {}
        self.window = Window()

    def record(
        self,
        object_type: str,
        *,
        latency: float,
        ttfb: float | None,
        nbytes: int,
        error: str | None = None,
        x_cache: str | None = None,
        served_by: str | None = None,
    ) -> None:
        stats = self.types.get(object_type)
        if stats is None:
            stats = self.types[object_type] = _TypeStats()
        stats.requests += 1
        stats.bytes += nbytes
        stats.latency.add(latency)
        if ttfb is not None:
            stats.ttfb.add(ttfb)
        window = self.window
        window.requests += 1
        window.bytes += nbytes
        window.latency.add(latency)
        if error is not None:
            stats.errors += 1
            window.errors += 1
            self.errors_by_kind[error] = self.errors_by_kind.get(error, 0) + 1
        if ttfb is None:
            return  # no response: no headers to count
        cache = _bucket(self.x_cache, cache_status(x_cache))
        cache[0] += 1
        cache[1] += nbytes
        edge = _bucket(self.served_by, served_by or NO_HEADER)
        edge[0] += 1
        edge[1] += nbytes

    def mark_error(self, object_type: str, kind: str) -> None:
        """An error found after a successful response (a playlist that does not parse, a refused host)."""
        stats = self.types.setdefault(object_type, _TypeStats())
        stats.errors += 1
        self.window.errors += 1
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1

    def close_window(self) -> Window:
        window, self.window = self.window, Window()
        return window

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.types.values())

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.types.values())

    def summary(self, wall: float) -> dict[str, Any]:
        total_bytes = sum(s.bytes for s in self.types.values())
        return {
            "total": self.requests,
            "bytes": total_bytes,
            "errors": self.errors,
            "throughput_bps": round(total_bytes * 8 / wall) if wall > 0 else 0,
            "requests_per_s": round(self.requests / wall, 2) if wall > 0 else 0,
            "errors_by_kind": dict(sorted(self.errors_by_kind.items())),
            "by_type": {
                name: {
                    "requests": s.requests,
                    "bytes": s.bytes,
                    "errors": s.errors,
                    "latency_ms": s.latency.summary(),
                    "ttfb_ms": s.ttfb.summary(),
                }
                for name, s in sorted(self.types.items())
            },
            "x_cache": _table(self.x_cache),
            "served_by": _table(self.served_by),
        }


def merge_recorders(recorders: Iterable[Recorder]) -> Recorder:
    """The requests of several recorders as one recorder had counted them all (the open windows are not
    part of it: each second is merged as a ``Second``)."""
    merged = Recorder()
    for recorder in recorders:
        for name, stats in recorder.types.items():
            mine = merged.types.setdefault(name, _TypeStats())
            mine.requests += stats.requests
            mine.bytes += stats.bytes
            mine.errors += stats.errors
            mine.latency = mine.latency.merged(stats.latency)
            mine.ttfb = mine.ttfb.merged(stats.ttfb)
        for kind, count in recorder.errors_by_kind.items():
            merged.errors_by_kind[kind] = merged.errors_by_kind.get(kind, 0) + count
        for mine_table, table in ((merged.x_cache, recorder.x_cache), (merged.served_by, recorder.served_by)):
            for key, (requests, nbytes) in table.items():
                row = _bucket(mine_table, key)
                row[0] += requests
                row[1] += nbytes
    return merged


def _table(table: dict[str, list[int]]) -> dict[str, dict[str, int]]:
    return {key: {"requests": r, "bytes": b} for key, (r, b) in sorted(table.items())}


def cache_status(header: str | None) -> str:
    """``X-Cache`` reduced to its first word, upper case (``HIT from edge-1`` → ``HIT``)."""
    if not header:
        return NO_HEADER
    word = header.split(None, 1)[0].upper() if header.strip() else NO_HEADER
    return word[:32]


@dataclass
class ViewerStats:
    """Sessions' experience summed up; one per title, one overall."""

    sessions: int = 0
    started: int = 0
    ended: int = 0
    failed: int = 0
    with_rebuffer: int = 0
    startups: list[float] = field(default_factory=list)
    rebuffers: int = 0
    rebuffer_wall: float = 0.0
    played: float = 0.0  # media seconds
    played_wall: float = 0.0
    bitrate_seconds: float = 0.0  # sum of bitrate x media seconds
    top_seconds: float = 0.0
    switches_up: int = 0
    switches_down: int = 0
    renditions: dict[str, list[float]] = field(default_factory=dict)  # label -> [bitrate, seconds]

    def add(
        self, result: SessionResult, bitrates: Sequence[float], labels: Sequence[str], speed: float
    ) -> None:
        self.sessions += 1
        self.started += result.started
        self.ended += result.ended
        self.failed += result.failed
        self.with_rebuffer += result.stalls > 0
        if result.startup is not None:
            self.startups.append(result.startup)
        self.rebuffers += result.stalls
        self.rebuffer_wall += result.stall_time
        self.played += result.played_total
        self.played_wall += result.played_total / speed
        self.switches_up += result.switches_up
        self.switches_down += result.switches_down
        if not result.played:
            return  # ended before it knew its ladder
        if not len(bitrates) == len(labels) == len(result.played):
            raise ValueError("one bitrate and one label per rendition played")
        for bitrate, label, seconds in zip(bitrates, labels, result.played, strict=True):
            self.bitrate_seconds += bitrate * seconds
            row = self.renditions.setdefault(label, [bitrate, 0.0])
            row[1] += seconds
        self.top_seconds += result.played[-1]

    def merged(self, other: ViewerStats) -> ViewerStats:
        """Both sets of sessions as one: counts and times summed, startups pooled (exact percentiles)."""
        renditions = {label: list(row) for label, row in self.renditions.items()}
        for label, (bitrate, seconds) in other.renditions.items():
            renditions.setdefault(label, [bitrate, 0.0])[1] += seconds
        return ViewerStats(
            sessions=self.sessions + other.sessions,
            started=self.started + other.started,
            ended=self.ended + other.ended,
            failed=self.failed + other.failed,
            with_rebuffer=self.with_rebuffer + other.with_rebuffer,
            startups=self.startups + other.startups,
            rebuffers=self.rebuffers + other.rebuffers,
            rebuffer_wall=self.rebuffer_wall + other.rebuffer_wall,
            played=self.played + other.played,
            played_wall=self.played_wall + other.played_wall,
            bitrate_seconds=self.bitrate_seconds + other.bitrate_seconds,
            top_seconds=self.top_seconds + other.top_seconds,
            switches_up=self.switches_up + other.switches_up,
            switches_down=self.switches_down + other.switches_down,
            renditions=renditions,
        )

    def summary(self) -> dict[str, Any]:
        watched = self.played_wall + self.rebuffer_wall
        played = self.played

        def share(seconds: float) -> float | None:
            return round(seconds / played, 4) if played else None

        return {
            "sessions": self.sessions,
            "sessions_started": self.started,
            "sessions_ended": self.ended,
            "sessions_failed": self.failed,
            "sessions_with_rebuffer": self.with_rebuffer,
            "startup_s": {
                "p50": _round(percentile(self.startups, 50)),
                "p95": _round(percentile(self.startups, 95)),
                "max": _round(max(self.startups, default=None)),
                "count": len(self.startups),
            },
            "rebuffers": self.rebuffers,
            "rebuffer_s": round(self.rebuffer_wall, 3),
            "rebuffer_ratio": round(self.rebuffer_wall / watched, 4) if watched else 0.0,
            "played_s": round(played, 3),
            "avg_bitrate_bps": round(self.bitrate_seconds / played) if played else None,
            "switches": self.switches_up + self.switches_down,
            "switches_up": self.switches_up,
            "switches_down": self.switches_down,
            "top_rendition_share": share(self.top_seconds),
            "renditions": [
                {
                    "label": label,
                    "bitrate": int(bitrate),
                    "played_s": round(seconds, 3),
                    "share": share(seconds),
                }
                for label, (bitrate, seconds) in sorted(self.renditions.items(), key=lambda kv: kv[1][0])
            ],
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class Second:
    """One row of the time series."""

    t: float  # seconds since the start of the run
    key: int  # the second it closes, counted from 1 (the same second of several generators merges)
    active: int  # players in a session
    stalled: int  # of which stalled right now
    rebuffers: int  # stalls that began in this second
    requests: int
    bytes: int
    errors: int
    latency: LogHistogram  # this second's request latencies (what merges; the report shows its p99)
    cpu: float  # the generator's CPU in this second, share of one core
    cpu_wait: float | None  # share of it the event loop was ready to run but waited for a CPU (Linux)
    loop_lag_ms: float  # how late the once-a-second tick woke up: an overloaded loop shows here first
    edges: int | None = None  # from the fleet's /fleet, when the target is a surge fleet
    played: Mapping[str, float] = field(default_factory=dict)  # media seconds played in it, by rendition

    @property
    def p99_ms(self) -> float | None:
        p99 = self.latency.percentile(99)
        return None if p99 is None else round(p99 * 1000, 3)

    @property
    def saturated(self) -> bool:
        return self.cpu > SATURATED

    @property
    def starved(self) -> bool:
        return self.cpu_wait is not None and self.cpu_wait > STARVED

    def as_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "active": self.active,
            "stalled": self.stalled,
            "rebuffers": self.rebuffers,
            "requests": self.requests,
            "bytes": self.bytes,
            "errors": self.errors,
            "p99_ms": self.p99_ms,
            "cpu": self.cpu,
            "cpu_wait": self.cpu_wait,
            "loop_lag_ms": self.loop_lag_ms,
            "edges": self.edges,
            "played": dict(sorted(self.played.items())),
            "saturated": self.saturated,
            "starved": self.starved,
        }


def second_of(
    t: float,
    window: Window,
    *,
    key: int | None = None,
    active: int,
    stalled: int,
    rebuffers: int,
    cpu: float,
    cpu_wait: float | None,
    loop_lag: float,
    edges: int | None,
    played: Mapping[str, float] | None = None,
) -> Second:
    return Second(
        t=round(t, 3),
        key=round(t) if key is None else key,
        active=active,
        stalled=stalled,
        rebuffers=rebuffers,
        requests=window.requests,
        bytes=window.bytes,
        errors=window.errors,
        latency=window.latency,
        cpu=round(cpu, 4),
        cpu_wait=None if cpu_wait is None else round(cpu_wait, 4),
        loop_lag_ms=round(loop_lag * 1000, 3),
        edges=edges,
        played=dict(played or {}),
    )


def played_in(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Media seconds played by rendition between two running totals; renditions not played left out."""
    played = {}
    for label, seconds in after.items():
        delta = round(seconds - before.get(label, 0.0), 3)
        if delta > 0:
            played[label] = delta
    return played


def sum_by_key(tables: Iterable[Mapping[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for table in tables:
        for key, value in table.items():
            total[key] = total.get(key, 0.0) + value
    return total


def merge_seconds(rows: Sequence[Second]) -> Second:
    """The same second of several generators as one row: players, requests and play time summed, the
    latency histograms merged (the p99 is theirs together), and the generator numbers of the busiest one
    (``saturated``: any generator was)."""
    if len({row.key for row in rows}) != 1:
        raise ValueError("only rows of the same second merge")
    waits = [row.cpu_wait for row in rows if row.cpu_wait is not None]
    edges = [row.edges for row in rows if row.edges is not None]
    latency = LogHistogram()
    for row in rows:
        latency = latency.merged(row.latency)
    return Second(
        t=max(row.t for row in rows),
        key=rows[0].key,
        active=sum(row.active for row in rows),
        stalled=sum(row.stalled for row in rows),
        rebuffers=sum(row.rebuffers for row in rows),
        requests=sum(row.requests for row in rows),
        bytes=sum(row.bytes for row in rows),
        errors=sum(row.errors for row in rows),
        latency=latency,
        cpu=max(row.cpu for row in rows),
        cpu_wait=max(waits) if waits else None,
        loop_lag_ms=max(row.loop_lag_ms for row in rows),
        edges=max(edges) if edges else None,
        played={label: round(seconds, 3) for label, seconds in sum_by_key(r.played for r in rows).items()},
    )


def merge_series(series: Iterable[Sequence[Second]]) -> list[Second]:
    """Several generators' time series as one, second by second (rows merge by ``Second.key``)."""
    by_key: dict[int, list[Second]] = {}
    for rows in series:
        for row in rows:
            by_key.setdefault(row.key, []).append(row)
    return [merge_seconds(by_key[key]) for key in sorted(by_key)]


def generator_summary(series: Sequence[Second], cpu_seconds: float, wall: float) -> dict[str, Any]:
    """Whether the generator could keep up: its CPU, and the CPU it waited for (a shared machine)."""
    saturated = sum(1 for s in series if s.saturated)
    starved = sum(1 for s in series if s.starved)
    waits = [s.cpu_wait for s in series if s.cpu_wait is not None]
    return {
        "cpu_s": round(cpu_seconds, 3),
        "cpu_mean": round(cpu_seconds / wall, 4) if wall > 0 else 0.0,
        "cpu_max": max((s.cpu for s in series), default=0.0),
        "saturated_s": saturated,
        "saturated": saturated > 0,
        "cpu_wait_mean": round(sum(waits) / len(waits), 4) if waits else None,
        "starved_s": starved,
        "starved": starved > 0,
        "loop_lag_max_ms": max((s.loop_lag_ms for s in series), default=0.0),
    }
