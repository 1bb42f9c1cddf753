"""What the fleet decides about its edges, from values: no I/O and no clock (callers pass ``now``).

- Health: each edge's verdict with its reason (``Healthy | Late | NotJudged | Dead``), from its state,
  whether its backend saw it exit, and when it last answered ``/stats``.
- Demand: per-title requests/s and shares of one edge, summed over the edges' reports.
- Scaling in: which edge to give up (``Cancel`` a request that never got a machine, else ``Drain`` the
  least useful edge, else ``Keep``); scaling out revives draining edges, then promotes standby edges,
  before asking for new ones; the standby pool is refilled up to ``--standby-edges``.
- Names and parents of new edges.

The scaler (``scaler.py``) decides how many edges; hashing (``hashing.py``) decides where titles go.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from edge.router.backends import EdgeHandle
from edge.router.scaler import Capacity, Observation
from edge.router.steering import EdgeRef
from edge.stats import EdgeReport

EDGE_ID = re.compile(r"^edge-(\d+)$")


class EdgeState(StrEnum):
    PENDING = "pending"  # asked for; waiting for a machine, then for the edge to listen
    WARMING = "warming"
    ACTIVE = "active"
    DRAINING = "draining"
    STANDBY = "standby"  # listening and polled, out of routing: a scale-out promotes it at once


@dataclass
class FleetEdge:
    """The fleet's view of one edge: where it runs, its state, and what it last reported."""

    handle: EdgeHandle
    state: EdgeState
    started: float
    last_ok: float  # when it last answered /stats (or started listening)
    report: EdgeReport = field(default_factory=EdgeReport)
    polling: bool = False
    reserve: bool = False  # asked for to stand by (pending or standby), not yet promoted

    @property
    def ref(self) -> EdgeRef:
        return EdgeRef(self.handle.id, self.handle.url)

    @property
    def parent(self) -> str | None:
        return self.handle.parent

    @property
    def status(self) -> str:
        """What /fleet shows: a pending edge that has a machine is ``starting``."""
        if self.state is EdgeState.PENDING and self.handle.node is not None:
            return "starting"
        return str(self.state)

    @property
    def load(self) -> float:
        return self.report.rps

    @property
    def unplaced(self) -> bool:
        """Asked for, and still waiting for a machine."""
        return self.state is EdgeState.PENDING and not self.handle.node


# Health.


class DeathCause(StrEnum):
    EXITED = "exited"  # its backend saw the process (or actor) end
    SILENT = "silent"  # no good answer to /stats within the health timeout


@dataclass(frozen=True)
class Healthy:
    reason: str


@dataclass(frozen=True)
class Late:
    """Alive, but its last answer is older than two polls: the first sign of a frozen edge."""

    reason: str


@dataclass(frozen=True)
class NotJudged:
    """Not polled (no address yet), or stopping on purpose (its drain is bounded on its own)."""

    reason: str


@dataclass(frozen=True)
class Dead:
    cause: DeathCause
    reason: str


Health = Healthy | Late | NotJudged | Dead


def judge_health(
    state: EdgeState, exited: bool, last_ok: float, now: float, timeout: float, late_after: float
) -> Health:
    """One edge's verdict: judged on its own answers only, so one silent edge never condemns another."""
    match state:
        case EdgeState.PENDING:
            return NotJudged("not listening yet: not polled")
        case EdgeState.DRAINING:
            return NotJudged("draining: stopped on purpose within the drain timeout")
        case EdgeState.WARMING | EdgeState.ACTIVE | EdgeState.STANDBY:
            pass
    if exited:
        return Dead(DeathCause.EXITED, "its process exited")
    silent = max(0.0, now - last_ok)
    if silent > timeout:
        return Dead(DeathCause.SILENT, f"no answer to /stats for {silent:.1f} s (limit {timeout:g} s)")
    if silent > late_after:
        return Late(f"last answer to /stats {silent:.1f} s ago")
    return Healthy(f"answered /stats {silent:.1f} s ago")


def health_json(verdict: Health) -> dict[str, str]:
    """How /fleet shows a verdict."""
    match verdict:
        case Healthy(reason=reason):
            return {"verdict": "healthy", "reason": reason}
        case Late(reason=reason):
            return {"verdict": "late", "reason": reason}
        case NotJudged(reason=reason):
            return {"verdict": "not judged", "reason": reason}
        case Dead(cause=cause, reason=reason):
            return {"verdict": f"dead ({cause})", "reason": reason}


# Demand.


