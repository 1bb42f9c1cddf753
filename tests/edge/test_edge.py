"""A real ``surge edge`` process in front of a real upstream that counts, stalls, fails and trickles."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import MakeSource
from tests.edge.conftest import SEGMENT, TITLE, EdgeProcess, Peer, get
from tests.origin.conftest import AUTH, OriginProcess, publish_small_title


@pytest.fixture
def edge_args() -> list[str]:
    return []


async def start_edge(peer: Peer, *args: str) -> EdgeProcess:
    return await asyncio.to_thread(EdgeProcess("--upstream", peer.url, *args).start)


async def stop_edge(edge: EdgeProcess, signum: int = signal.SIGTERM) -> int:
    return await asyncio.to_thread(edge.stop, signum)


async def test_miss_then_hit_with_headers(peer: Peer) -> None:
    edge = await start_edge(peer)
    try:
        status, headers, body = await get(edge.url + SEGMENT)
        assert status == 200 and body == peer.objects[SEGMENT]
        assert headers["X-Cache"] == "MISS" and headers["X-Served-By"] == "edge-test"
        assert headers["Via"] == "1.1 edge-test" and headers["Age"] == "0"
        assert headers["Content-Type"] == "video/iso.segment"
        assert headers["Access-Control-Allow-Origin"] == "*"  # the origin's CORS headers are kept
        status, headers, body = await get(edge.url + SEGMENT)
        assert (status, headers["X-Cache"], body) == (200, "HIT", peer.objects[SEGMENT])
        assert headers["ETag"] and headers["Cache-Control"] == "public, max-age=60"
        assert int(headers["Content-Length"]) == len(body)
        status, headers, body = await get(edge.url + SEGMENT, "HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(peer.objects[SEGMENT])
        assert peer.counts[SEGMENT] == 1
    finally:
        await stop_edge(edge)


async def test_two_hundred_concurrent_misses_make_one_upstream_request(peer: Peer) -> None:
    big = os.urandom(1_500_000)
    path = f"{TITLE}/720p/seg_00000.m4s"
    peer.put(path, big)
    peer.trickle_bytes_per_s = 1_000_000  # the fill takes about 1.5 s
    edge = await start_edge(peer)
    first_bytes: list[float] = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=300)) as session:

            async def client() -> tuple[int, str, bytes]:
                async with session.get(edge.url + path) as response:
                    chunks = []
                    async for chunk in response.content.iter_any():
                        if not chunks:
                            first_bytes.append(time.monotonic())
                        chunks.append(chunk)
                    return response.status, response.headers["X-Cache"], b"".join(chunks)

            started = time.monotonic()
            results = await asyncio.gather(*(client() for _ in range(200)))
            finished = time.monotonic()
        assert peer.counts[path] == 1  # counted at the upstream
        assert all(status == 200 and body == big for status, _, body in results)
        caches = [cache for _, cache, _ in results]
        assert caches.count("MISS") == 1 and set(caches) <= {"MISS", "COALESCED", "HIT"}
        # Waiters are streamed to while the upstream is still sending, not after the fill completes.
        assert finished - started > 1.0
        assert sorted(first_bytes)[len(first_bytes) // 2] - started < (finished - started) / 2
    finally:
        await stop_edge(edge)


async def test_a_waiter_that_disconnects_does_not_disturb_the_others(peer: Peer) -> None:
    big = os.urandom(1_000_000)
    path = f"{TITLE}/720p/seg_00001.m4s"
    peer.put(path, big)
    peer.trickle_bytes_per_s = 1_000_000
    edge = await start_edge(peer)
    try:
        async with aiohttp.ClientSession() as session:

            async def quitter() -> None:
                async with session.get(edge.url + path) as response:
                    await response.content.readexactly(1000)
                    response.close()

            async def stayer() -> bytes:
                async with aiohttp.ClientSession() as own, own.get(edge.url + path) as response:
                    return await response.read()

            bodies = await asyncio.gather(stayer(), quitter(), stayer(), quitter(), stayer())
        assert [b for b in bodies if b is not None] == [big, big, big]
        assert peer.counts[path] == 1
        status, headers, body = await get(edge.url + path)
        assert (status, headers["X-Cache"], body) == (200, "HIT", big)
    finally:
        await stop_edge(edge)


async def test_eviction_keeps_memory_within_budget(peer: Peer) -> None:
    # Room for four 300 kB segments; each is under the 25 % share that may be cached.
    edge = await start_edge(peer, "--cache-mem", "1300KB")
    try:
        for index in range(5):
            assert (await get(f"{edge.url}{TITLE}/360p/seg_{index:05d}.m4s"))[0] == 200
        _, _, body = await get(edge.url + "/stats")
        stats = json.loads(body)
        assert 1_200_000 <= stats["bytes_cached_memory"] <= 1_300_000
        assert stats["objects_memory"] == 4
        status, headers, _ = await get(f"{edge.url}{TITLE}/360p/seg_00000.m4s")  # evicted long ago
        assert status == 200 and headers["X-Cache"] == "MISS"
    finally:
        await stop_edge(edge)


async def test_stale_if_error_when_the_origin_dies(peer: Peer) -> None:
    peer.cache_control = "public, max-age=1, stale-if-error=600"
    edge = await start_edge(peer, "--connect-timeout", "1", "--read-timeout", "1")
    try:
        assert (await get(edge.url + SEGMENT))[0] == 200
        await peer.stop()
        await asyncio.sleep(1.2)
        status, headers, body = await get(edge.url + SEGMENT)
        assert (status, headers["X-Cache"]) == (200, "STALE") and body == peer.objects[SEGMENT]
        assert int(headers["Age"]) >= 1
        started = time.monotonic()
        status, _, body = await get(f"{edge.url}{TITLE}/360p/seg_00003.m4s")  # never cached
        assert status in (502, 504) and b'"error"' in body and time.monotonic() - started < 3
    finally:
        await stop_edge(edge)


async def test_cached_playlists_are_served_while_the_origin_is_down(peer: Peer) -> None:
    """Playlists say max-age=2 and no stale-if-error: the edge's grace serves them, marked STALE, for
    the whole outage; it logs that its upstream fails and counts it in /metrics."""
    peer.cache_control = "public, max-age=1"
    playlist = f"{TITLE}/360p/index.m3u8"
    edge = await start_edge(peer, "--connect-timeout", "1", "--read-timeout", "1")
    strict = await start_edge(peer, "--stale-grace", "0", "--connect-timeout", "1", "--read-timeout", "1")
    try:
        for server in (edge, strict):
            assert (await get(server.url + playlist))[0] == 200
        peer.fail_status = 503  # the origin answers nothing but errors
        await asyncio.sleep(1.2)
        for _ in range(5):
            status, headers, body = await get(edge.url + playlist)
            assert (status, headers["X-Cache"], body) == (200, "STALE", peer.objects[playlist])
        assert (await get(strict.url + playlist))[0] == 502  # no grace: as before
        status, _, body = await get(edge.url + SEGMENT)  # never cached: nothing to stand in
        assert status == 502 and b'"error"' in body
        async with aiohttp.ClientSession() as session, session.get(edge.url + "/metrics") as response:
            metrics = await response.text()
        assert f'surge_edge_upstream_up{{upstream="{peer.url}"}} 0.0' in metrics
        assert "surge_edge_stale_on_error_total 5.0" in metrics
        peer.fail_status = None  # back: the next revalidation refreshes the playlist
        await asyncio.sleep(5.1)  # the breaker's cooldown
        for _ in range(50):
            status, headers, _ = await get(edge.url + playlist)
            if headers["X-Cache"] != "STALE":
                break
            await asyncio.sleep(0.1)
        assert (status, headers["X-Cache"]) == (200, "HIT")
    finally:
        await stop_edge(edge)
        await stop_edge(strict)
    events = [(e["level"], e["event"]) for e in edge.log if e["event"].startswith("upstream")]
    assert events == [("warning", "upstream failing"), ("info", "upstream recovered")]
    assert not [e for e in edge.log if e["level"] == "error"], edge.log


async def test_playlists_of_a_killed_origin_stay_served(tmp_path: Path, make_source: MakeSource) -> None:
    """A real origin, kill -9: its playlists (max-age=2, no stale-if-error) are answered STALE after
    they expire, its cached segments as before."""
    origin = OriginProcess(tmp_path / "data", "--preset", "ultrafast").start()
    edge = None
    try:
        title = await asyncio.to_thread(publish_small_title, origin, make_source)
        edge = await asyncio.to_thread(
            EdgeProcess("--upstream", origin.url, "--connect-timeout", "1", "--read-timeout", "1").start
        )
        paths = [f"/titles/{title}/{p}" for p in ("master.m3u8", "360p/index.m3u8", "360p/seg_00000.m4s")]
        cached = {path: (await get(edge.url + path))[2] for path in paths}
        origin.stop(signal.SIGKILL)
        await asyncio.sleep(2.2)
        for path in paths:
            status, headers, body = await get(edge.url + path)
            expected = "STALE" if path.endswith(".m3u8") else "HIT"
            assert (status, headers["X-Cache"], body) == (200, expected, cached[path]), path
    finally:
        if edge is not None:
            await stop_edge(edge)
        origin.stop(signal.SIGKILL)


async def test_uncached_object_with_a_stalled_origin_gets_504_in_time(peer: Peer) -> None:
    peer.stall = True
    edge = await start_edge(peer, "--connect-timeout", "1", "--read-timeout", "1")
    try:
        started = time.monotonic()
        status, _, body = await get(edge.url + SEGMENT)
        elapsed = time.monotonic() - started
        assert status == 504 and b"error" in body
        assert elapsed < 4, elapsed
    finally:
        await stop_edge(edge)


async def test_revalidation_after_expiry(peer: Peer) -> None:
    peer.cache_control = "public, max-age=1"
    edge = await start_edge(peer)
    try:
        assert (await get(edge.url + SEGMENT))[0] == 200
        await asyncio.sleep(1.3)
        status, headers, body = await get(edge.url + SEGMENT)
        assert status == 200 and body == peer.objects[SEGMENT]
        assert peer.conditional[SEGMENT] == 1  # asked with If-None-Match, answered 304
        assert headers["X-Cache"] == "HIT" and int(headers["Age"]) <= 1
        assert peer.counts[SEGMENT] == 2
    finally:
        await stop_edge(edge)


async def test_stale_while_revalidate_answers_at_once(peer: Peer) -> None:
    peer.cache_control = "public, max-age=1, stale-while-revalidate=60"
    edge = await start_edge(peer)
    try:
        assert (await get(edge.url + SEGMENT))[0] == 200
        await asyncio.sleep(1.3)
        peer.trickle_bytes_per_s = 10  # the refresh would be slow; the client must not wait for it
        started = time.monotonic()
        status, headers, _ = await get(edge.url + SEGMENT)
        assert (status, headers["X-Cache"]) == (200, "STALE") and time.monotonic() - started < 0.5
        for _ in range(50):
            if peer.conditional[SEGMENT]:
                break
            await asyncio.sleep(0.02)
        assert peer.conditional[SEGMENT] == 1
    finally:
        await stop_edge(edge)


async def test_ranges_and_conditionals_from_cache(peer: Peer) -> None:
    edge = await start_edge(peer)
    whole = peer.objects[SEGMENT]
    try:
        status, headers, body = await get(edge.url + SEGMENT, Range="bytes=10-19")  # a Range miss
        assert status == 206 and body == whole[10:20]
        assert headers["Content-Range"] == f"bytes 10-19/{len(whole)}"
        assert peer.counts[SEGMENT] == 1  # the whole object was filled once
        status, _, body = await get(edge.url + SEGMENT, Range="bytes=-5")
        assert status == 206 and body == whole[-5:]
        status, headers, _ = await get(edge.url + SEGMENT, Range=f"bytes={len(whole)}-")
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
        status, _, body = await get(edge.url + SEGMENT, Range="bytes=0-1,5-6")
        assert status == 200 and body == whole
        status, headers, _ = await get(edge.url + SEGMENT, Range="bytes=-0")  # RFC 9110 14.1.1
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
        status, _, body = await get(edge.url + SEGMENT, Range="bytes=0-9", **{"If-Range": '"other"'})
        assert (status, body) == (200, whole)  # RFC 9110 13.1.5: not this representation
        etag = (await get(edge.url + SEGMENT, "HEAD"))[1]["ETag"]
        status, _, body = await get(edge.url + SEGMENT, Range="bytes=0-9", **{"If-Range": etag})
        assert (status, body) == (206, whole[:10])
        _, headers, _ = await get(edge.url + SEGMENT)
        status, _, body = await get(edge.url + SEGMENT, **{"If-None-Match": headers["ETag"]})
        assert (status, body) == (304, b"")
        status, _, _ = await get(edge.url + SEGMENT, **{"If-Modified-Since": headers["Last-Modified"]})
        assert status == 304
        assert peer.counts[SEGMENT] == 1
    finally:
        await stop_edge(edge)


async def test_purge(peer: Peer) -> None:
    edge = await start_edge(peer)
    try:
        await get(edge.url + SEGMENT)
        assert (await get(edge.url + SEGMENT, "PURGE"))[0] == 401
        assert (await get(edge.url + SEGMENT, "PURGE", Authorization="Bearer wrong"))[0] == 403
        status, _, body = await get(edge.url + SEGMENT, "PURGE", **AUTH)
        assert status == 200 and b'"purged": 1' in body
        assert (await get(edge.url + SEGMENT))[1]["X-Cache"] == "MISS"
        await get(f"{edge.url}{TITLE}/360p/index.m3u8")
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{edge.url}/admin/purge", json={"prefix": f"{TITLE}/"}, headers=AUTH) as response,
        ):
            assert response.status == 200 and (await response.json())["purged"] >= 2
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{edge.url}/admin/purge", data=b"nonsense", headers=AUTH) as response,
        ):
            assert response.status == 400 and "JSON" in (await response.json())["error"]
        assert (await get(edge.url + SEGMENT))[1]["X-Cache"] == "MISS"
        assert peer.counts[SEGMENT] == 3
    finally:
        await stop_edge(edge)


async def test_next_segments_are_prefetched(peer: Peer) -> None:
    edge = await start_edge(peer, "--prefetch", "2")
    try:
        await get(f"{edge.url}{TITLE}/360p/index.m3u8")
        await get(f"{edge.url}{TITLE}/360p/seg_00000.m4s")
        for _ in range(100):
            if peer.counts[f"{TITLE}/360p/seg_00002.m4s"]:
                break
            await asyncio.sleep(0.02)
        assert (
            peer.counts[f"{TITLE}/360p/seg_00001.m4s"] == 1
            and peer.counts[f"{TITLE}/360p/seg_00002.m4s"] == 1
        )
        assert peer.counts[f"{TITLE}/360p/seg_00003.m4s"] == 0
        await asyncio.sleep(0.2)
        _, headers, _ = await get(f"{edge.url}{TITLE}/360p/seg_00001.m4s")
        assert headers["X-Cache"] == "HIT"
        # A CMCD hint names the next object itself.
        await get(f"{edge.url}{TITLE}/360p/seg_00001.m4s?CMCD=" + "nor%3D%22seg_00004.m4s%22")
        for _ in range(100):
            if peer.counts[f"{TITLE}/360p/seg_00004.m4s"]:
                break
            await asyncio.sleep(0.02)
        assert peer.counts[f"{TITLE}/360p/seg_00004.m4s"] == 1
    finally:
        await stop_edge(edge)


async def test_retries_on_another_upstream_and_trips_the_breaker(peer: Peer) -> None:
    broken = await Peer(fail_status=503).start()
    edge = await asyncio.to_thread(EdgeProcess("--upstream", broken.url, "--upstream", peer.url).start)
    try:
        # Seven uncached objects, round-robin over both upstreams: every answer comes from the good one.
        for path, expected in list(peer.objects.items()):
            status, _, body = await get(edge.url + path)
            assert status == 200 and body == expected
        # Three failures in a row trip the broken upstream's breaker; after that it is skipped.
        assert sum(broken.counts.values()) == 3
    finally:
        await stop_edge(edge)
        await broken.stop()


async def test_sigterm_drains_requests_in_flight(peer: Peer) -> None:
    big = os.urandom(600_000)
    path = f"{TITLE}/720p/seg_00002.m4s"
    peer.put(path, big)
    peer.trickle_bytes_per_s = 400_000  # 1.5 s to send
    edge = await start_edge(peer)
    try:
        request = asyncio.create_task(get(edge.url + path))
        await asyncio.sleep(0.5)
        assert edge.process is not None
        edge.process.send_signal(signal.SIGTERM)
        status, _, body = await asyncio.wait_for(request, 10)
        assert status == 200 and body == big
    finally:
        assert await stop_edge(edge) == 0
    assert "stopped" in [e["event"] for e in edge.log]


async def test_disk_tier_survives_a_restart(peer: Peer, tmp_path: Path) -> None:
    cache = ["--cache-dir", str(tmp_path / "cache"), "--cache-disk", "10MB", "--connect-timeout", "1"]
    edge = await start_edge(peer, *cache)
    try:
        for index in range(3):
            assert (await get(f"{edge.url}{TITLE}/360p/seg_{index:05d}.m4s"))[0] == 200
        await asyncio.sleep(0.3)  # disk writes are in the background
    finally:
        await stop_edge(edge)
    await peer.stop()  # nothing to fill from: only the disk can answer
    again = await start_edge(peer, *cache)
    try:
        for index in range(3):
            status, headers, body = await get(f"{again.url}{TITLE}/360p/seg_{index:05d}.m4s")
            assert (status, headers["X-Cache"]) == (200, "HIT")
            assert body == peer.objects[f"{TITLE}/360p/seg_{index:05d}.m4s"]
        assert any(e["event"] == "disk cache index rebuilt" and e["entries"] == 3 for e in again.log)
    finally:
        await stop_edge(again)


@pytest.mark.parametrize(
    "raw",
    [
        "GET /titles/../../etc/passwd HTTP/1.1",
        "GET /titles/show-abc123/..%2F..%2Fx HTTP/1.1",
        "GET /titles/show-abc123/360p/%2e%2e HTTP/1.1",
        "GET /etc/passwd HTTP/1.1",
        "GET /titles/A_B/master.m3u8 HTTP/1.1",
    ],
)
async def test_bad_paths_get_400_or_404(peer: Peer, raw: str) -> None:
    edge = await start_edge(peer)
    try:
        host, port = edge.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"{raw}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        response = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert int(response.split(b" ", 2)[1]) in (400, 404)
        assert sum(peer.counts.values()) == 0
    finally:
        await stop_edge(edge)


async def test_huge_headers_and_slow_clients_are_refused_and_others_keep_being_served(peer: Peer) -> None:
    edge = await start_edge(peer, "--header-timeout", "1")
    try:
        host, port = edge.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {SEGMENT} HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 20000}\r\n\r\n".encode())
        response = await asyncio.wait_for(reader.read(200), 5)
        writer.close()
        assert int(response.split(b" ", 2)[1]) in (400, 431)
        # A client that sends half a request and goes quiet does not hold up anyone else, and is cut
        # off with 408 once the header timeout passes.
        slow_reader, slow = await asyncio.open_connection(host, int(port))
        slow.write(b"GET /titles/show-abc123/360p/seg_00000.m4s HTTP/1.1\r\nHost: x\r\n")
        status, _, _ = await get(edge.url + SEGMENT)
        assert status == 200
        started = time.monotonic()
        answer = await asyncio.wait_for(slow_reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 408") and b"too slowly" in answer and b"\r\nDate: " in answer
        assert 0.5 < time.monotonic() - started < 3
        slow.close()
        # A keep-alive connection idle between requests is not a slow client.
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.get(edge.url + SEGMENT) as response:
                    assert response.status == 200
                await asyncio.sleep(1.5)
    finally:
        await stop_edge(edge)
