"""Fleet test fixtures: the edge tests' upstream peer, and a running fleet of two edges in front of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.edge import conftest as edge_fixtures
from tests.edge.conftest import Peer
from tests.fleet.test_fleet import fleet_state, wait_until
from tests.origin.conftest import SurgeProcess

peer = edge_fixtures.peer  # the edge tests' fixture, found here by pytest


@pytest.fixture
async def fleet_of_two(peer: Peer) -> AsyncIterator[tuple[SurgeProcess, list[dict[str, Any]]]]:
    """``surge fleet`` with two edges in front of the peer; the edges as /fleet lists them."""
    process = await asyncio.to_thread(
        SurgeProcess("fleet", "--origin", peer.url, "--min-edges", "2", "--cache-mem", "16MiB").start
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def two_active() -> bool:
                edges = (await fleet_state(session, process.url))["edges"]
                return sum(e["state"] == "active" for e in edges) == 2

            await wait_until(two_active, 30, "two active edges")
            edges = (await fleet_state(session, process.url))["edges"]
        yield process, edges
    finally:
        assert await asyncio.to_thread(process.stop) == 0
