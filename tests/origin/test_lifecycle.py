"""Restarts, crashes and graceful shutdown of a real origin process."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp

from tests.conftest import MakeSource, ffmpeg_pids_under
from tests.origin.conftest import AUTH, OriginProcess, files_under, upload, wait_for_status


async def wait_for_ffmpeg(directory: Path, present: bool, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while bool(ffmpeg_pids_under(directory)) != present:
        assert time.monotonic() < deadline, f"ffmpeg {'never started' if present else 'still running'}"
        await asyncio.sleep(0.05)


def status_in_db(data: Path, title_id: str) -> tuple[str, int]:
    with sqlite3.connect(data / "jobs.sqlite") as db:
        row = db.execute("SELECT status, attempts FROM titles WHERE id = ?", (title_id,)).fetchone()
    return row[0], row[1]


async def test_crash_mid_packaging_then_restart_completes_the_job(
    tmp_path: Path, make_source: MakeSource
) -> None:
    data = tmp_path / "data"
    source = make_source("long.mp4", width=640, height=360, duration=20)
    first = OriginProcess(data, "--preset", "veryslow").start()
    try:
        async with aiohttp.ClientSession() as session:
            _, body, _ = await upload(session, first.url, source)
            title_id = body["id"]
            await wait_for_status(session, first.url, title_id, {"packaging"})
            await wait_for_ffmpeg(data, present=True)
    finally:
        first.stop(signal.SIGKILL)
    await wait_for_ffmpeg(data, present=False)  # ffmpeg dies with its parent
    assert not (data / "titles" / title_id).exists()
    assert status_in_db(data, title_id) == ("packaging", 1)

    second = OriginProcess(data, "--preset", "ultrafast").start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{second.url}/titles/{title_id}/master.m3u8") as response:
                assert response.status == 404  # nothing partial is ever served
            final = await wait_for_status(session, second.url, title_id, {"ready", "failed"})
            assert final["status"] == "ready" and final["attempts"] == 2
            async with session.get(f"{second.url}/titles/{title_id}/master.m3u8") as response:
                assert response.status == 200
    finally:
        assert second.stop() == 0
    assert any(e["event"] == "requeued interrupted jobs" for e in second.log)
    assert files_under(data / "staging") == []


async def test_sigterm_stops_packaging_and_requeues_it(tmp_path: Path, make_source: MakeSource) -> None:
    data = tmp_path / "data"
    source = make_source("long.mp4", width=640, height=360, duration=20)
    server = OriginProcess(data, "--preset", "veryslow").start()
    async with aiohttp.ClientSession() as session:
        _, body, _ = await upload(session, server.url, source)
        await wait_for_status(session, server.url, body["id"], {"packaging"})
        await wait_for_ffmpeg(data, present=True)
    assert server.stop(signal.SIGTERM) == 0
    assert ffmpeg_pids_under(data) == []
    assert status_in_db(data, body["id"]) == ("queued", 1)
    assert files_under(data / "staging") == [] and not (data / "titles" / body["id"]).exists()
    events = [e["event"] for e in server.log]
    assert "packaging interrupted" in events and "stopped" in events


async def test_sigterm_lets_an_in_flight_upload_finish(tmp_path: Path, make_source: MakeSource) -> None:
    data = tmp_path / "data"
    payload = make_source("tiny.mp4", width=160, height=120, duration=2).read_bytes()
    server = OriginProcess(data).start()
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /admin/titles?name=inflight HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: {AUTH['Authorization']}\r\n"
        f"Content-Type: video/mp4\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload[:1000]
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    # New connections are refused while the in-flight request is allowed to finish.
    try:
        _, late = await asyncio.open_connection(host, int(port))
        late.close()
        refused = False
    except OSError:
        refused = True
    assert refused
    writer.write(payload[1000:])
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    assert response.startswith(b"HTTP/1.1 202"), response[:200]
    assert server.stop() == 0
    with sqlite3.connect(data / "jobs.sqlite") as db:
        names = [row[0] for row in db.execute("SELECT name FROM titles")]
    assert names == ["inflight"]
