"""Packaging on other machines, for real: ``surge origin --packagers ray`` on the lab's bridge, workers
on packaging hosts (Ray nodes offering one ``surge_packager`` unit each, in namespaces of their own), a
short lease (3 s): a whole title on one host, a long title in chunks on both, a host lost mid-job. See
conftest.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from media.hls import parse_master, parse_media
from tests.cluster.conftest import Cluster, chromium_on
from tests.conftest import MakeSource
from tests.origin.conftest import AUTH, OriginProcess, files_under, upload, wait_for_status
from tests.origin.test_browser import HLS_JS, needs_chromium, until
from tests.origin.test_chunked import LONG, PLAY_THROUGH, PLAYBACK
from tests.transcoder.checks import check_title

pytestmark = pytest.mark.timeout(240)
LEASE_S = "3"


def ray_origin(cluster: Cluster, data: Path, namespace: str, *args: str) -> OriginProcess:
    return OriginProcess(data, "--host", cluster.lab.address, "--preset", "ultrafast", "--packagers", "ray",
                         "--ray-address", cluster.ray.address, "--ray-namespace", namespace,
                         "--packager-lease", LEASE_S, "--packager-start-timeout", "30", *args)  # fmt: skip


@pytest.fixture
def slow_packager_links(cluster: Cluster) -> Iterator[None]:
    """The packaging hosts receive at 8 Mbit/s: fetching the 1.5 MB source takes over a second, so a job
    can be caught midway. Back to their card's rate afterwards."""
    for host in cluster.packager_hosts:
        host.shape(ingress="8mbit")
    yield
    for host in cluster.packager_hosts:
        host.shape(ingress="1gbit")


def events(server: OriginProcess) -> list[dict[str, Any]]:
    """What the origin logged, requests aside."""
    return [e for e in list(server.log) if e.get("event") != "request"][-12:]


async def status_of(session: aiohttp.ClientSession, origin: str, title: str) -> dict[str, Any]:
    async with session.get(f"{origin}/admin/titles/{title}", headers=AUTH) as response:
        return await response.json()  # type: ignore[no-any-return]


async def fetch_master_and_a_segment(session: aiohttp.ClientSession, origin: str, title: str) -> int:
    async with session.get(f"{origin}/titles/{title}/master.m3u8") as response:
        assert response.status == 200
        uri = parse_master(await response.text()).variants[0].uri
    async with session.get(f"{origin}/titles/{title}/{uri}") as response:
        first = parse_media(await response.text()).segments[0].uri
    async with session.get(f"{origin}/titles/{title}/{uri.rsplit('/', 1)[0]}/{first}") as response:
        assert response.status == 200 and response.content_type == "video/iso.segment"
        return len(await response.read())


async def test_a_title_packaged_on_a_worker_host_is_served_by_the_origin(
    cluster: Cluster, tmp_path: Path, make_source: MakeSource
) -> None:
    origin = await asyncio.to_thread(ray_origin(cluster, tmp_path / "data", "t-pack").start)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            _, body, _ = await upload(session, origin.url, make_source("small.mp4", width=426, height=240,
                                                                       duration=4))  # fmt: skip
            final = await wait_for_status(session, origin.url, body["id"], {"ready", "failed"}, timeout=120)
            assert final["status"] == "ready", (final, events(origin))
            # The head offers no surge_packager unit: the job ran on a packaging host.
            assert final["worker"] in {h.address for h in cluster.packager_hosts}, final
            assert await fetch_master_and_a_segment(session, origin.url, body["id"]) > 1000
        assert files_under(origin.data / "staging") == []
        assert origin.stop() == 0
        # A Ray driver stops as gracefully as any server: every line it wrote is a JSON log line (no
        # stack trace from Ray's signal handler, no warning about the handler it was not to install).
        assert [e["text"] for e in origin.log if e["event"] == "unstructured"] == []
        assert origin.log[-1]["event"] == "stopped"
    finally:
        origin.stop()


