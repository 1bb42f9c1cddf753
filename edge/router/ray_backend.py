"""Edges on the machines of a Ray cluster (``surge fleet --backend ray``); the only module that imports ray.

Each edge is a detached, named actor (namespace ``surge`` by default, name = edge id) that needs one
``surge_edge`` unit, spread over machines. The actor runs ``surge edge`` as its child, bound to its
node's address, with the same process code as the local backend, and reports the advertised URL once the
edge listens. A machine offers units with ``ray start ... --resources '{"surge_edge": N}'``.

- No free unit: the actor waits, unplaced, and Ray's autoscaler sees the demand (``ray status`` lists it
  under pending demands), so a cluster with a cloud node provider adds a machine by itself. The fleet
  shows the edge as ``pending`` and never waits on it.
- Edge loss: a long-running ``wait_exit`` call on every actor ends when its edge exits, the actor dies or
  its node is lost; the fleet's health polling notices a silent edge sooner.
- Detached actors outlive the fleet: a restarted fleet adopts them by name (``adopt``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayError

from edge.router.backends import START_TIMEOUT_S, EdgeHandle, LocalProcesses, ProcessHandle
from origin.auth import TOKEN_ENV
from service.logs import log
from service.ray_cluster import CALL_TIMEOUT_S, join_cluster

logger = logging.getLogger("surge.fleet")
EDGE_RESOURCE = "surge_edge"
DEFAULT_NAMESPACE = "surge"


class EdgeActor:
    """Runs in a Ray worker on the chosen machine: one ``surge edge`` child and what the fleet asks of it."""

    def __init__(
        self,
        edge_id: str,
        origin: str,
        parent: str | None,
        edge_args: tuple[str, ...],
        admin_token: str | None,
    ) -> None:
        if admin_token:  # this process runs one edge: its environment is that edge's (never its argv)
            os.environ[TOKEN_ENV] = admin_token
        self.node: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        self.processes = LocalProcesses(origin, edge_args, host=self.node)
        self.handle = ProcessHandle(edge_id, parent=parent)
        self.listening = asyncio.Event()

    async def where(self) -> str:
        return self.node

    async def start(self) -> str:
        if not self.handle.url:
            await self.processes.start(self.handle)
            self.listening.set()
        return self.handle.url

    async def info(self) -> dict[str, Any]:
        return {"id": self.handle.id, "url": self.handle.url, "node": self.node, "parent": self.handle.parent,
                "running": bool(self.handle.url) and not self.processes.exited(self.handle)}  # fmt: skip

    async def wait_exit(self) -> int:
        """Returns when the edge exits (its exit code); the caller sees an error if this actor dies."""
        await self.listening.wait()
        assert self.handle.process is not None
        return await self.handle.process.wait()

    async def stop(self, graceful: bool) -> None:
        await self.processes.stop(self.handle, graceful)


@dataclass
class RayHandle(EdgeHandle):
    actor: Any = None
    watch: asyncio.Future[Any] | None = field(default=None, repr=False)


@dataclass
class RayEdges:
    origin: str
    address: str | None = None  # the head's host:port; None: the cluster this machine belongs to
    edge_args: tuple[str, ...] = ()
    namespace: str = DEFAULT_NAMESPACE
    admin_token: str | None = field(default=None, repr=False)
    stop_timeout: float = 35.0
    keeps_edges: bool = True
    _actor_class: Any = field(default=None, repr=False)

    async def open(self) -> None:
        """Join the cluster as a driver (blocking in ray, so off the event loop)."""
        await join_cluster(self.address, self.namespace)
        self._actor_class = ray.remote(EdgeActor)
        log(logger, "joined the ray cluster", address=self.address or "auto", namespace=self.namespace)

    def new_handle(self, edge_id: str, parent: str | None) -> RayHandle:
        return RayHandle(edge_id, parent=parent)

    async def start(self, handle: EdgeHandle) -> None:
        assert isinstance(handle, RayHandle) and self._actor_class is not None
        handle.actor = self._actor_class.options(
            name=handle.id,
            namespace=self.namespace,
            lifetime="detached",
            num_cpus=0,
            resources={EDGE_RESOURCE: 1},
            scheduling_strategy="SPREAD",
            max_restarts=0,  # the fleet replaces a lost edge itself, on another machine
        ).remote(handle.id, self.origin, handle.parent, self.edge_args, self.admin_token)
        try:
            handle.node = await handle.actor.where.remote()  # waits, unbounded, for a machine
            handle.url = await asyncio.wait_for(handle.actor.start.remote(), START_TIMEOUT_S)
        except BaseException:  # cancelled too: never leave an actor behind
            self._kill(handle)
            raise
        self._watch(handle)

    def _watch(self, handle: RayHandle) -> None:
        handle.watch = asyncio.ensure_future(handle.actor.wait_exit.remote())
        handle.watch.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning

    def _kill(self, handle: RayHandle) -> None:
        if handle.actor is not None:
            with contextlib.suppress(RayError, ValueError):
                ray.kill(handle.actor, no_restart=True)

    async def stop(self, handle: EdgeHandle, graceful: bool = True) -> None:
        assert isinstance(handle, RayHandle)
        if handle.actor is not None and graceful and not self.exited(handle):
            with contextlib.suppress(RayError, TimeoutError):
                await asyncio.wait_for(handle.actor.stop.remote(True), self.stop_timeout)
        self._kill(handle)  # the edge's own process dies with the actor (PR_SET_PDEATHSIG)
        if handle.watch is not None:
            handle.watch.cancel()

    def exited(self, handle: EdgeHandle) -> bool:
        return isinstance(handle, RayHandle) and handle.watch is not None and handle.watch.done()

    async def adopt(self) -> list[EdgeHandle]:
        """The running edges of this namespace, left by an earlier fleet; broken ones are removed."""
        loop = asyncio.get_running_loop()
        named = await loop.run_in_executor(None, lambda: ray.util.list_named_actors(all_namespaces=True))
        names = [a["name"] for a in named if isinstance(a, dict) and a.get("namespace") == self.namespace]
        adopted: list[EdgeHandle] = []
        for name in sorted(names):
            try:
                actor = await loop.run_in_executor(None, ray.get_actor, name, self.namespace)
            except ValueError:
                continue  # gone meanwhile
            handle = RayHandle(name, actor=actor)
            try:
                info: dict[str, Any] = await asyncio.wait_for(actor.info.remote(), CALL_TIMEOUT_S)
            except (RayError, TimeoutError) as err:
                log(logger, "edge not adopted", logging.WARNING, edge=name, error=repr(err))
                self._kill(handle)
                continue
            if not info.get("running"):
                self._kill(handle)
                continue
            handle.url, handle.node, handle.parent = info["url"], info["node"], info.get("parent")
            self._watch(handle)
            adopted.append(handle)
        return adopted

    async def close(self) -> None:
        return None  # the edges stay: detached actors, for the next fleet to adopt
