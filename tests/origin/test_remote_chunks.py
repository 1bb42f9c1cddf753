"""A long title encoded in chunks on several packaging workers (origin/remote.py ``ChunkedTitle``).

In-process: a real origin app whose packager backend hands each task to the test, which plays the
workers with transcoder/worker.py's own code (or falls silent, or reports a failure). Process level:
``surge origin --packagers processes --jobs 2``, its chunks encoded by child processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from origin.store import Status, TitleStore
from tests.conftest import MakeSource
from tests.origin.conftest import AUTH, OriginProcess, files_under, upload, wait_for_status
from tests.origin.test_workers import Origin, bearer, start_origin
from tests.transcoder.checks import check_title
from transcoder.chunks import Chunk
from transcoder.plan import PackageConfig
from transcoder.worker import Outcome, TaskKind, WorkerTask, run_task

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning"),  # as test_workers.py
]
# 20 s in 6 s chunks of 6 s segments: three chunks, joins at 6 s and 12 s.
LONG = {"width": 426, "height": 240, "duration": 20}
CHUNKED = PackageConfig(preset="ultrafast", chunk_seconds=6)


@pytest.fixture
def long_source(make_source: MakeSource) -> Path:
    return make_source("long-240p.mp4", **LONG)


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[Origin]:
    runner, server = await start_origin(tmp_path, package=CHUNKED, slots=2, retry_delay=0.0)
    yield server
    await server.session.close()
    await runner.cleanup()


async def work(task: WorkerTask, tmp_path: Path, node: str | None = None) -> Outcome:
    """Carry out ``task`` as a worker machine would, in a directory of its own."""
    workdir = tmp_path / f"worker-{task.token[:8]}"
    workdir.mkdir()
    return await run_task(task, workdir, node)


async def renew(origin: Origin, task: WorkerTask, progress: float = 0.1) -> int:
    async with origin.session.post(f"{task.control_url}/renew", headers=bearer(task.token),
                                   json={"progress": progress}) as response:  # fmt: skip
        return response.status


async def test_a_long_title_is_encoded_in_chunks_by_several_workers_and_published(
    origin: Origin, long_source: Path, tmp_path: Path
) -> None:
    title = await origin.upload(long_source)
    # Two units free: two chunks leased at once, each with a token of its own.
    (first, first_name), (second, _) = [await origin.backend.next() for _ in range(2)]
    assert [(t.kind, t.job_id, t.chunk) for t in (first, second)] == [
        (TaskKind.ENCODE_CHUNK, title, Chunk(0, 0.0, 6.0, False)),
        (TaskKind.ENCODE_CHUNK, title, Chunk(1, 6.0, 6.0, False)),
    ]
    assert first.token != second.token and first_name.startswith(f"packager-{title}-")
    assert WorkerTask.from_json(first.to_json()) == first  # as a worker process receives it
    assert origin.backend.tasks.empty()  # the third chunk waits for a unit
    # Progress: the chunks' own, weighted by their length.
    assert await renew(origin, first, 0.5) == 200
    status = await origin.status(title)
    assert (status["status"], status["progress"]) == ("packaging", round(0.5 * 6 / 20, 4))

    assert await work(first, tmp_path, "198.51.100.21") == Outcome("done", "")
    third, _ = await origin.backend.next()  # the freed unit goes to the last chunk
    assert third.chunk == Chunk(2, 12.0, pytest.approx(8.0, abs=0.1), True)  # type: ignore[arg-type]
    outcomes = await asyncio.gather(work(second, tmp_path, "198.51.100.22"),
                                    work(third, tmp_path, "198.51.100.21"))  # fmt: skip
    assert outcomes == [Outcome("done", "")] * 2
    final = await wait_for_status(origin.session, origin.url, title, {"ready", "failed"}, timeout=60)
    assert (final["status"], final["progress"], final["attempts"]) == ("ready", 1.0, 1), final
    assert final["worker"] == "198.51.100.21, 198.51.100.22"
    facts = check_title(origin.data / "titles" / title, tmp_path)
    assert facts["segments"] == [6.0, 6.0, 6.0, 2.0]
    assert origin.staging() == []
    # The whole title decodes without a word from ffmpeg, across both joins.
    done = await asyncio.to_thread(
        subprocess.run,
        ["ffmpeg", "-v", "error", "-i", str(origin.data / "titles" / title / "master.m3u8"),
         "-map", "0", "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    # A finished chunk's token opens nothing any more.
    async with origin.session.get(first.source_url, headers=bearer(first.token)) as response:
        assert response.status == 403


async def test_a_chunk_token_writes_only_into_its_own_chunk(origin: Origin, long_source: Path) -> None:
    title = await origin.upload(long_source)
    (first, _), (second, _) = [await origin.backend.next() for _ in range(2)]
    for task, data in ((first, b"first"), (second, b"second")):
        async with origin.session.put(task.upload_url + "234p/init.mp4", data=data,
                                      headers=bearer(task.token)) as response:  # fmt: skip
            assert response.status == 201
    [staging] = origin.staging()
    files = files_under(origin.data / "staging" / staging)
    assert [f.split("/")[0] for f in files] == [".chunks", ".chunks"]
    assert [f.split("/", 2)[2] for f in files] == ["234p/init.mp4", "234p/init.mp4"]
    assert {(origin.data / "staging" / staging / f).read_bytes() for f in files} == {b"first", b"second"}
    async with origin.session.put(first.upload_url + "..%2Fx", data=b"x",
                                  headers=bearer(first.token)) as response:  # fmt: skip
        assert response.status == 400
    # Deleting the title ends every chunk lease and leaves nothing in staging.
    async with origin.session.delete(f"{origin.url}/admin/titles/{title}", headers=AUTH) as response:
        assert response.status == 204
    assert origin.staging() == [] and len(origin.backend.stopped) == 2
    assert await renew(origin, first) == 403
    store = TitleStore(origin.data / "jobs.sqlite")
    await store.open()
    try:
        assert await store.chunk_rows() == []
    finally:
        await store.close()


async def test_a_lost_chunk_worker_loses_its_lease_and_only_that_chunk_runs_again(
    tmp_path: Path, long_source: Path
) -> None:
    runner, origin = await start_origin(tmp_path, package=CHUNKED, slots=2, lease_duration=1.0,
                                        lease_start_timeout=10.0, retry_delay=0.0)  # fmt: skip
    try:
        title = await origin.upload(long_source)
        (lost, lost_name), (second, _) = [await origin.backend.next() for _ in range(2)]
        assert await renew(origin, lost) == 200  # started, then silent: its machine is gone
        async with origin.session.put(lost.upload_url + "234p/init.mp4", data=b"x",
                                      headers=bearer(lost.token)) as response:  # fmt: skip
            assert response.status == 201
        done_second = asyncio.create_task(work(second, tmp_path))
        # Next: the lost chunk again, and the last chunk once the second is done (in either order).
        held = [(await origin.backend.next(timeout=10))[0] for _ in range(2)]
        again, third = sorted(held, key=lambda task: task.chunk.index if task.chunk else -1)
        assert again.chunk == lost.chunk and again.token != lost.token
        assert third.chunk is not None and third.chunk.index == 2
        assert lost_name in origin.backend.stopped
        assert await renew(origin, lost) == 403  # the lost worker comes back: refused
        status = await origin.status(title)
        assert (status["status"], status["attempts"]) == ("packaging", 1)  # the title is not retried
        outcomes = await asyncio.gather(done_second, work(again, tmp_path), work(third, tmp_path))
        assert outcomes == [Outcome("done", "")] * 3
        final = await wait_for_status(origin.session, origin.url, title, {"ready", "failed"}, timeout=60)
        assert final["status"] == "ready", final
        check_title(origin.data / "titles" / title, tmp_path)
        assert origin.staging() == []
    finally:
        await origin.session.close()
        await runner.cleanup()


async def test_a_chunk_failing_twice_the_same_way_fails_the_title_with_the_reason(
    origin: Origin, long_source: Path
) -> None:
    title = await origin.upload(long_source)
    (first, _), (second, second_name) = [await origin.backend.next() for _ in range(2)]
    report = {"type": "TranscodeFailed", "message": "ffmpeg exited with 1", "exit_code": 1}
    verdicts = []
    for attempt in (1, 2):
        async with origin.session.post(f"{second.control_url}/failed", headers=bearer(second.token),
                                       json=report) as response:  # fmt: skip
            assert response.status == 200
            verdicts.append(await response.json())
        if attempt == 1:
            second, _ = await origin.backend.next()  # the chunk again, on the next free unit
            assert second.chunk is not None and second.chunk.index == 1
    assert verdicts[0]["status"] == "queued" and "attempt 1 of this chunk failed" in verdicts[0]["error"]
    reason = "failed twice the same way: chunk 1 (6-12 s): ffmpeg exited with 1"
    assert verdicts[1] == {"status": "failed", "error": reason}
    final = await origin.status(title)
    assert (final["status"], final["error"], final["progress"]) == ("failed", reason, None)
    assert origin.staging() == [] and not (origin.data / "titles" / title).exists()
    # The other chunk's worker was stopped, and its token opens nothing.
    assert any(name.startswith(f"packager-{title}-") for name in origin.backend.stopped)
    assert await renew(origin, first) == 403
    assert second_name not in origin.backend.stopped  # it reported the failure: it ends by itself
    async with origin.session.get(f"{origin.url}/admin/titles", headers=AUTH) as response:
        assert response.status == 200
    assert (await origin.status(title))["status"] == str(Status.FAILED)


def test_process_workers_encode_a_long_title_in_chunks(tmp_path: Path, long_source: Path) -> None:
    """``surge origin --packagers processes --jobs 2``: the chunks encoded by two worker processes."""
    server = OriginProcess(tmp_path / "data", "--packagers", "processes", "--jobs", "2",
                           "--chunk-seconds", "6", "--preset", "ultrafast").start()  # fmt: skip
    try:

        async def scenario() -> str:
            async with aiohttp.ClientSession() as session:
                _, body, _ = await upload(session, server.url, long_source, name="Long")
                final = await wait_for_status(session, server.url, body["id"], {"ready", "failed"})
                assert final["status"] == "ready", (final, server.log[-10:])
                return str(body["id"])

        title = asyncio.run(scenario())
        facts = check_title(server.data / "titles" / title, tmp_path)
        assert facts["segments"] == [6.0, 6.0, 6.0, 2.0]
        assert files_under(server.data / "staging") == []
        events = [e for e in list(server.log) if e.get("title") == title and e.get("event") != "request"]
        [chunked] = [e for e in events if e["event"] == "packaging in chunks"]
        assert (chunked["chunks"], chunked["parallel"]) == (3, 2)
        assert sorted(e["chunk"] for e in events if e["event"] == "chunk encoded") == [0, 1, 2]
        assert [e["event"] for e in events if e["event"] in ("packaging leased", "packaged")] == ["packaged"]
    finally:
        server.stop()


def test_a_chunk_task_carries_its_chunk_and_only_a_chunk_task_does() -> None:
    urls = {"source_url": "http://198.51.100.1/s", "upload_url": "http://198.51.100.1/f/",
            "control_url": "http://198.51.100.1/c", "token": "t"}  # fmt: skip
    with pytest.raises(ValueError, match="encode-chunk task needs chunk"):
        WorkerTask(TaskKind.ENCODE_CHUNK, "a-title", **urls)
    with pytest.raises(ValueError, match="package-title task takes no chunk"):
        WorkerTask(TaskKind.PACKAGE_TITLE, "a-title", **urls, chunk=Chunk(0, 0.0, 6.0, False))
    task = WorkerTask(
        TaskKind.ENCODE_CHUNK, "a-title", **urls, config=CHUNKED, chunk=Chunk(2, 12.0, 7.5, True)
    )
    assert WorkerTask.from_json(task.to_json()) == task


def worker_processes(parent: int) -> list[int]:
    """PIDs of the packaging worker processes (``python -m transcoder.worker``) of process ``parent``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or b"transcoder.worker" not in (entry / "cmdline").read_bytes():
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            pids.append(int(entry.name))
    return sorted(pids)


