"""Packaging workers on the machines of a Ray cluster (``surge origin --packagers ray``).

Each lease's worker is a detached, named actor (namespace ``<ray-namespace>-packagers``, name
``packager-<title>-<attempt>``) that needs one ``surge_packager`` unit, spread over machines; a machine
offers units with ``ray start ... --resources '{"surge_packager": N}'``. The actor runs one
``transcoder.worker`` task in a temporary directory of its machine and is killed once the task returns,
or when the origin ends the lease (expired, deleted). Each chunk of a long title encoded on several
machines is a lease of its own: one actor per chunk, spread like any other. Detached: a restarted origin
honours the lease and the worker goes on. The cluster is joined as the edge backend does
(service/ray_cluster.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import ray
from ray.exceptions import RayError

from media.errors import SurgeError
from service.logs import log
from service.ray_cluster import CALL_TIMEOUT_S, join_cluster
from transcoder.worker import WorkerTask, run_in_temporary_directory, run_task

logger = logging.getLogger("surge.jobs")
PACKAGER_RESOURCE = "surge_packager"


class PackagerActor:
    """Runs in a Ray worker on the chosen machine."""

    def __init__(self) -> None:
        self.node: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]

    async def run(self, task: WorkerTask) -> dict[str, str]:
        outcome = await run_in_temporary_directory(task, self.node, run_task)
        return asdict(outcome)


@dataclass
class RayPackagers:
    address: str | None = None  # the head's host:port; None: the cluster this machine belongs to
    namespace: str = "surge"  # the fleet's; packagers live in "<namespace>-packagers"
    _actor_class: Any = field(default=None, repr=False)
    _runs: dict[str, asyncio.Future[Any]] = field(default_factory=dict, repr=False)

    @property
    def actor_namespace(self) -> str:
        return f"{self.namespace}-packagers"

    async def open(self) -> None:
        await join_cluster(self.address, self.namespace)
        self._actor_class = ray.remote(PackagerActor)

    async def capacity(self) -> int:
        """The ``surge_packager`` units of the cluster's live machines."""
        loop = asyncio.get_running_loop()
        try:
            resources = await asyncio.wait_for(loop.run_in_executor(None, ray.cluster_resources),
                                               CALL_TIMEOUT_S)  # fmt: skip
        except (RayError, TimeoutError) as err:
            raise SurgeError(f"the Ray cluster does not answer: {err or 'timed out'}") from None
        return int(resources.get(PACKAGER_RESOURCE, 0))

    async def start(self, task: WorkerTask, name: str) -> None:
        assert self._actor_class is not None
        actor = self._actor_class.options(
            name=name,
            namespace=self.actor_namespace,
            lifetime="detached",
            num_cpus=0,
            resources={PACKAGER_RESOURCE: 1},
            scheduling_strategy="SPREAD",
            max_restarts=0,  # the origin's lease decides about another try, on another machine
        ).remote()
        run = asyncio.ensure_future(actor.run.remote(task))
        self._runs[name] = run
        run.add_done_callback(lambda finished: self._finished(name, actor, finished))

    def _finished(self, name: str, actor: Any, run: asyncio.Future[Any]) -> None:
        if self._runs.get(name) is run:
            del self._runs[name]
        if not run.cancelled() and (error := run.exception()) is not None:
            log(
                logger, "packaging worker ended", logging.WARNING, run=name, error=repr(error).splitlines()[0]
            )
        _kill(actor)  # detached: it would otherwise hold its unit

    async def stop(self, name: str) -> None:
        run = self._runs.pop(name, None)
        if run is not None:
            run.cancel()
        loop = asyncio.get_running_loop()
        try:  # also the actor of a run started before this origin restarted
            actor = await asyncio.wait_for(
                loop.run_in_executor(None, ray.get_actor, name, self.actor_namespace), CALL_TIMEOUT_S
            )
        except (ValueError, RayError, TimeoutError):
            return  # gone already
        _kill(actor)

    async def close(self) -> None:
        return None  # workers at work go on: detached, their leases are in the store


def _kill(actor: Any) -> None:
    with contextlib.suppress(RayError, ValueError):
        ray.kill(actor, no_restart=True)
