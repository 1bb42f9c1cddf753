"""A real origin, a real fleet and real edge processes under a flash crowd of simulated players."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from media.hls import parse_master, parse_media
from tests.conftest import MakeSource
from tests.origin.conftest import OriginProcess, SurgeProcess, upload, wait_for_status


@dataclass
class Crowd:
    """Players that follow the router's master and its content steering, counting every answer."""

    fleet: str
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    served_by: Counter[str] = field(default_factory=Counter)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def player(self, session: aiohttp.ClientSession, title: str, pause: float) -> None:
        while not self.stop.is_set():
            try:
                await self._watch(session, title, pause)
            except (aiohttp.ClientError, TimeoutError, ValueError) as err:
                self.failures.append(f"{title}: {err!r}")
                await asyncio.sleep(0.2)

    async def _get(self, session: aiohttp.ClientSession, url: str) -> bytes:
        async with session.get(url) as response:
            body = await response.read()
            self.statuses[response.status] += 1
            if response.status != 200:
                self.failures.append(f"{url}: {response.status}")
                raise ValueError(f"{response.status} for {url}")
            self.served_by[response.headers.get("X-Served-By", "router")] += 1
            return body

    async def _watch(self, session: aiohttp.ClientSession, title: str, pause: float) -> None:
        master = parse_master((await self._get(session, f"{self.fleet}/titles/{title}/master.m3u8")).decode())
        hosts = {v.pathway_id: urlsplit(v.uri).netloc for v in master.variants}
        steering = master.content_steering
        assert steering is not None
        pathway, steer_url, next_steer = steering.pathway_id, self.fleet + steering.server_uri, 0.0
        variant = master.variants[0]
        while not self.stop.is_set():
            if time.monotonic() >= next_steer:
                manifest = json.loads(await self._get(session, steer_url))
                for clone in manifest.get("PATHWAY-CLONES", []):
                    hosts[clone["ID"]] = clone["URI-REPLACEMENT"]["HOST"]
                pathway = next(p for p in manifest["PATHWAY-PRIORITY"] if p in hosts)
                steer_url = self.fleet + manifest["RELOAD-URI"]
                next_steer = time.monotonic() + 1.0  # faster than the TTL: a busy test
            base = variant.uri.replace(urlsplit(variant.uri).netloc, hosts[pathway])
            media = parse_media((await self._get(session, base)).decode())
            directory = base.rsplit("/", 1)[0]
            for segment in media.segments:
                await self._get(session, f"{directory}/{segment.uri}")
                await asyncio.sleep(pause)
                if self.stop.is_set() or time.monotonic() >= next_steer:
                    break


async def fleet_state(session: aiohttp.ClientSession, fleet: str) -> dict[str, Any]:
    async with session.get(f"{fleet}/fleet") as response:
        return await response.json()  # type: ignore[no-any-return]


async def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


