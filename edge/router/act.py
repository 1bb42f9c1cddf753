"""The fleet carrying its decisions out: edges asked for, started, warmed, revived, drained, cancelled and
replaced through an ``EdgeBackend``. Each step moves an edge's state and records an event; none decides.

An edge is counted from the moment it is asked for (``pending`` while it waits for a machine,
``starting`` until it listens), so the scaler never asks twice for the same capacity and the fleet
never holds more than ``max_edges``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from edge.router.backends import EdgeBackend, EdgeHandle
from edge.router.decide import EdgeState, FleetEdge, edge_number, next_edge_id
from edge.router.observe import Observer
from media.errors import SurgeError
from media.hls import parse_master, parse_media
from media.layout import validate_delivery_parts
from service.tasks import BackgroundTasks

if TYPE_CHECKING:
    from edge.router.fleet import FleetConfig


class Recorder(Protocol):
    def __call__(self, kind: str, edge: str | None = None, /, **details: Any) -> None: ...


class Actuator:
    def __init__(
        self,
        config: FleetConfig,
        backend: EdgeBackend,
        edges: dict[str, FleetEdge],
        clock: Callable[[], float],
        event: Recorder,
        tasks: BackgroundTasks,
    ) -> None:
        self.config = config
        self.backend = backend
        self.edges = edges  # the fleet's own: changed in place
        self.clock = clock
        self.event = event
        self.tasks = tasks
        self.counter = 0
        self._drains: dict[str, asyncio.Task[None]] = {}

    async def adopt(self) -> None:
        """Edges a previous fleet left running (``keeps_edges`` backends) serve at once."""
        now = self.clock()
        for handle in await self.backend.adopt():
            self.edges[handle.id] = FleetEdge(handle, EdgeState.ACTIVE, now, now)
            self.counter = max(self.counter, edge_number(handle.id))
            self.event("edge adopted", handle.id, url=handle.url, node=handle.node)

    def request(
        self,
        parent: str | None,
        hot_title: str | None,
        reason: str,
        session: aiohttp.ClientSession,
        *,
        standby: bool = False,
    ) -> FleetEdge | None:
        """Counted at once (``pending``); started in the background. None at ``max_edges``. A ``standby``
        edge, once listening, waits out of routing until ``promote``."""
        # Every edge holds (or will hold) a machine until stopped: pending and draining ones count too.
        if len(self.edges) >= self.config.scaler.max_edges:
            self.event("edge not started", None, reason=f"{reason}; at --max-edges")
            return None
        edge_id, self.counter = next_edge_id(self.counter, self.edges)
        now = self.clock()
        edge = FleetEdge(
            self.backend.new_handle(edge_id, parent), EdgeState.PENDING, now, now, reserve=standby
        )
        self.edges[edge_id] = edge
        self.event("edge requested", edge_id, parent=parent, reason=reason, standby=standby)
        self.tasks.spawn(self._start(edge, hot_title, reason, session), name=f"start {edge_id}")
        return edge

    async def _start(
        self, edge: FleetEdge, hot_title: str | None, reason: str, session: aiohttp.ClientSession
    ) -> None:
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
        edge.last_ok = self.clock()
        if edge.reserve:
            edge.state = EdgeState.STANDBY
        else:
            edge.state = EdgeState.WARMING if hot_title else EdgeState.ACTIVE
        self.event("edge started", edge_id, url=edge.handle.url, node=edge.handle.node, parent=edge.parent,
                   reason=reason, standby=edge.reserve)  # fmt: skip
        if hot_title and not edge.reserve:
            await self._activate(edge, hot_title, session)

    async def _activate(self, edge: FleetEdge, hot_title: str, session: aiohttp.ClientSession) -> None:
        """Warm the hot title into a warming edge, then put it in service."""
        warmed = await self._warm(edge, hot_title, session)
        if edge.state is EdgeState.WARMING:
            edge.state = EdgeState.ACTIVE
            self.event("edge active", edge.handle.id, warmed_objects=warmed, title=hot_title)

    def promote(
        self, edge: FleetEdge, hot_title: str | None, reason: str, session: aiohttp.ClientSession
    ) -> None:
        """A standby edge put in service: it already listens, so only the hot title's warming is left."""
        edge.reserve = False
        self.event("edge promoted", edge.handle.id, node=edge.handle.node, reason=reason)
        if hot_title is None:
            edge.state = EdgeState.ACTIVE
            self.event("edge active", edge.handle.id, warmed_objects=0, title=None)
            return
        edge.state = EdgeState.WARMING
        self.tasks.spawn(self._activate(edge, hot_title, session), name=f"promote {edge.handle.id}")

    def cancel(self, edge: FleetEdge, reason: str) -> None:
        del self.edges[edge.handle.id]
        self.event("edge cancelled", edge.handle.id, reason=reason)
        self._stop_now(edge.handle)

    def revive(self, edge: FleetEdge) -> None:
        """A draining edge taken back into service: cheaper than a new one, and its cache is warm."""
        task = self._drains.pop(edge.handle.id, None)
        if task is not None:
            task.cancel()
        edge.state = EdgeState.ACTIVE
        self.event("edge revived", edge.handle.id)

    def remove_dead(self, edge: FleetEdge, why: str, reason: str) -> None:
        del self.edges[edge.handle.id]
        self._drains.pop(edge.handle.id, None)
        self.event("edge died", edge.handle.id, url=edge.handle.url, node=edge.handle.node, why=why,
                   reason=reason)  # fmt: skip
        self._stop_now(edge.handle)

    def drain(self, edge: FleetEdge, reason: str, observer: Observer) -> None:
        self._drains[edge.handle.id] = self.tasks.spawn(
            self._drain(edge, reason, observer), name=f"drain {edge.handle.id}"
        )

    async def _drain(self, edge: FleetEdge, reason: str, observer: Observer) -> None:
        """Out of routing and steering first; stopped once players have moved and requests finished."""
        edge.state = EdgeState.DRAINING
        self.event("edge draining", edge.handle.id, reason=reason)
        deadline = self.clock() + self.config.drain_timeout
        await asyncio.sleep(self.config.steering_ttl + 1)  # every player has reloaded its steering
        while self.clock() < deadline:
            await observer.poll(edge)
            quiet = edge.report.in_flight_requests <= 1 and edge.load == 0  # 1: our own /stats
            if quiet or self.backend.exited(edge.handle):
                break
            await asyncio.sleep(self.config.poll_interval)
        self._drains.pop(edge.handle.id, None)
        await self.backend.stop(edge.handle, graceful=True)
        self.edges.pop(edge.handle.id, None)
        self.event("edge stopped", edge.handle.id)

    def _stop_now(self, handle: EdgeHandle) -> None:
        self.tasks.spawn(self.backend.stop(handle, graceful=False), name=f"stop {handle.id}")

    async def _warm(self, edge: FleetEdge, title: str, session: aiohttp.ClientSession) -> int:
        """Fill the hot title's playlists and first segments into a new edge (from its parent)."""
        base = f"{edge.handle.url}/titles/{title}/"
        fetched = 0

        async def fetch(uri: str) -> bytes:
            nonlocal fetched
            validate_delivery_parts(title, *uri.split("/"))  # only files of this title, whatever it lists
            async with session.get(base + uri) as response:
                body = await response.read()
                fetched += response.status == 200
                return body

        try:
            async with asyncio.timeout(self.config.warm_timeout):
                await warm_objects(fetch, self.config.warm_segments)
        except (aiohttp.ClientError, TimeoutError, SurgeError, UnicodeDecodeError) as err:
            self.event("warming incomplete", edge.handle.id, error=str(err) or repr(err))
        return fetched


async def warm_objects(fetch: Callable[[str], Awaitable[bytes]], segments: int) -> None:
    """The master, every media playlist, and each rendition's init and first ``segments`` segments."""
    master = parse_master((await fetch("master.m3u8")).decode())
    uris = [v.uri for v in master.variants] + [a.uri for a in master.audio if a.uri]
    playlists = await asyncio.gather(*(fetch(uri) for uri in uris))
    objects = []
    for uri, text in zip(uris, playlists, strict=True):
        media = parse_media(text.decode())
        directory = uri.rsplit("/", 1)[0] + "/" if "/" in uri else ""
        if media.map_uri:
            objects.append(directory + media.map_uri)
        objects += [directory + s.uri for s in media.segments[:segments]]
    await asyncio.gather(*(fetch(uri) for uri in objects))
