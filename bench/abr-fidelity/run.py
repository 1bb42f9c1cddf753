"""On-demand benchmark: does a ``surge loadtest`` viewer choose, buffer and stall as hls.js does?

One hls.js player (the player page's npm copy, default settings, in Debian's headless Chromium) and one
surge viewer, each alone in a network namespace of a lab (``tests/hosts.py``, prefix ``sa``) whose
downlink is shaped with ``tc`` on the same schedule at the same instant: steady, step down, step up,
sawtooth, outage. The origin (``surge origin``) serves a 120 s 720p title packaged with the default
ladder on the lab's bridge. Per schedule it prints both players' share of media time per rendition,
switches (as played), first switch, stalls, stall time and startup, the differences, and whether they
meet the targets; the table goes to docs/benchmarks.md (only this file's section is replaced) and the
raw results to bench/results/abr-fidelity/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # bench/common.py
sys.path.insert(0, str(ROOT))  # tests/hosts.py
from common import free_port, start, stop, write_doc  # noqa: E402

from media.ladder import DEFAULT_LADDER  # noqa: E402
from tests.hosts import Host, Lab, unavailable_reason  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "abr-fidelity"
SECTION = "## Load tester: fidelity to hls.js"
# Long enough that one 6 s segment on a neighbouring rung is 10 points, not 20, and that a sawtooth
# period comes round six times rather than twice while the players still choose.
TITLE_SECONDS = 120.0
TITLE = f"abr-fidelity-{TITLE_SECONDS:.0f}s"
LIMIT = TITLE_SECONDS + 90  # seconds a player may take over the title, stalls included
Step = tuple[float, str | None]  # from this second on: a tbf rate, or None for an outage


def _sawtooth() -> list[Step]:
    rates = ("1000kbit", "1750kbit", "2500kbit", "3250kbit", "4000kbit")
    return [(4.0 * i, rates[i % len(rates)]) for i in range(int(TITLE_SECONDS // 4) + 10)]


def outage_start(run: int) -> float:
    """When run ``run`` (from 1) cuts the link: somewhere in 18-24 s, one segment's duration, spread evenly
    over the runs (golden-ratio steps). What an outage does depends on where it falls in the segment being
    loaded (just started: the abandon rule restarts the estimate from a long, slow sample; nearly done: a
    short stall of one request), and the viewer's timing repeats to the millisecond run after run, so an
    outage at one instant would judge it on one case only."""
    return 18.0 + 6.0 * ((run * 0.6180339887) % 1.0)


def _outage(run: int) -> list[Step]:
    start = outage_start(run)
    return [(0.0, "2500kbit"), (start, None), (start + 5.0, "2500kbit")]


# Per schedule, its steps for run N (from 1); both players get the same.
SCHEDULES: dict[str, Callable[[int], list[Step]]] = {
    "steady 2.5 Mbit/s": lambda _: [(0.0, "2500kbit")],
    "step down 4 -> 0.8 Mbit/s at 20 s": lambda _: [(0.0, "4000kbit"), (20.0, "800kbit")],
    "step up 0.8 -> 4 Mbit/s at 20 s": lambda _: [(0.0, "800kbit"), (20.0, "4000kbit")],
    "sawtooth 1 -> 4 Mbit/s, 20 s period": lambda _: _sawtooth(),
    "outage 5 s at 18-24 s (2.5 Mbit/s)": _outage,
}
# Targets, from the load tester's fidelity requirement.
SHARE_POINTS = 10.0  # sum over renditions of |share difference|, percentage points
SWITCHES = 1
STALL_S = 1.0
STARTUP_S = 0.5


@dataclass(frozen=True)
class Comparison:
    share_points: float
    switches: float  # a mean over runs when players' runs are pooled
    stall_s: float
    startup_s: float

    @property
    def within(self) -> bool:
        return (
            self.share_points <= SHARE_POINTS
            and abs(self.switches) <= SWITCHES
            and abs(self.stall_s) <= STALL_S
            and abs(self.startup_s) <= STARTUP_S
        )


def shares(played: dict[str, float]) -> dict[str, float]:
    total = sum(played.values()) or 1.0
    return {level: seconds / total for level, seconds in played.items()}


def pooled(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One player's runs of one schedule as one result: each rendition's mean share of play, and the mean
    switch count, stall time and startup. A single run of hls.js is not a reference: the same schedule
    played twice can differ by a segment or two on a neighbouring rung (one 6 s segment on another rung is
    1200 / TITLE_SECONDS points)."""
    levels = set().union(*(result["played"] for result in results))
    per_run = [shares(result["played"]) for result in results]
    startups = [result["startup"] for result in results if result["startup"] is not None]
    first_switches = [result["first_switch"] for result in results if result["first_switch"] is not None]
    return {
        "played": {level: fmean(run.get(level, 0.0) for run in per_run) for level in levels},
        "switches": fmean(result["switches"] for result in results),
        "first_switch": fmean(first_switches) if first_switches else None,
        "stalls": fmean(result["stalls"] for result in results),
        "stall_time": fmean(result["stall_time"] for result in results),
        "startup": fmean(startups) if startups else None,
        "runs": len(results),
    }


