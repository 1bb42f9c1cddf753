"""The origin's packaging queue encodes long titles in chunks when it has packager slots to spare: slot
accounting (pure), a real origin process publishing a chunked title, and hls.js in Chromium playing it
across every join."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from origin.jobs import Slots
from tests.conftest import MakeSource
from tests.origin.conftest import OriginProcess, upload, wait_for_status
from tests.origin.test_browser import HLS_JS, chromium, needs_chromium, until
from tests.transcoder.checks import check_title

# 20 s in 6 s chunks of 6 s segments: three chunks, joins at 6 s and 12 s.
LONG = {"width": 426, "height": 240, "duration": 20}


def test_slots_held_while_an_encoding_is_chosen_then_kept_as_used() -> None:
    slots = Slots(4)
    assert slots.hold_free("long") == 4 and slots.free == 0
    with pytest.raises(ValueError, match="cannot hold 0 free slots"):
        slots.hold_free("short")
    slots.keep("long", 3)  # chunked, three at once
    assert (slots.free, slots.held_by("long")) == (1, 3)
    assert slots.hold_free("short") == 1
    slots.keep("short", 1)  # one process
    with pytest.raises(ValueError, match="holds 1 slots, cannot keep 2"):
        slots.keep("short", 2)
    with pytest.raises(ValueError, match="cannot keep 0"):
        slots.keep("long", 0)
    slots.release("long")
    assert (slots.free, slots.held_by("long")) == (3, 0)
    slots.release("short")
    slots.release("short")  # releasing twice is harmless
    assert slots.free == 4


@pytest.fixture
def chunking_origin(tmp_path: Path) -> Iterator[OriginProcess]:
    server = OriginProcess(tmp_path / "data", "--jobs", "2", "--chunk-seconds", "6").start()
    try:
        yield server
    finally:
        server.stop()


async def publish(origin: OriginProcess, source: Path, name: str = "Long") -> str:
    async with aiohttp.ClientSession() as session:
        _, body, _ = await upload(session, origin.url, source, name=name)
        final = await wait_for_status(session, origin.url, body["id"], {"ready", "failed"})
        assert final["status"] == "ready", final
        return str(body["id"])


def chunk_events(origin: OriginProcess) -> list[dict[str, object]]:
    return [e for e in list(origin.log) if e.get("event") == "packaging in chunks"]


async def test_the_queue_packages_a_long_title_in_chunks(
    chunking_origin: OriginProcess, make_source: MakeSource, tmp_path: Path
) -> None:
    title_id = await publish(chunking_origin, make_source("long-240p.mp4", **LONG))
    assert [(e["title"], e["chunks"], e["parallel"]) for e in chunk_events(chunking_origin)] == [
        (title_id, 3, 2)
    ]
    facts = check_title(chunking_origin.data / "titles" / title_id, tmp_path)
    assert facts["segments"] == [6.0, 6.0, 6.0, 2.0]
    # The whole title, as delivered over HTTP, decodes without a word from ffmpeg.
    done = await asyncio.to_thread(
        subprocess.run,
        ["ffmpeg", "-v", "error", "-i", f"{chunking_origin.url}/titles/{title_id}/master.m3u8",
         "-map", "0", "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert list((chunking_origin.data / "staging").iterdir()) == []


async def test_a_chunked_title_holds_its_slots_until_it_is_done(
    chunking_origin: OriginProcess, make_source: MakeSource
) -> None:
    """Both slots go to the chunked title; titles queued meanwhile wait for them, then all get packaged."""
    long = make_source("long-240p.mp4", **LONG)
    short = make_source("tiny.mp4", width=160, height=120, duration=2)
    packaging_long = asyncio.create_task(publish(chunking_origin, long))
    deadline = time.monotonic() + 60
    while not chunk_events(chunking_origin):
        assert time.monotonic() < deadline and not packaging_long.done(), "the long title was not chunked"
        await asyncio.sleep(0.05)
    shorts = await asyncio.gather(*(publish(chunking_origin, short, f"short {i}") for i in range(3)))
    long_id = await packaging_long
    events = [(e["event"], e.get("title")) for e in list(chunking_origin.log)]
    done_long = events.index(("packaged", long_id))
    assert all(events.index(("packaging", title_id)) > done_long for title_id in shorts), events


async def test_chunking_is_off_with_one_job_or_chunk_seconds_0(
    tmp_path: Path, make_source: MakeSource
) -> None:
    long = make_source("long-240p.mp4", **LONG)
    for args in (["--jobs", "1", "--chunk-seconds", "6"], ["--jobs", "2", "--chunk-seconds", "0"]):
        server = OriginProcess(tmp_path / f"data{args[1]}", "--preset", "ultrafast", *args).start()
        try:
            title_id = await publish(server, long)
            assert chunk_events(server) == []
            assert check_title(server.data / "titles" / title_id, tmp_path)["segments"] == [
                6.0,
                6.0,
                6.0,
                2.0,
            ]
        finally:
            server.stop()


# hls.js on the origin's own page (same origin), on a video element of its own, every event recorded from
# the start; one rendition pinned, until past both joins. Stalls count from 0.1 s on.
PLAY_THROUGH = """
const [master, pinned] = arguments;
const video = document.createElement("video");
video.muted = true;
document.body.append(video);
const record = window.record = {errors: [], waiting: []};
const hls = window.chunkedHls = new window.Hls();
hls.on(window.Hls.Events.ERROR, (_event, data) => {
  // A stall before the first frame is the browser slow to start on a busy machine, not a join; the one
  // buffered range from 0 checked below says the first segment is whole.
  if (data.details === window.Hls.ErrorDetails.BUFFER_STALLED_ERROR && video.currentTime <= 0.1) return;
  record.errors.push(`${data.details}${data.fatal ? " (fatal)" : ""} at ${video.currentTime.toFixed(2)} s`);
});
hls.on(window.Hls.Events.MANIFEST_PARSED, () => {
  hls.currentLevel = pinned;
  video.play();
});
video.addEventListener("waiting", () => {
  if (video.currentTime > 0.1) record.waiting.push(video.currentTime);
});
hls.loadSource(master);
hls.attachMedia(video);
window.chunkedVideo = video;
"""

PLAYBACK = """
const v = window.chunkedVideo;
const ranges = [];
for (let i = 0; i < v.buffered.length; i++) ranges.push([v.buffered.start(i), v.buffered.end(i)]);
return {time: v.currentTime, ranges, frames: v.getVideoPlaybackQuality().totalVideoFrames,
        height: v.videoHeight, level: window.chunkedHls.currentLevel, record: window.record};
