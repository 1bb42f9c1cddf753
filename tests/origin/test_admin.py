"""Admin API against a real origin process: auth, uploads good and bad, status, delete."""

from __future__ import annotations

import asyncio
import io
import stat
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import MakeSource, ffmpeg_pids_under
from tests.origin.conftest import AUTH, OriginProcess, files_under, upload, wait_for_status


async def test_auth_is_required_for_the_admin_api(origin: OriginProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for method in ("GET", "POST"):
            async with session.request(method, f"{origin.url}/admin/titles") as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "missing admin token" in (await response.json())["error"]
        for header in ("Bearer wrong", f"Basic {AUTH['Authorization'][7:]}", "Bearer"):
            async with session.get(
                f"{origin.url}/admin/titles", headers={"Authorization": header}
            ) as response:
                assert response.status in (401, 403)
                assert "error" in await response.json()
        async with session.get(
            f"{origin.url}/admin/titles", headers={"Authorization": "Bearer wrong"}
        ) as response:
            assert response.status == 403
        async with session.get(f"{origin.url}/admin/titles", headers=AUTH) as response:
            assert response.status == 200 and await response.json() == {"titles": []}
        async with session.get(f"{origin.url}/titles") as response:  # delivery stays public
            assert response.status == 200


async def test_token_file_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = OriginProcess(data, token=None).start()
    first.stop()
    token_file = data / "admin.token"
    token = token_file.read_text().strip()
    assert len(token) >= 32 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert any(e["event"] == "admin token" and e["source"] == str(token_file) for e in first.log)
    second = OriginProcess(data, token=None).start()
    try:
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{second.url}/admin/titles", headers=headers) as response:
                assert response.status == 200
    finally:
        second.stop()
    assert token_file.read_text().strip() == token


async def test_raw_upload_is_packaged_and_published(origin: OriginProcess, make_source: MakeSource) -> None:
    source = make_source("with-audio.mp4", width=640, height=360, duration=8)
    async with aiohttp.ClientSession() as session:
        status, body, response = await upload(session, origin.url, source, name="My First Title")
        assert status == 202, body
        assert body["status"] == "queued" and body["name"] == "My First Title"
        assert body["id"].startswith("my-first-title-")
        assert response.headers["Location"] == f"/admin/titles/{body['id']}"
        ready = await wait_for_status(session, origin.url, body["id"], {"ready", "failed"})
        assert ready["status"] == "ready", ready
        assert ready["progress"] == 1.0 and ready["error"] is None
        assert abs(ready["duration"] - 8.0) < 0.2 and ready["master"] == f"/titles/{body['id']}/master.m3u8"
        async with session.get(f"{origin.url}/titles") as response:
            catalog = (await response.json())["titles"]
        assert [t["id"] for t in catalog] == [body["id"]]
        async with session.get(f"{origin.url}{ready['master']}") as response:
            assert response.status == 200 and "#EXT-X-STREAM-INF" in await response.text()
    assert (origin.data / "sources" / body["id"] / "source").is_file()
    assert files_under(origin.data / "uploads") == [] and files_under(origin.data / "staging") == []


async def test_multipart_upload_takes_name_from_the_form(
    origin: OriginProcess, make_source: MakeSource
) -> None:
    source = make_source("tiny.mp4", width=160, height=120, duration=2)
    async with aiohttp.ClientSession() as session:
        form = aiohttp.FormData()
        form.add_field(
            "file", io.BytesIO(source.read_bytes()), filename="holiday.mp4", content_type="video/mp4"
        )
        form.add_field("name", "Holiday 2026")
        async with session.post(f"{origin.url}/admin/titles", data=form, headers=AUTH) as response:
            body = await response.json()
            assert response.status == 202, body
        assert body["name"] == "Holiday 2026"
        form = aiohttp.FormData()
        form.add_field(
            "file", io.BytesIO(source.read_bytes()), filename="beach trip.mp4", content_type="video/mp4"
        )
        async with session.post(f"{origin.url}/admin/titles", data=form, headers=AUTH) as response:
            assert (await response.json())["name"] == "beach trip"
        form = aiohttp.FormData()
        form.add_field("name", "no file")
        form.add_field("other", b"x", filename="x.bin")
        async with session.post(f"{origin.url}/admin/titles", data=form, headers=AUTH) as response:
            assert response.status == 400 and "'file' field" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "message"),
    [
        (b"just some text, not a video\n" * 50, "video/mp4", 415, "not a readable video file"),
        (b"", "video/mp4", 400, "empty"),
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "video/mp4", 422, "truncated or damaged"),
        (b'{"a": 1}', "application/json", 415, "unsupported Content-Type"),
        (b"hello", "text/plain", 415, "unsupported Content-Type"),
    ],
)
async def test_bad_uploads_get_clear_errors_and_leave_nothing(
    origin: OriginProcess, tmp_path: Path, content: bytes, content_type: str, status: int, message: str
) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    async with aiohttp.ClientSession() as session:
        got, body, _ = await upload(session, origin.url, path, content_type=content_type)
        assert (got, message in body["error"]) == (status, True), body
        async with session.get(f"{origin.url}/admin/titles", headers=AUTH) as response:
            assert (await response.json())["titles"] == []
    assert files_under(origin.data / "uploads") == [] and files_under(origin.data / "sources") == []


