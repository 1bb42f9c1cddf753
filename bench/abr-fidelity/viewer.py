"""One ``surge loadtest`` viewer, run inside a player's network namespace by ``run.py``.

Usage: ``viewer.py MASTER_URL LIMIT_S [NAME=VALUE ...]`` (hls.js settings, as ``--abr-set``). Imports
everything, prints ``ready``, waits for a line on stdin, plays MASTER_URL once (``on_end="leave"``,
at 1x, no CMCD) and prints one JSON line with the keys ``browser.py`` prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from loadtest.abr import HLS_JS_VERSION
from loadtest.config import LoadTestConfig
from loadtest.driver import Fetched, Run
from loadtest.player import LoadSegment, PlayerCore, SessionResult
from service.loop import run


def main() -> int:
    master, limit = sys.argv[1], float(sys.argv[2])
    settings = tuple((name, float(value)) for name, _, value in (a.partition("=") for a in sys.argv[3:]))
    config = LoadTestConfig(
        master,
        players=1,
        duration=limit,
        on_end="leave",
        cmcd="off",
        allow_remote=True,  # the origin is on the lab's bridge, not on loopback
        abr_settings=settings,
    )
    results: list[tuple[SessionResult, list[str]]] = []
    fetches: list[list[object]] = []

    def on_segment(now: float, action: LoadSegment, fetched: Fetched, core: PlayerCore) -> None:
        t0 = core.started_at
        sent = now - fetched.seconds  # the clocks differ by less than a millisecond here
        first = None if fetched.ttfb is None else sent + fetched.ttfb - t0
        fetches.append(
            [
                action.track,
                action.index,
                action.rung,
                fetched.nbytes,
                sent - t0,
                first,
                now - t0,
                core.throughput,
            ]
        )

    print("ready", flush=True)
    sys.stdin.readline()
    driver = Run(
        config, on_session=lambda result, labels: results.append((result, labels)), on_segment=on_segment
    )
    run(driver.run())
    result, _labels = results[0]
    print(
        json.dumps(
            {
                "player": f"surge loadtest (hls.js {HLS_JS_VERSION} model)",
                "startup": result.startup,
                "stalls": result.stalls,
                "stall_time": result.stall_time,
                "played": {str(level): seconds for level, seconds in enumerate(result.played) if seconds},
                "switches": result.switches_up + result.switches_down,
                "first_switch": result.first_switch,
                "ended": result.ended,
                "errors": result.errors,  # failed requests (retried)
                "abandons": result.abandons,  # requests dropped by the abandon rule
                # per segment, as browser.py: track, index, level, bytes, sent, first byte, loaded, estimate
                "fetches": fetches,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