def edge_pids(fleet_pid: int) -> dict[str, int]:
    """The fleet's running edge processes (its children) by --id, read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\x00")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == fleet_pid and b"edge" in argv and b"surge.cli" in argv and b"--id" in argv:
                found[argv[argv.index(b"--id") + 1].decode()] = int(entry.name)
    return found


async def test_flash_crowd_scale_out_failover_and_scale_in(tmp_path: Path, make_source: MakeSource) -> None:
    origin = OriginProcess(tmp_path / "data", "--preset", "ultrafast").start()
    fleet_process = None
    seen_edges: set[int] = set()
    try:
        async with aiohttp.ClientSession() as session:
            hot_source = make_source("crowd.mp4", width=640, height=360, duration=12)
            cold_source = make_source("tiny.mp4", width=160, height=120, duration=2)
            _, hot, _ = await upload(session, origin.url, hot_source, name="Hot")
            _, cold, _ = await upload(session, origin.url, cold_source, name="Cold")
            for title in (hot, cold):
                await wait_for_status(session, origin.url, title["id"], {"ready"})

        fleet_process = await asyncio.to_thread(
            SurgeProcess("fleet", "--origin", origin.url, "--min-edges", "1", "--max-edges", "3",
                         "--edge-capacity", "40", "--scale-in-window", "4", "--cache-mem", "64MiB").start
        )  # fmt: skip
        fleet = fleet_process.url
        crowd = Crowd(fleet)
        connector = aiohttp.TCPConnector(limit=500)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=10)
        ) as session:
            background = [asyncio.create_task(crowd.player(session, cold["id"], 0.5)) for _ in range(2)]
            await asyncio.sleep(2)
            assert len((await fleet_state(session, fleet))["edges"]) == 1

            # The surge: 0 -> 40 players on one title within two seconds.
            started = time.monotonic()
            surge = []
            for _ in range(40):
                surge.append(asyncio.create_task(crowd.player(session, hot["id"], 0.05)))
                await asyncio.sleep(0.05)

            async def scaled_out() -> bool:
                state = await fleet_state(session, fleet)
                hot_edges = [t["edges"] for t in state["hot_titles"] if t["title"] == hot["id"]]
                active = sum(e["state"] == "active" for e in state["edges"])
                return active >= 3 and bool(hot_edges) and len(hot_edges[0]) >= 2

            await wait_until(scaled_out, 30, "three active edges")
            assert fleet_process.process is not None
            seen_edges.update(edge_pids(fleet_process.process.pid).values())
            scale_out_s = time.monotonic() - started
            state = await fleet_state(session, fleet)
            kinds = [e["kind"] for e in state["events"]]
            assert "scale-out" in kinds and "edge active" in kinds
            hot_edges = next(t["edges"] for t in state["hot_titles"] if t["title"] == hot["id"])
            cold_edges = [t["edges"] for t in state["hot_titles"] if t["title"] == cold["id"]]
            assert len(hot_edges) >= 2, state["hot_titles"]
            assert all(len(edges) == 1 for edges in cold_edges)  # the cold title stays put
            # Steering lists the new edges for the hot title.
            async with session.get(f"{fleet}/steer/{hot['id']}.json?session=probe&known=edge-1") as response:
                manifest = await response.json()
            assert len(manifest["PATHWAY-PRIORITY"]) == 3 and manifest.get("PATHWAY-CLONES")
            await asyncio.sleep(3)  # players move along
            assert len([edge for edge in crowd.served_by if edge.startswith("edge-")]) >= 2
            assert crowd.failures == [], crowd.failures[:5]

            # kill -9 an active edge under load: out of routing within about 2 s, then replaced.
            victim = next(e["id"] for e in state["edges"] if e["id"] != "edge-1" and e["state"] == "active")
            assert fleet_process.process is not None
            os.kill(edge_pids(fleet_process.process.pid)[victim], signal.SIGKILL)
            killed_at = time.monotonic()
            failures_before = len(crowd.failures)

            async def victim_gone() -> bool:
                return victim not in {e["id"] for e in (await fleet_state(session, fleet))["edges"]}

            await wait_until(victim_gone, 5, "the dead edge to leave routing")
            assert time.monotonic() - killed_at < 3.5

            async def replaced() -> bool:
                state = await fleet_state(session, fleet)
                return sum(e["state"] == "active" for e in state["edges"]) >= 3

            await wait_until(replaced, 30, "a replacement edge")
            seen_edges.update(edge_pids(fleet_process.process.pid).values())
            # Only requests in flight on the dead edge (or issued before players heard) may fail.
            assert len(crowd.failures) - failures_before <= 40, crowd.failures[failures_before:][:5]

            # The crowd leaves; one player stays. Scale-in drains edges with no failed request.
            for task in surge:
                task.cancel()
            await asyncio.gather(*surge, return_exceptions=True)
            failures_before = len(crowd.failures)
            await asyncio.sleep(2)

            async def scaled_in() -> bool:
                return len((await fleet_state(session, fleet))["edges"]) == 1

            await wait_until(scaled_in, 60, "scale-in to one edge")
            state = await fleet_state(session, fleet)
            kinds = [e["kind"] for e in state["events"]]
            assert "edge draining" in kinds and "edge stopped" in kinds
            assert crowd.failures[failures_before:] == []
            crowd.stop.set()
            await asyncio.gather(*background, return_exceptions=True)

        # Each immutable object was fetched from the origin once, for the whole fleet.
        counts = Counter(
            e["path"] for e in list(origin.log)
            if e.get("event") == "request" and e["path"].endswith((".m4s", ".mp4"))
        )  # fmt: skip
        assert counts and max(counts.values()) == 1, counts.most_common(3)
        print(f"scale-out to 3 edges in {scale_out_s:.1f} s; {crowd.statuses}")
    finally:  # both stopped, whatever failed: a failed check must not leave the origin running
        fleet_status = await asyncio.to_thread(fleet_process.stop) if fleet_process is not None else 0
        origin.stop()
    assert fleet_status == 0
    left = [pid for pid in seen_edges if Path(f"/proc/{pid}").exists()]
    assert left == [], "edges left behind"


async def test_a_frozen_edge_process_is_isolated_and_replaced(tmp_path: Path) -> None:
    """SIGSTOP one of two real edges: only it leaves the fleet, one edge replaces it, masters never fail."""
    origin = OriginProcess(tmp_path / "data").start()
    fleet_process = SurgeProcess("fleet", "--origin", origin.url, "--min-edges", "2", "--max-edges", "3",
                                 "--cache-mem", "32MiB")  # fmt: skip
    frozen_pid = None
    try:
        await asyncio.to_thread(fleet_process.start)
        fleet = fleet_process.url
        assert fleet_process.process is not None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            before = {e["id"] for e in (await fleet_state(session, fleet))["edges"]}
            assert before == {"edge-1", "edge-2"}
            frozen_pid = edge_pids(fleet_process.process.pid)["edge-1"]
            os.kill(frozen_pid, signal.SIGSTOP)
            most, statuses = 0, Counter[int]()
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                state = await fleet_state(session, fleet)
                most = max(most, len(state["edges"]))
                async with session.get(f"{fleet}/healthz") as response:
                    statuses[response.status] += 1
                await asyncio.sleep(0.2)
            ids = {e["id"] for e in state["edges"]}
            died = [e["edge"] for e in state["events"] if e["kind"] == "edge died"]
        assert died == ["edge-1"] and ids == {"edge-2", "edge-3"}, state["events"]
        assert most <= 3 and set(statuses) == {200}, (most, statuses)
    finally:
        if frozen_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen_pid, signal.SIGCONT)
        fleet_process.stop()
        origin.stop()


async def test_masters_are_served_while_the_origin_is_down(tmp_path: Path, make_source: MakeSource) -> None:
    """New sessions keep starting during an origin outage: the router keeps the last master it fetched."""
    origin = OriginProcess(tmp_path / "data", "--preset", "ultrafast").start()
    fleet_process = SurgeProcess("fleet", "--origin", origin.url, "--cache-mem", "32MiB")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            _, body, _ = await upload(session, origin.url, make_source("tiny.mp4", width=160, height=120,
                                                                        duration=2))  # fmt: skip
            await wait_for_status(session, origin.url, body["id"], {"ready"})
            await asyncio.to_thread(fleet_process.start)
            master_url = f"{fleet_process.url}/titles/{body['id']}/master.m3u8"
            async with session.get(master_url) as response:
                assert response.status == 200
                before = parse_master(await response.text())
            origin.stop(signal.SIGKILL)
            await asyncio.sleep(5.5)  # past the router's few seconds of freshness
            async with session.get(master_url) as response:
                assert response.status == 200, await response.text()
                after = parse_master(await response.text())
            assert [v.uri for v in after.variants] == [v.uri for v in before.variants]
            async with session.get(f"{fleet_process.url}/titles/never-published/master.m3u8") as response:
                assert response.status == 502  # nothing kept: the outage shows
        assert any(e.get("event") == "master served stale" for e in fleet_process.log)
    finally:
        fleet_process.stop()
        origin.stop()
