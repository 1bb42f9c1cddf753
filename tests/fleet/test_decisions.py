"""The fleet's decisions on a clock the test moves and a backend the test scripts.

Each edge of ``ScriptedEdges`` answers ``/stats`` from a real aiohttp server on 127.0.0.1 (one route per
edge), and can be frozen (its answers never come, as under SIGSTOP), killed (the backend reports it
exited), or left without a machine (``start`` never gets past placement, as a Ray actor with no free
``surge_edge`` unit).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from edge.router.backends import EdgeHandle
from edge.router.fleet import EdgeState, Fleet, FleetConfig
from edge.router.scaler import Capacity, ScalerConfig
from edge.stats import EdgeReport, TitleRates
from tests.conftest import serve_locally


class ShiftedClock:
    """Real monotonic time plus whatever the test adds: waits inside the fleet still end."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class ScriptedEdges:
    base: str
    machines: int = 100  # edges beyond this many wait for a machine forever
    keeps_edges: bool = False
    frozen: set[str] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)
    rps: dict[str, float] = field(default_factory=dict)  # per edge, all on title "hot"
    stall_titles: bool = False  # media requests (a new edge's warming) never answered
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    placed: int = 0

    async def open(self) -> None:
        return None

    def new_handle(self, edge_id: str, parent: str | None) -> EdgeHandle:
        return EdgeHandle(edge_id, parent=parent)

    async def start(self, handle: EdgeHandle) -> None:
        if self.placed >= self.machines:
            await asyncio.Event().wait()  # no machine ever comes
        self.placed += 1
        handle.node = f"198.51.100.{10 + self.placed}"
        handle.url = f"{self.base}/{handle.id}"
        self.started.append(handle.id)

    async def stop(self, handle: EdgeHandle, graceful: bool = True) -> None:
        if handle.node is not None:
            self.placed -= 1
        self.stopped.append(handle.id)

    def exited(self, handle: EdgeHandle) -> bool:
        return handle.id in self.dead

    async def adopt(self) -> list[EdgeHandle]:
        return []

    async def close(self) -> None:
        return None


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedEdges]:
    backend = ScriptedEdges("")

    async def stats(request: web.Request) -> web.Response:
        edge = request.match_info["edge"]
        if edge in backend.frozen:
            await asyncio.Event().wait()
        titles = {"hot": TitleRates(rps_1s=backend.rps.get(edge, 0.0), rps_10s=backend.rps.get(edge, 0.0))}
        return web.json_response(EdgeReport(id=edge, titles=titles).to_json())

    async def media(request: web.Request) -> web.Response:
        if backend.stall_titles:
            await asyncio.Event().wait()
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/{edge}/stats", stats)
    app.router.add_get("/{edge}/titles/{path:.*}", media)
    runner, url = await serve_locally(app, shutdown_timeout=0.2)  # frozen answers never finish
    backend.base = url
    yield backend
    await runner.cleanup()


def config(min_edges: int, max_edges: int, rps: float = 100.0) -> FleetConfig:
    scaler = ScalerConfig(min_edges=min_edges, max_edges=max_edges, capacity=Capacity(rps=rps),
                          target_utilization=1.0, scale_out_cooldown=0.0, scale_in_window=10.0)  # fmt: skip
    return FleetConfig(origin="http://198.51.100.1:8080", scaler=scaler, poll_timeout=0.3, placement_wait=0.3)


async def settle(fleet: Fleet) -> None:
    """Let the edges the fleet asked for start (their tasks run on the loop)."""
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_a_frozen_edge_is_replaced_alone_and_the_others_keep_serving(scripted: ScriptedEdges) -> None:
    clock = ShiftedClock()
    fleet = Fleet(config(2, 3), scripted, clock=clock)
    await fleet.start()
    try:
        await fleet.tick()
        assert [e.state for e in fleet.edges.values()] == [EdgeState.ACTIVE, EdgeState.ACTIVE]
        healthy = {e["id"]: e["health"]["verdict"] for e in fleet.snapshot()["edges"]}
        assert healthy == {"edge-1": "healthy", "edge-2": "healthy"}
        scripted.frozen.add("edge-1")
        verdicts = []
        for _ in range(6):  # 3 s of fleet time, a tick every half second
            clock.advance(0.5)
            await fleet.tick()
            await settle(fleet)
            shown = {e["id"]: e["health"] for e in fleet.snapshot()["edges"]}
            verdicts.append(shown["edge-1"]["verdict"] if "edge-1" in shown else None)
            assert shown["edge-2"]["verdict"] == "healthy"
        # Late once past half the health timeout, dead past all of it, then gone.
        assert verdicts[0] == "late" and verdicts[-1] is None, verdicts
        assert "edge-1" not in fleet.edges and "edge-2" in fleet.edges  # the answering edge is untouched
        assert scripted.stopped == ["edge-1"]
        assert scripted.started == ["edge-1", "edge-2", "edge-3"]  # one death, one replacement
        died = [e for e in fleet.events if e["kind"] == "edge died"]
        assert [(e["edge"], e["why"]) for e in died] == [("edge-1", "silent")]
        assert died[0]["reason"].startswith("no answer to /stats for "), died
    finally:
        await fleet.stop()


