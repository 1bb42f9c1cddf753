"""``surge loadtest --ray-address``, for real: players on two generator hosts (Ray worker nodes in their own
namespaces, each offering one ``surge_loadgen`` unit) against an edge on the lab's bridge address, and one
merged report. Hosts are network namespaces (tests/hosts.py); see conftest.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.hosts import Host
from tests.origin.conftest import OriginProcess, SurgeProcess

pytestmark = pytest.mark.timeout(240)
GENERATOR_HOSTS = 2


@pytest.fixture(scope="module")
def generator_hosts(cluster: Cluster) -> Iterator[list[Host]]:
    hosts = [cluster.lab.add_host(f"gen{i}") for i in range(GENERATOR_HOSTS)]
    try:
        before = cluster.ray.alive_nodes()
        for host in hosts:
            cluster.ray.add_node(host, {"surge_loadgen": 1})
        cluster.ray.wait_for_nodes(before + GENERATOR_HOSTS, timeout=120)
        yield hosts
    finally:
        for host in hosts:
            host.kill()  # their Ray nodes go with them


def served(edge: SurgeProcess) -> list[dict[str, Any]]:
    """The players' requests the edge has logged (not the load tester's probe for a fleet's /fleet)."""
    lines = [e for e in list(edge.log) if e.get("event") == "request"]
    return [e for e in lines if str(e["path"]).startswith("/titles/")]


async def settled(edge: SurgeProcess, timeout: float = 10) -> list[dict[str, Any]]:
    """The edge's request lines once no new one has come for a second (it writes them in batches)."""
    deadline = time.monotonic() + timeout
    count = -1
    while (lines := served(edge)) and len(lines) != count and time.monotonic() < deadline:
        count = len(lines)
        await asyncio.sleep(1.0)
    return lines


async def test_players_on_two_generator_hosts_make_one_merged_report(
    cluster: Cluster, lab_origin: tuple[OriginProcess, str], generator_hosts: list[Host], tmp_path: Path
) -> None:
    origin, title = lab_origin
    edge = SurgeProcess("edge", "--upstream", origin.url, "--host", cluster.lab.address)
    await asyncio.to_thread(edge.start)
    try:
        report_path = tmp_path / "report.json"
        # Every viewer plays the 12 s title to its end and leaves inside the run (so it lasts about 15 s):
        # no request is cut at the end, so the edge must have answered exactly the requests in the report.
        command = [sys.executable, "-m", "surge.cli", "loadtest", f"{edge.url}/titles/{title}/master.m3u8",
                   "--allow-remote", "--ray-address", cluster.ray.address, "--players", "7", "--ramp", "2",
                   "--duration", "30", "--on-end", "leave",
                   "--report", str(report_path)]  # fmt: skip
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=180,
                                       env=os.environ.copy())  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(report_path.read_text())

        generators = report["generators"]
        assert sorted(g["node"] for g in generators) == sorted(h.address for h in generator_hosts)
        assert sorted(g["players"] for g in generators) == [3, 4]  # 7 dealt over two: they add up
        assert all(g["lost"] is None and g["seconds"] >= 12 for g in generators), generators
        assert report["generator"]["saturated"] == any(g["saturated"] for g in generators)
        viewers, requests = report["viewers"], report["requests"]
        assert viewers["sessions"] == 7 and viewers["sessions_ended"] == 7 and viewers["sessions_failed"] == 0
        assert requests["errors"] == 0, requests["errors_by_kind"]

        lines = await settled(edge)
        assert requests["total"] == len(lines)
        segments = [e for e in lines if e["path"].partition("?")[0].endswith(".m4s")]
        assert report["requests"]["by_type"]["video"]["requests"] + report["requests"]["by_type"]["audio"][
            "requests"
        ] == len(segments)
        # The players really ran on both generator hosts, each its share of the requests.
        peers = {h.address: sum(e["peer"] == h.address for e in lines) for h in generator_hosts}
        assert all(count > 0 for count in peers.values()) and sum(peers.values()) == len(lines), peers
        # The series adds up to the totals: every second of both generators, merged by second.
        series = report["series"]
        assert sum(s["requests"] for s in series) == requests["total"]
        assert max(s["active"] for s in series) == viewers["peak_active"] <= 7
        played = sum(sum(s["played"].values()) for s in series)
        assert played == pytest.approx(viewers["played_s"], abs=0.01 * len(series))
        # Progress lines while it ran (every 10 s when stderr is not a terminal): the merged seconds.
        assert any(line.strip().startswith("10 s  players") for line in done.stderr.splitlines()), done.stderr
        assert "surge loadtest: 7 players" in done.stdout and "players, CPU mean" in done.stdout
    finally:
        edge.stop()


async def test_a_generator_lost_mid_run_is_reported_and_the_run_goes_on(
    cluster: Cluster, lab_origin: tuple[OriginProcess, str], generator_hosts: list[Host], tmp_path: Path
) -> None:
    origin, title = lab_origin
    edge = SurgeProcess("edge", "--upstream", origin.url, "--host", cluster.lab.address)
    await asyncio.to_thread(edge.start)
    victim, survivor = generator_hosts
    try:
        report_path = tmp_path / "report.json"
        command = [sys.executable, "-m", "surge.cli", "loadtest", f"{edge.url}/titles/{title}/master.m3u8",
                   "--allow-remote", "--ray-address", cluster.ray.address, "--players", "6", "--ramp", "1",
                   "--duration", "20", "--report", str(report_path)]  # fmt: skip

        def start() -> subprocess.Popen[str]:
            return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=os.environ.copy())  # fmt: skip

        process = await asyncio.to_thread(start)
        try:
            deadline = time.monotonic() + 60
            while not any(e["peer"] == victim.address for e in served(edge)):
                assert time.monotonic() < deadline and process.poll() is None, "no player on the victim"
                await asyncio.sleep(0.5)
            await asyncio.sleep(3)
            await asyncio.to_thread(victim.kill)  # the machine is gone: Ray node, actor, players
            stdout, stderr = await asyncio.to_thread(process.communicate, timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)
        assert process.returncode == 0, stderr[-3000:]
        report = json.loads(report_path.read_text())
        by_node = {g["node"]: g for g in report["generators"]}
        lost, kept = by_node[victim.address], by_node[survivor.address]
        assert lost["lost"] and kept["lost"] is None, report["generators"]
        assert lost["players"] + kept["players"] == 6
        assert 3 <= lost["seconds"] < kept["seconds"], (lost, kept)
        # The totals are the survivor's; the series has the lost one's seconds too, up to its loss.
        assert report["requests"]["total"] > 0 and kept["seconds"] >= 19
        assert max(s["active"] for s in report["series"]) == 6
        assert f"{victim.address}: {lost['players']} players" in stdout and "LOST after" in stdout
        assert any(line.strip().startswith("20 s  players") for line in stderr.splitlines()), stderr
    finally:
        edge.stop()
