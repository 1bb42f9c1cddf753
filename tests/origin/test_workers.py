"""Packaging workers over HTTP (origin/remote.py, origin/workers.py, transcoder/worker.py), without Ray.

In-process: a real origin app on 127.0.0.1 whose packager backend hands each task to the test, which
then plays the worker (with transcoder/worker.py's own code, or request by request). Process level:
``surge origin --packagers processes``, whose workers are child processes using the same routes.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from media.hls import parse_master, parse_media
from origin.app import make_app, on_listening
from origin.config import OriginConfig
from tests.conftest import MakeSource, serve_locally
from tests.origin.conftest import AUTH, TOKEN, OriginProcess, files_under, upload, wait_for_status
from transcoder.plan import PackageConfig
from transcoder.worker import Outcome, TaskKind, WorkerTask, run_task

pytestmark = [
    pytest.mark.timeout(90),
    # service/http.py keeps two request-scoped values under string keys, which aiohttp 3.14 warns about
    # in-process only (every other origin test runs the origin as a process).
    pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning"),
]
MiB = 1024 * 1024


@dataclass
class HeldTasks:
    """A packager backend that runs nothing: the test takes each task and is the worker."""

    tasks: asyncio.Queue[tuple[WorkerTask, str]] = field(default_factory=asyncio.Queue)
    stopped: list[str] = field(default_factory=list)
    slots: int = 1

    async def open(self) -> None:
        return None

    async def capacity(self) -> int:
        return self.slots

    async def start(self, task: WorkerTask, name: str) -> None:
        await self.tasks.put((task, name))

    async def stop(self, name: str) -> None:
        self.stopped.append(name)

    async def close(self) -> None:
        return None

    async def next(self, timeout: float = 20) -> tuple[WorkerTask, str]:
        return await asyncio.wait_for(self.tasks.get(), timeout)


@dataclass
class Origin:
    url: str
    data: Path
    backend: HeldTasks
    session: aiohttp.ClientSession

    async def upload(self, source: Path) -> str:
        status, body, _ = await upload(self.session, self.url, source)
        assert status == 202, body
        return str(body["id"])

    async def status(self, title_id: str) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/admin/titles/{title_id}", headers=AUTH) as response:
            return await response.json()  # type: ignore[no-any-return]

    def staging(self) -> list[str]:
        return sorted(p.name for p in (self.data / "staging").iterdir())


async def start_origin(
    tmp_path: Path, package: PackageConfig | None = None, slots: int = 1, port: int = 0, **options: Any
) -> tuple[web.AppRunner, Origin]:
    """An origin on ``tmp_path / "data"``; ``port``: the one a previous origin had (a restart keeps its
    advertised URL)."""
    backend = HeldTasks(slots=slots)
    config = OriginConfig(data=tmp_path / "data", admin_token=TOKEN, packagers="processes",
                          package=package or PackageConfig(preset="ultrafast"), **options)  # fmt: skip
    app = make_app(config, packagers=backend)
    runner, url = await serve_locally(app, port)
    on_listening(app, url)
    return runner, Origin(url, config.data, backend, aiohttp.ClientSession())


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[Origin]:
    runner, server = await start_origin(tmp_path, max_upload=2 * MiB, retry_delay=0.0)
    yield server
    await server.session.close()
    await runner.cleanup()


@pytest.fixture
def small_source(make_source: MakeSource) -> Path:
    return make_source("small.mp4", width=426, height=240, duration=4)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_worker_packages_a_title_over_http_and_the_origin_publishes_it(
    origin: Origin, small_source: Path, tmp_path: Path
) -> None:
    title = await origin.upload(small_source)
    task, name = await origin.backend.next()
    assert (task.kind, task.job_id) == (TaskKind.PACKAGE_TITLE, title) and name.startswith(
        f"packager-{title}-"
    )
    assert origin.staging() == [f"{title}.{name.rsplit('-', 1)[1]}"]  # the lease's staging, empty so far
    assert task.source_url.startswith(origin.url) and task.upload_url.endswith("/files/")
    assert task.token not in repr(task)  # never in a log line that prints the task
    workdir = tmp_path / "worker"
    workdir.mkdir()
    outcome = await run_task(task, workdir, node="198.51.100.9")
    assert outcome == Outcome("ready", "")
    final = await origin.status(title)
    assert (final["status"], final["progress"], final["worker"], final["attempts"]) == (
        "ready", 1.0, "198.51.100.9", 1)  # fmt: skip
    assert origin.staging() == []

    # Served as any title: the master, a media playlist, a segment.
    async with origin.session.get(f"{origin.url}/titles/{title}/master.m3u8") as response:
        assert response.status == 200
        master = parse_master(await response.text())
    rendition = master.variants[0].uri
    async with origin.session.get(f"{origin.url}/titles/{title}/{rendition}") as response:
        media = parse_media(await response.text())
    segment = rendition.rsplit("/", 1)[0] + "/" + media.segments[0].uri
    async with origin.session.get(f"{origin.url}/titles/{title}/{segment}") as response:
        assert response.status == 200 and len(await response.read()) > 1000
    # The token of a finished lease opens nothing any more.
    async with origin.session.get(task.source_url, headers=bearer(task.token)) as response:
        assert response.status == 403


async def test_internal_routes_check_the_token_and_every_path(origin: Origin, small_source: Path) -> None:
    await origin.upload(small_source)
    task, _ = await origin.backend.next()
    session = origin.session
    async with session.get(task.source_url) as response:
        assert response.status == 401 and "job token" in (await response.json())["error"]
    async with session.get(task.source_url, headers=bearer("x" * 43)) as response:
        assert response.status == 403 and "error" in await response.json()
    async with session.get(task.source_url, headers=bearer(TOKEN)) as response:  # the admin's: not this job's
        assert response.status == 403
    async with session.post(f"{origin.url}/internal/jobs/other-123456/renew", headers=bearer(task.token),
                            json={"progress": 0.1}) as response:  # fmt: skip
        assert response.status == 403  # a token is scoped to its job
    async with session.get(task.source_url, headers=bearer(task.token)) as response:
        assert response.status == 200 and await response.read() == small_source.read_bytes()

    [staging_name] = origin.staging()
    staging = origin.data / "staging" / staging_name
    bad_paths = ["..%2F..%2Fescape", "%2E%2E/escape", ".hidden", "a/b/c/d/e", "a//b", "360p/..",
                 "a/%2E%2E%2Fb"]  # fmt: skip
    for bad in bad_paths:
        url = URL(f"{task.upload_url}{bad}", encoded=True)
        async with session.put(url, data=b"x", headers=bearer(task.token)) as response:
            body = await response.json()
            assert response.status == 400, (bad, response.status, body)
            assert "error" in body
    async with session.put(task.upload_url + "360p/seg_00000.m4s", data=b"data",
                           headers=bearer("y" * 43)) as response:  # fmt: skip
        assert response.status == 403
    assert files_under(staging) == [] and not (origin.data / "escape").exists()

    # Over the size cap (the origin's --max-upload): 413, and nothing left behind.
    async with session.put(task.upload_url + "360p/big.m4s", data=io.BytesIO(b"\0" * (3 * MiB)),
                           headers=bearer(task.token)) as response:  # fmt: skip
        assert response.status == 413, await response.text()
    assert files_under(staging) == []
    async with session.put(task.upload_url + "360p/seg_00000.m4s", data=b"data",
                           headers=bearer(task.token)) as response:  # fmt: skip
        assert response.status == 201 and (await response.json())["size"] == 4
    assert files_under(staging) == ["360p/seg_00000.m4s"]
    # A sub-path, as the output of one chunk of a title would go.
    async with session.put(task.upload_url + "chunks/0003/360p/seg_00000.m4s", data=b"chunk",
                           headers=bearer(task.token)) as response:  # fmt: skip
        assert response.status == 201
    assert files_under(staging) == ["360p/seg_00000.m4s", "chunks/0003/360p/seg_00000.m4s"]

    # Bad renewals and reports: 400 with a message.
    for body in ({"progress": "half"}, {"progress": float("nan")}, [1]):
        async with session.post(f"{task.control_url}/renew", headers=bearer(task.token),
                                data=aiohttp.JsonPayload(body) if body != {"progress": float("nan")}
                                else b'{"progress": NaN}') as response:  # fmt: skip
            assert response.status == 400, body
    async with session.post(f"{task.control_url}/failed", headers=bearer(task.token),
                            json={"type": "no such thing", "message": 1}) as response:  # fmt: skip
        assert response.status == 400


async def test_renewals_carry_progress_to_the_admin_status(origin: Origin, small_source: Path) -> None:
    title = await origin.upload(small_source)
    task, _ = await origin.backend.next()
    renewal = {"progress": 0.42, "worker": "198.51.100.7"}
    async with origin.session.post(f"{task.control_url}/renew", headers=bearer(task.token),
                                   json=renewal) as response:  # fmt: skip
        assert response.status == 200 and (await response.json())["expires_in"] == 30.0
    status = await origin.status(title)
    assert (status["status"], status["progress"], status["worker"]) == ("packaging", 0.42, "198.51.100.7")


async def test_output_the_origin_rejects_is_tried_again_then_failed_the_same_way(
    origin: Origin, small_source: Path
) -> None:
    title = await origin.upload(small_source)
    for attempt in (1, 2):
        task, _ = await origin.backend.next()
        async with origin.session.put(task.upload_url + "234p/index.m3u8", data=b"#EXTM3U\nnot a playlist\n",
                                      headers=bearer(task.token)) as response:  # fmt: skip
            assert response.status == 201
        async with origin.session.post(f"{task.control_url}/done", headers=bearer(task.token)) as response:
            verdict = await response.json()
        assert response.status == 422
        assert verdict["status"] == ("queued" if attempt == 1 else "failed"), verdict
        assert origin.staging() == []
    final = await origin.status(title)
    assert final["status"] == "failed" and final["error"].startswith("failed twice the same way: ")
    assert not (origin.data / "titles" / title).exists()


async def test_a_reported_worker_error_then_a_different_one_retries_then_the_same_fails(
    origin: Origin, small_source: Path
) -> None:
    title = await origin.upload(small_source)
    reports = [
        ("TranscodeFailed", 1, "queued"),
        ("TranscodeFailed", -9, "queued"),
        ("TranscodeFailed", -9, "failed"),
    ]
    for error_type, exit_code, expected in reports:
        task, name = await origin.backend.next()
        report = {"type": error_type, "message": f"ffmpeg exit {exit_code}", "exit_code": exit_code}
        async with origin.session.post(f"{task.control_url}/failed", headers=bearer(task.token),
                                       json=report) as response:  # fmt: skip
            assert response.status == 200
            assert (await response.json())["status"] == expected
        assert name not in origin.backend.stopped  # it ends by itself, cleaning up its machine
    final = await origin.status(title)
    assert final["status"] == "failed" and final["attempts"] == 3
    assert final["error"] == "failed twice the same way: ffmpeg exit -9"


async def test_a_lost_worker_loses_its_lease_and_the_job_goes_to_another(
    tmp_path: Path, small_source: Path
) -> None:
    runner, origin = await start_origin(
        tmp_path, lease_duration=1.0, lease_start_timeout=1.0, retry_delay=0.0
    )
    try:
        title = await origin.upload(small_source)
        # A worker that never starts: its lease runs out, the job goes back, no attempt counted.
        silent, silent_name = await origin.backend.next()
        again, _ = await origin.backend.next(timeout=10)
        assert again.token != silent.token
        status = await origin.status(title)
        assert status["attempts"] == 1  # the lease that never started is not counted
        assert silent_name in origin.backend.stopped
        # A worker that starts, sends a file, then falls silent: lost; the job goes to the next worker.
        async with origin.session.post(f"{again.control_url}/renew", headers=bearer(again.token),
                                       json={"progress": 0.3}) as response:  # fmt: skip
            assert response.status == 200
        async with origin.session.put(again.upload_url + "234p/init.mp4", data=b"x",
                                      headers=bearer(again.token)) as response:  # fmt: skip
            assert response.status == 201
        third, third_name = await origin.backend.next(timeout=10)
        # The lost lease's files are gone; the next lease has a staging of its own.
        assert origin.staging() == [f"{title}.{third_name.rsplit('-', 1)[1]}"]
        status = await origin.status(title)
        assert (status["status"], status["attempts"]) == ("packaging", 2)  # this loss counted
        # The lost worker comes back: refused, whatever it tries.
        calls = [("POST", f"{again.control_url}/renew"), ("GET", again.source_url),
                 ("PUT", f"{again.upload_url}234p/seg_00000.m4s"),
                 ("POST", f"{again.control_url}/done")]  # fmt: skip
        for method, url in calls:
            async with origin.session.request(
                method, url, headers=bearer(again.token), data=b"{}"
            ) as response:
                assert response.status == 403, (method, url)
        # The third worker does the job for real, though its lease is short: it renews every 1/3 s.
        workdir = tmp_path / "worker"
        workdir.mkdir()
        assert await run_task(third, workdir) == Outcome("ready", "")
        assert (await origin.status(title))["status"] == "ready"
        assert origin.staging() == []
    finally:
        await origin.session.close()
        await runner.cleanup()


async def test_a_worker_lost_twice_fails_the_job_the_same_way(tmp_path: Path, small_source: Path) -> None:
    runner, origin = await start_origin(
        tmp_path, lease_duration=1.0, lease_start_timeout=1.0, retry_delay=0.0
    )
    try:
        title = await origin.upload(small_source)
        for _ in range(2):
            task, _ = await origin.backend.next(timeout=10)
            async with origin.session.post(f"{task.control_url}/renew", headers=bearer(task.token),
                                           json={"progress": 0.1}) as response:  # fmt: skip
                assert response.status == 200
        final = await wait_for_status(origin.session, origin.url, title, {"failed"}, timeout=10)
        assert final["error"].startswith("failed twice the same way: the packaging worker stopped answering")
        assert origin.staging() == []
    finally:
        await origin.session.close()
        await runner.cleanup()


async def test_deleting_a_title_ends_its_lease(origin: Origin, small_source: Path) -> None:
    title = await origin.upload(small_source)
    task, name = await origin.backend.next()
    async with origin.session.put(task.upload_url + "234p/init.mp4", data=b"x", headers=bearer(task.token)):
        pass
    async with origin.session.delete(f"{origin.url}/admin/titles/{title}", headers=AUTH) as response:
        assert response.status == 204
    assert name in origin.backend.stopped and origin.staging() == []
    async with origin.session.post(
        f"{task.control_url}/renew", headers=bearer(task.token), json={}
    ) as response:
        assert response.status == 403


def test_process_workers_package_through_the_same_routes(tmp_path: Path, small_source: Path) -> None:
    """``surge origin --packagers processes``: a real origin process whose workers are child processes."""
    server = OriginProcess(tmp_path / "data", "--packagers", "processes", "--preset", "ultrafast").start()
    try:

        async def scenario() -> None:
            async with aiohttp.ClientSession() as session:
                _, body, _ = await upload(session, server.url, small_source)
                final = await wait_for_status(session, server.url, body["id"], {"ready", "failed"})
                assert final["status"] == "ready", final
                async with session.get(f"{server.url}/titles/{body['id']}/master.m3u8") as response:
                    assert response.status == 200
                    uri = parse_master(await response.text()).variants[0].uri
                async with session.get(f"{server.url}/titles/{body['id']}/{uri}") as response:
                    first = parse_media(await response.text()).segments[0].uri
                segment = f"{server.url}/titles/{body['id']}/{uri.rsplit('/', 1)[0]}/{first}"
                async with session.get(segment) as response:
                    assert response.status == 200 and response.content_type == "video/iso.segment"
                jobs = f"{server.url}/internal/jobs/{body['id']}"
                async with session.get(f"{jobs}/source") as response:
                    assert response.status == 401
                async with session.get(f"{jobs}/source", headers=AUTH) as response:
                    assert response.status == 403
                async with session.put(URL(f"{jobs}/files/%2E%2E/x", encoded=True), headers=bearer("z"),
                                       data=b"x") as response:  # fmt: skip
                    assert response.status == 400

        asyncio.run(scenario())
        assert files_under(server.data / "staging") == []
        leased = [e for e in server.log if e.get("event") in ("packaging leased", "packaged")]
        assert [e["event"] for e in leased] == ["packaging leased", "packaged"]
        # The worker's token is never written to the log.
        assert not any("Bearer" in str(e) or "token=" in str(e) for e in server.log)
    finally:
        server.stop()


async def test_a_source_the_worker_cannot_read_fails_twice_the_same_way(
    origin: Origin, small_source: Path, tmp_path: Path
) -> None:
    """The worker's own failure path: it reports what broke, the origin decides."""
    title = await origin.upload(small_source)
    source = origin.data / "sources" / title / "source"
    source.write_bytes(source.read_bytes()[:2000])  # damaged on disk after the upload was probed
    outcomes = []
    for attempt in (1, 2):
        task, _ = await origin.backend.next()
        workdir = tmp_path / f"worker{attempt}"
        workdir.mkdir()
        outcomes.append(await run_task(task, workdir))
        assert origin.staging() == []
    assert [o.state for o in outcomes] == ["queued", "failed"], outcomes
    final = await origin.status(title)
    assert final["status"] == "failed" and final["error"].startswith("failed twice the same way: ")
    assert outcomes[1].detail == final["error"]


async def test_a_restarted_origin_honours_a_running_lease(tmp_path: Path, small_source: Path) -> None:
    """The lease is in the store: the worker goes on against the new origin process and finishes."""
    runner, first = await start_origin(tmp_path)
    port = URL(first.url).port
    try:
        title = await first.upload(small_source)
        task, _ = await first.backend.next()
        async with first.session.post(f"{task.control_url}/renew", headers=bearer(task.token),
                                      json={"progress": 0.2}) as response:  # fmt: skip
            assert response.status == 200
        kept = first.staging()
    finally:
        await first.session.close()
        await runner.cleanup()
    runner, second = await start_origin(tmp_path, port=port)  # the same advertised URL
    try:
        assert second.staging() == kept  # the lease's staging survived the restart
        assert (await second.status(title))["status"] == "packaging"
        workdir = tmp_path / "worker"
        workdir.mkdir()
        assert await run_task(task, workdir) == Outcome("ready", "")
        assert (await second.status(title))["status"] == "ready"
        assert second.backend.tasks.empty()  # never leased again
    finally:
        await second.session.close()
        await runner.cleanup()