@needs_chromium
def test_a_long_title_is_encoded_in_chunks_on_both_hosts_and_plays_across_its_joins(
    cluster: Cluster, tmp_path: Path, make_source: MakeSource
) -> None:
    """20 s in 6 s chunks: three chunks, two at once (one unit per host, so one on each), the audio by
    the origin; checked like any title, then played by hls.js in Chromium on the player host."""
    assert HLS_JS.is_file(), f"{HLS_JS} is missing: run `make setup` (npm ci copies hls.js there)"
    origin = ray_origin(cluster, tmp_path / "data", "t-pack-chunks", "--chunk-seconds", "6").start()
    try:

        async def package() -> dict[str, Any]:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                _, body, _ = await upload(session, origin.url, make_source("long-240p.mp4", **LONG))
                return await wait_for_status(
                    session, origin.url, body["id"], {"ready", "failed"}, timeout=150
                )

        final = asyncio.run(package())
        title = final["id"]
        assert final["status"] == "ready", (final, events(origin))
        [chunked] = [e for e in origin.log if e.get("event") == "packaging in chunks"]
        assert (chunked["title"], chunked["chunks"], chunked["parallel"]) == (title, 3, 2), chunked
        encoded = [e for e in origin.log if e.get("event") == "chunk encoded"]
        assert sorted(e["chunk"] for e in encoded) == [0, 1, 2], encoded
        hosts = {h.address for h in cluster.packager_hosts}
        assert {e["worker"] for e in encoded} == hosts, encoded  # several machines, not one
        assert set(final["worker"].split(", ")) == hosts, final
        facts = check_title(origin.data / "titles" / title, tmp_path)
        assert facts["segments"] == [6.0, 6.0, 6.0, 2.0]
        assert files_under(origin.data / "staging") == []

        with chromium_on(cluster.player, cluster.lab) as browser:
            browser.get(f"{origin.url}/")
            until(browser, "return typeof window.Hls === 'function'", 20, "hls.js loaded")
            browser.execute_script(PLAY_THROUGH, f"{origin.url}/titles/{title}/master.m3u8", 0)
            # Past the joins at 6 s and 12 s, and on towards the end.
            state = until(browser, PLAYBACK.replace("return {", "const s = {") + "return s.time > 14 && s;",
                          90, "playback past 14 s")  # fmt: skip
        assert state["record"]["errors"] == [], state  # PLAY_THROUGH counts stalls from 0.1 s on
        assert state["record"]["waiting"] == [], state  # no stall, at a join or anywhere
        [(start, end)] = state["ranges"]  # one buffered range: no hole at a join
        assert start < 0.1 and end > 14, state
        assert state["frames"] > 14 * 30 * 0.9, state
    finally:
        origin.stop()


async def test_a_worker_host_killed_mid_job_and_the_job_completes_on_another(
    cluster: Cluster, tmp_path: Path, make_source: MakeSource, slow_packager_links: None
) -> None:
    origin = await asyncio.to_thread(ray_origin(cluster, tmp_path / "data", "t-pack-loss").start)
    victim = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            source = make_source("with-audio.mp4", width=640, height=360, duration=6)
            _, body, _ = await upload(session, origin.url, source)
            title = body["id"]
            deadline = time.monotonic() + 90
            while not (status := await status_of(session, origin.url, title)).get("worker"):
                assert status["status"] in ("queued", "packaging"), status
                assert time.monotonic() < deadline, f"no worker took {title}: {origin.log[-10:]}"
                await asyncio.sleep(0.05)
            victim = cluster.host_at(status["worker"])
            await asyncio.to_thread(victim.kill)  # the machine is gone, its worker and ffmpeg with it

            final = await wait_for_status(session, origin.url, title, {"ready", "failed"}, timeout=150)
            assert final["status"] == "ready", (final, events(origin))
            assert final["worker"] != victim.address and final["attempts"] == 2, final
            assert await fetch_master_and_a_segment(session, origin.url, title) > 1000
        lost = [e for e in origin.log if e.get("event") == "packaging failed"]
        assert len(lost) == 1 and "stopped answering" in lost[0]["error"], lost
        assert lost[0]["worker"] == victim.address and lost[0]["outcome"] == "queued"
        assert files_under(origin.data / "staging") == []
    finally:
        origin.stop()
        if victim is not None:
            await asyncio.to_thread(cluster.revive, victim)
