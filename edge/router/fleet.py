"""The fleet supervisor: polls every edge, replaces dead ones, places titles, and scales on popularity.

Decisions come from ``hashing`` (placement) and ``scaler`` (how many edges); this module carries them
out through an ``EdgeBackend`` and keeps the state the router and ``GET /fleet`` report.
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
from enum import StrEnum
from typing import Any

import aiohttp

from edge.router.backends import EdgeBackend, EdgeHandle
from edge.router.hashing import DEFAULT_EPSILON, hash_order, place, place_one
from edge.router.scaler import Hold, Observation, ScaleIn, ScaleOut, ScalerConfig, ScalerMemory, decide
from edge.router.steering import STEERING_TTL_S, EdgeRef
from media.errors import SurgeError
from media.hls import parse_master, parse_media
from service.logs import log

logger = logging.getLogger("surge.fleet")
HISTORY_S = 300


class EdgeState(StrEnum):
    WARMING = "warming"
    ACTIVE = "active"
    DRAINING = "draining"


@dataclass
class FleetEdge:
    handle: EdgeHandle
    state: EdgeState
    started: float
    last_ok: float
    parent: str | None = None  # the edge it fills from
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> EdgeRef:
        return EdgeRef(self.handle.id, self.handle.url)

    @property
    def load(self) -> float:
        return float(sum(t.get("rps_1s", 0.0) for t in self.stats.get("titles", {}).values()))


@dataclass(frozen=True)
class FleetConfig:
    origin: str
    scaler: ScalerConfig = field(default_factory=ScalerConfig)
    epsilon: float = DEFAULT_EPSILON
    poll_interval: float = 0.5
    poll_timeout: float = 0.8
    health_timeout: float = 2.0  # an edge silent this long is dead
    warm_segments: int = 2  # per rendition, filled into a new edge before it takes traffic
    drain_timeout: float = 60.0
    steering_ttl: int = STEERING_TTL_S


class Fleet:
    def __init__(
        self, config: FleetConfig, backend: EdgeBackend, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.backend = backend
        self.clock = clock
        self.edges: dict[str, FleetEdge] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=int(HISTORY_S / 1))
        self.placement: dict[str, list[str]] = {}
        self.demand: dict[str, float] = {}
        self.memory = ScalerMemory()
        self.last_decision = "starting"
        self._counter = 0
        self._starting = 0  # edges whose process is starting: not in ``edges`` yet, but on their way
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.Task[None] | None = None
        self._last_history = 0.0

    # Lifecycle.

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=self.config.poll_timeout * 4, sock_connect=self.config.poll_timeout
        )
        self._session = aiohttp.ClientSession(timeout=timeout)
        await asyncio.gather(
            *(self._add_edge(None, "minimum fleet") for _ in range(self.config.scaler.min_edges))
        )
        self._loop = asyncio.create_task(self._run(), name="fleet loop")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(self.backend.stop(e.handle) for e in list(self.edges.values())))
        self.edges.clear()
        if self._session is not None:
            await self._session.close()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def event(self, kind: str, edge: str | None = None, **details: Any) -> None:
        entry = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
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

    # The loop.

    async def _run(self) -> None:
        while True:
            started = self.clock()
            try:
                await self.tick()
            except Exception:
                log(logger, "fleet tick failed", logging.ERROR, exc_info=True)
            await asyncio.sleep(max(0.0, self.config.poll_interval - (self.clock() - started)))

    async def _poll(self, edge: FleetEdge) -> None:
        assert self._session is not None
        try:
            async with self._session.get(edge.handle.url + "/stats") as response:
                if response.status == 200:
                    edge.stats = await response.json()
                    edge.last_ok = self.clock()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass

    async def tick(self) -> None:
        edges = list(self.edges.values())
        await asyncio.gather(*(self._poll(e) for e in edges))
        now = self.clock()
        for edge in edges:
            dead = self.backend.exited(edge.handle) or now - edge.last_ok > self.config.health_timeout
            if dead and edge.handle.id in self.edges and edge.state is not EdgeState.DRAINING:
                self._remove_dead(edge)
        self.demand = self._demand()
        capacity = self.config.scaler.edge_capacity * self.config.scaler.target_utilization
        self.placement = place(
            self.demand, [e.handle.id for e in self.active()], capacity, self.config.epsilon
        )
        self._record_history()
        self._scale(now)

    def _demand(self) -> dict[str, float]:
        demand: dict[str, float] = collections.defaultdict(float)
        for edge in self.edges.values():
            for title, rates in edge.stats.get("titles", {}).items():
                demand[title] += float(rates.get("rps_1s", 0.0))
        return {title: rate for title, rate in demand.items() if rate > 0}

    def _observation(self) -> Observation:
        total = sum(self.demand.values())
        average = sum(
            float(rates.get("rps_10s", 0.0))
            for edge in self.edges.values()
            for rates in edge.stats.get("titles", {}).values()
        )
        hottest = max(self.demand, key=lambda t: self.demand[t], default=None)
        warming = self._starting + sum(1 for e in self.edges.values() if e.state is EdgeState.WARMING)
        return Observation(len(self.active()), warming, total, average, hottest,
                           self.demand.get(hottest, 0.0) if hottest else 0.0)  # fmt: skip

    def _scale(self, now: float) -> None:
        observation = self._observation()
        decision, self.memory = decide(observation, self.config.scaler, self.memory, now)
        match decision:
            case ScaleOut(count=count, reason=reason):
                self.last_decision = f"scale out by {count}: {reason}"
                self.event("scale-out", None, count=count, reason=reason, title=observation.hottest_title)
                for _ in range(count):
                    self._spawn(self._add_edge(observation.hottest_title, reason))
            case ScaleIn(reason=reason):
                # Drain an edge no other fills from (their caches stay warm), the least loaded one.
                parents = {e.parent for e in self.edges.values()}
                candidates = sorted(
                    self.active(), key=lambda e: (e.handle.url in parents, e.load, -e.started)
                )
                if len(candidates) > self.config.scaler.min_edges:
                    self.last_decision = f"scale in: {reason}"
                    self._spawn(self._drain(candidates[0], reason))
            case Hold(reason=reason):
                self.last_decision = reason

    def _record_history(self) -> None:
        now = time.time()
        if now - self._last_history < 1.0:
            return
        self._last_history = now
        top = sorted(self.demand.items(), key=lambda kv: -kv[1])[:5]
        self.history.append(
            {"time": round(now, 3), "edges": len(self.active()), "titles": {t: round(r, 1) for t, r in top}}
        )

    # Carrying decisions out.

    async def _add_edge(self, hot_title: str | None, reason: str) -> None:
        self._counter += 1
        edge_id = f"edge-{self._counter}"
        serving = self.edges_for(hot_title) if hot_title else []
        siblings = serving or [e.ref for e in self.active()]
        parent = siblings[0].url if siblings else None
        self._starting += 1
        try:
            handle = await self.backend.start(edge_id, parent)
        except Exception as err:
            self.event("edge failed to start", edge_id, error=str(err))
            return
        finally:
            self._starting -= 1
        now = self.clock()
        edge = FleetEdge(handle, EdgeState.WARMING if hot_title else EdgeState.ACTIVE, now, now, parent)
        self.edges[edge_id] = edge
        self.event("edge started", edge_id, url=handle.url, parent=parent, reason=reason)
        if hot_title:
            warmed = await self._warm(edge, hot_title)
            edge.state = EdgeState.ACTIVE
            self.event("edge active", edge_id, warmed_objects=warmed, title=hot_title)

    async def _warm(self, edge: FleetEdge, title: str) -> int:
        """Fill the hot title's playlists and first segments into a new edge (from its parent)."""
        assert self._session is not None
        base = f"{edge.handle.url}/titles/{title}/"
        fetched = 0

        async def fetch(uri: str) -> bytes:
            nonlocal fetched
            async with self._session.get(base + uri) as response:  # type: ignore[union-attr]
                body = await response.read()
                fetched += response.status == 200
                return body

        try:
            master = parse_master((await fetch("master.m3u8")).decode())
            uris = [v.uri for v in master.variants] + [a.uri for a in master.audio if a.uri]
            playlists = await asyncio.gather(*(fetch(uri) for uri in uris))
            objects = []
            for uri, text in zip(uris, playlists, strict=True):
                media = parse_media(text.decode())
                directory = uri.rsplit("/", 1)[0] + "/" if "/" in uri else ""
                if media.map_uri:
                    objects.append(directory + media.map_uri)
                objects += [directory + s.uri for s in media.segments[: self.config.warm_segments]]
            await asyncio.gather(*(fetch(uri) for uri in objects))
        except (aiohttp.ClientError, TimeoutError, SurgeError, UnicodeDecodeError) as err:
            self.event("warming incomplete", edge.handle.id, error=str(err))
        return fetched

    def _remove_dead(self, edge: FleetEdge) -> None:
        del self.edges[edge.handle.id]
        self.event("edge died", edge.handle.id, url=edge.handle.url)
        self._spawn(self.backend.stop(edge.handle, graceful=False))
        hot = max(self.demand, key=lambda t: self.demand[t], default=None)
        self._spawn(self._add_edge(hot if len(self.active()) else None, f"replacing {edge.handle.id}"))

    async def _drain(self, edge: FleetEdge, reason: str) -> None:
        """Out of routing and steering first; stopped once players have moved and requests finished."""
        edge.state = EdgeState.DRAINING
        self.event("edge draining", edge.handle.id, reason=reason)
        deadline = self.clock() + self.config.drain_timeout
        await asyncio.sleep(self.config.steering_ttl + 1)  # every player has reloaded its steering
        while self.clock() < deadline:
            await self._poll(edge)
            quiet = edge.stats.get("in_flight_requests", 0) <= 1 and edge.load == 0  # 1: our own /stats
            if quiet or self.backend.exited(edge.handle):
                break
            await asyncio.sleep(self.config.poll_interval)
        await self.backend.stop(edge.handle, graceful=True)
        self.edges.pop(edge.handle.id, None)
        self.event("edge stopped", edge.handle.id)

    def snapshot(self) -> dict[str, Any]:
        return {
            "edges": [
                {
                    "id": e.handle.id,
                    "url": e.handle.url,
                    "state": str(e.state),
                    "load_rps": round(e.load, 1),
                    "titles": sorted(e.stats.get("titles", {})),
                    "hit_ratio": e.stats.get("hit_ratio"),
                    "in_flight": e.stats.get("in_flight_requests"),
                }
                for e in self.edges.values()
            ],
            "hot_titles": [
                {"title": t, "rps": round(r, 1), "edges": self.placement.get(t, [])}
                for t, r in sorted(self.demand.items(), key=lambda kv: -kv[1])[:10]
            ],
            "decision": self.last_decision,
            "events": list(self.events)[-50:],
            "history": list(self.history),
        }
