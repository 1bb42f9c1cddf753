"""Standby edges (``--standby-edges``), for real: a fleet of edge processes keeps one started out of
routing, promotes it on a flash crowd, and starts another in its place."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from media.hls import parse_master
from tests.conftest import MakeSource
from tests.fleet.test_fleet import Crowd, fleet_state, wait_until
from tests.origin.conftest import OriginProcess, SurgeProcess, upload, wait_for_status
from tests.test_cli import assert_one_line_error, surge


async def test_a_standby_edge_is_out_of_routing_until_a_crowd_promotes_it(
    tmp_path: Path, make_source: MakeSource
) -> None:
    origin = OriginProcess(tmp_path / "data", "--preset", "ultrafast").start()
    fleet_process = None
    try:
        async with aiohttp.ClientSession() as session:
            _, hot, _ = await upload(session, origin.url, make_source("hot.mp4", duration=6), name="Hot")
            await wait_for_status(session, origin.url, hot["id"], {"ready"})
        fleet_process = await asyncio.to_thread(
            SurgeProcess("fleet", "--origin", origin.url, "--min-edges", "1", "--max-edges", "3",
                         "--standby-edges", "1", "--edge-capacity", "40", "--scale-in-window", "60",
                         "--cache-mem", "64MiB").start
        )  # fmt: skip
        fleet = fleet_process.url
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200), timeout=aiohttp.ClientTimeout(total=10)
        ) as session:

            async def one_standing_by() -> bool:
                states = {e["id"]: e["state"] for e in (await fleet_state(session, fleet))["edges"]}
                return states == {"edge-1": "active", "edge-2": "standby"}

            await wait_until(one_standing_by, 20, "edge-1 active and edge-2 standing by")
            async with session.get(f"{fleet}/titles/{hot['id']}/master.m3u8") as response:
                master = parse_master(await response.text())
            assert {v.pathway_id for v in master.variants} == {"edge-1"}  # a standby edge takes no player

            crowd = Crowd(fleet)
            players = [asyncio.create_task(crowd.player(session, hot["id"], 0.05)) for _ in range(30)]
            try:

                async def promoted() -> bool:
                    state = await fleet_state(session, fleet)
                    states = {e["id"]: e["state"] for e in state["edges"]}
                    return states.get("edge-2") == "active"

                await wait_until(promoted, 30, "edge-2 promoted by the crowd")
                state = await fleet_state(session, fleet)
                events = [(e["kind"], e["edge"]) for e in state["events"]]
                assert ("edge promoted", "edge-2") in events
                # edge-2 was started once, before the crowd: the promotion started nothing.
                assert events.count(("edge started", "edge-2")) == 1
                assert events.index(("edge started", "edge-2")) < events.index(("scale-out", None))

                async def refilled() -> bool:
                    edges = (await fleet_state(session, fleet))["edges"]
                    return (
                        any(e["state"] == "standby" for e in edges)
                        or sum(e["state"] in ("active", "warming") for e in edges) == 3
                    )

                # Another stands by in its place, unless the crowd took every edge --max-edges allows.
                await wait_until(refilled, 20, "the standby pool refilled")
                assert crowd.failures == [], crowd.failures[:5]
            finally:
                crowd.stop.set()
                await asyncio.gather(*players, return_exceptions=True)
    finally:
        if fleet_process is not None:
            fleet_process.stop()
        origin.stop()


def test_standby_edges_must_leave_room_below_max_edges(tmp_path: Path) -> None:
    done = surge("fleet", "--origin", "http://127.0.0.1:9", "--port", "0", "--max-edges", "2",
                 "--standby-edges", "2", timeout=60)  # fmt: skip
    assert_one_line_error(done, "--standby-edges must be 0 to 1 (below --max-edges)")