"""


@needs_chromium
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_hls_js_plays_a_chunked_title_across_every_join(
    chunking_origin: OriginProcess, make_source: MakeSource
) -> None:
    assert HLS_JS.is_file(), f"{HLS_JS} is missing: run `make setup` (npm ci copies hls.js there)"
    title_id = asyncio.run(publish(chunking_origin, make_source("long-240p.mp4", **LONG)))
    assert [e["chunks"] for e in chunk_events(chunking_origin)] == [3]
    with chromium() as browser:
        browser.get(f"{chunking_origin.url}/")
        until(browser, "return typeof window.Hls === 'function'", 10, "hls.js loaded")
        master = f"{chunking_origin.url}/titles/{title_id}/master.m3u8"
        browser.execute_script(PLAY_THROUGH, master, 0)
        # Past the joins at 6 s and 12 s, and on towards the end.
        state = until(browser, PLAYBACK.replace("return {", "const s = {") + "return s.time > 14 && s;", 90,
                      "playback past 14 s")  # fmt: skip
    assert state["record"]["errors"] == [], state
    assert state["record"]["waiting"] == [], state  # no stall, at a join or anywhere
    assert state["height"] == 234 and state["level"] == 0
    # One buffered range from the start: no hole at a join for hls.js to jump over.
    [(start, end)] = state["ranges"]
    assert start < 0.1 and end > 14, state
    assert state["frames"] > 14 * 30 * 0.9, state
