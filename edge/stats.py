"""Per-title request and byte rates over sliding windows: the signal the fleet autoscaler reads.

Pure: every method takes ``now``. One-second buckets in a ring per title; a title idle for longer than
the longest window is forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

    def rates(self, now: float) -> dict[str, dict[str, float]]:
        second = int(now)
        result = {}
        for title, ring in list(self._titles.items()):
            if ring.last < second - max(WINDOWS):
                del self._titles[title]
                continue
            rates: dict[str, float] = {}
            for window in WINDOWS:
                requests, size = ring.sums(second, window)
                rates[f"rps_{window}s"] = requests / window
                rates[f"bytes_per_s_{window}s"] = size / window
            result[title] = rates
        return result

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
