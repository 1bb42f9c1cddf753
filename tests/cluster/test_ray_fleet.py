"""The fleet across machines, for real: edges placed on other hosts through Ray, players on a host of
their own. Hosts are network namespaces (tests/hosts.py); see conftest.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from edge.stats import EdgeReport
from media.hls import parse_master
from service.urls import is_loopback_url
from tests.cluster.conftest import (
    Cluster,
    FleetOnLab,
    Players,
    active_edges,
    fleet_state,
    kill_edges,
    wait_for_fleet,
)
from tests.conftest import MakeSource
from tests.origin.conftest import OriginProcess, SurgeProcess, upload, wait_for_status

pytestmark = pytest.mark.timeout(240)


async def listening(server: SurgeProcess, name: str, timeout: float = 60) -> str:
    """The URL a site of ``server`` announced (``surge up`` runs two)."""
    deadline = time.monotonic() + timeout
    while True:
        for event in list(server.log):
            if event.get("event") == "listening" and event.get("name") == name:
                return str(event["url"])
        assert time.monotonic() < deadline, f"{name} did not listen: {server.log[-5:]}"
        await asyncio.sleep(0.1)


async def test_remote_player_plays_through_surge_up_on_ray(
    cluster: Cluster, tmp_path: Path, make_source: MakeSource
) -> None:
    namespace = "t-up"
    up = SurgeProcess("up", "--data", str(tmp_path / "data"), "--host", "0.0.0.0", "--public-host",
                      cluster.lab.address, "--fleet-port", "0", "--backend", "ray", "--ray-address",
                      cluster.ray.address, "--ray-namespace", namespace, "--preset", "ultrafast")  # fmt: skip
    try:
        await asyncio.to_thread(up.start)
        origin = up.url
        fleet = await listening(up, "fleet")
        assert urlsplit(origin).hostname == urlsplit(fleet).hostname == cluster.lab.address
        async with aiohttp.ClientSession() as session:
            _, body, _ = await upload(session, origin, make_source("with-audio.mp4", width=640, height=360,
                                                                    duration=8))  # fmt: skip
            await wait_for_status(session, origin, body["id"], {"ready"})
            # A busy machine may take a while to start Ray's worker for the edge; the fleet does not wait.
            await wait_for_fleet(fleet, lambda s: len(active_edges(s)) == 1, 60, "the first edge")
            master_url = f"{fleet}/titles/{body['id']}/master.m3u8"
            async with session.get(master_url) as response:
                text = await response.text()
                assert response.status == 200, (text, [e for e in up.log if "edge" in e.get("event", "")])
        state = await fleet_state(fleet)
        [edge] = state["edges"]
        assert edge["state"] == "active" and edge["node"] in {h.address for h in cluster.edge_hosts}
        master = parse_master(text)
        uris = [v.uri for v in master.variants] + [a.uri for a in master.audio if a.uri]
        assert uris and not any(is_loopback_url(uri) for uri in uris), uris
        assert all(urlsplit(uri).hostname == edge["node"] for uri in uris)

        # A real player on its own host decodes every rendition of the title through the edge.
        play = ["ffmpeg", "-nostdin", "-v", "error", "-i", master_url, "-map", "0", "-f", "null", "-"]
        played = cluster.player.run(play, capture_output=True, text=True, timeout=120)
        assert played.returncode == 0 and played.stderr.strip() == "", played.stderr[-2000:]
    finally:
        tear_down(cluster, namespace, up, None)


def tear_down(cluster: Cluster, namespace: str, server: SurgeProcess, players: Players | None) -> None:
    """The players, the fleet, then the edges it left on the cluster (detached: they outlive it)."""
    if players is not None and players.process.poll() is None:
        players.process.kill()
        players.process.communicate(timeout=10)
    if server.process is not None:
        server.stop()
    kill_edges(cluster, namespace)


def nodes_of(state: dict[str, Any]) -> set[str]:
    return {e["node"] for e in active_edges(state)}


def media_errors(report: dict[str, Any]) -> int:
    """Failed requests for what a viewer sees (not the steering reloads a player retries quietly)."""
    by_type = report["requests"]["by_type"]
    return sum(by_type.get(kind, {}).get("errors", 0) for kind in ("playlist", "init", "video", "audio"))


async def test_crowd_scales_out_onto_other_hosts_and_waits_pending_for_a_machine(
    cluster: Cluster, lab_origin: tuple[OriginProcess, str], tmp_path: Path
) -> None:
    origin, title = lab_origin
    namespace = "t-crowd"
    # Bandwidth-bound: each edge is good for 3 Mbit/s here, the crowd asks far more; 3 machines, 4 wanted.
    fleet = FleetOnLab(cluster, origin.url, namespace, "--min-edges", "1", "--max-edges", "4",
                       "--edge-capacity", "2000rps,3mbit", "--scale-in-window", "600")  # fmt: skip
    players = None
    try:
        await asyncio.to_thread(fleet.start)
        first = await fleet_state(fleet.url)
        assert [e["node"] for e in first["edges"]] != [cluster.lab.address]
        players = Players(cluster.player, tmp_path / "crowd.json", f"{fleet.url}/titles/{title}/master.m3u8",
                          "--players", "24", "--ramp", "3", "--duration", "24")  # fmt: skip

        def spread(state: dict[str, Any]) -> bool:
            pending = [e for e in state["edges"] if e["state"] == "pending"]
            return len(nodes_of(state)) == 3 and len(pending) == 1

        state = await wait_for_fleet(fleet.url, spread, 40, "three hosts and one pending edge")
        assert nodes_of(state) == {h.address for h in cluster.edge_hosts}
        [pending] = [e for e in state["edges"] if e["state"] == "pending"]
        assert pending["node"] is None and pending["url"] is None
        # Ray's autoscaler sees the demand for a machine, as a cloud node provider would act on it.
        # (Ray's status is refreshed every few seconds.)
        deadline = time.monotonic() + 20
        while (
            "surge_edge"
            not in (status := await asyncio.to_thread(cluster.ray.status)).partition("Pending Demands:")[2]
        ):
            assert time.monotonic() < deadline, status
            await asyncio.sleep(1)
        assert any(e["kind"] == "scale-out" and "Mbit/s" in e["reason"] for e in state["events"])

        report = await asyncio.to_thread(players.result, 60)
        served = {edge for edge in report["requests"]["served_by"] if edge.startswith("edge-")}
        assert len(served) >= 3, report["requests"]["served_by"]  # the new hosts' edges answered players
        assert report["requests"]["errors"] == 0, report["requests"]["errors_by_kind"]
        assert report["viewers"]["sessions_failed"] == 0
        final = await fleet_state(fleet.url)
        assert len(final["edges"]) <= 4
    finally:
        tear_down(cluster, namespace, fleet, players)


async def test_a_lost_host_is_replaced_on_another_and_players_carry_on(
    cluster: Cluster, lab_origin: tuple[OriginProcess, str], tmp_path: Path
) -> None:
    origin, title = lab_origin
    namespace = "t-loss"
    fleet = FleetOnLab(cluster, origin.url, namespace, "--min-edges", "2", "--max-edges", "2")
    players = None
    victim = None
    try:
        await asyncio.to_thread(fleet.start)
        state = await wait_for_fleet(fleet.url, lambda s: len(active_edges(s)) == 2, 30, "two edges")
        before = active_edges(state)
        players = Players(cluster.player, tmp_path / "loss.json", f"{fleet.url}/titles/{title}/master.m3u8",
                          "--players", "12", "--ramp", "2", "--duration", "24")  # fmt: skip
        await asyncio.sleep(8)
        # The machine of the edge that has served the players most so far, by its own count.
        served_so_far: dict[str, int] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for edge in before:
                async with session.get(f"{edge['url']}/stats") as response:
                    stats = EdgeReport.from_json(await response.json())
                served_so_far[edge["id"]] = stats.hits + stats.misses
        dead = max(before, key=lambda e: served_so_far[e["id"]])
        assert served_so_far[dead["id"]] > 0, served_so_far
        victim = cluster.host_at(dead["node"])
        await asyncio.to_thread(victim.kill)  # the machine is gone: Ray node, edge, everything

        def replaced(s: dict[str, Any]) -> bool:
            ids = {e["id"] for e in active_edges(s)}
            return dead["id"] not in ids and len(ids) == 2 and victim.address not in nodes_of(s)

        state = await wait_for_fleet(fleet.url, replaced, 30, "a replacement on another host")
        kinds = [(e["kind"], e.get("edge")) for e in state["events"]]
        assert ("edge died", dead["id"]) in kinds
        assert sum(kind == "edge requested" for kind, _ in kinds) == 3  # two at start, one replacement
        [newcomer] = {e["id"] for e in active_edges(state)} - {e["id"] for e in before}
        report = await asyncio.to_thread(players.result, 60)
        assert report["viewers"]["sessions_failed"] == 0, report["viewers"]
        # Only requests to the lost host may fail (in flight, or a retry before the next steering reload,
        # at most 5 s away): no HTTP error, a few per player at most, and nobody gives up.
        kinds = report["requests"]["errors_by_kind"]
        assert media_errors(report) <= 3 * 12 and set(kinds) <= {"connect", "timeout", "disconnected"}, kinds
        survivor = next(e["id"] for e in before if e["id"] != dead["id"])
        served = report["requests"]["served_by"]
        assert served.get(dead["id"], {}).get("requests", 0) > 0, served
        # Carried on: after the loss, the title is served by the survivor or the replacement (placement
        # decides which), and players reached it.
        assert sum(served.get(e, {}).get("requests", 0) for e in (survivor, newcomer)) > 0, served
        assert newcomer != survivor
    finally:
        tear_down(cluster, namespace, fleet, players)
        if victim is not None:
            await asyncio.to_thread(cluster.revive, victim)


async def test_a_restarted_fleet_adopts_its_edges_under_load(
    cluster: Cluster, lab_origin: tuple[OriginProcess, str], tmp_path: Path
) -> None:
    origin, title = lab_origin
    namespace = "t-adopt"
    args = ("--min-edges", "2", "--max-edges", "2")
    fleet = FleetOnLab(cluster, origin.url, namespace, *args)
    players = None
    try:
        await asyncio.to_thread(fleet.start)
        before = await wait_for_fleet(fleet.url, lambda s: len(active_edges(s)) == 2, 30, "two edges")
        port = urlsplit(fleet.url).port
        players = Players(cluster.player, tmp_path / "adopt.json", f"{fleet.url}/titles/{title}/master.m3u8",
                          "--players", "12", "--ramp", "2", "--duration", "25")  # fmt: skip
        await asyncio.sleep(6)
        assert fleet.stop() == 0  # SIGTERM: the edges stay, detached
        fleet = FleetOnLab(cluster, origin.url, namespace, *args, "--port", str(port))  # players' URL
        await asyncio.to_thread(fleet.start)
        after = await fleet_state(fleet.url)
        assert {(e["id"], e["url"]) for e in active_edges(after)} == {
            (e["id"], e["url"]) for e in active_edges(before)
        }
        assert [e["kind"] for e in after["events"]].count("edge adopted") == 2
        assert not any(e["kind"] == "edge requested" for e in after["events"])
        report = await asyncio.to_thread(players.result, 60)
        assert media_errors(report) == 0, report["requests"]["errors_by_kind"]
        assert report["viewers"]["sessions_failed"] == 0 and report["viewers"]["rebuffers"] == 0
    finally:
        tear_down(cluster, namespace, fleet, players)