async def test_truncated_mp4_is_refused(
    origin: OriginProcess, make_source: MakeSource, tmp_path: Path
) -> None:
    whole = make_source("with-audio.mp4", width=640, height=360, duration=8)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    async with aiohttp.ClientSession() as session:
        status, body, _ = await upload(session, origin.url, cut)
    assert status == 422 and "truncated" in body["error"]
    assert files_under(origin.data / "uploads") == []


async def test_oversize_uploads_get_413(tmp_path: Path, make_source: MakeSource) -> None:
    server = OriginProcess(tmp_path / "data", "--max-upload", "100KiB").start()
    source = make_source("with-audio.mp4", width=640, height=360, duration=8)  # ~2 MB
    try:
        async with aiohttp.ClientSession() as session:
            status, body, _ = await upload(session, server.url, source)  # Content-Length says it all
            assert status == 413 and "limit" in body["error"]

            async def chunked():  # no Content-Length: the cap is enforced while streaming
                data = source.read_bytes()
                for start in range(0, len(data), 64 * 1024):
                    yield data[start : start + 64 * 1024]

            try:
                async with session.post(
                    f"{server.url}/admin/titles", data=chunked(), headers=AUTH | {"Content-Type": "video/mp4"}
                ) as response:
                    assert response.status == 413
            except aiohttp.ClientError:
                pass  # the server may close the connection on the rest of the body: also a refusal
            async with session.get(f"{server.url}/admin/titles", headers=AUTH) as response:
                assert (await response.json())["titles"] == []
    finally:
        server.stop()
    assert files_under(server.data / "uploads") == []


async def test_full_disk_gets_507(tmp_path: Path, make_source: MakeSource) -> None:
    server = OriginProcess(tmp_path / "data", "--min-free-disk", "1000000TiB").start()
    try:
        async with aiohttp.ClientSession() as session:
            status, body, _ = await upload(
                session, server.url, make_source("tiny.mp4", width=160, height=120, duration=2)
            )
        assert status == 507 and "disk" in body["error"]
    finally:
        server.stop()
    assert files_under(server.data / "uploads") == []