@dataclass(frozen=True)
class Demand:
    rps: dict[str, float]  # requests/s per title (titles with any)
    load: dict[str, float]  # share of one edge per title, on the measure nearer its limit

    @property
    def hottest(self) -> str | None:
        return max(self.load, key=lambda title: self.load[title], default=None)


def demand(reports: Iterable[EdgeReport], capacity: Capacity) -> Demand:
    """Per title, summed over every edge's last report."""
    rps: dict[str, float] = collections.defaultdict(float)
    bytes_per_s: dict[str, float] = collections.defaultdict(float)
    for report in reports:
        for title, rates in report.titles.items():
            rps[title] += rates.rps_1s
            bytes_per_s[title] += rates.bytes_per_s_1s
    load = {title: capacity.share(rps[title], bytes_per_s[title]) for title in rps}
    return Demand(
        {title: r for title, r in rps.items() if r > 0}, {title: s for title, s in load.items() if s > 0}
    )


def observation(edges: Sequence[FleetEdge], current: Demand) -> Observation:
    """What the scaler sees of the fleet."""
    titles = [rates for edge in edges for rates in edge.report.titles.values()]
    hottest = current.hottest
    return Observation(
        active=sum(1 for e in edges if e.state is EdgeState.ACTIVE),
        warming=sum(1 for e in edges if e.state in (EdgeState.PENDING, EdgeState.WARMING) and not e.reserve),
        total_rps=sum(r.rps_1s for r in titles),
        average_rps=sum(r.rps_10s for r in titles),
        hottest_title=hottest,
        hottest_rps=current.rps.get(hottest, 0.0) if hottest else 0.0,
        total_bytes_per_s=sum(r.bytes_per_s_1s for r in titles),
        average_bytes_per_s=sum(r.bytes_per_s_10s for r in titles),
        unplaced=sum(1 for e in edges if e.unplaced and not e.reserve),
    )


# Scaling in and out.


@dataclass(frozen=True)
class Cancel:
    """Give up a request that never got a machine (the newest first)."""

    edge: str


@dataclass(frozen=True)
class Drain:
    edge: str


@dataclass(frozen=True)
class Keep:
    reason: str


ScaleInStep = Cancel | Drain | Keep


def scale_in_step(edges: Sequence[FleetEdge], min_edges: int) -> ScaleInStep:
    """The one edge to give up when demand has stayed low."""
    # A standby request waiting for a machine stays: its demand is what lets a cluster add one.
    unplaced = [e for e in edges if e.unplaced and not e.reserve]
    if unplaced:  # a machine never came
        return Cancel(max(unplaced, key=lambda e: e.started).handle.id)
    # An edge no other fills from (their caches stay warm), the least loaded, the newest.
    parents = {e.parent for e in edges}
    active = [e for e in edges if e.state is EdgeState.ACTIVE]
    candidates = sorted(active, key=lambda e: (e.handle.url in parents, e.load, -e.started))
    if len(candidates) > min_edges:
        return Drain(candidates[0].handle.id)
    return Keep(f"at the minimum of {min_edges} active edges")


@dataclass(frozen=True)
class ScaleOutSteps:
    revive: list[str]  # draining edges taken back: listening, their caches warm
    promote: list[str]  # standby edges put in service: listening, warmed on promotion
    new: int  # edges to ask for


def scale_out_steps(count: int, draining: Sequence[str], standby: Sequence[str]) -> ScaleOutSteps:
    """``count`` more edges: those already listening first, the warmest first."""
    revive = list(draining[:count])
    promote = list(standby[: count - len(revive)])
    return ScaleOutSteps(revive, promote, count - len(revive) - len(promote))


def standby_shortfall(edges: Sequence[FleetEdge], wanted: int, max_edges: int) -> int:
    """How many standby edges to ask for: up to ``wanted`` in reserve (pending or standing by), never
    beyond ``max_edges`` in all."""
    reserve = sum(1 for e in edges if e.reserve)
    return max(0, min(wanted - reserve, max_edges - len(edges)))


def next_edge_id(counter: int, taken: Mapping[str, object]) -> tuple[str, int]:
    """The next free ``edge-N`` and the new counter."""
    counter += 1
    while f"edge-{counter}" in taken:
        counter += 1
    return f"edge-{counter}", counter


def edge_number(edge_id: str) -> int:
    """N of ``edge-N`` (0 for another name): an adopted edge's number is never given out again."""
    number = EDGE_ID.match(edge_id)
    return int(number[1]) if number is not None else 0


def parent_for(title_edges: Sequence[EdgeRef], active: Sequence[EdgeRef]) -> str | None:
    """Where a new edge fills from first: an edge already serving its hot title, else any active one."""
    siblings = title_edges or active
    return siblings[0].url if siblings else None
