"""The fleet's pure decisions on its edges: health verdicts with their reasons, demand, which edge to
give up or take back, names and parents of new edges. Values in, values out; no sockets, no clock."""

from __future__ import annotations

import pytest

from edge.router.backends import EdgeHandle
from edge.router.decide import (
    Cancel,
    Dead,
    DeathCause,
    Demand,
    Drain,
    EdgeState,
    FleetEdge,
    Health,
    Healthy,
    Keep,
    Late,
    NotJudged,
    ScaleOutSteps,
    demand,
    edge_number,
    health_json,
    judge_health,
    next_edge_id,
    observation,
    parent_for,
    scale_in_step,
    scale_out_steps,
    standby_shortfall,
)
from edge.router.scaler import Capacity
from edge.router.steering import EdgeRef
from edge.stats import EdgeReport, TitleRates

T0 = 1000.0
TIMEOUT = 2.0
LATE = 1.0

A, W, P, D = EdgeState.ACTIVE, EdgeState.WARMING, EdgeState.PENDING, EdgeState.DRAINING
S = EdgeState.STANDBY


@pytest.mark.parametrize(
    ("state", "exited", "last_ok", "verdict"),
    [
        (A, False, T0, Healthy("answered /stats 0.0 s ago")),
        (A, False, T0 - 0.4, Healthy("answered /stats 0.4 s ago")),
        (A, False, T0 - LATE, Healthy("answered /stats 1.0 s ago")),  # the bound itself is not late
        (A, False, T0 - 1.5, Late("last answer to /stats 1.5 s ago")),
        (W, False, T0 - 1.5, Late("last answer to /stats 1.5 s ago")),
        (A, False, T0 - TIMEOUT, Late("last answer to /stats 2.0 s ago")),
        (A, False, T0 - 2.5, Dead(DeathCause.SILENT, "no answer to /stats for 2.5 s (limit 2 s)")),
        (W, False, T0 - 9.0, Dead(DeathCause.SILENT, "no answer to /stats for 9.0 s (limit 2 s)")),
        (A, True, T0, Dead(DeathCause.EXITED, "its process exited")),  # exiting beats any answer
        (A, True, T0 - 9.0, Dead(DeathCause.EXITED, "its process exited")),
        (A, False, T0 + 0.3, Healthy("answered /stats 0.0 s ago")),  # an answer dated after now
        (P, False, T0 - 60.0, NotJudged("not listening yet: not polled")),
        (P, True, T0 - 60.0, NotJudged("not listening yet: not polled")),
        (D, False, T0 - 60.0, NotJudged("draining: stopped on purpose within the drain timeout")),
        (D, True, T0, NotJudged("draining: stopped on purpose within the drain timeout")),
        # A standby edge is judged like a serving one: a dead reserve is no reserve.
        (S, False, T0 - 0.4, Healthy("answered /stats 0.4 s ago")),
        (S, False, T0 - 2.5, Dead(DeathCause.SILENT, "no answer to /stats for 2.5 s (limit 2 s)")),
        (S, True, T0, Dead(DeathCause.EXITED, "its process exited")),
    ],
)
def test_health_verdicts_and_their_reasons(
    state: EdgeState, exited: bool, last_ok: float, verdict: Health
) -> None:
    assert judge_health(state, exited, last_ok, T0, TIMEOUT, LATE) == verdict


@pytest.mark.parametrize(
    ("verdict", "shown"),
    [
        (Healthy("ok"), {"verdict": "healthy", "reason": "ok"}),
        (Late("slow"), {"verdict": "late", "reason": "slow"}),
        (NotJudged("pending"), {"verdict": "not judged", "reason": "pending"}),
        (Dead(DeathCause.SILENT, "quiet"), {"verdict": "dead (silent)", "reason": "quiet"}),
        (Dead(DeathCause.EXITED, "gone"), {"verdict": "dead (exited)", "reason": "gone"}),
    ],
)
def test_health_as_fleet_shows_it(verdict: Health, shown: dict[str, str]) -> None:
    assert health_json(verdict) == shown


