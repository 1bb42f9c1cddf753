"""What the fleet sees of its edges: their ``/stats`` answers, each dated on the injected clock.

Every edge is polled on its own: a round waits at most ``poll_timeout`` and never for a silent edge, and
a poll still running from an earlier round (a frozen edge) is neither started again nor waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import aiohttp

from edge.router.decide import EdgeState, FleetEdge
from edge.stats import EdgeReport
from service.tasks import BackgroundTasks


class Observer:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        clock: Callable[[], float],
        tasks: BackgroundTasks,
        poll_timeout: float,
    ) -> None:
        self.session = session
        self.clock = clock
        self.tasks = tasks
        self.poll_timeout = poll_timeout

    async def poll(self, edge: FleetEdge) -> None:
        """One ``/stats`` call; a good answer dates the edge's health at the moment it arrived."""
        edge.polling = True
        try:
            async with self.session.get(edge.handle.url + "/stats") as response:
                if response.status == 200:
                    edge.report = EdgeReport.from_json(await response.json())
                    edge.last_ok = self.clock()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        finally:
            edge.polling = False

    async def poll_round(self, edges: Iterable[FleetEdge]) -> None:
        """Poll every listening edge; return once all answered or ``poll_timeout`` passed."""
        polls = [
            self.tasks.spawn(self.poll(edge))
            for edge in edges
            if edge.state is not EdgeState.PENDING and not edge.polling
        ]
        if polls:
            await asyncio.wait(polls, timeout=self.poll_timeout)
