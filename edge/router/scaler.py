"""When to add or remove edges: a pure function of observed demand, the fleet's state and ``now``.

Scale out on popularity, not CPU: the request rate and the byte rate summed over edges, each projected
``lead_time`` seconds ahead with its growth, against what the active and warming edges can serve at the
target utilisation; whichever measure is nearer its limit decides (video crowds are bandwidth-bound: a
crowd on the top rendition needs more edges at far fewer requests/s than one on the lowest).
Scale in only after demand has stayed low for a whole stabilisation window, one edge at a time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_BITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_CAPACITY_PART = re.compile(r"^(\d+(?:\.\d+)?)(rps|bit|kbit|mbit|gbit)?$")


@dataclass(frozen=True)
class Capacity:
    """What one edge serves comfortably: requests/s, bits/s, or both (``None``: not a limit)."""

    rps: float | None = 2000.0  # see docs/benchmarks.md
    bits_per_s: float | None = None

    def __post_init__(self) -> None:
        if self.rps is None and self.bits_per_s is None:
            raise ValueError("an edge capacity needs requests/s, bits/s or both")
        if any(v is not None and not v > 0 for v in (self.rps, self.bits_per_s)):
            raise ValueError("an edge capacity must be positive")

    def shares(self, rps: float, bytes_per_s: float) -> tuple[float, float]:
        """The shares of one edge this load takes: (by requests, by bits); 0 for a measure not limited."""
        by_requests = rps / self.rps if self.rps else 0.0
        by_bits = bytes_per_s * 8 / self.bits_per_s if self.bits_per_s else 0.0
        return by_requests, by_bits

    def share(self, rps: float, bytes_per_s: float) -> float:
        """The share of one edge that this load takes, on the measure nearer its limit."""
        return max(self.shares(rps, bytes_per_s))

    def __str__(self) -> str:
        parts = [f"{self.rps:g}rps"] if self.rps else []
        if self.bits_per_s:
            parts.append(f"{self.bits_per_s / 1e6:g}mbit")
        return ",".join(parts)


def parse_capacity(text: str) -> Capacity:
    """``2000``, ``2000rps``, ``800mbit`` or ``2000rps,800mbit`` (a bare number is requests/s)."""
    rps = bits = None
    for part in (p.strip().lower() for p in text.split(",")):
        match = _CAPACITY_PART.match(part)
        if match is None:
            raise ValueError(f"invalid edge capacity {text!r}: expected e.g. 2000rps, 800mbit or both")
        value, unit = float(match[1]), match[2] or "rps"
        if unit == "rps":
            if rps is not None:
                raise ValueError(f"invalid edge capacity {text!r}: requests/s given twice")
            rps = value
        else:
            if bits is not None:
                raise ValueError(f"invalid edge capacity {text!r}: a bit rate given twice")
            bits = value * _BITS[unit]
    return Capacity(rps, bits)


@dataclass(frozen=True)
class ScalerConfig:
    min_edges: int = 1
    max_edges: int = 8
    capacity: Capacity = Capacity()
    target_utilization: float = 0.7
    lead_time: float = 5.0  # seconds of growth to provision ahead: the time to start and warm an edge
    scale_in_window: float = 300.0
    scale_out_cooldown: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_edges <= self.max_edges:
            raise ValueError("need 1 <= min_edges <= max_edges")
        if not 0 < self.target_utilization <= 1:
            raise ValueError("utilisation must be within (0, 1]")


@dataclass(frozen=True)
class Observation:
    active: int
    warming: int
    total_rps: float  # over the last second
    average_rps: float  # over the last ten seconds
    hottest_title: str | None
    hottest_rps: float
    total_bytes_per_s: float = 0.0  # over the last second
    average_bytes_per_s: float = 0.0  # over the last ten seconds
    unplaced: int = 0  # of ``warming``: asked for, still waiting for a machine


@dataclass(frozen=True)
class ScaleOut:
    count: int
    reason: str


@dataclass(frozen=True)
class ScaleIn:
    count: int
    reason: str


@dataclass(frozen=True)
class Hold:
    reason: str


Decision = ScaleOut | ScaleIn | Hold


@dataclass(frozen=True)
class ScalerMemory:
    last_scale_out: float = float("-inf")
    low_since: float | None = None


def _projected(now_rate: float, average_rate: float, lead_time: float) -> float:
    growth = max(0.0, now_rate - average_rate) / 5.0  # per second, over the last ~10 s
    return max(now_rate, now_rate + growth * lead_time)


def edges_wanted(obs: Observation, config: ScalerConfig) -> tuple[int, str]:
    """(edges wanted, the projected demand on the measure that decides it, for humans)."""
    rps = _projected(obs.total_rps, obs.average_rps, config.lead_time)
    bytes_per_s = _projected(obs.total_bytes_per_s, obs.average_bytes_per_s, config.lead_time)
    by_requests, by_bytes = config.capacity.shares(rps, bytes_per_s)
    load = max(by_requests, by_bytes) / config.target_utilization
    wanted = math.ceil(load - 1e-9) if load > 0 else 0
    measure = f"{bytes_per_s * 8 / 1e6:.0f} Mbit/s" if by_bytes > by_requests else f"{rps:.0f} req/s"
    return max(config.min_edges, min(config.max_edges, wanted)), measure


def decide(
    obs: Observation, config: ScalerConfig, memory: ScalerMemory, now: float
) -> tuple[Decision, ScalerMemory]:
    wanted, projected = edges_wanted(obs, config)
    current = obs.active + obs.warming
    if wanted > current:
        if now - memory.last_scale_out < config.scale_out_cooldown:
            return Hold(f"scale-out cooling down ({projected} projected)"), memory
        hot = f"; hottest {obs.hottest_title} at {obs.hottest_rps:.0f} req/s" if obs.hottest_title else ""
        reason = f"{projected} projected needs {wanted} edges, have {current}{hot}"
        return ScaleOut(wanted - current, reason), ScalerMemory(last_scale_out=now, low_since=None)
    # Edges still waiting for a machine can be given up; edges warming up are let finish first.
    if wanted < obs.active + obs.unplaced and obs.warming == obs.unplaced:
        low_since = memory.low_since if memory.low_since is not None else now
        if now - low_since >= config.scale_in_window:
            reason = f"demand ({projected}) fits {wanted} edges for {config.scale_in_window:.0f} s"
            return ScaleIn(1, reason), ScalerMemory(memory.last_scale_out, low_since=now)
        return Hold(f"low demand for {now - low_since:.0f} s"), ScalerMemory(memory.last_scale_out, low_since)
    return Hold(f"{projected} fits {current} edges"), ScalerMemory(memory.last_scale_out, None)
