"""The front (service.front) on a real edge: fresh memory hits answered without aiohttp, everything else
through it, in request order on each connection, with the same headers, counts and log lines."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.edge.conftest import SEGMENT, TITLE, EdgeProcess, Peer, get
from tests.edge.test_edge import start_edge, stop_edge
from tests.origin.conftest import TOKEN

PLAYLIST = f"{TITLE}/360p/index.m3u8"
SECOND = f"{TITLE}/360p/seg_00001.m4s"


async def connect(edge: EdgeProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = edge.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port), limit=4 * 1024 * 1024)


async def read_response(
    reader: asyncio.StreamReader, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if head_only:
        return status, headers, b""
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
    return status, headers, body


def request(method: str, path: str, *extra: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: edge", *extra, "", ""]).encode()


async def warm(edge: EdgeProcess, *paths: str) -> None:
    for path in paths:
        status, _, _ = await get(edge.url + path)
        assert status == 200


async def test_pipelined_hits_misses_and_operations_come_back_in_order(peer: Peer) -> None:
    edge = await start_edge(peer, "--prefetch", "0")
    try:
        await warm(edge, SEGMENT)
        reader, writer = await connect(edge)
        cold = f"{TITLE}/360p/seg_00003.m4s"
        # One write: a hit, an operations request, a miss that waits on the upstream, a HEAD hit, a hit.
        writer.write(
            request("GET", SEGMENT) + request("GET", "/healthz") + request("GET", cold)
            + request("HEAD", SEGMENT) + request("GET", SEGMENT)
        )  # fmt: skip
        answers = [await read_response(reader) for _ in range(3)]
        answers.append(await read_response(reader, head_only=True))
        answers.append(await read_response(reader))
        writer.close()
        assert [a[0] for a in answers] == [200] * 5
        assert answers[0][2] == peer.objects[SEGMENT] and answers[0][1]["x-cache"] == "HIT"
        assert answers[1][1]["content-type"].startswith("application/json") and b'"ok"' in answers[1][2]
        assert answers[2][2] == peer.objects[cold] and answers[2][1]["x-cache"] == "MISS"
        assert answers[3][1]["content-length"] == str(len(peer.objects[SEGMENT]))
        assert answers[4][2] == peer.objects[SEGMENT]
        assert peer.counts[SEGMENT] == 1 and peer.counts[cold] == 1
    finally:
        await stop_edge(edge)


async def test_a_hit_has_the_same_headers_whichever_path_answers_it(peer: Peer) -> None:
    edge = await start_edge(peer)
    try:
        await warm(edge, PLAYLIST)
        _, fast, fast_body = await get(edge.url + PLAYLIST)
        # A validator that does not match sends the same hit through aiohttp's handlers.
        _, slow, slow_body = await get(edge.url + PLAYLIST, **{"If-None-Match": '"other"'})
        assert fast_body == slow_body == peer.objects[PLAYLIST]
        assert fast["X-Cache"] == slow["X-Cache"] == "HIT"
        ignored = {"date", "server", "age"}
        assert {k.lower(): v for k, v in fast.items() if k.lower() not in ignored} == {
            k.lower(): v for k, v in slow.items() if k.lower() not in ignored
        }
        # A matching validator: 304 up front, and from aiohttp when a Range header sends it there.
        etag = {"If-None-Match": fast["ETag"]}
        status, fast_304, body = await get(edge.url + PLAYLIST, **etag)
        slow_status, slow_304, slow_body = await get(edge.url + PLAYLIST, **etag, Range="bytes=0-9")
        assert (status, body) == (slow_status, slow_body) == (304, b"")
        assert {k.lower(): v for k, v in fast_304.items() if k.lower() not in ignored} == {
            k.lower(): v for k, v in slow_304.items() if k.lower() not in ignored
        }
    finally:
        await stop_edge(edge)


async def test_hits_answered_up_front_are_counted_logged_and_prefetch(peer: Peer) -> None:
    edge = await start_edge(peer, "--prefetch", "1")
    try:
        await warm(edge, PLAYLIST, SEGMENT)
        for _ in range(5):
            status, headers, _ = await get(edge.url + SEGMENT + "?CMCD=br%3D800")
            assert (status, headers["X-Cache"]) == (200, "HIT")
        # The next segment was filled in the background, as for a hit aiohttp answers.
        for _ in range(50):
            if peer.counts[SECOND]:
                break
            await asyncio.sleep(0.1)
        assert peer.counts[SECOND] == 1
        async with aiohttp.ClientSession() as session:
            async with session.get(edge.url + "/metrics") as response:
                metrics = await response.text()
            await asyncio.sleep(1.1)  # /stats rates count whole seconds
            async with session.get(edge.url + "/stats") as response:
                stats = await response.json()
        counted = [
            line
            for line in metrics.splitlines()
            if line.startswith("surge_edge_requests_total{") and "{rendition}" in line and '"200"' in line
        ]
        assert counted and sum(float(line.rsplit(" ", 1)[1]) for line in counted) >= 6
        assert stats["hits"] >= 5
        assert stats["titles"][TITLE.split("/")[2]]["rps_10s"] > 0
        logged = [
            e for e in edge.log if e.get("event") == "request" and e.get("path", "").endswith("br%3D800")
        ]
        assert len(logged) == 5
        line = logged[0]
        assert (line["method"], line["status"], line["bytes"], line["peer"]) == (
            "GET", 200, len(peer.objects[SEGMENT]), "127.0.0.1"
        )  # fmt: skip
        assert line["component"] == "edge" and line["server"] == "edge" and line["level"] == "info"
        assert isinstance(line["ms"], float | int) and line["ts"].endswith("+00:00")
    finally:
        await stop_edge(edge)


async def test_log_lines_of_answers_just_before_a_stop_are_written(peer: Peer) -> None:
    # Lines of answers given up front are written in batches; stopping writes what is held.
    edge = await start_edge(peer)
    await warm(edge, SEGMENT)
    reader, writer = await connect(edge)
    writer.write(request("GET", SEGMENT + "?last=1") + request("GET", SEGMENT + "?last=2"))
    for _ in range(2):
        status, _, _ = await read_response(reader)
        assert status == 200
    assert await stop_edge(edge) == 0
    writer.close()
    paths = [e["path"] for e in edge.log if e.get("event") == "request"]
    assert paths[-2:] == [SEGMENT + "?last=1", SEGMENT + "?last=2"]
    assert edge.log[-1]["event"] == "stopped"


async def test_a_client_that_reads_slowly_gets_every_pipelined_answer_whole(peer: Peer) -> None:
    edge = await start_edge(peer)
    try:
        await warm(edge, SEGMENT)
        reader, writer = await connect(edge)
        count = 40  # 12 MB of answers asked for at once
        writer.write(request("GET", SEGMENT) * count)
        await writer.drain()
        await asyncio.sleep(1)  # the edge's socket buffer fills and it must wait for us
        for _ in range(count):
            status, _, body = await read_response(reader)
            assert status == 200 and body == peer.objects[SEGMENT]
            await asyncio.sleep(0.01)
        writer.close()
    finally:
        await stop_edge(edge)


async def test_large_hits_for_many_connections_at_once_and_one_that_leaves(peer: Peer) -> None:
    # Large answers are written at the end of each loop pass, one per connection per pass (Outbox).
    edge = await start_edge(peer)
    try:
        await warm(edge, SEGMENT, SECOND)
        connections = [await connect(edge) for _ in range(8)]
        paths = [SEGMENT, SECOND, "/healthz", SEGMENT, SECOND]
        asked = [paths[n % 3 :] + paths[: n % 3] for n in range(len(connections))]  # not all alike
        for (_, writer), mine in zip(connections, asked, strict=True):
            writer.write(b"".join(request("GET", path) for path in mine))
        leaving = connections.pop()[1]
        leaving.transport.abort()  # gone before its answers were written
        for (reader, writer), mine in zip(connections, asked, strict=False):
            for path in mine:
                status, _, body = await read_response(reader)
                expected = peer.objects.get(path)
                assert status == 200 and (body == expected if expected else b'"ok"' in body)
            writer.close()
        status, _, _ = await get(edge.url + SEGMENT)  # and it goes on serving, nothing went wrong
        assert status == 200 and edge.process is not None and edge.process.poll() is None
        assert not [line for line in edge.log if line.get("level") == "error"]
    finally:
        await stop_edge(edge)


async def test_a_request_with_a_body_after_hits_on_the_same_connection(peer: Peer) -> None:
    edge = await start_edge(peer)
    try:
        await warm(edge, SEGMENT, PLAYLIST)
        reader, writer = await connect(edge)
        body = b'{"paths": ["%s"]}' % PLAYLIST.encode()
        purge = request("POST", "/admin/purge", f"Authorization: Bearer {TOKEN}",
                        "Content-Type: application/json", f"Content-Length: {len(body)}") + body  # fmt: skip
        writer.write(request("GET", SEGMENT) + purge + request("GET", PLAYLIST))
        hit, purged, refilled = [await read_response(reader) for _ in range(3)]
        writer.close()
        assert (hit[0], hit[1]["x-cache"]) == (200, "HIT")
        assert purged[0] == 200 and b'"purged": 1' in purged[2]
        assert (refilled[0], refilled[1]["x-cache"]) == (200, "MISS")
        assert peer.counts[PLAYLIST] == 2
    finally:
        await stop_edge(edge)


async def test_idle_connections_are_closed_after_the_keepalive_timeout(peer: Peer) -> None:
    edge = await start_edge(peer, "--keepalive-timeout", "1")
    try:
        await warm(edge, SEGMENT)
        reader, writer = await connect(edge)
        for _ in range(3):  # requests keep the connection open past the timeout
            writer.write(request("GET", SEGMENT))
            status, _, _ = await read_response(reader)
            assert status == 200
            await asyncio.sleep(0.6)
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then, idle, it is closed
        assert time.monotonic() - started < 3
        writer.close()
    finally:
        await stop_edge(edge)


async def test_odd_protocol_lines_get_an_answer_or_a_close_not_a_hang(peer: Peer) -> None:
    edge = await start_edge(peer, "--header-timeout", "1")  # empty lines alone: a request never finished
    try:
        for raw in (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"GET /healthz HTTP/9.9\r\n\r\n", b"\r\n\r\n"):
            reader, writer = await connect(edge)
            writer.write(raw)
            answer = await asyncio.wait_for(reader.read(), 5)  # the server ends the connection
            writer.close()
            assert answer == b"" or (answer.startswith(b"HTTP/1.") and answer[9:10] == b"4"), answer[:80]
        status, _, _ = await get(edge.url + "/healthz")
        assert status == 200
    finally:
        await stop_edge(edge)
