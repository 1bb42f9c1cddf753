"""Purge across the fleet: a real ``surge fleet`` with real edge processes in front of a real peer, and
``surge up``, where deleting a title at the origin purges it from every edge."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.purge import PurgeRequest, parse_purge
from edge.router.purge import EdgeFailed, EdgePurged, purge_fleet, purge_report
from media.errors import InvalidInput
from tests.conftest import MakeSource
from tests.edge.conftest import SEGMENT, TITLE, Peer, get
from tests.fleet.test_fleet import edge_pids, fleet_state, wait_until
from tests.origin.conftest import AUTH, TOKEN, OriginProcess, SurgeProcess, upload, wait_for_status


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prefix": f"{TITLE}/"}, PurgeRequest((), f"{TITLE}/")),
        ({"prefix": f"{TITLE}/360p/"}, PurgeRequest((), f"{TITLE}/360p/")),
        ({"paths": [SEGMENT]}, PurgeRequest((SEGMENT,), None)),
        ({"paths": [SEGMENT], "prefix": f"{TITLE}/"}, PurgeRequest((SEGMENT,), f"{TITLE}/")),
    ],
)
def test_purge_bodies(body: object, expected: PurgeRequest) -> None:
    assert parse_purge(body) == expected
    assert expected.titles() == {"show-abc123"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ({}, "nothing to purge"),
        ({"paths": []}, "nothing to purge"),
        ({"prefix": "/titles/"}, "invalid prefix"),
        ({"prefix": f"{TITLE}"}, "invalid prefix"),
        ({"prefix": "/etc/"}, "invalid prefix"),
        ({"paths": "/titles/x"}, "paths must be a list of strings"),
        ({"paths": [f"{TITLE}/../../etc/passwd"]}, "invalid path"),
        ({"title": "show-abc123"}, "unknown keys ['title']"),
    ],
)
def test_bad_purge_bodies(body: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_purge(body)
    assert message in str(caught.value)


def test_the_report_names_every_edge_and_fails_when_one_did_not_purge() -> None:
    ok = [EdgePurged("edge-1", "http://127.0.0.1:1", 3), EdgePurged("edge-2", "http://127.0.0.1:2", 0)]
    assert purge_report(ok) == (
        200,
        {
            "purged": 3,
            "failed": 0,
            "edges": [
                {"id": "edge-1", "url": "http://127.0.0.1:1", "ok": True, "purged": 3},
                {"id": "edge-2", "url": "http://127.0.0.1:2", "ok": True, "purged": 0},
            ],
        },
    )
    status, body = purge_report([*ok, EdgeFailed("edge-3", "http://127.0.0.1:3", "no answer within 5 s")])
    assert status == 502 and body["error"] == "1 of 3 edge(s) did not purge" and body["purged"] == 3
    assert body["edges"][2] == {"id": "edge-3", "url": "http://127.0.0.1:3", "ok": False, "status": None,
                                "error": "no answer within 5 s"}  # fmt: skip
    assert purge_report([]) == (200, {"purged": 0, "failed": 0, "edges": []})


async def purge(fleet: str, body: object, **headers: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fleet}/admin/purge", json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_the_fleet_purges_every_edge_it_started(
    peer: Peer, fleet_of_two: tuple[SurgeProcess, list[dict[str, Any]]]
) -> None:
    fleet, edges = fleet_of_two
    assert fleet.process is not None
    for pid in edge_pids(fleet.process.pid).values():  # the token travels in the environment, not argv
        assert TOKEN.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert f"SURGE_ADMIN_TOKEN={TOKEN}".encode() in Path(f"/proc/{pid}/environ").read_bytes()
    for edge in edges:
        await get(edge["url"] + SEGMENT)
        assert (await get(edge["url"] + SEGMENT))[1]["X-Cache"] == "HIT"
    assert peer.counts[SEGMENT] <= 2  # the second edge may fill from the first (its parent)

    assert (await purge(fleet.url, {"prefix": f"{TITLE}/"}))[0] == 401
    assert (await purge(fleet.url, {"prefix": f"{TITLE}/"}, Authorization="Bearer wrong"))[0] == 403
    status, body = await purge(fleet.url, {"prefix": "/titles/"}, **AUTH)
    assert status == 400 and "invalid prefix" in body["error"]

    status, body = await purge(fleet.url, {"prefix": f"{TITLE}/"}, **AUTH)
    assert status == 200, body
    assert {e["id"] for e in body["edges"]} == {e["id"] for e in edges}
    assert all(e["ok"] and e["purged"] >= 1 for e in body["edges"]) and body["failed"] == 0
    for edge in edges:  # the edges share the fleet's admin token, and their copies are gone
        assert (await get(edge["url"] + SEGMENT))[1]["X-Cache"] == "MISS"

    status, body = await purge(fleet.url, {"paths": [SEGMENT]}, **AUTH)
    assert status == 200 and body["purged"] == len(edges)
    assert any(e.get("event") == "purge" for e in fleet.log)


async def test_a_fleet_without_a_token_refuses_to_purge(peer: Peer) -> None:
    fleet = await asyncio.to_thread(SurgeProcess("fleet", "--origin", peer.url, token=None).start)
    try:
        status, body = await purge(fleet.url, {"prefix": f"{TITLE}/"}, **AUTH)
        assert status == 403 and body["error"].startswith("purging is disabled: start the server with")
    finally:
        assert await asyncio.to_thread(fleet.stop) == 0


async def test_an_edge_that_does_not_answer_is_reported_within_the_bound(
    fleet_of_two: tuple[SurgeProcess, list[dict[str, Any]]],
) -> None:
    fleet, edges = fleet_of_two
    assert fleet.process is not None
    pids = edge_pids(fleet.process.pid)
    frozen = edges[1]["id"]
    os.kill(pids[frozen], signal.SIGSTOP)  # alive but silent; the fleet replaces it 2 s later
    try:
        started = time.monotonic()
        status, body = await purge(fleet.url, {"prefix": f"{TITLE}/"}, **AUTH)
        waited = time.monotonic() - started
    finally:
        if pids[frozen] in edge_pids(fleet.process.pid).values():
            os.kill(pids[frozen], signal.SIGCONT)
    assert waited < 30  # bounded (5 s per edge, all at once), not a hang
    assert status == 502 and body["error"] == "1 of 2 edge(s) did not purge"
    by_id = {e["id"]: e for e in body["edges"]}
    failed = by_id[frozen]
    assert (failed["url"], failed["ok"], failed["status"]) == (edges[1]["url"], False, None)
    # Silent for 5 s, or killed sooner by the fleet's health check (2 s): either way reported, not hung.
    assert failed["error"] in ("no answer within 5 s", "unreachable: ClientOSError"), failed
    assert by_id[edges[0]["id"]]["ok"] is True


async def test_a_stalled_edge_is_given_up_after_the_timeout(peer: Peer) -> None:
    peer.stall = True  # accepts, never answers
    async with aiohttp.ClientSession() as session:
        outcomes = await purge_fleet(session, [("edge-9", peer.url)], "token", PurgeRequest((SEGMENT,)))
    assert outcomes == [EdgeFailed("edge-9", peer.url, "no answer within 5 s")]
    assert peer.counts["/admin/purge"] == 1


async def test_deleting_a_title_at_the_origin_purges_it_from_the_fleet(
    tmp_path: Path, make_source: MakeSource
) -> None:
    up = await asyncio.to_thread(
        SurgeProcess("up", "--data", str(tmp_path / "data"), "--fleet-port", "0", "--preset", "ultrafast",
                     "--min-edges", "1", "--cache-mem", "16MiB", token=None).start
    )  # fmt: skip
    try:
        token = (tmp_path / "data" / "admin.token").read_text().strip()  # generated: nobody set one
        auth = {"Authorization": f"Bearer {token}"}
        origin = up.url
        async with aiohttp.ClientSession() as session:

            def fleet_url() -> str | None:
                lines = list(up.log)
                found = [e["url"] for e in lines if (e.get("event"), e.get("name")) == ("listening", "fleet")]
                return found[0] if found else None

            async def fleet_listening() -> bool:
                return fleet_url() is not None

            await wait_until(fleet_listening, 30, "the fleet to listen")
            fleet = str(fleet_url())

            async def one_active() -> bool:
                return any(e["state"] == "active" for e in (await fleet_state(session, fleet))["edges"])

            await wait_until(one_active, 30, "an active edge")
            source = make_source("tiny.mp4", width=160, height=120, duration=2)
            headers = auth | {"Content-Type": "video/mp4"}
            data = source.read_bytes()
            async with session.post(f"{origin}/admin/titles", data=data, headers=headers) as answer:
                title = (await answer.json())["id"]
            async with session.get(f"{origin}/admin/titles/{title}", headers=auth) as response:
                assert response.status == 200
            deadline = time.monotonic() + 60
            while (await (await session.get(f"{origin}/admin/titles/{title}", headers=auth)).json())[
                "status"
            ] != "ready":
                assert time.monotonic() < deadline, "packaging did not finish"
                await asyncio.sleep(0.2)
            edge = (await fleet_state(session, fleet))["edges"][0]["url"]
            segment = f"{edge}/titles/{title}/audio/init.mp4"
            playlist = f"{edge}/titles/{title}/master.m3u8"
            for url in (segment, playlist, segment, playlist):
                status, headers, _ = await get(url)
                assert status == 200
            assert headers["X-Cache"] == "HIT"

            async with session.delete(f"{origin}/admin/titles/{title}", headers=auth) as response:
                assert response.status == 200
                body = await response.json()
            assert body["id"] == title and body["deleted"] is True
            report = body["fleet_purge"]
            assert report["ok"] is True and report["failed"] == 0 and report["purged"] >= 2
            assert [e["url"] for e in report["edges"]] == [edge]
            for url in (segment, playlist):  # gone from the edge too, not served from its cache
                assert (await get(url))[0] == 404
    finally:
        assert await asyncio.to_thread(up.stop) == 0


async def test_an_unreachable_fleet_does_not_undo_the_delete(tmp_path: Path, make_source: MakeSource) -> None:
    origin = await asyncio.to_thread(
        OriginProcess(tmp_path / "data", "--fleet", "http://127.0.0.1:9", "--preset", "ultrafast").start
    )
    try:
        async with aiohttp.ClientSession() as session:
            source = make_source("tiny.mp4", width=160, height=120, duration=2)
            _, created, _ = await upload(session, origin.url, source)
            await wait_for_status(session, origin.url, created["id"], {"ready"})
            async with session.delete(f"{origin.url}/admin/titles/{created['id']}", headers=AUTH) as response:
                assert response.status == 200
                body = await response.json()
            assert body["deleted"] is True and body["fleet_purge"]["ok"] is False
            assert body["fleet_purge"]["error"].startswith("the fleet at http://127.0.0.1:9 is unreachable")
            async with session.get(f"{origin.url}/admin/titles/{created['id']}", headers=AUTH) as response:
                assert response.status == 404
        assert any(e.get("event") == "fleet purge" and e.get("level") == "warning" for e in origin.log)
    finally:
        await asyncio.to_thread(origin.stop)