def report(**rates: tuple[float, float]) -> EdgeReport:
    """Per title: (requests/s, bytes/s) over the last second."""
    return EdgeReport(titles={t: TitleRates(rps_1s=r, bytes_per_s_1s=b) for t, (r, b) in rates.items()})


def test_demand_sums_the_edges_and_takes_the_measure_nearer_its_limit() -> None:
    reports = [report(a=(100.0, 0.0), b=(10.0, 50e6)), report(a=(50.0, 0.0), idle=(0.0, 0.0))]
    seen = demand(reports, Capacity(rps=100.0, bits_per_s=800e6))
    assert seen.rps == {"a": 150.0, "b": 10.0}  # idle titles are left out
    assert seen.load == {"a": 1.5, "b": 0.5}  # b: 400 Mbit/s of 800 is more than 10 req/s of 100
    assert seen.hottest == "a"
    assert Demand({}, {}).hottest is None


def edge(
    edge_id: str,
    state: EdgeState = A,
    *,
    started: float = T0,
    rps: float = 0.0,
    node: str | None = "198.51.100.11",
    parent: str | None = None,
    reserve: bool = False,
) -> FleetEdge:
    handle = EdgeHandle(
        edge_id, url=f"http://198.51.100.11/{edge_id}" if node else "", node=node, parent=parent
    )
    reported = EdgeReport(titles={"t": TitleRates(rps_1s=rps)}) if rps else EdgeReport()
    return FleetEdge(handle, state, started, started, reported, reserve=reserve)


def test_the_scaler_sees_active_warming_and_unplaced_edges() -> None:
    edges = [edge("edge-1", rps=30.0), edge("edge-2", W), edge("edge-3", P, node=None), edge("edge-4", D)]
    seen = observation(edges, Demand({"t": 30.0}, {"t": 0.3}))
    assert (seen.active, seen.warming, seen.unplaced) == (1, 2, 1)
    assert (seen.total_rps, seen.hottest_title, seen.hottest_rps) == (30.0, "t", 30.0)


@pytest.mark.parametrize(
    ("edges", "min_edges", "step"),
    [
        # A request that never got a machine goes first, the newest of them.
        (
            [
                edge("edge-1"),
                edge("edge-2", P, node=None, started=1),
                edge("edge-3", P, node=None, started=2),
            ],
            1,
            Cancel("edge-3"),
        ),
        # A pending edge that has a machine is starting: not cancelled; an active one is drained.
        ([edge("edge-1", rps=5), edge("edge-2", rps=1), edge("edge-3", P)], 1, Drain("edge-2")),
        # The least loaded; among equals the newest.
        ([edge("edge-1", started=1), edge("edge-2", started=2), edge("edge-3", rps=9)], 1, Drain("edge-2")),
        # Never an edge another fills from (its cache keeps theirs warm), however idle.
        (
            [edge("edge-1"), edge("edge-2", rps=9, parent="http://198.51.100.11/edge-1")],
            1,
            Drain("edge-2"),
        ),
        # Warming and draining edges are not candidates.
        (
            [edge("edge-1", rps=9), edge("edge-2", W), edge("edge-3", D), edge("edge-4", rps=8)],
            1,
            Drain("edge-4"),
        ),
        ([edge("edge-1"), edge("edge-2")], 2, Keep("at the minimum of 2 active edges")),
    ],
)
def test_which_edge_scaling_in_gives_up(edges: list[FleetEdge], min_edges: int, step: object) -> None:
    assert scale_in_step(edges, min_edges) == step


