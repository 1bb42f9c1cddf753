"""The fleet supervisor: observe, decide, act, every ``poll_interval``.

- observe (``observe.py``): every edge's ``/stats``, each answer dated on the injected clock;
- decide (``decide.py``, ``scaler.py``, ``hashing.py``): pure verdicts on each edge's health (with their
  reasons), per-title demand, placement, how many edges and which to give up;
- act (``act.py``): the decisions carried out through an ``EdgeBackend``.

This class holds the state between ticks and answers the router (``edges_for``) and ``GET /fleet``.
Health is judged per edge on its own answers: the loop never waits for a silent edge, and an edge whose
last good answer is older than ``health_timeout`` is replaced (one death, one replacement).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from edge.router.act import Actuator
from edge.router.backends import EdgeBackend
from edge.router.decide import (
    Cancel,
    Dead,
    Demand,
    Drain,
    EdgeState,
    FleetEdge,
    Health,
    Healthy,
    Keep,
    Late,
    NotJudged,
    demand,
    health_json,
    judge_health,
    observation,
    parent_for,
    scale_in_step,
    scale_out_steps,
    standby_shortfall,
)
from edge.router.hashing import DEFAULT_EPSILON, hash_order, place, place_one
from edge.router.observe import Observer
from edge.router.scaler import Hold, ScaleIn, ScaleOut, ScalerConfig, ScalerMemory, decide
from edge.router.steering import STEERING_TTL_S, EdgeRef
from service.logs import log
from service.tasks import BackgroundTasks

__all__ = ["EdgeState", "Fleet", "FleetConfig", "FleetEdge"]

logger = logging.getLogger("surge.fleet")
HISTORY_S = 300


@dataclass(frozen=True)
class FleetConfig:
    origin: str
    scaler: ScalerConfig = field(default_factory=ScalerConfig)
    epsilon: float = DEFAULT_EPSILON
    poll_interval: float = 0.5
    poll_timeout: float = 0.8
    health_timeout: float = 2.0  # an edge silent this long is dead
    warm_segments: int = 2  # per rendition, filled into a new edge before it takes traffic
    # Warming fills from a parent a crowd may be saturating: past this bound the edge takes traffic anyway
    # (the fills it started go on; a client leaving never cancels a fill).
    warm_timeout: float = 2.0
    drain_timeout: float = 60.0
    standby_edges: int = 0  # edges kept listening out of routing, for a scale-out to promote at once
    start_wait: float = 30.0  # for the first edges to listen before the router takes players
    placement_wait: float = 2.0  # ... and for a machine to be chosen for them
    steering_ttl: int = STEERING_TTL_S


class Fleet:
    def __init__(
        self,
        config: FleetConfig,
        backend: EdgeBackend,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.backend = backend
        self.clock = clock
        self.wall_clock = wall_clock  # for the dates people read (events, history)
        self.edges: dict[str, FleetEdge] = {}
        self.health: dict[str, Health] = {}  # the last verdict per edge, for /fleet
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=int(HISTORY_S / 1))
        self.placement: dict[str, list[str]] = {}
        self.current = Demand({}, {})
        self.memory = ScalerMemory()
        self.last_decision = "starting"
        self._tasks = BackgroundTasks(logger, "fleet task")
        self.act = Actuator(config, backend, self.edges, clock, self.event, self._tasks)
        self._session: aiohttp.ClientSession | None = None
        self._observer: Observer | None = None
        self._loop: asyncio.Task[None] | None = None
        self._last_history = float("-inf")

    @property
    def demand(self) -> dict[str, float]:
        """Requests/s per title over every edge."""
        return self.current.rps

    @property
    def load(self) -> dict[str, float]:
        """Share of one edge per title."""
        return self.current.load

    # Lifecycle.

    async def start(self) -> None:
        await self.backend.open()
        timeout = aiohttp.ClientTimeout(
            total=self.config.poll_timeout * 4, sock_connect=self.config.poll_timeout
        )
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._observer = Observer(self._session, self.clock, self._tasks, self.config.poll_timeout)
        await self.act.adopt()
        first = [
            edge
            for _ in range(self.config.scaler.min_edges - len(self.edges))
            if (edge := self._request_edge(None, "minimum fleet")) is not None
        ]
        await self._wait_started(first, self.config.start_wait)
        self._loop = asyncio.create_task(self._run(), name="fleet loop")

    async def _wait_started(self, edges: list[FleetEdge], within: float) -> None:
        """Until the first edges serve, so that players can start at once; an edge with no machine after
        a short while is left pending (the fleet never waits on a machine that may never come)."""
        deadline = self.clock() + within
        placement_deadline = self.clock() + self.config.placement_wait

        def waiting(edge: FleetEdge) -> bool:
            if self.edges.get(edge.handle.id) is not edge or edge.state is not EdgeState.PENDING:
                return False
            return edge.handle.node is not None or self.clock() < placement_deadline

        # Several tasks move these edges along; a short poll here is simpler than an event per change.
        while self.clock() < deadline and any(waiting(e) for e in edges):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await self._tasks.close()
        if self.backend.keeps_edges:
            running = [e.handle.id for e in self.edges.values() if e.handle.url]
            log(logger, "edges left running for the next fleet", edges=running)
        else:
            await asyncio.gather(*(self.backend.stop(e.handle) for e in list(self.edges.values())))
        self.edges.clear()
        await self.backend.close()
        if self._session is not None:
            await self._session.close()

    def event(self, kind: str, edge: str | None = None, /, **details: Any) -> None:
        entry = {
            "time": dt.datetime.fromtimestamp(self.wall_clock(), dt.UTC).isoformat(timespec="milliseconds"),
            "kind": kind,
            "edge": edge,
        }
        entry.update(details)
        self.events.append(entry)
        log(logger, kind, edge=edge, **details)

    # What the router asks.

    def active(self) -> list[FleetEdge]:
        return [e for e in self.edges.values() if e.state is EdgeState.ACTIVE]

    def edges_for(self, title: str) -> list[EdgeRef]:
        """The title's edges in preference order (active only)."""
        active = {e.handle.id: e for e in self.active()}
        chosen = place_one(title, self.placement, list(active))
        return [active[edge_id].ref for edge_id in chosen]

    def all_active_for(self, title: str) -> list[EdgeRef]:
        """Every active edge, the title's own first: the pathways a master lists."""
        own = self.edges_for(title)
        others = [e.ref for e in self.active() if e.handle.id not in {r.id for r in own}]
        return own + sorted(others, key=lambda r: hash_order(title, [r.id]))

    # The loop: observe, decide, act.

    async def _run(self) -> None:
        while True:
            started = self.clock()
            try:
                await self.tick()
            except Exception:
                log(logger, "fleet tick failed", logging.ERROR, exc_info=True)
            await asyncio.sleep(max(0.0, self.config.poll_interval - (self.clock() - started)))

    async def tick(self) -> None:
        assert self._observer is not None, "the fleet is not started"
        serving = [e for e in self.edges.values() if e.state is not EdgeState.PENDING]
        await self._observer.poll_round(serving)
        now = self.clock()
        self._judge_health(now)
        self.current = demand((e.report for e in self.edges.values()), self.config.scaler.capacity)
        self.placement = place(
            self.load, [e.handle.id for e in self.active()], self.config.scaler.target_utilization,
            self.config.epsilon,
        )  # fmt: skip
        self._record_history()
        self._scale(now)
        self._refill_standby()

    def _judge_health(self, now: float) -> None:
        late_after = self.config.health_timeout / 2
        self.health = {}
        for edge in list(self.edges.values()):
            verdict = judge_health(
                edge.state, self.backend.exited(edge.handle), edge.last_ok, now, self.config.health_timeout,
                late_after,
            )  # fmt: skip
            match verdict:
                case Dead(cause=cause, reason=reason):
                    self.act.remove_dead(edge, str(cause), reason)
                    hot = self.current.hottest if self.active() else None
                    self._request_edge(hot, f"replacing {edge.handle.id}")
                case Healthy() | Late() | NotJudged():
                    self.health[edge.handle.id] = verdict

    def _request_edge(self, hot_title: str | None, reason: str, *, standby: bool = False) -> FleetEdge | None:
        assert self._session is not None
        title_edges = self.edges_for(hot_title) if hot_title else []
        parent = parent_for(title_edges, [e.ref for e in self.active()])
        return self.act.request(parent, hot_title, reason, self._session, standby=standby)

    def _scale(self, now: float) -> None:
        assert self._observer is not None
        seen = observation(list(self.edges.values()), self.current)
        decision, self.memory = decide(seen, self.config.scaler, self.memory, now)
        match decision:
            case ScaleOut(count=count, reason=reason):
                self.last_decision = f"scale out by {count}: {reason}"
                self.event("scale-out", None, count=count, reason=reason, title=seen.hottest_title)
                draining = [e.handle.id for e in self.edges.values() if e.state is EdgeState.DRAINING]
                standby = [e.handle.id for e in self.edges.values() if e.state is EdgeState.STANDBY]
                steps = scale_out_steps(count, draining, standby)
                for edge_id in steps.revive:
                    self.act.revive(self.edges[edge_id])
                assert self._session is not None
                for edge_id in steps.promote:
                    self.act.promote(self.edges[edge_id], seen.hottest_title, reason, self._session)
                for _ in range(steps.new):
                    self._request_edge(seen.hottest_title, reason)
            case ScaleIn(reason=reason):
                match scale_in_step(list(self.edges.values()), self.config.scaler.min_edges):
                    case Cancel(edge=edge_id):
                        self.last_decision = f"scale in: {reason}"
                        self.act.cancel(self.edges[edge_id], reason)
                    case Drain(edge=edge_id):
                        self.last_decision = f"scale in: {reason}"
                        self.act.drain(self.edges[edge_id], reason, self._observer)
                    case Keep(reason=kept):
                        self.last_decision = f"hold: {kept}"
            case Hold(reason=reason):
                self.last_decision = reason

    def _refill_standby(self) -> None:
        """Keep ``standby_edges`` in reserve once an edge serves (a standby edge fills from an active one)."""
        if not self.active():
            return
        wanted = standby_shortfall(list(self.edges.values()), self.config.standby_edges,
                                   self.config.scaler.max_edges)  # fmt: skip
        for _ in range(wanted):
            self._request_edge(None, "standby", standby=True)

    def _record_history(self) -> None:
        now = self.wall_clock()
        if now - self._last_history < 1.0:
            return
        self._last_history = now
        top = sorted(self.demand.items(), key=lambda kv: -kv[1])[:5]
        self.history.append(
            {"time": round(now, 3), "edges": len(self.active()), "titles": {t: round(r, 1) for t, r in top},
             "pending": sum(1 for e in self.edges.values() if e.state is EdgeState.PENDING)}
        )  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        return {
            "edges": [
                {
                    "id": e.handle.id,
                    "url": e.handle.url or None,
                    "node": e.handle.node,
                    "state": e.status,
                    "health": health_json(self.health.get(e.handle.id, NotJudged("not judged yet"))),
                    "load_rps": round(e.load, 1),
                    "load_mbit": round(e.report.bytes_per_s * 8 / 1e6, 1),
                    "titles": sorted(e.report.titles),
                    "hit_ratio": e.report.hit_ratio,
                    "in_flight": e.report.in_flight_requests,
                }
                for e in self.edges.values()
            ],
            "hot_titles": [
                {
                    "title": t,
                    "rps": round(self.demand.get(t, 0.0), 1),
                    "edge_share": round(share, 2),
                    "edges": self.placement.get(t, []),
                }
                for t, share in sorted(self.load.items(), key=lambda kv: -kv[1])[:10]
            ],
            "decision": self.last_decision,
            "events": list(self.events)[-50:],
            "history": list(self.history),
        }