async def test_one_death_one_replacement_even_below_the_minimum(scripted: ScriptedEdges) -> None:
    clock = ShiftedClock()
    fleet = Fleet(config(2, 5), scripted, clock=clock)
    await fleet.start()
    try:
        await fleet.tick()
        scripted.dead.add("edge-2")  # kill -9: the backend sees it exit
        await fleet.tick()  # replacement and minimum-fleet scale-out in the same tick
        await settle(fleet)
        await fleet.tick()
        await settle(fleet)
        assert scripted.started == ["edge-1", "edge-2", "edge-3"]
        assert sorted(fleet.edges) == ["edge-1", "edge-3"]
    finally:
        await fleet.stop()


async def test_never_more_edges_than_the_maximum(scripted: ScriptedEdges) -> None:
    clock = ShiftedClock()
    fleet = Fleet(config(1, 3, rps=10.0), scripted, clock=clock)
    await fleet.start()
    try:
        scripted.rps["edge-1"] = 1000.0  # wants 100 edges
        for _ in range(5):
            await fleet.tick()
            await settle(fleet)
            scripted.dead.update(e for e in list(fleet.edges) if e != "edge-1")  # churn on top
            clock.advance(0.5)
            assert len(fleet.edges) <= 3
        assert len(scripted.started) > 3 and len(fleet.edges) == 3  # replaced, and still at the maximum
    finally:
        await fleet.stop()


async def test_an_edge_without_a_machine_is_pending_and_never_blocks(scripted: ScriptedEdges) -> None:
    scripted.machines = 0
    fleet = Fleet(config(1, 4), scripted, clock=ShiftedClock())
    started = time.monotonic()
    await fleet.start()  # returns although the first edge never gets a machine
    try:
        assert time.monotonic() - started < 5
        [edge] = fleet.snapshot()["edges"]
        assert edge == edge | {"id": "edge-1", "state": "pending", "node": None, "url": None}
        await fleet.tick()  # a pending edge is neither polled nor judged dead
        assert "edge-1" in fleet.edges and fleet.active() == []
    finally:
        await fleet.stop()


async def test_a_request_that_never_got_a_machine_is_given_up_first(scripted: ScriptedEdges) -> None:
    scripted.machines = 1
    clock = ShiftedClock()
    fleet = Fleet(config(1, 4), scripted, clock=clock)
    await fleet.start()
    try:
        scripted.rps["edge-1"] = 150.0  # two edges' worth
        await fleet.tick()
        await settle(fleet)
        assert [(e["id"], e["state"]) for e in fleet.snapshot()["edges"]] == [
            ("edge-1", "active"), ("edge-2", "pending")
        ]  # fmt: skip
        scripted.rps["edge-1"] = 10.0  # the crowd leaves
        for _ in range(3):
            clock.advance(6)
            await fleet.tick()
            await settle(fleet)
        assert list(fleet.edges) == ["edge-1"]
        assert [e["kind"] for e in fleet.events].count("edge cancelled") == 1
        assert "edge-2" in scripted.stopped and "edge draining" not in [e["kind"] for e in fleet.events]
    finally:
        await fleet.stop()


async def test_a_warming_that_times_out_is_reported_with_its_cause_and_the_edge_serves(
    scripted: ScriptedEdges,
) -> None:
    # A new edge warms from its parent; a parent whose card a crowd saturates answers too late.
    fleet = Fleet(config(1, 2), scripted, clock=ShiftedClock())
    await fleet.start()
    try:
        await fleet.tick()
        scripted.rps["edge-1"] = 150.0  # wants two edges
        scripted.stall_titles = True
        await fleet.tick()
        deadline = time.monotonic() + 10
        while fleet.edges.get("edge-2") is None or fleet.edges["edge-2"].state is not EdgeState.ACTIVE:
            assert time.monotonic() < deadline, fleet.events
            await asyncio.sleep(0.05)
        [warming] = [e for e in fleet.events if e["kind"] == "warming incomplete"]
        assert warming["edge"] == "edge-2" and warming["error"] == "TimeoutError()", warming
    finally:
        await fleet.stop()


async def test_warming_is_bounded_as_a_whole(scripted: ScriptedEdges) -> None:
    # Each warming request may wait 20 s (4 x poll_timeout) on a saturated parent; the whole warming
    # gives up after warm_timeout and the edge takes traffic, its fills going on in the background.
    slow_parent = dataclasses.replace(config(1, 2), poll_timeout=5.0, warm_timeout=0.2)
    fleet = Fleet(slow_parent, scripted, clock=ShiftedClock())
    await fleet.start()
    try:
        await fleet.tick()
        scripted.rps["edge-1"] = 150.0
        scripted.stall_titles = True
        await fleet.tick()
        deadline = time.monotonic() + 5  # far below one warming request's own 20 s bound
        while fleet.edges.get("edge-2") is None or fleet.edges["edge-2"].state is not EdgeState.ACTIVE:
            assert time.monotonic() < deadline, fleet.events
            await asyncio.sleep(0.05)
        assert [e["kind"] for e in fleet.events].count("warming incomplete") == 1
    finally:
        await fleet.stop()