RUN = ", run "  # a row's label: the schedule's name, then its run when it has several


def run_label(schedule: str, run: int, numbered: bool) -> str:
    return f"{schedule}{RUN}{run}" if numbered else schedule


def schedule_of(label: str) -> str:
    return label.split(RUN)[0]


def runs_by_schedule(
    rows: list[tuple[str, dict, dict, Comparison]],
) -> dict[str, tuple[list[dict], list[dict]]]:
    """Each schedule's runs (labelled "<schedule>, run N"): (hls.js's results, surge's), in run order."""
    runs: dict[str, tuple[list[dict], list[dict]]] = {}
    for label, hlsjs, surge, _ in rows:
        both = runs.setdefault(schedule_of(label), ([], []))
        both[0].append(hlsjs)
        both[1].append(surge)
    return runs


def by_schedule(rows: list[tuple[str, dict, dict, Comparison]]) -> list[tuple[str, dict, dict, Comparison]]:
    """Every schedule's runs pooled per player (``pooled``) and compared: what the targets judge."""
    out = []
    for name, (hlsjs_runs, surge_runs) in runs_by_schedule(rows).items():
        hlsjs, surge = pooled(hlsjs_runs), pooled(surge_runs)
        out.append((name, hlsjs, surge, compare(hlsjs, surge)))
    return out


def compare(hlsjs: dict[str, Any], surge: dict[str, Any]) -> Comparison:
    """surge minus hls.js, per figure."""
    a, b = shares(hlsjs["played"]), shares(surge["played"])
    points = 100 * sum(abs(a.get(level, 0.0) - b.get(level, 0.0)) for level in a.keys() | b.keys())
    return Comparison(
        share_points=points,
        switches=surge["switches"] - hlsjs["switches"],
        stall_s=surge["stall_time"] - hlsjs["stall_time"],
        startup_s=(surge["startup"] or 0.0) - (hlsjs["startup"] or 0.0),
    )


BURST = "16kb"  # a real link is slow from its first byte; tbf's bucket would otherwise leak a burst
# An access link's queue: at 1 Mbit/s, tbf's usual 50 ms holds 4 packets, and which of two responses
# starting together loses its first packets there decides by chance how the link is shared (hls.js's own
# runs then differ by whole rungs). Home links queue hundreds of milliseconds.
QUEUE = "200ms"
# A real round trip: on a lab's veth it is microseconds, so a response is back before hls.js sends the request
# it makes a millisecond later, and whether Chromium then opens a second connection is a coin toss that
# decides how the first segments share the link. Ookla's US speed tests put fixed lines near 10 ms and
# mobile carriers at 31-39 ms (Q2 2019).
RTT_MS = 30.0


def _shape(host: Host, rate: str | None) -> None:
    if rate is None:
        host.cut()
    else:
        host.shape(ingress=rate, burst=BURST, queue=QUEUE)


def _read_line(process: subprocess.Popen[str], timeout: float, what: str) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            line = process.stdout.readline()
            if not line:
                break
            if line.strip():
                return line.strip()
    raise RuntimeError(f"{what}: no answer within {timeout:.0f} s (exit status {process.poll()})")


