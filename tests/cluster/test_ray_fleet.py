"""The fleet across machines, for real: edges placed on other hosts through Ray, players on a host of
their own. Hosts are network namespaces (tests/hosts.py); see conftest.py."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

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
from tests.origin.conftest import AUTH, SurgeProcess, upload, wait_for_status

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
            master_url = f"{fleet}/titles/{body['id']}/master.m3u8"
            async with session.get(master_url) as response:
                text = await response.text()
                assert response.status == 200, (text, [str(e)[:600] for e in up.log if "edge" in e.get("event", "")])
        state = await fleet_state(fleet)
        [edge] = state["edges"]
        assert edge["state"] == "active" and edge["node"] in {h.address for h in cluster.edge_hosts}
        master = parse_master(text)
        uris = [v.uri for v in master.variants] + [a.uri for a in master.audio if a.uri]
        assert uris and not any(is_loopback_url(uri) for uri in uris), uris
        assert all(urlsplit(uri).hostname == edge["node"] for uri in uris)

        # A real player on its own host decodes every rendition of the title through the edge.
        played = cluster.player.run(["ffmpeg", "-nostdin", "-v", "error", "-i", master_url, "-map", "0",
                                     "-f", "null", "-"], capture_output=True, text=True, timeout=120)  # fmt: skip
        assert played.returncode == 0 and played.stderr.strip() == "", played.stderr[-2000:]
    finally:
        if up.process is not None:
            up.stop()
        kill_edges(cluster, namespace)