def test_a_frozen_chunk_worker_process_loses_its_chunk_to_another(
    tmp_path: Path, long_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One of two worker processes stops (SIGSTOP: alive, silent): its chunk's lease runs out and only that
    chunk is encoded again, by another process; the title is published as any other."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the workers' temporary directories, the stopped one's too
    server = OriginProcess(tmp_path / "data", "--packagers", "processes", "--jobs", "2", "--chunk-seconds",
                           "6", "--preset", "ultrafast", "--packager-lease", "2", "--packager-start-timeout",
                           "5", "--retry-delay", "0").start()  # fmt: skip
    assert server.process is not None
    stopped: list[int] = []
    try:

        async def scenario() -> dict[str, Any]:
            async with aiohttp.ClientSession() as session:
                _, body, _ = await upload(session, server.url, long_source, name="Long")
                deadline = time.monotonic() + 60
                while not stopped:
                    assert time.monotonic() < deadline, server.log[-10:]
                    workers = worker_processes(server.process.pid)  # type: ignore[union-attr]
                    if len(workers) == 2:
                        os.kill(workers[0], signal.SIGSTOP)
                        stopped.append(workers[0])
                    await asyncio.sleep(0.02)
                return await wait_for_status(session, server.url, body["id"], {"ready", "failed"})

        final = asyncio.run(scenario())
        assert (final["status"], final["attempts"]) == ("ready", 1), (final, server.log[-10:])
        title = final["id"]
        check_title(server.data / "titles" / title, tmp_path)
        assert files_under(server.data / "staging") == []
        events = [e for e in list(server.log) if e.get("title") == title]
        again = [e for e in events if e["event"] in ("chunk failed", "chunk worker never started")]
        assert len(again) == 1, again  # lost after it started, or before: either way it runs again
        assert [e["event"] for e in events].count("chunk leased") == 4
        assert sorted(e["chunk"] for e in events if e["event"] == "chunk encoded") == [0, 1, 2]
        assert not Path(f"/proc/{stopped[0]}").exists()  # the origin ended the lost worker
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.stop()


async def test_chunks_that_cannot_be_joined_fail_the_title_twice_the_same_way(
    origin: Origin, long_source: Path
) -> None:
    """Every chunk "done" without its files: the joined title is refused, tried again whole, then failed."""
    title = await origin.upload(long_source)
    stagings = []
    for _attempt in (1, 2):  # the second attempt's tasks come only once the first is refused
        for _ in range(3):  # two at once, then the third on the unit the first frees
            task, _ = await origin.backend.next()
            stagings += origin.staging()
            async with origin.session.post(
                f"{task.control_url}/done", headers=bearer(task.token)
            ) as response:
                assert response.status == 200 and await response.json() == {"status": "done", "error": None}
    status = await wait_for_status(origin.session, origin.url, title, {"failed", "ready"}, timeout=30)
    assert (status["status"], status["attempts"]) == ("failed", 2), status
    assert len(set(stagings)) == 2  # each attempt in a staging directory of its own
    assert status["error"].startswith("failed twice the same way: the packaged output was rejected: "), status
    assert "chunk 0 (0-6 s) has no 234p/init.mp4" in status["error"]
    assert origin.staging() == [] and not (origin.data / "titles" / title).exists()


async def test_a_restarted_origin_starts_a_title_in_chunks_over(tmp_path: Path, long_source: Path) -> None:
    """The origin coordinates a title in chunks (its audio, the join): restarted, it starts the title over,
    and the old chunk workers are refused."""
    runner, first = await start_origin(tmp_path, package=CHUNKED, slots=2, retry_delay=0.0)
    port = URL(first.url).port
    try:
        title = await first.upload(long_source)
        (old, _), _ = [await first.backend.next() for _ in range(2)]
        assert await renew(first, old) == 200
        [old_staging] = first.staging()
    finally:
        await first.session.close()
        await runner.cleanup()
    # The same advertised URL.
    runner, second = await start_origin(tmp_path, package=CHUNKED, slots=2, port=port, retry_delay=0.0)
    try:
        (again, _), (other, _) = [await second.backend.next() for _ in range(2)]
        assert again.chunk == old.chunk and again.token != old.token
        assert await renew(second, old) == 403
        assert second.staging() != [old_staging] and len(second.staging()) == 1
        outcomes = [await work(again, tmp_path), await work(other, tmp_path)]
        third, _ = await second.backend.next()
        outcomes.append(await work(third, tmp_path))
        assert outcomes == [Outcome("done", "")] * 3
        final = await wait_for_status(second.session, first.url, title, {"ready", "failed"}, timeout=60)
        assert final["status"] == "ready", final
        assert second.staging() == []
    finally:
        await second.session.close()
        await runner.cleanup()
