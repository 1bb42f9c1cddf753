"""The fleet for monitoring: /readyz, and Prometheus HTTP service discovery of every edge — read by a real
Prometheus (when installed) that then scrapes every target it was handed."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.router.discovery import Target, target_groups
from tests.conftest import json_of
from tests.origin.conftest import SurgeProcess

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")  # Prometheus data model, label names
HOST_PORT = re.compile(r"^[^/:\s]+:\d+$")


def check_http_sd(groups: Any) -> None:
    """What Prometheus's HTTP SD accepts: a list of groups, each with ``targets`` ("host:port" strings)
    and string ``labels`` with valid names."""
    assert isinstance(groups, list)
    for group in groups:
        assert set(group) <= {"targets", "labels"} and isinstance(group["targets"], list)
        assert all(isinstance(t, str) and HOST_PORT.match(t) for t in group["targets"]), group
        labels = group.get("labels", {})
        assert all(LABEL_NAME.match(k) and isinstance(v, str) for k, v in labels.items()), group


def test_target_groups_carry_scheme_path_and_identity() -> None:
    groups = target_groups(
        [Target("fleet", "fleet", "http://127.0.0.1:8000", "active"),
         Target("edge", "edge-1", "https://198.51.100.7:8443", "draining")]
    )  # fmt: skip
    check_http_sd(groups)
    assert groups[1] == {
        "targets": ["198.51.100.7:8443"],
        "labels": {"__scheme__": "https", "__metrics_path__": "/metrics", "surge_role": "edge",
                   "surge_id": "edge-1", "surge_state": "draining"},
    }  # fmt: skip


async def test_readyz_and_service_discovery(fleet_of_two: tuple[SurgeProcess, list[dict[str, Any]]]) -> None:
    fleet, edges = fleet_of_two
    assert await json_of(f"{fleet.url}/readyz") == (200, {"status": "ready", "checks": {"edges": "ok"}})
    status, groups = await json_of(f"{fleet.url}/prometheus/targets")
    assert status == 200
    check_http_sd(groups)
    listed = {g["labels"]["surge_id"]: (g["targets"], g["labels"]["surge_role"]) for g in groups}
    fleet_host = fleet.url.removeprefix("http://")
    assert listed == {
        "fleet": ([fleet_host], "fleet"),
        **{e["id"]: ([e["url"].removeprefix("http://")], "edge") for e in edges},
    }
    for edge in edges:  # each edge is ready too: its upstream (the peer) answers
        assert (await json_of(f"{edge['url']}/readyz"))[0] == 200


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_prometheus_discovers_and_scrapes_every_edge(
    fleet_of_two: tuple[SurgeProcess, list[dict[str, Any]]], tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Prometheus is not installed (apt-get install prometheus)")
    fleet, edges = fleet_of_two
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: surge\n    http_sd_configs:\n"
        f"      - url: {fleet.url}/prometheus/targets\n        refresh_interval: 1s\n"
    )
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wanted = {"fleet", *(e["id"] for e in edges)}
        deadline = time.monotonic() + 60
        up: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                _, body = await json_of(f"http://127.0.0.1:{port}/api/v1/targets")
            except aiohttp.ClientError:
                await asyncio.sleep(0.5)  # not listening yet
                continue
            up = {t["labels"]["surge_id"]: t["health"] for t in body["data"]["activeTargets"]}
            if set(up) == wanted and all(health == "up" for health in up.values()):
                break
            await asyncio.sleep(0.5)
        assert set(up) == wanted and set(up.values()) == {"up"}, up
        # And what it scraped is what the edges count: their cache counters, per edge.
        query = f"http://127.0.0.1:{port}/api/v1/query?query=surge_edge_cache_requests_total"
        _, body = await json_of(query)
        assert {r["metric"]["surge_id"] for r in body["data"]["result"]} == {e["id"] for e in edges}
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
