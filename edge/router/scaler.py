"""When to add or remove edges: a pure function of observed demand, the fleet's state and ``now``.

Scale out on popularity, not CPU: the request rate summed over edges, projected ``lead_time`` seconds
ahead with its growth, against what the active and warming edges can serve at the target utilisation.
Scale in only after demand has stayed low for a whole stabilisation window, one edge at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalerConfig:
    min_edges: int = 1
    max_edges: int = 8
    edge_capacity: float = 2000.0  # requests/s one edge serves comfortably (see docs/benchmarks.md)
    target_utilization: float = 0.7
    lead_time: float = 5.0  # seconds of growth to provision ahead: the time to start and warm an edge
    scale_in_window: float = 300.0
    scale_out_cooldown: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_edges <= self.max_edges:
            raise ValueError("need 1 <= min_edges <= max_edges")
        if self.edge_capacity <= 0 or not 0 < self.target_utilization <= 1:
            raise ValueError("edge capacity must be positive and utilisation within (0, 1]")


@dataclass(frozen=True)
class Observation:
    active: int
    warming: int
    total_rps: float  # over the last second
    average_rps: float  # over the last ten seconds
    hottest_title: str | None
    hottest_rps: float


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


def edges_wanted(obs: Observation, config: ScalerConfig) -> tuple[int, float]:
    """(edges wanted, projected requests/s)."""
    growth = max(0.0, obs.total_rps - obs.average_rps) / 5.0  # per second, over the last ~10 s
    projected = max(obs.total_rps, obs.total_rps + growth * config.lead_time)
    per_edge = config.edge_capacity * config.target_utilization
    wanted = math.ceil(projected / per_edge) if projected > 0 else 0
    return max(config.min_edges, min(config.max_edges, wanted)), projected


def decide(
    obs: Observation, config: ScalerConfig, memory: ScalerMemory, now: float
) -> tuple[Decision, ScalerMemory]:
    wanted, projected = edges_wanted(obs, config)
    current = obs.active + obs.warming
    if wanted > current:
        if now - memory.last_scale_out < config.scale_out_cooldown:
            return Hold(f"scale-out cooling down ({projected:.0f} req/s projected)"), memory
        hot = f"; hottest {obs.hottest_title} at {obs.hottest_rps:.0f} req/s" if obs.hottest_title else ""
        reason = f"{projected:.0f} req/s projected needs {wanted} edges, have {current}{hot}"
        return ScaleOut(wanted - current, reason), ScalerMemory(last_scale_out=now, low_since=None)
    if wanted < obs.active and obs.warming == 0:
        low_since = memory.low_since if memory.low_since is not None else now
        if now - low_since >= config.scale_in_window:
            reason = f"demand ({projected:.0f} req/s) fits {wanted} edges for {config.scale_in_window:.0f} s"
            return ScaleIn(1, reason), ScalerMemory(memory.last_scale_out, low_since=now)
        return Hold(f"low demand for {now - low_since:.0f} s"), ScalerMemory(memory.last_scale_out, low_since)
    return Hold(f"{projected:.0f} req/s fits {current} edges"), ScalerMemory(memory.last_scale_out, None)