async def test_client_that_disconnects_mid_upload_leaves_no_residue(
    origin: OriginProcess, make_source: MakeSource
) -> None:
    data = make_source("with-audio.mp4", width=640, height=360, duration=8).read_bytes()
    host, port = origin.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /admin/titles?name=aborted HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: {AUTH['Authorization']}\r\n"
        f"Content-Type: video/mp4\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data[: len(data) // 3]
    )
    await writer.drain()
    for _ in range(100):  # the part file appears while the body streams in
        if files_under(origin.data / "uploads"):
            break
        await asyncio.sleep(0.02)
    writer.close()
    for _ in range(100):
        if not files_under(origin.data / "uploads"):
            break
        await asyncio.sleep(0.05)
    assert files_under(origin.data / "uploads") == []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin.url}/admin/titles", headers=AUTH) as response:
            assert (await response.json())["titles"] == []
        async with session.get(f"{origin.url}/healthz") as response:
            assert response.status == 200
    origin.stop()
    # nginx's 499, not a 500 and an error line: the client left.
    aborted = [e for e in origin.log if e.get("event") == "request" and e.get("method") == "POST"]
    assert [e["status"] for e in aborted] == [499]
    assert not [e for e in origin.log if e.get("level") == "error"], origin.log


async def test_concurrent_uploads_all_get_packaged(tmp_path: Path, make_source: MakeSource) -> None:
    server = OriginProcess(tmp_path / "data", "--jobs", "2", "--preset", "ultrafast").start()
    source = make_source("tiny.mp4", width=160, height=120, duration=2)
    try:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(
                *(upload(session, server.url, source, name=f"clip {i}") for i in range(6))
            )
            assert [status for status, _, _ in results] == [202] * 6
            ids = {body["id"] for _, body, _ in results}
            assert len(ids) == 6
            finals = await asyncio.gather(
                *(wait_for_status(session, server.url, i, {"ready", "failed"}) for i in ids)
            )
            assert {f["status"] for f in finals} == {"ready"}
            async with session.get(f"{server.url}/titles") as response:
                assert {t["id"] for t in (await response.json())["titles"]} == ids
    finally:
        server.stop()


async def test_unknown_and_invalid_ids(origin: OriginProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin.url}/admin/titles/no-such-title", headers=AUTH) as response:
            assert response.status == 404 and "no title" in (await response.json())["error"]
        async with session.delete(f"{origin.url}/admin/titles/no-such-title", headers=AUTH) as response:
            assert response.status == 404
        async with session.get(f"{origin.url}/admin/titles/BAD_ID", headers=AUTH) as response:
            assert response.status == 400 and "invalid title id" in (await response.json())["error"]


async def test_delete_during_packaging_stops_ffmpeg_and_removes_everything(
    tmp_path: Path, make_source: MakeSource
) -> None:
    server = OriginProcess(tmp_path / "data", "--preset", "veryslow").start()
    source = make_source("long.mp4", width=640, height=360, duration=20)
    try:
        async with aiohttp.ClientSession() as session:
            _, body, _ = await upload(session, server.url, source)
            await wait_for_status(session, server.url, body["id"], {"packaging"})
            for _ in range(100):
                if ffmpeg_pids_under(server.data):
                    break
                await asyncio.sleep(0.05)
            assert ffmpeg_pids_under(server.data)
            async with session.delete(f"{server.url}/admin/titles/{body['id']}", headers=AUTH) as response:
                assert response.status == 204
            async with session.get(f"{server.url}/admin/titles/{body['id']}", headers=AUTH) as response:
                assert response.status == 404
            async with session.get(f"{server.url}/titles/{body['id']}/master.m3u8") as response:
                assert response.status == 404
        assert ffmpeg_pids_under(server.data) == []
        for directory in ("titles", "sources", "staging", "uploads"):
            assert files_under(server.data / directory) == [], directory
    finally:
        server.stop()


async def test_delete_a_ready_title(origin: OriginProcess, make_source: MakeSource) -> None:
    source = make_source("tiny.mp4", width=160, height=120, duration=2)
    async with aiohttp.ClientSession() as session:
        _, body, _ = await upload(session, origin.url, source)
        await wait_for_status(session, origin.url, body["id"], {"ready"})
        async with session.delete(f"{origin.url}/admin/titles/{body['id']}", headers=AUTH) as response:
            assert response.status == 204
        async with session.get(f"{origin.url}/titles/{body['id']}/master.m3u8") as response:
            assert response.status == 404
        async with session.get(f"{origin.url}/titles") as response:
            assert (await response.json())["titles"] == []
    assert not list((origin.data / "titles").iterdir())
