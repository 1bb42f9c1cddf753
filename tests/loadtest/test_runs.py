"""Whole runs against real HLS servers on 127.0.0.1, each built so that the right report is known."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web

from loadtest.config import LoadTestConfig
from loadtest.driver import run_loadtest
from loadtest.hosts import RemoteRefused
from media.hls import parse_master
from tests.loadtest.conftest import TITLE, Library, MediaServer

Serve = Callable[..., Awaitable[MediaServer]]
SPEED = 8.0  # the 20 s title plays in 2.5 s


async def run(url: str, **options: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"speed": SPEED, "duration": 6.0, "on_end": "leave"} | options
    return await run_loadtest(LoadTestConfig(url, **settings))


def cmcd_of(seen_query: dict[str, str]) -> dict[str, str]:
    pairs = (item.partition("=") for item in seen_query["CMCD"].split(","))
    return {key: value for key, _, value in pairs}


def rendition(report: dict[str, Any], label: str) -> dict[str, Any]:
    return next(r for r in report["viewers"]["renditions"] if r["label"] == label)


async def test_healthy_server_plays_everything_and_sends_cmcd(serve: Serve, library: Library) -> None:
    bitrates = {
        str(round(v.average_bandwidth / 1000))
        for v in parse_master((library.title / "master.m3u8").read_text()).variants
        if v.average_bandwidth
    }
    server = await serve()
    report = await run(server.master, players=2, duration=4.0, on_end="replay")
    viewers, requests = report["viewers"], report["requests"]
    assert viewers["sessions_started"] == viewers["sessions"] >= 3  # 4 s at 8x: one title and more each
    assert viewers["sessions_ended"] >= 2 and viewers["sessions_failed"] == 0
    assert viewers["rebuffers"] == 0 and requests["errors"] == 0 and requests["errors_by_kind"] == {}
    assert 0 < viewers["startup_s"]["p50"] < 0.5
    assert set(requests["by_type"]) == {"manifest", "playlist", "init", "video", "audio"}
    # Every path's first request was a MISS at the server, the rest HITs; all from one edge.
    paths = {s.path for s in server.seen} - {"/fleet"}  # the probe for a surge fleet is not player traffic
    assert requests["x_cache"]["MISS"]["requests"] == len(paths)
    assert requests["x_cache"]["HIT"]["requests"] == requests["total"] - len(paths)
    assert requests["served_by"] == {"edge-test": {"requests": requests["total"], "bytes": requests["bytes"]}}
    assert 3 <= len(report["series"]) <= 5 and max(s["active"] for s in report["series"]) == 2

    video = [s for s in server.segments() if s.path.split("/")[-2] in ("234p", "360p")]
    sessions = {cmcd_of(s.query)["sid"] for s in video}
    assert len(sessions) == viewers["sessions"]
    for seen in video:
        keys = cmcd_of(seen.query)
        index = int(seen.path[-9:-4])
        assert keys["ot"] == "v" and keys["sf"] == "h" and keys["st"] == "v" and keys["pr"] == "8"
        assert keys["d"] == "2000" and keys["br"] in bitrates
        assert keys.get("nor", "") == (f'"seg_{index + 1:05d}.m4s"' if index < 9 else "")


async def test_a_stalled_segment_shows_as_one_rebuffer(serve: Serve) -> None:
    stalled: list[str] = []

    async def stall_fifth_video_segment(_request: web.Request, path: str) -> None:
        if path.endswith("p/seg_00004.m4s") and not stalled:
            stalled.append(path)
            await asyncio.sleep(2.0)  # 8 s of media buffered last 1 s at 8x: about 1 s without picture

    server = await serve(misbehave=stall_fifth_video_segment)
    report = await run(server.master, players=1)
    viewers = report["viewers"]
    assert stalled and viewers["sessions"] == 1 and viewers["sessions_ended"] == 1
    assert viewers["rebuffers"] == 1 and viewers["sessions_with_rebuffer"] == 1
    assert 0.7 < viewers["rebuffer_s"] < 1.3
    played_wall = viewers["played_s"] / SPEED
    assert viewers["played_s"] == pytest.approx(20.0, abs=0.1)
    assert viewers["rebuffer_ratio"] == pytest.approx(
        viewers["rebuffer_s"] / (viewers["rebuffer_s"] + played_wall), abs=1e-3
    )
    assert sum(s["rebuffers"] for s in report["series"]) == 1
    assert max(s["stalled"] for s in report["series"]) <= 1
    assert report["requests"]["by_type"]["video"]["latency_ms"]["max"] > 2000


async def test_a_failing_rendition_is_counted_and_left(serve: Serve) -> None:
    async def refuse_360p_segments(_request: web.Request, path: str) -> web.Response | None:
        return web.Response(status=503, text="busy") if path.startswith(f"titles/{TITLE}/360p/seg_") else None

    server = await serve(misbehave=refuse_360p_segments)
    # The player believes the network is fast, starts on 360p, meets the 503 and moves to 234p for good.
    report = await run(server.master, players=1, start_bandwidth=5_000_000, cmcd="headers")
    viewers, requests = report["viewers"], report["requests"]
    assert requests["errors_by_kind"] == {"http_503": 1}
    assert requests["by_type"]["video"]["errors"] == 1 and requests["errors"] == 1
    assert viewers["sessions_ended"] == 1 and viewers["sessions_failed"] == 0 and viewers["rebuffers"] == 0
    assert rendition(report, "360p")["played_s"] == 0 and viewers["top_rendition_share"] == 0
    assert rendition(report, "234p")["played_s"] == pytest.approx(20.0, abs=0.1)
    assert sum(s["errors"] for s in report["series"]) == 1
    # CMCD in headers this time, none in the query.
    # The first video segment (audio loads alongside, so it may come first).
    segment = next(s for s in server.segments() if "/audio/" not in s.path)
    assert "CMCD" not in segment.query
    assert 'nor="seg_00001.m4s"' in segment.headers["CMCD-Request"]
    assert "sid=" in segment.headers["CMCD-Session"] and "ot=v" in segment.headers["CMCD-Object"]


async def test_a_slow_server_makes_players_switch_down(serve: Serve, library: Library) -> None:
    rate = 400_000  # bytes/s: 234p needs about 290 kB/s at 8x, 360p about 520 kB/s

    async def throttle(request: web.Request, path: str) -> web.StreamResponse | None:
        if not path.endswith(".m4s"):
            return None
        body = (library.root / path).read_bytes()
        response = web.StreamResponse(headers={"Content-Type": "video/iso.segment"})
        response.content_length = len(body)
        await response.prepare(request)
        for start in range(0, len(body), 16_384):
            await response.write(body[start : start + 16_384])
            await asyncio.sleep(16_384 / rate)
        await response.write_eof()
        return response

    server = await serve(misbehave=throttle)
    report = await run(server.master, players=1, start_bandwidth=5_000_000)
    viewers = report["viewers"]
    assert viewers["sessions_ended"] == 1 and report["requests"]["errors"] == 0
    assert viewers["switches_down"] >= 1
    assert rendition(report, "360p")["played_s"] > 0  # it started there
    assert rendition(report, "234p")["share"] > 0.7  # and spent the rest below
    assert viewers["avg_bitrate_bps"] < 400_000
    # Second by second, the play time by rendition adds up to the session's (it ended inside the run).
    timeline = [s["played"] for s in report["series"]]
    for label in ("234p", "360p"):
        by_second = sum(played.get(label, 0.0) for played in timeline)
        assert by_second == pytest.approx(rendition(report, label)["played_s"], abs=0.01), timeline
    # It began on 360p: the first second that played anything played it, the last one 234p only.
    playing = [played for played in timeline if played]
    assert "360p" in playing[0] and set(playing[-1]) == {"234p"}


async def test_content_steering_picks_and_changes_the_pathway(serve: Serve, library: Library) -> None:
    packaged = parse_master((library.title / "master.m3u8").read_text())
    audio = packaged.audio[0].uri
    lines = ["#EXTM3U", "#EXT-X-VERSION:4", '#EXT-X-CONTENT-STEERING:SERVER-URI="/steer",PATHWAY-ID="a"']
    for pathway in ("a", "b"):
        base = f"/{pathway}/titles/{TITLE}"
        group = f'GROUP-ID="audio-{pathway}"'
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,{group},NAME="Main",DEFAULT=YES,URI="{base}/{audio}"')
        for v in packaged.variants:
            lines.append(
                f"#EXT-X-STREAM-INF:BANDWIDTH={v.bandwidth},AVERAGE-BANDWIDTH={v.average_bandwidth},"
                f'AUDIO="audio-{pathway}",PATHWAY-ID="{pathway}"'
            )
            lines.append(f"{base}/{v.uri}")
    manifests = {
        "/steer": {"VERSION": 1, "TTL": 1, "RELOAD-URI": "/steer2", "PATHWAY-PRIORITY": ["b", "a"]},
        "/steer2": {"VERSION": 1, "TTL": 1, "PATHWAY-PRIORITY": ["a", "b"]},
    }
    documents = {"/steered.m3u8": ("application/vnd.apple.mpegurl", "\n".join(lines) + "\n")}
    documents |= {path: ("application/json", json.dumps(body)) for path, body in manifests.items()}
    server = await serve(pathways=("a", "b"), documents=documents)
    # A 4 s buffer goal (maxBufferSize too small to extend it) keeps the player fetching all along (5 s at
    # 4x), so the switch at 1 s shows.
    report = await run(
        f"{server.url}/steered.m3u8",
        players=1,
        duration=2.5,
        speed=4.0,
        max_buffer=4.0,
        abr_settings=(("maxBufferSize", 1.0),),
    )

    steering = [s for s in server.seen if s.path in manifests]
    assert [s.path for s in steering[:2]] == ["/steer", "/steer2"]
    assert steering[0].query == {"_HLS_pathway": "a"}  # before any segment: no throughput yet
    assert steering[1].query["_HLS_pathway"] == "b" and int(steering[1].query["_HLS_throughput"]) > 0
    order = [s.prefix for s in server.segments()]
    assert order[0] == "b" and "a" in order  # steered to b first, then back to a
    assert order.index("a") > max(i for i, p in enumerate(order) if p == "b")
    assert report["requests"]["errors"] == 0 and report["requests"]["by_type"]["steering"]["requests"] >= 2
    assert report["viewers"]["rebuffers"] == 0


async def test_flash_profile_reports_the_crowd_and_the_background(serve: Serve) -> None:
    server = await serve(pathways=("other",))
    other = f"{server.url}/other/titles/{TITLE}/master.m3u8"
    report = await run(
        server.master, profile="flash", players=4, ramp=1.0, titles=(other,), background=2, duration=4.0
    )
    titles = report["titles"]
    assert titles[other]["background"] is True and titles[other]["sessions"] == 2
    assert titles[server.master]["background"] is False and titles[server.master]["sessions"] == 4
    masters = [s.prefix for s in server.seen if s.path.endswith("master.m3u8")]
    assert masters[:2] == ["other", "other"] and masters[2:] == [""] * 4
    assert report["viewers"]["sessions"] == 6 and report["config"]["background"] == 2
    # The first background viewer has left (2.5 s) by the time the last of the crowd arrives (2.75 s).
    assert 5 <= max(s["active"] for s in report["series"]) <= 6


async def test_the_run_stops_by_itself_and_closes_sessions_in_flight(serve: Serve) -> None:
    async def hang(_request: web.Request, path: str) -> None:
        if path.endswith(".m4s"):
            await asyncio.sleep(30)

    server = await serve(misbehave=hang)
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = await run(server.master, players=3, duration=1.5, timeout=20.0)
    assert loop.time() - started < 1.5 + 2.0
    viewers = report["viewers"]
    assert viewers["sessions"] == 3 and viewers["sessions_started"] == 0  # never got a segment
    assert report["wall_s"] < 2.5


async def test_redirects_are_followed_but_not_to_other_hosts(serve: Serve) -> None:
    async def redirect(_request: web.Request, path: str) -> None:
        if path == "go":
            raise web.HTTPFound(f"/titles/{TITLE}/master.m3u8")
        if path == "away":
            raise web.HTTPFound("http://192.0.2.1/master.m3u8")

    server = await serve(misbehave=redirect)
    followed = await run(f"{server.url}/go", players=1, duration=2.0)
    assert followed["viewers"]["sessions_started"] == 1 and followed["requests"]["errors"] == 0
    assert followed["requests"]["by_type"]["manifest"]["requests"] == 1  # one request, two hops
    assert [s.path for s in server.seen[:3]] == ["/fleet", "/go", f"/titles/{TITLE}/master.m3u8"]

    refused = await run(f"{server.url}/away", players=1, duration=2.0)
    assert refused["requests"]["errors_by_kind"] == {"refused_remote": 1}
    assert refused["viewers"]["sessions_failed"] == 1 and refused["viewers"]["sessions_started"] == 0


async def test_refuses_remote_hosts() -> None:
    with pytest.raises(RemoteRefused, match="--allow-remote"):
        await run("http://192.0.2.1/master.m3u8", players=1, duration=1.0)


def test_cmcd_of_reads_the_query_argument() -> None:
    assert cmcd_of({"CMCD": unquote('nor="a",ot=v')}) == {"nor": '"a"', "ot": "v"}


async def test_a_segment_that_will_not_arrive_in_time_is_dropped_for_a_lower_rung(
    serve: Serve, library: Library
) -> None:
    # Three rungs, the top one a copy of 360p under /top/ declared at 4 Mbit/s (3 average): the viewer
    # starts there (it is told the network does 50 Mbit/s) and fetches segments 0 and 1 at once. Segment
    # 2 of the top rung then trickles: 80 % in 0.8 s, then nothing for 3 s. A second into it, with
    # under 3 s buffered, the 750 kB its AVERAGE-BANDWIDTH promises would take many seconds more at the
    # rate seen, while 360p's 2 s (declared 200k) would load in well under 2 s: hls.js's abandon rule
    # drops the request and starts again from the lowest rung.
    packaged = parse_master((library.title / "master.m3u8").read_text())
    audio = packaged.audio[0].uri
    low, middle = packaged.variants[0].uri, packaged.variants[1].uri
    base = f"/titles/{TITLE}"
    lines = ["#EXTM3U", "#EXT-X-VERSION:4"]
    lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Main",DEFAULT=YES,URI="{base}/{audio}"')
    rungs = ((100_000, 80_000, f"{base}/{low}"), (200_000, 150_000, f"{base}/{middle}"))
    for bandwidth, average, uri in (*rungs, (4_000_000, 3_000_000, f"/top{base}/{middle}")):
        lines += [f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},AVERAGE-BANDWIDTH={average},AUDIO="aud"', uri]
    documents = {"/three.m3u8": ("application/vnd.apple.mpegurl", "\n".join(lines) + "\n")}
    trickled: list[str] = []

    async def trickle(request: web.Request, path: str) -> web.StreamResponse | None:
        if not (request.path.startswith("/top/") and path.endswith("seg_00002.m4s")) or trickled:
            return None
        trickled.append(path)
        body = (library.root / path).read_bytes()
        response = web.StreamResponse(headers={"Content-Type": "video/iso.segment"})
        response.content_length = len(body)
        await response.prepare(request)
        part = int(len(body) * 0.8) // 8
        for start in range(0, 8 * part, part):
            await response.write(body[start : start + part])
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # cancelled when the viewer drops the request
        await response.write(body[8 * part :])
        await response.write_eof()
        return response

    server = await serve(pathways=("top",), documents=documents, misbehave=trickle)
    report = await run(f"{server.url}/three.m3u8", players=1, speed=1.0, duration=4.0, start_bandwidth=50e6)

    video = [(s.prefix, s.path.rsplit("/", 2)[-2:]) for s in server.segments() if "/audio/" not in s.path]
    top_rung, low_rung = middle.split("/")[0], low.split("/")[0]
    assert video[:3] == [("top", [top_rung, f"seg_0000{i}.m4s"]) for i in range(3)], video
    assert video[3] == ("", [low_rung, "seg_00002.m4s"]), video  # the same segment, from the lowest rung
    assert report["requests"]["errors"] == 0  # a dropped request is not an error
    assert report["viewers"]["sessions_started"] == 1


async def test_the_first_video_segment_is_asked_for_before_the_first_audio_one(serve: Serve) -> None:
    # The video one first, as hls.js's: on a slow link the first response's bytes are ahead of the
    # other's, which decides the first throughput sample.
    arrived: list[str] = []

    async def record(_request: web.Request, path: str) -> web.Response | None:
        if path.endswith(".m4s"):
            arrived.append(path)
        return None

    server = await serve(misbehave=record)
    report = await run(server.master, players=1)
    assert report["requests"]["errors"] == 0
    firsts = [p for p in arrived if p.endswith("seg_00000.m4s")]
    assert len(firsts) == 2 and "/audio/" in firsts[1], arrived


async def test_audio_segments_load_while_a_video_segment_loads(serve: Serve) -> None:
    # hls.js's stream and audio-stream controllers load side by side; so do the viewer's two tracks.
    video_loading: list[str] = []
    alongside: list[str] = []

    async def slow_video(_request: web.Request, path: str) -> web.Response | None:
        if not path.endswith(".m4s"):
            return None
        if "/audio/" in path:
            await asyncio.sleep(0.05)  # the video segment of the same time may reach the server second
            if video_loading:
                alongside.append(path.rsplit("/", 1)[-1])
            return None
        video_loading.append(path)
        try:
            await asyncio.sleep(0.2)
        finally:
            video_loading.remove(path)
        return None  # then served as usual

    server = await serve(misbehave=slow_video)
    report = await run(server.master, players=1)
    assert report["viewers"]["sessions_ended"] == 1 and report["requests"]["errors"] == 0
    assert alongside
