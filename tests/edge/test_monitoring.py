"""Monitoring of an edge: counters by cache status, upstream fetches and fill errors, the hottest titles'
rates (a real edge process in front of a real peer, /metrics parsed by prometheus_client), and /readyz."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.metrics import CacheStatus, cache_status, hottest
from edge.stats import TitleRates
from service.http import readiness
from tests.conftest import json_of
from tests.edge.conftest import SEGMENT, TITLE, EdgeProcess, Peer, get


@pytest.mark.parametrize(
    ("x_cache", "storable", "expected"),
    [
        ("HIT", True, CacheStatus.HIT),
        ("HIT", False, CacheStatus.HIT),  # served from cache: it was stored when filled
        ("STALE", True, CacheStatus.STALE),
        ("COALESCED", False, CacheStatus.COALESCED),
        ("MISS", True, CacheStatus.MISS),
        ("MISS", False, CacheStatus.PASS),
        (None, False, CacheStatus.ERROR),
        ("bogus", True, CacheStatus.ERROR),
    ],
)
def test_cache_status_of_an_answer(x_cache: str | None, storable: bool, expected: CacheStatus) -> None:
    assert cache_status(x_cache, storable) is expected


def test_hottest_titles_by_their_ten_second_rate() -> None:
    rates = {
        "cold": TitleRates(rps_10s=0.1, rps_60s=5.0),
        "hot": TitleRates(rps_10s=50.0, rps_60s=1.0),
        "warm-b": TitleRates(rps_10s=2.0, rps_60s=2.0),
        "warm-a": TitleRates(rps_10s=2.0, rps_60s=2.0),
        "rising": TitleRates(rps_10s=2.0, rps_60s=0.5),
    }
    assert hottest(rates, 4) == ["hot", "warm-a", "warm-b", "rising"]
    assert hottest({}, 10) == []


def test_readiness_is_every_check_at_once() -> None:
    assert readiness({"store": None, "library": None}) == (
        200, {"status": "ready", "checks": {"store": "ok", "library": "ok"}}
    )  # fmt: skip
    assert readiness({"store": None, "library": "gone"}) == (
        503, {"status": "not ready", "checks": {"store": "ok", "library": "gone"}}
    )  # fmt: skip


async def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` as Prometheus reads it: sample name → labels → value."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


async def test_counters_by_cache_status_fetches_and_fill_errors(peer: Peer) -> None:
    edge = await asyncio.to_thread(EdgeProcess("--upstream", peer.url, "--prefetch", "0").start)
    try:
        segment = peer.objects[SEGMENT]
        assert (await get(edge.url + SEGMENT))[1]["X-Cache"] == "MISS"
        assert (await get(edge.url + SEGMENT))[1]["X-Cache"] == "HIT"  # answered up front, by the front
        status, headers, body = await get(edge.url + SEGMENT, Range="bytes=0-99")  # by aiohttp
        assert (status, headers["X-Cache"], len(body)) == (206, "HIT", 100)
        assert (await get(edge.url + SEGMENT, "HEAD"))[1]["X-Cache"] == "HIT"
        peer.cache_control = "private"  # not for a shared cache: passed through, never stored
        init = f"{TITLE}/360p/init.mp4"
        for _ in range(2):
            assert (await get(edge.url + init))[1]["X-Cache"] == "MISS"
        peer.fail_status = 503
        assert (await get(f"{edge.url}{TITLE}/360p/seg_00001.m4s"))[0] == 502

        samples = await scrape(edge.url)
        requests = {s.value: by(samples, "surge_edge_cache_requests_total", cache=s) for s in CacheStatus}
        assert requests == {"hit": 3, "miss": 1, "stale": 0, "pass": 2, "coalesced": 0, "error": 1}
        sent = {s.value: by(samples, "surge_edge_cache_response_bytes_total", cache=s) for s in CacheStatus}
        size, init_size = len(segment), len(peer.objects[init])
        assert sent == {"hit": size + 100, "miss": size, "stale": 0, "pass": 2 * init_size, "coalesced": 0,
                        "error": 0}  # fmt: skip
        assert by(samples, "surge_edge_upstream_fetches_total", upstream="origin") == 3
        assert by(samples, "surge_edge_upstream_fetches_total", upstream="parent") == 0
        assert by(samples, "surge_edge_upstream_errors_total", upstream="origin") == 1
        assert by(samples, "surge_edge_fill_errors_total") == 1
        titles = samples["surge_edge_title_requests_per_second"]
        assert {dict(labels)["title"] for labels in titles} == {"show-abc123"}
        assert {dict(labels)["window"] for labels in titles} == {"1s", "10s", "60s"}
        assert "surge_edge_title_bytes_per_second" in samples
    finally:
        await asyncio.to_thread(edge.stop)


async def test_a_child_edge_counts_its_parent_fetches(peer: Peer) -> None:
    parent = await asyncio.to_thread(EdgeProcess("--upstream", peer.url, "--prefetch", "0").start)
    child = None
    try:
        child = await asyncio.to_thread(
            EdgeProcess("--upstream", peer.url, "--parent", parent.url, "--prefetch", "0").start
        )
        assert (await get(child.url + SEGMENT))[0] == 200
        child_samples, parent_samples = await scrape(child.url), await scrape(parent.url)
        assert by(child_samples, "surge_edge_upstream_fetches_total", upstream="parent") == 1
        assert by(child_samples, "surge_edge_upstream_fetches_total", upstream="origin") == 0
        assert by(parent_samples, "surge_edge_upstream_fetches_total", upstream="origin") == 1
        assert peer.counts[SEGMENT] == 1
    finally:
        if child is not None:
            await asyncio.to_thread(child.stop)
        await asyncio.to_thread(parent.stop)


async def test_readyz_follows_the_upstream(peer: Peer) -> None:
    edge = await asyncio.to_thread(EdgeProcess("--upstream", peer.url).start)
    try:
        assert await json_of(f"{edge.url}/readyz") == (200, {"status": "ready", "checks": {"upstream": "ok"}})
        await peer.stop()  # nothing listens there any more
        status, body = await json_of(f"{edge.url}/readyz")
        assert status == 503 and body["status"] == "not ready"
        assert body["checks"]["upstream"].startswith(f"no upstream answers: {peer.url}: unreachable")
        assert (await json_of(f"{edge.url}/healthz"))[0] == 200  # alive all the same
    finally:
        await asyncio.to_thread(edge.stop)