def play(lab_hosts: tuple[Host, Host], site: str, master: str, schedule: list[Step]) -> tuple[dict, dict]:
    """Both players at once, each behind its own downlink shaped by ``schedule``; Chromium's page and
    hls.js come from ``site``."""
    browser_host, viewer_host = lab_hosts
    for host in lab_hosts:
        host.forget_connections()  # every run starts as a new viewer's first visit would
        _shape(host, schedule[0][1])
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    options: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True, "env": env}
    browser = browser_host.popen(
        [sys.executable, str(HERE / "browser.py"), site, master, str(LIMIT)], **options
    )
    viewer = viewer_host.popen([sys.executable, str(HERE / "viewer.py"), master, str(LIMIT)], **options)
    try:
        for process, what in ((browser, "chromium"), (viewer, "surge viewer")):
            line = _read_line(process, 60, what)
            if line != "ready":
                raise RuntimeError(f"{what}: {line}")
        for process in (browser, viewer):
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        started = time.monotonic()
        stop_shaping = threading.Event()

        def shaper() -> None:
            for at, rate in schedule[1:]:
                if stop_shaping.wait(max(0.0, started + at - time.monotonic())):
                    return
                for host in lab_hosts:
                    _shape(host, rate)

        thread = threading.Thread(target=shaper, daemon=True)
        thread.start()
        try:
            results = [
                json.loads(_read_line(p, LIMIT + 30, w))
                for p, w in ((browser, "chromium"), (viewer, "viewer"))
            ]
            for process in (browser, viewer):
                # browser.py quits Chromium, and chromedriver removes the profile it made (14 MB) then:
                # killed before, they stay in /tmp.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(30)
        finally:
            stop_shaping.set()
            thread.join(10)
        return results[0], results[1]
    finally:
        for host in lab_hosts:
            host.kill()  # chromium, chromedriver and the viewer: every process in the two namespaces
            host.processes.clear()


def package(data: Path) -> str:
    """A 1280x720 test pattern with a tone, TITLE_SECONDS long, packaged with the default ladder into
    ``data``."""
    titles = data / "titles"
    if (titles / TITLE / "master.m3u8").is_file():
        return TITLE
    titles.mkdir(parents=True, exist_ok=True)
    from transcoder.sample import make_sample

    source = make_sample(data / "source.mp4", width=1280, height=720, duration=TITLE_SECONDS)
    argv = [sys.executable, "-m", "surge.cli", "transcode", str(source), "--out", str(titles / TITLE)]
    subprocess.run(
        [*argv, "--id", TITLE, "--quiet"], check=True, timeout=900, env=os.environ | {"PYTHONPATH": str(ROOT)}
    )
    source.unlink()
    return TITLE


def fmt(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:.1f}{unit}"


def count(value: float) -> str:
    """A count, or a mean of counts over runs."""
    return f"{value:g}" if float(value).is_integer() else f"{value:.1f}"


