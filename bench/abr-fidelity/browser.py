"""One hls.js player in headless Chromium, run inside a player's network namespace by ``run.py``.

Usage: ``browser.py SITE MASTER_URL LIMIT_S``. Opens SITE's ``/vendor/`` page, where a web server serves
``origin/web`` (the player page's files), loads its hls.js (the player page's copy, default settings),
builds a muted video element, prints ``ready``, waits for a line on stdin, plays MASTER_URL to the end
(or LIMIT_S seconds) and prints one JSON line: startup, stalls, media seconds per level, switches as
played, first switch — the same numbers ``viewer.py`` prints.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.chromium import CHROMEDRIVER, chromium_options

PLAYBACK_FLAGS = (
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-media-suspend",
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
)

# Records what the harness compares, in wall seconds from the call to loadSource: the first "playing"
# (startup), "waiting" .. "playing" after it (stalls), and FRAG_CHANGED, the fragment being played.
SETUP = """
const done = arguments[arguments.length - 1];
const script = document.createElement('script');
script.src = arguments[0];
script.onload = () => {
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  document.body.appendChild(video);
  const trace = {t0: null, startup: null, waiting: null, stalls: 0, stallTime: 0, frags: [], fetches: [],
                 requests: [], aborts: [], warnings: [], ended: false, end: null, version: Hls.version};
  const hls = new Hls({debug: {warn: (...parts) => trace.warnings.push([now(), parts.join(' ')])}});
  const now = () => (performance.now() - trace.t0) / 1000;
  video.addEventListener('playing', () => {
    if (trace.startup === null) trace.startup = now();
    if (trace.waiting !== null) { trace.stallTime += now() - trace.waiting; trace.waiting = null; }
  });
  video.addEventListener('waiting', () => {
    if (trace.startup !== null && trace.waiting === null && !video.ended) {
      trace.stalls += 1; trace.waiting = now();
    }
  });
  video.addEventListener('ended', () => { trace.ended = true; trace.end = video.currentTime; });
  const at = (t) => (t - trace.t0) / 1000;
  hls.on(Hls.Events.FRAG_BUFFERED, (_, data) => {
    const s = data.stats, frag = data.frag;
    if (frag.sn === 'initSegment') return;
    trace.fetches.push([frag.type, frag.sn, frag.level, s.loaded, at(s.loading.start), at(s.loading.first),
                        at(s.loading.end), at(s.parsing.end), s.bwEstimate]);
  });
  hls.on(Hls.Events.FRAG_LOADING, (_, data) => {
    const frag = data.frag;
    if (frag.sn !== 'initSegment') trace.requests.push([frag.type, frag.sn, frag.level, now()]);
  });
  hls.on(Hls.Events.FRAG_LOAD_EMERGENCY_ABORTED, (_, data) => {
    trace.aborts.push([data.frag.type, data.frag.sn, data.frag.level, data.stats.loaded, now()]);
  });
  hls.on(Hls.Events.FRAG_CHANGED, (_, data) => {
    trace.frags.push([now(), video.currentTime, data.frag.level]);
  });
  window.surgeTrace = trace; window.surgeVideo = video; window.surgeHls = hls;
  hls.attachMedia(video);
  done(Hls.version);
};
script.onerror = () => done('hls.js did not load');
document.head.appendChild(script);
"""

START = "window.surgeTrace.t0 = performance.now(); window.surgeHls.loadSource(arguments[0]);"

STATE = """
const t = window.surgeTrace, v = window.surgeVideo;
return {ended: t.ended, position: v.currentTime, now: (performance.now() - t.t0) / 1000,
        stalled: t.waiting !== null ? (performance.now() - t.t0) / 1000 - t.waiting : 0,
        trace: t, resources: performance.getEntriesByType('resource').filter(e => e.name.includes('/titles/'))
          .map(e => [e.name.split('/').slice(-2).join('/'), ...[e.startTime, e.connectStart, e.connectEnd,
                     e.requestStart, e.responseStart, e.responseEnd].map(at => (at - t.t0) / 1000)])};
"""


def summary(state: dict[str, object]) -> dict[str, object]:
    """The trace as the harness compares it (``viewer.py`` prints the same keys)."""
    trace: dict = state["trace"]  # type: ignore[assignment]
    frags: list[list[float]] = trace["frags"]
    position = float(trace["end"] if trace["end"] is not None else state["position"])  # type: ignore[arg-type]
    played: dict[int, float] = {}
    for (_, at, level), following in zip(frags, [*frags[1:], [0.0, position, -1]], strict=True):
        played[int(level)] = played.get(int(level), 0.0) + max(0.0, following[1] - at)
    levels = [int(level) for _, _, level in frags]
    switches = sum(1 for a, b in itertools.pairwise(levels) if a != b)
    first = next((frags[i + 1][0] for i in range(len(levels) - 1) if levels[i] != levels[i + 1]), None)
    stall_time = float(trace["stallTime"]) + float(state["stalled"])  # type: ignore[arg-type]
    return {
        "player": f"hls.js {trace['version']}",
        "startup": trace["startup"],
        "stalls": trace["stalls"],
        "stall_time": stall_time,
        "played": {str(level): seconds for level, seconds in sorted(played.items())},
        "switches": switches,
        "first_switch": first,
        "ended": trace["ended"],
        # per segment, audio too: type, index, level, bytes, sent, first byte, loaded, parsed, estimate
        "fetches": trace["fetches"],
        # every segment request (type, index, level, sent) and the abandon rule's aborts (type, index,
        # level, bytes loaded, when)
        "requests": trace["requests"],
        "aborts": trace["aborts"],
        # hls.js's warnings, with when: the abandon rule's reasoning (buffer, load times, estimates) is one
        "warnings": trace["warnings"],
        # Chromium's Resource Timing of every title request: rendition/file, start, connect start and
        # end (equal to start on a reused connection), request sent, first byte, last byte
        "resources": state.get("resources", []),
    }


def main() -> int:
    site, master, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with chromium_options(*PLAYBACK_FLAGS) as options:
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        try:
            driver.set_script_timeout(30)
            driver.get(f"{site}/vendor/")
            version = driver.execute_async_script(SETUP, f"{site}/vendor/hls.min.js")
            if not isinstance(version, str) or not version[:1].isdigit():
                print(json.dumps({"error": str(version)}), flush=True)
                return 1
            print("ready", flush=True)
            sys.stdin.readline()
            driver.execute_script(START, master)
            deadline = time.monotonic() + limit
            state = driver.execute_script(STATE)
            while not state["ended"] and time.monotonic() < deadline:
                time.sleep(0.25)
                state = driver.execute_script(STATE)
            print(json.dumps(summary(state)), flush=True)
            return 0
        finally:
            driver.quit()


if __name__ == "__main__":
    sys.exit(main())