@pytest.mark.parametrize(
    ("count", "draining", "standby", "steps"),
    [
        (3, [], [], ScaleOutSteps([], [], 3)),
        (3, ["edge-4"], [], ScaleOutSteps(["edge-4"], [], 2)),
        (1, ["edge-4", "edge-5"], [], ScaleOutSteps(["edge-4"], [], 0)),
        (2, ["edge-4", "edge-5"], [], ScaleOutSteps(["edge-4", "edge-5"], [], 0)),
        # Standby edges next: listening already, only warming is left.
        (3, ["edge-4"], ["edge-6"], ScaleOutSteps(["edge-4"], ["edge-6"], 1)),
        (1, [], ["edge-6", "edge-7"], ScaleOutSteps([], ["edge-6"], 0)),
        (1, ["edge-4"], ["edge-6"], ScaleOutSteps(["edge-4"], [], 0)),
    ],
)
def test_scaling_out_takes_edges_that_listen_first(
    count: int, draining: list[str], standby: list[str], steps: ScaleOutSteps
) -> None:
    assert scale_out_steps(count, draining, standby) == steps


@pytest.mark.parametrize(
    ("edges", "wanted", "max_edges", "shortfall"),
    [
        ([edge("edge-1")], 0, 4, 0),
        ([edge("edge-1")], 2, 4, 2),
        # Pending reserve edges count: asked for once, never again while they wait for a machine.
        ([edge("edge-1"), edge("edge-2", P, node=None, reserve=True)], 2, 4, 1),
        ([edge("edge-1"), edge("edge-2", S, reserve=True)], 1, 4, 0),
        # Never beyond --max-edges, whatever is wanted in reserve.
        ([edge("edge-1"), edge("edge-2"), edge("edge-3", W)], 2, 4, 1),
        ([edge("edge-1"), edge("edge-2"), edge("edge-3"), edge("edge-4")], 1, 4, 0),
    ],
)
def test_the_standby_pool_is_refilled_within_max_edges(
    edges: list[FleetEdge], wanted: int, max_edges: int, shortfall: int
) -> None:
    assert standby_shortfall(edges, wanted, max_edges) == shortfall


def test_reserve_edges_are_neither_capacity_nor_given_up() -> None:
    edges = [
        edge("edge-1", rps=30.0),
        edge("edge-2", S, reserve=True),
        edge("edge-3", P, node=None, reserve=True),
    ]
    seen = observation(edges, Demand({"t": 30.0}, {"t": 0.3}))
    assert (seen.active, seen.warming, seen.unplaced) == (1, 0, 0)
    # Scaling in keeps them: a reserve waiting for a machine is the demand a cluster grows on.
    assert scale_in_step([*edges, edge("edge-4")], 1) == Drain("edge-4")
    assert scale_in_step(edges, 1) == Keep("at the minimum of 1 active edges")


@pytest.mark.parametrize(
    ("counter", "taken", "result"),
    [
        (0, {}, ("edge-1", 1)),
        (3, {"edge-4": 0, "edge-5": 0}, ("edge-6", 6)),
        (1, {"edge-7": 0}, ("edge-2", 2)),
    ],
)
def test_next_edge_id_skips_taken_names(
    counter: int, taken: dict[str, object], result: tuple[str, int]
) -> None:
    assert next_edge_id(counter, taken) == result


@pytest.mark.parametrize(
    ("edge_id", "number"), [("edge-12", 12), ("edge-x", 0), ("cdn-3", 0), ("edge-3a", 0)]
)
def test_an_adopted_edge_keeps_its_number(edge_id: str, number: int) -> None:
    assert edge_number(edge_id) == number


def test_a_new_edge_fills_from_its_hot_titles_edge_else_any_active_one() -> None:
    hot, other = EdgeRef("edge-2", "http://198.51.100.12"), EdgeRef("edge-1", "http://198.51.100.11")
    assert parent_for([hot], [other, hot]) == "http://198.51.100.12"
    assert parent_for([], [other, hot]) == "http://198.51.100.11"
    assert parent_for([], []) is None