def table(rows: list[tuple[str, dict, dict, Comparison]], labels: list[str]) -> str:
    def share_text(result: dict) -> str:
        return " / ".join(
            f"{labels[int(k)]} {100 * v:.0f} %"
            for k, v in sorted(shares(result["played"]).items(), key=lambda kv: int(kv[0]))
            if v >= 0.005
        )

    lines = [
        "| schedule | player | share by rendition | switches | first switch s | stalls | stall s "
        "| startup s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, hlsjs, surge, diff in rows:
        for label, result in (("hls.js", hlsjs), ("surge", surge)):
            lines.append(
                f"| {name} | {label} | {share_text(result)} | {count(result['switches'])} "
                f"| {fmt(result['first_switch'])} | {count(result['stalls'])} "
                f"| {result['stall_time']:.1f} | {fmt(result['startup'])} |"
            )
        verdict = "**within targets**" if diff.within else "**outside targets**"
        switches = f"{diff.switches:+.0f}" if float(diff.switches).is_integer() else f"{diff.switches:+.1f}"
        lines.append(
            f"| {name} | difference | {diff.share_points:.1f} points | {switches} | | "
            f"| {diff.stall_s:+.1f} | {diff.startup_s:+.2f} ({verdict}) |"
        )
    return "\n".join(lines)


def spread(rows: list[tuple[str, dict, dict, Comparison]]) -> list[tuple[str, Comparison]]:
    """Per schedule run more than once: the largest difference between two of hls.js's own runs."""
    out = []
    for name, (results, _) in runs_by_schedule(rows).items():
        pairs = [compare(a, b) for i, a in enumerate(results) for b in results[i + 1 :]]
        if pairs:
            out.append(
                (
                    name,
                    Comparison(
                        max(p.share_points for p in pairs),
                        max((p.switches for p in pairs), key=abs),
                        max((p.stall_s for p in pairs), key=abs),
                        max((p.startup_s for p in pairs), key=abs),
                    ),
                )
            )
    return out


def saved_runs(
    saved: list[dict[str, Any]],
) -> tuple[list[str], list[tuple[str, dict, dict, Comparison]], float]:
    """Several raw results files as one run: their commands, their rows with each schedule's runs
    numbered on from one file to the next, and the links' round trip in ms. Runs of a schedule no longer
    defined are left out; files whose links had different round trips are not pooled."""
    round_trips = {results.get("rtt_ms", 0.0) for results in saved}  # files from before it was kept: 0
    if len(round_trips) > 1:
        raise ValueError(f"these files' links had different round trips ({sorted(round_trips)} ms)")
    rows: list[tuple[str, dict, dict, Comparison]] = []
    runs: dict[str, int] = {}
    for results in saved:
        for row in results["rows"]:
            name = schedule_of(row["schedule"])
            if name not in SCHEDULES:
                continue  # a schedule since redefined: its runs are not this one's
            runs[name] = runs.get(name, 0) + 1
            label = run_label(name, runs[name], len(saved) > 1 or RUN in row["schedule"])
            rows.append((label, row["hlsjs"], row["surge"], compare(row["hlsjs"], row["surge"])))
    return [results["command"] for results in saved], rows, round_trips.pop()


def document(commands: list[str], rows: list[tuple[str, dict, dict, Comparison]], rtt_ms: float) -> str:
    labels = [f"{rung.height}p" for rung in DEFAULT_LADDER]
    judged = by_schedule(rows)
    runs = {name: len(hlsjs) for name, (hlsjs, _) in runs_by_schedule(rows).items()}
    repeats = Counter(runs.values()).most_common(1)[0][0]
    others = ", ".join(f"{name}: {count}" for name, count in runs.items() if count != repeats)
    passed = sum(diff.within for *_, diff in judged)
    verdict = (
        f"Within targets: {passed} of {len(judged)} schedules. Raw results: `bench/results/abr-fidelity/`."
    )
    quoted = " and ".join(
        f"`{command}`" + (f" ({times} times)" if times > 1 else "")
        for command, times in Counter(commands).items()
    )
    setting = (
        f"{quoted} (as root) — {time.strftime('%Y-%m-%d')}, {rows[0][1]['player']} in Debian's headless "
        f"Chromium vs {rows[0][2]['player']}, both at once, each alone behind its own `tc tbf`-shaped "
        f"downlink ({BURST[:-2]} KB bucket, a {QUEUE[:-2]} ms queue, a {rtt_ms:g} ms round trip; a network "
        "namespace per player, the "
        "origin on the lab's bridge, Chromium's page and hls.js from a web server of their own; both ends "
        "forget earlier connections before each run), on a "
        f"{TITLE_SECONDS:.0f} s 1280x720 title packaged with the default ladder (6 s segments, audio apart). "
        "Shares are of media time played; switches are as played; times are wall seconds from the start of "
        "loading. Targets: shares within 10 points (sum of absolute differences), switches within ±1, stall "
        "time within 1 s, startup within 0.5 s."
    )
    if max(runs.values()) <= 1:
        return f"{SECTION}\n\n{setting}\n\n{table(rows, labels)}\n\n{verdict}\n"
    section = (
        f"{SECTION}\n\n{setting}\n\n"
        f"Judged on each schedule's {repeats} runs per player{f' ({others})' if others else ''} pooled: each "
        "rendition's mean share of play, "
        "the mean switch count, stall time and startup (the runs one by one follow).\n\n"
        f"{table(judged, labels)}\n\n"
        f"{verdict}\n\n"
        f"Run by run:\n\n{table(rows, labels)}\n"
    )
    own = spread(rows)
    lines = [
        "| schedule | share points | switches | stall s | startup s |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {c.share_points:.1f} | {c.switches:+.0f} | {c.stall_s:+.1f} | {c.startup_s:+.2f} |"
            for name, c in own
        ),
    ]
    return (
        section + "\nThe reference against itself — the largest difference between two runs of hls.js on the "
        f"same schedule (one 6 s segment on another rung is {1200 / TITLE_SECONDS:.0f} points):\n\n"
        + "\n".join(lines)
        + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, help="library to keep the packaged title in (default: a temporary one)"
    )
    parser.add_argument("--only", nargs="+", help="schedules whose name starts with one of these words")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument(
        "--rtt", type=float, default=RTT_MS, help=f"each link's round trip in ms (default {RTT_MS:g})"
    )
    parser.add_argument("--repeat", type=int, default=4, help="runs of every schedule, pooled (default 4)")
    parser.add_argument(
        "--render",
        type=Path,
        nargs="+",
        help="write the doc from saved raw results files, their runs pooled; no run",
    )
    args = parser.parse_args()
    if args.render is not None:
        try:
            commands, rows, rtt_ms = saved_runs([json.loads(path.read_text()) for path in args.render])
        except (OSError, ValueError) as err:
            print(f"abr-fidelity: error: {err}", file=sys.stderr)
            return 1
        write_doc(SECTION, document(commands, rows, rtt_ms))
        return 0
    reason = unavailable_reason() or ("a round trip cannot be negative" if args.rtt < 0 else None)
    if reason is not None:
        print(f"abr-fidelity: error: {reason}", file=sys.stderr)
        return 1
    schedules = {n: s for n, s in SCHEDULES.items() if not args.only or n.split()[0] in args.only}
    command = shlex.join(["python", "bench/abr-fidelity/run.py", *sys.argv[1:]])
    with tempfile.TemporaryDirectory(prefix="surge-abr-") as scratch:
        data = args.data or Path(scratch) / "data"
        title = package(data)
        with Lab("sa") as lab, contextlib.ExitStack() as servers:
            origin_port, site_port = free_port(), free_port()
            origin = f"http://{lab.address}:{origin_port}"
            argv = [sys.executable, "-m", "surge.cli", "origin", "--data", str(data), "--host", lab.address]
            argv += ["--port", str(origin_port), "--no-access-log"]
            servers.callback(stop, start(argv, Path(scratch) / "origin.log", f"{origin}/healthz"))
            # The page and hls.js come from a web server of their own, as on a real site (media from a
            # CDN). Loaded from the origin, hls.js's 400 KB would leave Chromium one connection to the
            # origin whose congestion control already knows the link, which the first video segment
            # then rides: an edge no viewer of the load tester has.
            site = f"http://{lab.address}:{site_port}"
            site_argv = [sys.executable, "-m", "http.server", str(site_port), "--bind", lab.address]
            site_argv += ["--directory", str(ROOT / "origin" / "web")]
            servers.callback(stop, start(site_argv, Path(scratch) / "site.log", f"{site}/vendor/hls.min.js"))
            rtt = args.rtt / 1000
            hosts = (lab.add_host("hj", rtt=rtt), lab.add_host("sv", rtt=rtt))
            master = f"{origin}/titles/{title}/master.m3u8"
            rows = []
            for run in range(1, max(1, args.repeat) + 1):
                for name, schedule in schedules.items():
                    label = run_label(name, run, args.repeat > 1)
                    print(f"{label} ...", file=sys.stderr, flush=True)
                    hlsjs, surge = play(hosts, site, master, schedule(run))
                    rows.append((label, hlsjs, surge, compare(hlsjs, surge)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = [{"schedule": n, "hlsjs": h, "surge": s} for n, h, s, _ in rows]
    raw = {"command": command, "rtt_ms": args.rtt, "rows": saved}
    (RESULTS / f"{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(raw, indent=2) + "\n")
    section = document([command], rows, args.rtt)
    print(section)
    if not args.no_doc:
        write_doc(SECTION, section)
    return 0 if all(diff.within for *_, diff in by_schedule(rows)) else 3


if __name__ == "__main__":
    sys.exit(main())
