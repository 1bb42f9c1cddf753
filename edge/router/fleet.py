"""The fleet supervisor: polls every edge, replaces dead ones, places titles, and scales on popularity.

Decisions come from ``hashing`` (placement) and ``scaler`` (how many edges); this module carries them
out through an ``EdgeBackend`` and keeps the state the router and ``GET /fleet`` report.

Health is judged per edge on its own answers: every edge is polled on its own, the loop never waits for
a silent one, and an edge whose last good answer is older than ``health_timeout`` is replaced (one death,
one replacement). An edge is counted from the moment it is asked for (``pending`` while it waits for a
machine, ``starting`` until it listens), so the scaler never asks twice for the same capacity and the
fleet never holds more than ``max_edges``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiohttp

from edge.router.backends import EdgeBackend, EdgeHandle
from edge.router.hashing import DEFAULT_EPSILON, hash_order, place, place_one
from edge.router.scaler import Hold, Observation, ScaleIn, ScaleOut, ScalerConfig, ScalerMemory, decide
from edge.router.steering import STEERING_TTL_S, EdgeRef
from edge.stats import EdgeReport
from media.errors import SurgeError
from media.hls import parse_master, parse_media
from service.logs import log

logger = logging.getLogger("surge.fleet")
HISTORY_S = 300


EDGE_ID = re.compile(r"^edge-(\d+)$")


class EdgeState(StrEnum):
    PENDING = "pending"  # asked for; waiting for a machine, then for the edge to listen
    WARMING = "warming"
    ACTIVE = "active"
    DRAINING = "draining"


@dataclass
class FleetEdge:
    handle: EdgeHandle
    state: EdgeState
    started: float
    last_ok: float
    report: EdgeReport = field(default_factory=EdgeReport)
    polling: bool = False

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
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=int(HISTORY_S / 1))
        self.placement: dict[str, list[str]] = {}
        self.demand: dict[str, float] = {}  # requests/s per title
        self.load: dict[str, float] = {}  # share of one edge per title
        self.memory = ScalerMemory()
        self.last_decision = "starting"
        self._counter = 0
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.Task[None] | None = None
        self._last_history = 0.0

    # Lifecycle.

    async def start(self) -> None:
        await self.backend.open()
        timeout = aiohttp.ClientTimeout(
            total=self.config.poll_timeout * 4, sock_connect=self.config.poll_timeout
        )
        self._session = aiohttp.ClientSession(timeout=timeout)
        now = self.clock()
        for handle in await self.backend.adopt():
            self.edges[handle.id] = FleetEdge(handle, EdgeState.ACTIVE, now, now)
            if (number := EDGE_ID.match(handle.id)) is not None:
                self._counter = max(self._counter, int(number[1]))
            self.event("edge adopted", handle.id, url=handle.url, node=handle.node)
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
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.backend.keeps_edges:
            running = [e.handle.id for e in self.edges.values() if e.handle.url]
            log(logger, "edges left running for the next fleet", edges=running)
        else:
            await asyncio.gather(*(self.backend.stop(e.handle) for e in list(self.edges.values())))
        self.edges.clear()
        await self.backend.close()
        if self._session is not None:
            await self._session.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def event(self, kind: str, edge: str | None = None, **details: Any) -> None:
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
        """One ``/stats`` call; a good answer dates the edge's health at the moment it arrived."""
        assert self._session is not None
        edge.polling = True
        try:
            async with self._session.get(edge.handle.url + "/stats") as response:
                if response.status == 200:
                    edge.report = EdgeReport.from_json(await response.json())
                    edge.last_ok = self.clock()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        finally:
            edge.polling = False

    async def tick(self) -> None:
        serving = [e for e in self.edges.values() if e.state is not EdgeState.PENDING]
        # A poll still running from an earlier tick (a frozen edge) is not started again nor waited for.
        polls = [self._spawn(self._poll(e)) for e in serving if not e.polling]
        if polls:
            await asyncio.wait(polls, timeout=self.config.poll_timeout)
        now = self.clock()
        for edge in serving:
            silent = now - edge.last_ok > self.config.health_timeout
            if edge.state is EdgeState.DRAINING:
                continue  # stopping on purpose; _drain bounds it
            if edge.handle.id in self.edges and (self.backend.exited(edge.handle) or silent):
                self._remove_dead(edge, "exited" if self.backend.exited(edge.handle) else "silent")
        self.demand, self.load = self._demand()
        self.placement = place(
            self.load, [e.handle.id for e in self.active()], self.config.scaler.target_utilization,
            self.config.epsilon,
        )  # fmt: skip
        self._record_history()
        self._scale(now)

    def _demand(self) -> tuple[dict[str, float], dict[str, float]]:
        """Per title: requests/s, and the share of one edge it takes (on the measure nearer its limit)."""
        rps: dict[str, float] = collections.defaultdict(float)
        bytes_per_s: dict[str, float] = collections.defaultdict(float)
        for edge in self.edges.values():
            for title, rates in edge.report.titles.items():
                rps[title] += rates.rps_1s
                bytes_per_s[title] += rates.bytes_per_s_1s
        capacity = self.config.scaler.capacity
        load = {title: capacity.share(rps[title], bytes_per_s[title]) for title in rps}
        return {t: r for t, r in rps.items() if r > 0}, {t: share for t, share in load.items() if share > 0}

    def _observation(self) -> Observation:
        edges = list(self.edges.values())
        reports = [e.report for e in edges]
        titles = [rates for report in reports for rates in report.titles.values()]
        hottest = max(self.load, key=lambda t: self.load[t], default=None)
        return Observation(
            active=len(self.active()),
            warming=sum(1 for e in self.edges.values() if e.state in (EdgeState.PENDING, EdgeState.WARMING)),
            total_rps=sum(r.rps_1s for r in titles),
            average_rps=sum(r.rps_10s for r in titles),
            hottest_title=hottest,
            hottest_rps=self.demand.get(hottest, 0.0) if hottest else 0.0,
            total_bytes_per_s=sum(r.bytes_per_s_1s for r in titles),
            average_bytes_per_s=sum(r.bytes_per_s_10s for r in titles),
            unplaced=sum(
                1 for e in self.edges.values() if e.state is EdgeState.PENDING and not e.handle.node
            ),
        )

    def _scale(self, now: float) -> None:
        observation = self._observation()
        decision, self.memory = decide(observation, self.config.scaler, self.memory, now)
        match decision:
            case ScaleOut(count=count, reason=reason):
                self.last_decision = f"scale out by {count}: {reason}"
                self.event("scale-out", None, count=count, reason=reason, title=observation.hottest_title)
                for edge in [e for e in self.edges.values() if e.state is EdgeState.DRAINING][:count]:
                    self._revive(edge)
                    count -= 1
                for _ in range(count):
                    self._request_edge(observation.hottest_title, reason)
            case ScaleIn(reason=reason):
                unplaced = [
                    e for e in self.edges.values() if e.state is EdgeState.PENDING and not e.handle.node
                ]
                if unplaced:  # a machine never came: give up the newest request first
                    self.last_decision = f"scale in: {reason}"
                    self._cancel(max(unplaced, key=lambda e: e.started), reason)
                    return
                # Drain an edge no other fills from (their caches stay warm), the least loaded one.
                parents = {e.parent for e in self.edges.values()}
                candidates = sorted(
                    self.active(), key=lambda e: (e.handle.url in parents, e.load, -e.started)
                )
                if len(candidates) > self.config.scaler.min_edges:
                    self.last_decision = f"scale in: {reason}"
                    edge = candidates[0]
                    self._drains[edge.handle.id] = self._spawn(self._drain(edge, reason))
            case Hold(reason=reason):
                self.last_decision = reason

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

    # Carrying decisions out.

    def _request_edge(self, hot_title: str | None, reason: str) -> FleetEdge | None:
        """Counted at once (``pending``); started in the background. None at ``max_edges``."""
        # Every edge holds (or will hold) a machine until stopped: pending and draining ones count too.
        if len(self.edges) >= self.config.scaler.max_edges:
            self.event("edge not started", None, reason=f"{reason}; at --max-edges")
            return None
        self._counter += 1
        edge_id = f"edge-{self._counter}"
        while edge_id in self.edges:
            self._counter += 1
            edge_id = f"edge-{self._counter}"
        serving = self.edges_for(hot_title) if hot_title else []
        siblings = serving or [e.ref for e in self.active()]
        parent = siblings[0].url if siblings else None
        now = self.clock()
        edge = FleetEdge(self.backend.new_handle(edge_id, parent), EdgeState.PENDING, now, now)
        self.edges[edge_id] = edge
        self.event("edge requested", edge_id, parent=parent, reason=reason)
        self._spawn(self._start_edge(edge, hot_title, reason))
        return edge

    async def _start_edge(self, edge: FleetEdge, hot_title: str | None, reason: str) -> None:
        edge_id = edge.handle.id
        try:
            await self.backend.start(edge.handle)
        except Exception as err:
            if self.edges.get(edge_id) is edge:
                del self.edges[edge_id]
                self.event("edge failed to start", edge_id, error=str(err) or repr(err))
            return
        if self.edges.get(edge_id) is not edge:  # cancelled or given up meanwhile
            await self.backend.stop(edge.handle, graceful=False)
            return
        now = self.clock()
        edge.last_ok = now
        edge.state = EdgeState.WARMING if hot_title else EdgeState.ACTIVE
        self.event("edge started", edge_id, url=edge.handle.url, node=edge.handle.node, parent=edge.parent,
                   reason=reason)  # fmt: skip
        if hot_title:
            warmed = await self._warm(edge, hot_title)
            if edge.state is EdgeState.WARMING:
                edge.state = EdgeState.ACTIVE
                self.event("edge active", edge_id, warmed_objects=warmed, title=hot_title)

    def _cancel(self, edge: FleetEdge, reason: str) -> None:
        del self.edges[edge.handle.id]
        self.event("edge cancelled", edge.handle.id, reason=reason)
        self._spawn(self.backend.stop(edge.handle, graceful=False))

    def _revive(self, edge: FleetEdge) -> None:
        """A draining edge taken back into service: cheaper than a new one, and its cache is warm."""
        task = self._drains.pop(edge.handle.id, None)
        if task is not None:
            task.cancel()
        edge.state = EdgeState.ACTIVE
        self.event("edge revived", edge.handle.id)

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
            async with asyncio.timeout(self.config.warm_timeout):
                await self._warm_objects(fetch)
        except (aiohttp.ClientError, TimeoutError, SurgeError, UnicodeDecodeError) as err:
            self.event("warming incomplete", edge.handle.id, error=str(err) or repr(err))
        return fetched

    async def _warm_objects(self, fetch: Callable[[str], Awaitable[bytes]]) -> None:
        """The master, every media playlist, and each rendition's init and first segments."""
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

    def _remove_dead(self, edge: FleetEdge, why: str) -> None:
        del self.edges[edge.handle.id]
        self._drains.pop(edge.handle.id, None)
        self.event("edge died", edge.handle.id, url=edge.handle.url, node=edge.handle.node, why=why)
        self._spawn(self.backend.stop(edge.handle, graceful=False))
        hot = max(self.load, key=lambda t: self.load[t], default=None)
        self._request_edge(hot if self.active() else None, f"replacing {edge.handle.id}")

    async def _drain(self, edge: FleetEdge, reason: str) -> None:
        """Out of routing and steering first; stopped once players have moved and requests finished."""
        edge.state = EdgeState.DRAINING
        self.event("edge draining", edge.handle.id, reason=reason)
        deadline = self.clock() + self.config.drain_timeout
        await asyncio.sleep(self.config.steering_ttl + 1)  # every player has reloaded its steering
        while self.clock() < deadline:
            await self._poll(edge)
            quiet = edge.report.in_flight_requests <= 1 and edge.load == 0  # 1: our own /stats
            if quiet or self.backend.exited(edge.handle):
                break
            await asyncio.sleep(self.config.poll_interval)
        self._drains.pop(edge.handle.id, None)
        await self.backend.stop(edge.handle, graceful=True)
        self.edges.pop(edge.handle.id, None)
        self.event("edge stopped", edge.handle.id)

    def snapshot(self) -> dict[str, Any]:
        return {
            "edges": [
                {
                    "id": e.handle.id,
                    "url": e.handle.url or None,
                    "node": e.handle.node,
                    "state": e.status,
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
