"""Faults the origin meets in production, injected for real: a disk that fills up during an upload,
ffmpeg killed by a signal while packaging."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from tests.conftest import MakeSource, ffmpeg_pids_under
from tests.origin.conftest import (
    AUTH,
    OriginProcess,
    files_under,
    small_filesystem,
    upload,
    wait_for_status,
)


async def test_chunked_upload_on_a_full_disk_gets_507_and_leaves_nothing(tmp_path: Path) -> None:
    """No Content-Length, so nothing can be refused up front, and the disk fills between two free-space
    checks: the write's ENOSPC is a 507, not a 500."""

    async def body() -> object:
        for _ in range(64):  # 4 MiB into a 2 MiB filesystem
            yield os.urandom(64 * 1024)

    with small_filesystem(tmp_path / "data", 2 * 1024 * 1024) as data:
        server = OriginProcess(data, "--min-free-disk", "0").start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(
                    f"{server.url}/admin/titles", data=body(), headers=AUTH | {"Content-Type": "video/mp4"}
                ) as response:
                    assert response.status == 507
                    assert "disk filled up" in (await response.json())["error"]
                assert files_under(data / "uploads") == []
                async with session.get(f"{server.url}/admin/titles", headers=AUTH) as response:
                    assert (await response.json())["titles"] == []
                async with session.get(f"{server.url}/healthz") as response:
                    assert response.status == 200
        finally:
            server.stop()
        assert not [e for e in server.log if e.get("level") == "error"], server.log


async def kill_ffmpeg_when_it_runs(data: Path) -> int:
    for _ in range(400):
        pids = ffmpeg_pids_under(data)
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            return pids[0]
        await asyncio.sleep(0.02)
    raise AssertionError("ffmpeg never started")


async def test_ffmpeg_killed_by_a_signal_is_retried(tmp_path: Path, make_source: MakeSource) -> None:
    server = OriginProcess(tmp_path / "data", "--preset", "medium", "--retry-delay", "0.2").start()
    source = make_source("long.mp4", width=640, height=360, duration=20)
    try:
        async with aiohttp.ClientSession() as session:
            _, body, _ = await upload(session, server.url, source)
            await kill_ffmpeg_when_it_runs(server.data)
            ready = await wait_for_status(session, server.url, body["id"], {"ready", "failed"}, timeout=180)
            assert (ready["status"], ready["attempts"]) == ("ready", 2), ready
            assert ready["master"] == f"/titles/{body['id']}/master.m3u8"
    finally:
        server.stop()
    retried = [e for e in server.log if e.get("event") == "packaging failed, will retry"]
    assert len(retried) == 1 and "killed by SIGKILL" in retried[0]["error"], retried


async def test_a_failed_title_has_no_progress_and_no_master(tmp_path: Path, make_source: MakeSource) -> None:
    server = OriginProcess(tmp_path / "data", "--preset", "medium", "--packaging-attempts", "1").start()
    source = make_source("long.mp4", width=640, height=360, duration=20)
    try:
        async with aiohttp.ClientSession() as session:
            _, body, _ = await upload(session, server.url, source)
            await kill_ffmpeg_when_it_runs(server.data)
            failed = await wait_for_status(session, server.url, body["id"], {"ready", "failed"})
            assert failed["status"] == "failed" and "ffmpeg was killed by SIGKILL" in failed["error"]
            assert failed["progress"] is None and failed["master"] is None
            async with session.get(f"{server.url}/titles/{body['id']}/master.m3u8") as response:
                assert response.status == 404
        for directory in ("titles", "staging"):
            assert files_under(server.data / directory) == [], directory
    finally:
        server.stop()


async def test_a_disk_that_fills_while_packaging_is_named_in_the_error(
    tmp_path: Path, make_source: MakeSource
) -> None:
    """The upload fits, its packaging does not: retried (the disk may have room later), then failed
    with the disk as the reason, the library left as it was."""
    source = make_source("with-audio.mp4", width=640, height=360, duration=8)
    size = source.stat().st_size + 320 * 1024  # the source and the store, not a packaged title
    with small_filesystem(tmp_path / "data", size) as data:
        server = OriginProcess(
            data, "--min-free-disk", "0", "--packaging-attempts", "2", "--retry-delay", "0.1"
        )
        server.start()
        try:
            async with aiohttp.ClientSession() as session:
                status, body, _ = await upload(session, server.url, source)
                assert status == 202, body
                failed = await wait_for_status(session, server.url, body["id"], {"ready", "failed"})
            assert failed["status"] == "failed" and failed["attempts"] == 2, failed
            assert failed["error"].startswith("the disk is full"), failed["error"]
            for directory in ("titles", "staging", "uploads"):
                assert files_under(data / directory) == [], directory
        finally:
            server.stop()
