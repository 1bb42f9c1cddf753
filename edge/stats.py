"""Per-title request and byte rates over sliding windows: the signal the fleet autoscaler reads.

Pure: every method takes ``now``. One-second buckets in a ring per title; a title idle for longer than
the longest window is forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self

WINDOWS = (1, 10, 60)
_RING = max(WINDOWS) + 1


@dataclass
class _Ring:
    requests: list[int] = field(default_factory=lambda: [0] * _RING)
    bytes: list[int] = field(default_factory=lambda: [0] * _RING)
    seconds: list[int] = field(default_factory=lambda: [-1] * _RING)  # which second each bucket holds
    last: int = -1

    def add(self, second: int, requests: int, size: int) -> None:
        slot = second % _RING
        if self.seconds[slot] != second:
            self.seconds[slot], self.requests[slot], self.bytes[slot] = second, 0, 0
        self.requests[slot] += requests
        self.bytes[slot] += size
        self.last = max(self.last, second)

    def sums(self, now_second: int, window: int) -> tuple[int, int]:
        """Totals over the ``window`` complete seconds before ``now_second`` (the current one is partial)."""
        requests = size = 0
        for second in range(now_second - window, now_second):
            slot = second % _RING
            if self.seconds[slot] == second:
                requests += self.requests[slot]
                size += self.bytes[slot]
        return requests, size


@dataclass
class TitleStats:
    _titles: dict[str, _Ring] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def record(self, title: str, size: int, now: float, *, hit: bool) -> None:
        ring = self._titles.get(title)
        if ring is None:
            ring = self._titles[title] = _Ring()
        ring.add(int(now), 1, size)
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def add_bytes(self, title: str, size: int, now: float) -> None:
        """Bytes sent after the request was counted (a streamed response finishing later)."""
        ring = self._titles.get(title)
        if ring is not None:
            ring.add(int(now), 0, size)

    def rates(self, now: float) -> dict[str, TitleRates]:
        second = int(now)
        result = {}
        for title, ring in list(self._titles.items()):
            if ring.last < second - max(WINDOWS):
                del self._titles[title]
                continue
            (r1, b1), (r10, b10), (r60, b60) = (ring.sums(second, window) for window in WINDOWS)
            result[title] = TitleRates(r1 / 1, r10 / 10, r60 / 60, b1 / 1, b10 / 10, b60 / 60)
        return result

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


@dataclass(frozen=True)
class TitleRates:
    """One title's rates on one edge over the last 1, 10 and 60 complete seconds."""

    rps_1s: float = 0.0
    rps_10s: float = 0.0
    rps_60s: float = 0.0
    bytes_per_s_1s: float = 0.0
    bytes_per_s_10s: float = 0.0
    bytes_per_s_60s: float = 0.0

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if not isinstance(data, Mapping):
            return cls()
        return cls(**{f.name: _number(data.get(f.name)) for f in fields(cls)})


@dataclass(frozen=True)
class EdgeReport:
    """What ``GET /stats`` of an edge answers and the fleet reads: one record for both sides.

    ``from_json`` accepts what an older or damaged edge may send: unknown keys are ignored, missing or
    mistyped numbers read as 0, so one odd edge cannot break the fleet's loop.
    """

    id: str = ""
    titles: dict[str, TitleRates] = field(default_factory=dict)
    hit_ratio: float = 0.0
    hits: int = 0
    misses: int = 0
    upstream_fetches: int = 0
    objects_memory: int = 0
    bytes_cached_memory: int = 0
    objects_disk: int = 0
    bytes_cached_disk: int = 0
    in_flight_requests: int = 0
    fills_in_flight: int = 0
    connections: int = 0
    time: float = 0.0
    uptime_s: float = 0.0

    @property
    def rps(self) -> float:
        return sum(rates.rps_1s for rates in self.titles.values())

    @property
    def bytes_per_s(self) -> float:
        return sum(rates.bytes_per_s_1s for rates in self.titles.values())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if not isinstance(data, Mapping):
            return cls()
        titles = data.get("titles")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "titles":
                continue
            raw = data.get(f.name)
            if f.type == "str":
                values[f.name] = raw if isinstance(raw, str) else ""
            elif f.type == "int":
                values[f.name] = int(_number(raw))
            else:
                values[f.name] = _number(raw)
        rates = (
            {str(t): TitleRates.from_json(r) for t, r in titles.items()}
            if isinstance(titles, Mapping)
            else {}
        )
        return cls(titles=rates, **values)
