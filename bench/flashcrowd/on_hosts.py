"""On-demand benchmark: a flash crowd on emulated hosts (`run.py --hosts N --host-rate RATE`).

Every machine is a network namespace on a bridge in 198.51.100.0/24 (tests/hosts.py): N edge hosts, each
a Ray worker node offering one `surge_edge` unit, its card limited to RATE both ways with `tc tbf`;
player hosts, unshaped; and `surge up --backend ray` (origin + fleet, origin access log on) on the
bridge address in the root namespace, beside the Ray head. `surge loadtest` runs on the player hosts:
calm viewers on a calm title first, then a crowd ramping onto a ~2 Mbit/s title, split over several
load-test processes so that none saturates. Two variants in one run: the autoscaled fleet (1..N edges)
and one fixed edge. Results: docs/benchmarks.md, per-run JSON in bench/results/flashcrowd/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/common.py

from common import write_doc  # noqa: E402
from run import busy_seconds, cpu_seconds, listening, machine, pin, stop, upload  # noqa: E402

from edge.router.scaler import ScalerConfig, parse_capacity  # noqa: E402
from tests.cluster.conftest import Cluster, kill_edges  # noqa: E402
from tests.hosts import Host, Lab, RayCluster, unavailable_reason  # noqa: E402
from transcoder.sample import make_sample  # noqa: E402

SECTION = "## Flash crowd on emulated hosts"
RESULTS = ROOT / "bench" / "results" / "flashcrowd"
SURGE = [sys.executable, "-m", "surge.cli"]
# With --pin: players (other machines, in reality) on one core, what they measure on the other.
SERVER_CPU, PLAYER_CPU = "0", "1"
RAY = str(Path(sys.executable).with_name("ray"))
UTILIZATION = ScalerConfig().target_utilization  # the share of --edge-capacity the scaler fills
POLL_S = 0.5
EDGE_POLL_S = 0.1  # each new edge's /stats, to time its first answer to a player
EDGE_WATCH_S = 30.0  # how long after it first appears in /fleet
BUFFER_S = 30.0  # surge loadtest's default --max-buffer
# The targets (printed met / not met).
GOAL_RATIO, GOAL_TOP, GOAL_REBUFFER, GOAL_DECISION_S, GOAL_ANSWER_S = 2.5, 0.8, 0.01, 2.0, 5.0


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one variant left behind: polls of /fleet, load-test reports, the origin's request log."""

    key: str
    name: str
    command: str
    max_edges: int
    polls: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (wall time, /fleet)
    # edge id -> (wall time, requests it counted so far), from its own /stats
    served: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    calm: dict[str, Any] = field(default_factory=dict)  # the calm viewers' report
    crowd: list[dict[str, Any]] = field(default_factory=list)  # one report per crowd process
    starts: dict[str, float] = field(default_factory=dict)  # wall time each report's run began
    origin_requests: Counter[str] = field(default_factory=Counter)
    edge_cpu: dict[str, float] = field(default_factory=dict)  # node -> CPU seconds in the crowd phase
    machine_busy: float = 0.0  # busy cores of the whole machine in the crowd phase


def poll_fleet(
    fleet: str, polls: list[tuple[float, dict[str, Any]]], done: threading.Event, limit: float
) -> None:
    deadline = time.monotonic() + limit
    while not done.is_set() and time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(f"{fleet}/fleet", timeout=2) as r,
        ):
            polls.append((time.time(), json.loads(r.read())))
        done.wait(POLL_S)


def watch_edges(
    polls: list[tuple[float, dict[str, Any]]],
    served: dict[str, list[tuple[float, int]]],
    done: threading.Event,
    limit: float,
) -> None:
    """Every EDGE_POLL_S, the request count of each edge that appeared in /fleet, or left standby, less
    than EDGE_WATCH_S ago, or stands by (the edges of the first poll are not new)."""
    deadline = time.monotonic() + limit
    first_seen: dict[str, float] = {}
    while not done.is_set() and time.monotonic() < deadline:
        latest = polls[-1][1] if polls else {"edges": []}
        for edge in latest["edges"]:
            seen = first_seen.setdefault(edge["id"], time.monotonic() if len(polls) > 1 else -math.inf)
            if edge.get("state") == "standby":
                first_seen[edge["id"]] = time.monotonic()  # its watch starts again when promoted
            if not edge.get("url") or time.monotonic() - seen > EDGE_WATCH_S:
                continue
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(f"{edge['url']}/stats", timeout=1) as r,
            ):
                stats = json.loads(r.read())
                served.setdefault(edge["id"], []).append((time.time(), stats["hits"] + stats["misses"]))
        done.wait(EDGE_POLL_S)


def edge_processes(host: Host) -> list[int]:
    return [pid for pid in host.pids() if b"surge.cli\0edge" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def run_started(report: Path) -> float:
    """Wall time the load test's run began: the report is written as the run ends, `wall_s` after."""
    data = json.loads(report.read_text())
    return report.stat().st_mtime - float(data["wall_s"])


def loadtest(
    host: Host,
    log: Path,
    report: Path,
    url: str,
    args: Sequence[str],
    env: Mapping[str, str],
    cpu: str | None,
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        argv = [*SURGE, "loadtest", url, "--allow-remote", "--quiet", "--report", str(report), *args]
        return host.popen(
            [*pin(cpu), *argv],
            stdin=DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
        )


def finish(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def run_variant(
    args: argparse.Namespace,
    key: str,
    name: str,
    edges: tuple[int, int],
    cluster: Cluster,
    players: list[Host],
    data: Path,
    work: Path,
    titles: dict[str, str],
    env: Mapping[str, str],
) -> Outcome:
    namespace = f"sf-{key}"
    flags = [
        "--min-edges",
        str(edges[0]),
        "--max-edges",
        str(edges[1]),
        "--edge-capacity",
        args.edge_capacity,
        "--scale-in-window",
        "600",
        "--cache-mem",
        "512MiB",
    ]
    if edges[1] > 1 and args.standby_edges:
        flags += ["--standby-edges", str(args.standby_edges)]
    argv = [
        *pin(SERVER_CPU if args.pin else None),
        *SURGE,
        "up",
        "--data",
        str(data),
        "--host",
        cluster.lab.address,
        "--port",
        "0",
        "--fleet-port",
        "0",
        "--backend",
        "ray",
        "--ray-address",
        cluster.ray.address,
        "--ray-namespace",
        namespace,
        *flags,
    ]
    command = shlex.join(["surge", *argv[argv.index("up") :]]).replace(str(data), "DATA")
    outcome = Outcome(key, name, command, edges[1])
    log = work / f"up-{key}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=out, env=dict(env))
    done = threading.Event()
    poller = watcher = None
    running: list[subprocess.Popen[bytes]] = []
    try:
        urls = listening(log, {"origin", "fleet"}, proc, 90)
        fleet = urls["fleet"]
        wait_for_edge(fleet, 60)
        poller = threading.Thread(
            target=poll_fleet, args=(fleet, outcome.polls, done, args.calm + args.duration + 120), daemon=True
        )
        poller.start()
        watcher = threading.Thread(
            target=watch_edges,
            args=(outcome.polls, outcome.served, done, args.calm + args.duration + 120),
            daemon=True,
        )
        watcher.start()
        master = f"{fleet}/titles/{{}}/master.m3u8"

        def launch(host: Host, name: str, title: str, options: list[str]) -> Path:
            report = work / f"{key}-{name}.json"
            output = work / f"{key}-{name}.log"
            options = [*options, *shlex.split(args.viewer_options)]
            url = master.format(titles[title])
            cpu = PLAYER_CPU if args.pin else None
            running.append(loadtest(host, output, report, url, options, env, cpu))
            return report

        calm = ["--players", str(args.background), "--ramp", str(args.calm_ramp)]
        calm_report = launch(
            players[0], "calm", "calm", [*calm, "--duration", str(args.calm + args.duration)]
        )
        time.sleep(args.calm)
        crowd_reports = []
        for i in range(args.crowd_processes):
            share = args.players // args.crowd_processes + (i < args.players % args.crowd_processes)
            crowd = ["--players", str(share), "--ramp", str(args.ramp), "--duration", str(args.duration)]
            crowd_reports.append(launch(players[i % len(players)], f"crowd-{i}", "crowd", crowd))
        time.sleep(args.ramp)
        cpu_before = {h.address: cpu_seconds(edge_processes(h)) for h in cluster.edge_hosts}
        busy_before, wall_before = busy_seconds(), time.monotonic()
        time.sleep(max(0.0, args.duration - args.ramp - 2))
        outcome.edge_cpu = {
            h.address: cpu_seconds(edge_processes(h)) - cpu_before[h.address] for h in cluster.edge_hosts
        }
        outcome.machine_busy = (busy_seconds() - busy_before) / (time.monotonic() - wall_before)
        for p in running:
            finish(p, args.calm + args.duration + 60)
        for path in [calm_report, *crowd_reports]:
            if not path.is_file():
                sys.exit(f"the load test wrote no report: {(path.with_suffix('.log')).read_text()[-2000:]}")
        outcome.calm = json.loads(calm_report.read_text())
        outcome.crowd = [json.loads(p.read_text()) for p in crowd_reports]
        outcome.starts = {p.stem: run_started(p) for p in [calm_report, *crowd_reports]}
    finally:
        for p in running:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        done.set()
        for thread in (poller, watcher):
            if thread is not None:
                thread.join(timeout=10)
        stop(proc, [])
        kill_edges(cluster, namespace)  # detached actors outlive the fleet
    outcome.origin_requests = origin_requests(log.read_text().splitlines())
    logs = RESULTS / f"hosts-{key}-logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    for path in work.glob(f"*{key}*"):
        shutil.copy(path, logs / path.name)
    return outcome


def wait_for_edge(fleet: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{fleet}/healthz", timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.5)
    sys.exit(f"the fleet had no active edge within {limit:g} s: {fleet}")


def origin_requests(lines: Sequence[str]) -> Counter[str]:
    """The origin's request log lines for /titles/<id>/<rendition>/<file>, by path."""
    counts: Counter[str] = Counter()
    for line in lines:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            # In `surge up` the fleet's own lines (masters, steering) name it as their server.
            if event.get("event") == "request" and event.get("server") != "fleet":
                path = str(event.get("path", "")).split("?", 1)[0]
                if path.startswith("/titles/") and path.count("/") == 4:
                    counts[path] += 1
    return counts


# --- numbers (values in, values out) ----------------------------------------------------------------


def event_time(event: Mapping[str, Any]) -> float:
    return dt.datetime.fromisoformat(event["time"]).timestamp()


def events_of(polls: Sequence[tuple[float, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Every fleet event seen in any poll, once, in time order (a poll shows only the last 50)."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for _, state in polls:
        for event in state.get("events", []):
            seen[(event["time"], event["kind"], str(event.get("edge")))] = event
    return sorted(seen.values(), key=event_time)


def delivered_mbit(reports: Sequence[tuple[float, Mapping[str, Any]]], start: float, end: float) -> float:
    """Mbit/s received by the players between two wall times: the series rows (one per second, each
    ending at ``t``) of every (run start, report) inside the span."""
    bits = 0
    for began, report in reports:
        bits += sum(row["bytes"] * 8 for row in report["series"] if start < began + row["t"] <= end)
    return bits / max(1e-9, end - start) / 1e6


def merged_viewers(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The viewer figures of several load-test processes, as one: play-time weighted shares and ratio;
    startup p95 is the highest of theirs (percentiles do not merge)."""
    viewers = [r["viewers"] for r in reports]
    played = sum(v["played_s"] for v in viewers)
    stalled = sum(v["rebuffer_s"] for v in viewers)
    top = sum((v["top_rendition_share"] or 0.0) * v["played_s"] for v in viewers)
    p95 = [v["startup_s"]["p95"] for v in viewers if v["startup_s"]["p95"] is not None]
    return {
        "sessions": sum(v["sessions"] for v in viewers),
        "sessions_failed": sum(v["sessions_failed"] for v in viewers),
        "played_s": played,
        "top_share": top / played if played else None,
        # played_s is media time, wall time at --speed 1 (the load test's own ratio does the same).
        "rebuffer_ratio": stalled / (stalled + played) if stalled + played else None,
        "startup_p95_s": max(p95, default=None),
    }


def stalled_share(
    reports: Sequence[tuple[float, Mapping[str, Any]]], start: float, end: float
) -> float | None:
    """Stalled viewers / viewers in a session, summed over the seconds inside the span (the series
    samples both once a second): the rebuffering of that span alone."""
    active = stalled = 0
    for began, report in reports:
        for row in report["series"]:
            if start < began + row["t"] <= end:
                active += row["active"]
                stalled += row["stalled"]
    return stalled / active if active else None


def rendition_share(
    reports: Sequence[tuple[float, Mapping[str, Any]]], label: str | None, start: float, end: float
) -> float | None:
    """Share of the play time on rendition ``label`` in the series rows (one per second, each ending at
    ``t``) of every (run start, report) inside the span: the viewers' experience in that window alone.
    None when nothing was played then (or no rendition is named)."""
    if label is None:
        return None
    on = total = 0.0
    for began, report in reports:
        for row in report["series"]:
            if start < began + row["t"] <= end:
                total += sum(row["played"].values())
                on += row["played"].get(label, 0.0)
    return on / total if total else None


def shares_by_window(
    reports: Sequence[tuple[float, Mapping[str, Any]]],
    label: str | None,
    start: float,
    end: float,
    step: float,
) -> list[float | None]:
    """``rendition_share`` over consecutive windows of ``step`` seconds from ``start`` (the last one ends at
    ``end``, shorter if need be): how the share climbs."""
    bounds = [start + i * step for i in range(math.ceil((end - start) / step))] if end > start else []
    return [rendition_share(reports, label, a, min(a + step, end)) for a in bounds]


def top_label(reports: Sequence[Mapping[str, Any]]) -> str | None:
    """The label of the highest-bitrate rendition the reports' viewers played."""
    renditions = [r for report in reports for r in report["viewers"]["renditions"]]
    return max(renditions, key=lambda r: r["bitrate"])["label"] if renditions else None


def scaled_out_at(new_edges: Sequence[Mapping[str, Any]]) -> float | None:
    """When the crowd's scale-out was in service: the last of the new edges became active (None: no
    new edge became active)."""
    return max((e["active"] for e in new_edges if e["active"] is not None), default=None)


def crossing(polls: Sequence[tuple[float, Mapping[str, Any]]], after: float, mbit: float) -> float | None:
    """First poll at or after ``after`` whose edges together served more than ``mbit`` Mbit/s."""
    for when, state in polls:
        if when >= after and sum(e["load_mbit"] for e in state["edges"]) > mbit:
            return when
    return None


def first_event_time(events: Sequence[Mapping[str, Any]], kind: str, edge: str) -> float | None:
    return next((event_time(x) for x in events if x["kind"] == kind and x.get("edge") == edge), None)


def edge_timeline(
    event: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    served: Mapping[str, Sequence[tuple[float, int]]],
    requested: float | None,
    started: float | None,
) -> dict[str, Any]:
    """A new edge's times: asked for (or promoted), started, active (its first ``edge active`` since),
    first answer to a player."""
    edge = event["edge"]
    actives = [event_time(x) for x in events if x["kind"] == "edge active" and x.get("edge") == edge]
    active = next((t for t in actives if requested is None or t >= requested), None)
    answer = first_answer(served.get(edge, []), active) if active is not None else None
    return {"edge": edge, "node": event.get("node"), "requested": requested, "started": started,
            "active": active, "first_answer": answer}  # fmt: skip


def slowest_answer(new_edges: Sequence[Mapping[str, Any]]) -> float | None:
    """The longest time from an edge's request (its scale-out decision) to its first answer to a player;
    None if an edge never answered or nothing was measured."""
    delays = [e["first_answer"] - e["requested"] for e in new_edges
              if e.get("first_answer") is not None and e.get("requested") is not None]  # fmt: skip
    if not delays or len(delays) < len(new_edges):
        return None
    return max(delays)


def first_answer(samples: Sequence[tuple[float, int]], active: float) -> float | None:
    """The first sample of the edge's request count, taken after it became active, that exceeds the last
    count taken before: its first request from a player (the fleet's warming requests all came before)."""
    before = [count for when, count in samples if when <= active]
    if not before:
        return None
    return next((when for when, count in samples if when > active and count > before[-1]), None)


def timeline(
    reports: Sequence[tuple[float, Mapping[str, Any]]],
    polls: Sequence[tuple[float, Mapping[str, Any]]],
    zero: float,
) -> list[dict[str, Any]]:
    """Per second k from ``zero``: Mbit/s the players received in (k-1, k], viewers and stalled ones at k
    (each load test's last row by then), and the fleet's last poll by then (active edges, Mbit/s its
    edges served)."""
    first = math.floor(min((began for began, _ in reports), default=zero) - zero)
    last = math.ceil(
        max((began + r["series"][-1]["t"] for began, r in reports if r["series"]), default=zero) - zero
    )
    out = []
    for k in range(first + 1, last + 1):
        at = zero + k
        row: dict[str, Any] = {"t": k, "mbit": 0.0, "viewers": 0, "stalled": 0}
        for began, report in reports:
            rows = [r for r in report["series"] if began + r["t"] <= at]
            row["mbit"] += sum(r["bytes"] for r in rows if began + r["t"] > at - 1) * 8 / 1e6
            if rows:
                row["viewers"] += rows[-1]["active"]
                row["stalled"] += rows[-1]["stalled"]
        state = next((state for when, state in reversed(polls) if when <= at), None)
        if state is not None:
            row["edges"] = active_count(state)
            row["edges_mbit"] = round(sum(e["load_mbit"] for e in state["edges"]), 1)
        out.append(row | {"mbit": round(row["mbit"], 1)})
    return out


def active_count(state: Mapping[str, Any]) -> int:
    return sum(e["state"] == "active" for e in state["edges"])


def summarize(o: Outcome, args: argparse.Namespace) -> dict[str, Any]:
    calm_start = o.starts[f"{o.key}-calm"]
    crowd_start = min(v for k, v in o.starts.items() if "crowd" in k)
    crowd_end = min(o.starts[f"{o.key}-crowd-{i}"] + r["wall_s"] for i, r in enumerate(o.crowd))
    full = crowd_start + args.ramp
    every = [(calm_start, o.calm), *((o.starts[f"{o.key}-crowd-{i}"], r) for i, r in enumerate(o.crowd))]
    crowd_runs = every[1:]
    capacity = parse_capacity(args.edge_capacity)
    threshold = capacity.bits_per_s * UTILIZATION / 1e6 if capacity.bits_per_s else None
    events = events_of(o.polls)
    during = [(t, s) for t, s in o.polls if crowd_start <= t <= crowd_end]
    peak = max((active_count(s) for _, s in during), default=0)
    scaled = next((t for t, s in during if active_count(s) == peak), crowd_start)
    crossed = crossing(o.polls, crowd_start, threshold) if threshold else None
    decisions = [e for e in events if e["kind"] == "scale-out" and event_time(e) >= crowd_start]
    decision = event_time(decisions[0]) if decisions else None
    new_edges = []
    for e in events:
        if event_time(e) < crowd_start:
            continue
        if e["kind"] == "edge promoted":
            # A standby edge put in service: asked for (and started) before; its clock starts now.
            started = first_event_time(events, "edge started", e["edge"])
            new_edges.append(edge_timeline(e, events, o.served, event_time(e), started) | {"promoted": True})
        elif e["kind"] == "edge started" and not e.get("standby"):
            requested = first_event_time(events, "edge requested", e["edge"])
            new_edges.append(edge_timeline(e, events, o.served, requested, event_time(e)))
    immutable = {p: n for p, n in o.origin_requests.items() if p.endswith((".m4s", ".mp4"))}
    playlists = {p: n for p, n in o.origin_requests.items() if p.endswith(".m3u8")}
    requests = [o.calm["requests"], *(r["requests"] for r in o.crowd)]
    generators = {
        name: {k: r["generator"][k] for k in ("cpu_mean", "cpu_max", "saturated_s", "starved_s")}
        for name, r in zip(
            ["calm", *(f"crowd-{i}" for i in range(len(o.crowd)))], [o.calm, *o.crowd], strict=True
        )
    }

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - crowd_start, 2)

    crowd_viewers = merged_viewers(o.crowd)
    # "Once scaled out": from the instant the new edges were all active (the peak poll without any), and
    # never before the crowd has fully arrived.
    once_scaled = max(full, scaled_out_at(new_edges) or scaled)
    top = top_label(o.crowd)
    return {
        "name": o.name,
        "key": o.key,
        "command": o.command,
        "max_edges": o.max_edges,
        "threshold_mbit": threshold,
        "phases": {
            "calm": {
                "from_s": rel(calm_start + args.calm_ramp),
                "to_s": 0.0,
                "mbit": delivered_mbit(every, calm_start + args.calm_ramp, crowd_start),
                **merged_viewers([o.calm]),
            },
            "crowd": {
                "from_s": rel(full),
                "to_s": rel(crowd_end),
                "mbit": delivered_mbit(every, full, crowd_end),
                "crowd_mbit": delivered_mbit(crowd_runs, full, crowd_end),
                **crowd_viewers,
            },
        },
        "scaled_out_s": rel(scaled),
        "once_scaled_from_s": rel(once_scaled),
        "top_share_once_scaled": rendition_share(crowd_runs, top, once_scaled, crowd_end),
        "top_share_by_minute": shares_by_window(crowd_runs, top, once_scaled, crowd_end, 60.0),
        "rebuffer_once_scaled": stalled_share(crowd_runs, once_scaled, crowd_end),
        "mbit_once_scaled": delivered_mbit(every, once_scaled, crowd_end),
        # What a crowd viewer received once scaled out, beside the top rung's average bit rate.
        "viewer_mbit_once_scaled": delivered_mbit(crowd_runs, once_scaled, crowd_end) / args.players,
        "top_rung_mbit": max((r["bitrate"] for c in o.crowd for r in c["viewers"]["renditions"]), default=0)
        / 1e6,
        "peak_active": peak,
        "crossed_s": rel(crossed),
        "decision_s": rel(decision),
        "decisions": [
            {"t_s": rel(event_time(e)), "count": e.get("count"), "reason": e.get("reason")} for e in decisions
        ],
        "scale_outs_before_crowd": sum(
            1 for e in events if e["kind"] == "scale-out" and event_time(e) < crowd_start
        ),
        "new_edges": [
            {k: rel(v) if k not in ("edge", "node", "promoted") else v for k, v in e.items()}
            for e in new_edges
        ],
        "failed": sum(r["errors"] for r in requests),
        "errors_by_kind": dict(sum((Counter(r["errors_by_kind"]) for r in requests), Counter())),
        "served_by": {k: v["requests"] for r in requests for k, v in r["served_by"].items()},
        "origin_objects": len(immutable),
        "origin_requests": sum(immutable.values()),
        "origin_max": max(immutable.values(), default=0),
        "origin_playlist_objects": len(playlists),
        "origin_playlist_requests": sum(playlists.values()),
        "origin_playlist_max": max(playlists.values(), default=0),
        "generators": generators,
        "edge_cpu_max": max(
            (s / max(1.0, args.duration - args.ramp - 2) for s in o.edge_cpu.values()), default=0
        ),
        "machine_busy_cores": o.machine_busy,
        "events": [e | {"t_s": rel(event_time(e))} for e in events],
        "series": timeline(every, o.polls, crowd_start),
    }


@dataclass(frozen=True)
class Target:
    variant: str
    name: str
    measured: str
    met: bool | None  # None: not measured


def targets(auto: Mapping[str, Any] | None, single: Mapping[str, Any] | None) -> list[Target]:
    out = []
    if auto is not None and single is not None:
        a, s = auto["phases"]["crowd"]["mbit"], single["phases"]["crowd"]["mbit"]
        ratio = a / s if s else None
        out.append(
            Target(
                "both",
                f"autoscaled crowd Mbit/s ≥ {GOAL_RATIO:g}x the single edge's",
                "–" if ratio is None else f"{a:.0f} / {s:.0f} = {ratio:.2f}x",
                None if ratio is None else ratio >= GOAL_RATIO,
            )
        )
    if auto is not None:
        top, rebuffer = auto["top_share_once_scaled"], auto["rebuffer_once_scaled"]
        out.append(
            Target(
                auto["name"],
                f"crowd play time on the top rendition once scaled out ≥ {GOAL_TOP:.0%}",
                pct(top),
                None if top is None else top >= GOAL_TOP,
            )
        )
        out.append(
            Target(
                auto["name"],
                f"rebuffering once scaled out ≤ {GOAL_REBUFFER:.0%} of play time",
                pct(rebuffer, 2),
                None if rebuffer is None else rebuffer <= GOAL_REBUFFER,
            )
        )
        lag = None
        if auto["decision_s"] is not None and auto["crossed_s"] is not None:
            lag = auto["decision_s"] - auto["crossed_s"]
        out.append(
            Target(
                auto["name"],
                f"scale-out decision ≤ {GOAL_DECISION_S:g} s after crossing capacity",
                secs(lag),
                None if lag is None else lag <= GOAL_DECISION_S,
            )
        )
        answer = slowest_answer(auto["new_edges"])
        out.append(
            Target(
                auto["name"],
                f"every new host's edge answers ≤ {GOAL_ANSWER_S:g} s after its decision (the slowest)",
                secs(answer),
                None if answer is None else answer <= GOAL_ANSWER_S,
            )
        )
    for v in (auto, single):
        if v is None:
            continue
        out.append(Target(v["name"], "0 failed requests", str(v["failed"]), v["failed"] == 0))
        out.append(
            Target(
                v["name"],
                "≤ 1 origin request per segment or init",
                f"{v['origin_max']} at most",
                v["origin_max"] <= 1,
            )
        )
    return out


# --- the report -------------------------------------------------------------------------------------


def pct(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f} %"


def secs(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f} s"


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "NOT MET")


def report(args: argparse.Namespace, summaries: list[dict[str, Any]], command: str, facts: str) -> str:
    by_key = {s["key"]: s for s in summaries}
    rate = parse_capacity(args.host_rate).bits_per_s / 1e6
    lines = [
        SECTION,
        "",
        f"Command: `{command}` ({dt.date.today().isoformat()}; one run per variant).",
        "",
        f"Machine: {machine()}. {facts}",
        "",
        f"Hosts (network namespaces on a bridge in 198.51.100.0/24, `tests/hosts.py`): {args.hosts} "
        "edge hosts, "
        f"each a Ray worker node with one `surge_edge` unit and its card shaped to {args.host_rate} "
        "both ways "
        f"(`tc tbf`, a {args.host_queue} queue); {args.crowd_processes} player hosts, unshaped; "
        "`surge up --backend ray` "
        "(origin with its "
        "access log, fleet) and the Ray head on the bridge address in the root namespace. "
        + (
            f"Pinned (`taskset`): the load tests on CPU {PLAYER_CPU}; origin, fleet, Ray and the edges it "
            f"starts on CPU {SERVER_CPU}."
            if args.pin
            else "Nothing is pinned: the hosts share this machine's cores, so edges, players, origin and Ray "
            "compete for them."
        ),
        "",
        f"Titles: a crowd title, {args.title_duration:g} s synthetic 960x540 source packaged by "
        "`surge origin` (`--preset ultrafast`) into 416x234@145k, 640x360@365k, 768x432@730k, "
        "960x540@2000k (the default ladder, capped at the source); a calm title, "
        f"{args.calm + args.duration + BUFFER_S:g} s 640x360 (two rungs). Both are longer than their "
        f"viewers' stay plus the {BUFFER_S:g} s they fetch ahead.",
        "",
        f"Load (`surge loadtest` on the player hosts, each viewer a player with ABR and a buffer): "
        f"{args.background} viewers on the calm title, arriving over {args.calm_ramp:g} s and staying "
        f"{args.calm + args.duration:g} s; {args.calm:g} s later, {args.players} viewers on the crowd title "
        f"arriving over {args.ramp:g} s and staying until {args.duration:g} s after the first, split over "
        f"{args.crowd_processes} load-test processes (one per player host). Not `--profile flash` in one "
        "process: its calm lasts 2 s, and one process's series mixes both titles. Phases: calm = from the "
        "end of the calm viewers' arrival to the crowd's start; crowd = from the end of its ramp to its end.",
        "",
        f"Edge capacity `{args.edge_capacity}`: 0.9 x the card ({rate:g} Mbit/s), since the card's "
        "rate counts "
        "headers and a card is not driven to its limit; the scaler fills "
        f'{UTILIZATION:g} of it, so "crossing capacity" below is the first `/fleet` poll (every '
        f"{POLL_S:g} s) in which the edges together served more than {UTILIZATION:g} x that. The fixed edge "
        "runs with the same capacity and `--min-edges 1 --max-edges 1`.",
        "",
        "| variant | phase | delivered Mbit/s | top rendition | rebuffering | startup p95 | "
        "sessions failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        for phase in ("calm", "crowd"):
            p = s["phases"][phase]
            lines.append(
                f"| {s['name']} | {phase} | {p['mbit']:.0f} | {pct(p['top_share'])} | "
                f"{pct(p['rebuffer_ratio'], 2)} | {secs(p['startup_p95_s']).lstrip('+')} | "
                f"{p['sessions_failed']} |"
            )
    lines += [
        "",
        "Delivered Mbit/s: bytes the players received in the phase (both titles; the load tests' per-second "
        "series). Top rendition, rebuffering, startup p95: over the sessions of that phase's title (calm "
        "viewers, crowd viewers) for the whole run, the crowd merged over its processes (startup p95: the "
        "highest of theirs); the crowd's top-rendition share there counts its climb from the first rung and "
        "the time before scale-out. Once scaled out (below, and the targets): from the instant the last new "
        "edge became active (the end of the crowd's ramp if later) to the end of the crowd, from the load "
        "tests' per-second series (play time by rendition, stalled viewers, bytes).",
        "",
        "| variant | crowd Mbit/s (crowd title) | active edges at peak (t) | once scaled out from | "
        "Mbit/s once scaled out (per crowd viewer / top rung) | top rendition once scaled out | "
        "rebuffering once scaled out | failed requests | origin: "
        "segments+init objects / requests / most per object | "
        "playlists: objects / requests / most | busiest edge CPU | machine busy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(s["errors_by_kind"].items()))
        lines.append(
            f"| {s['name']} | {s['phases']['crowd']['crowd_mbit']:.0f} | {s['peak_active']} "
            f"({secs(s['scaled_out_s'])}) | {secs(s['once_scaled_from_s'])} | {s['mbit_once_scaled']:.0f} "
            f"({s['viewer_mbit_once_scaled']:.2f} / {s['top_rung_mbit']:.2f}) | "
            f"{pct(s['top_share_once_scaled'])} | {pct(s['rebuffer_once_scaled'], 2)} | "
            f"{s['failed']}{f' ({errors})' if errors else ''} | {s['origin_objects']} / "
            f"{s['origin_requests']} / "
            f"{s['origin_max']} | {s['origin_playlist_objects']} / {s['origin_playlist_requests']} / "
            f"{s['origin_playlist_max']} | {pct(s['edge_cpu_max'])} of a core | "
            f"{s['machine_busy_cores']:.2f} of {os.cpu_count()} cores |"
        )
    lines += [
        "",
        "Top rendition once scaled out, minute by minute (a viewer plays the buffer it fetched before it "
        f"climbed, up to {BUFFER_S:g} s of it, so the play time shows a climb that late):",
        "",
    ]
    for s in summaries:
        lines.append(f"- {s['name']}: " + " / ".join(pct(share) for share in s["top_share_by_minute"]))
    lines += [
        "",
        "Load generators (share of one core: mean / max; seconds saturated above 90 % / starved "
        "waiting for a CPU above 10 %):",
        "",
    ]
    for s in summaries:
        parts = [
            f"{name} {g['cpu_mean']:.0%} / {g['cpu_max']:.0%}, {g['saturated_s']} s / {g['starved_s']} s"
            for name, g in s["generators"].items()
        ]
        lines.append(f"- {s['name']}: " + "; ".join(parts))
    lines += [
        "",
        "Timeline, seconds from the first crowd viewer's start (t = 0):",
        "",
        "| variant | crossing capacity | scale-out decisions (edges) | new edges: requested / started "
        "on host / active / first answer |",
        "|---|---|---|---|",
    ]
    for s in summaries:
        decisions = ", ".join(f"{secs(d['t_s'])} ({d['count']})" for d in s["decisions"]) or "none"
        edges = (
            "; ".join(
                f"{e['edge']}: {'promoted ' if e.get('promoted') else ''}{secs(e['requested'])} / "
                f"{secs(e['started'])} on {e['node']} / {secs(e['active'])} / {secs(e['first_answer'])}"
                for e in s["new_edges"]
            )
            or "none"
        )
        lines.append(f"| {s['name']} | {secs(s['crossed_s'])} | {decisions} | {edges} |")
        if s["scale_outs_before_crowd"]:
            lines.append(f"| | {s['scale_outs_before_crowd']} scale-out(s) before the crowd | | |")
    lines += [
        "",
        f"First answer: the new edge's own request count (`/stats`, read every {EDGE_POLL_S:g} s) first "
        "grows after its `edge active` event, when only players send it requests (the fleet's warming "
        f"requests all came before): at most {EDGE_POLL_S:g} s after the real first answer.",
        "",
        "Targets:",
        "",
        "| variant | target | measured | result |",
        "|---|---|---|---|",
    ]
    for t in targets(by_key.get("autoscaled"), by_key.get("single")):
        lines.append(f"| {t.variant} | {t.name} | {t.measured} | {verdict(t.met)} |")
    return "\n".join(lines) + "\n"


# --- main -------------------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--hosts", type=int, default=4, help="edge hosts, one edge each (default 4)")
    add("--host-rate", default="200mbit", help="each edge host's card, both ways (default 200mbit)")
    add("--host-queue", default="50ms", help="how long a packet may wait in a card's queue (default 50ms)")
    add("--edge-capacity", help="surge's --edge-capacity (default 2000rps,<0.9 x --host-rate>)")
    add("--players", type=int, default=250, help="crowd viewers (default 250)")
    add("--background", type=int, default=40, help="calm viewers (default 40)")
    add("--crowd-processes", type=int, default=2, help="load tests (player hosts) sharing the crowd (2)")
    add("--calm", type=float, default=30.0, help="seconds of calm viewers only (default 30)")
    add("--calm-ramp", type=float, default=10.0, help="seconds over which they arrive (default 10)")
    add("--ramp", type=float, default=10.0, help="seconds over which the crowd arrives (default 10)")
    add("--duration", type=float, default=300.0, help="seconds the crowd's load tests last (default 300)")
    add("--title-duration", type=float, default=330.0, help="seconds of the crowd title (default 330)")
    add(
        "--viewer-options",
        default="",
        help="more `surge loadtest` options for every viewer, e.g. "
        "'--abr-set maxBufferSize=1' (a 30 s buffer goal instead of hls.js's 60 MB one)",
    )
    add(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=(os.cpu_count() or 1) >= 2,
        help=f"players on CPU {PLAYER_CPU}; origin, fleet, Ray and edges on CPU {SERVER_CPU} (default: "
        "with 2 CPUs or more)",
    )
    add("--standby-edges", type=int, default=0, help="the autoscaled fleet's --standby-edges (default 0)")
    add("--only", choices=("autoscaled", "single"), help="run one variant")
    add("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    try:
        rate = parse_capacity(args.host_rate).bits_per_s
    except ValueError as err:
        parser.error(str(err))
    # A viewer fetches up to BUFFER_S ahead: a shorter title is all fetched before the run ends, and the
    # end of the run would measure players with nothing left to fetch.
    bad_times = args.duration <= args.ramp + 2 or not 0 <= args.calm_ramp < args.calm
    bad_times |= args.title_duration < args.duration + BUFFER_S
    if not rate or args.hosts < 1 or args.crowd_processes < 1 or bad_times:
        parser.error(
            "--host-rate is a bit rate (e.g. 200mbit), --hosts and --crowd-processes at least 1, "
            "--duration longer than --ramp + 2, --calm-ramp shorter than --calm, --title-duration at least "
            f"--duration + {BUFFER_S:g}"
        )
    args.edge_capacity = args.edge_capacity or f"2000rps,{rate * 0.9 / 1e6:g}mbit"
    try:
        parse_capacity(args.edge_capacity)
    except ValueError as err:
        parser.error(str(err))
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(f"no emulated hosts here: {reason}")
    # Every process of the lab (Ray nodes and their edges, surge up, load tests) runs this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the lab cluster is reachable from its namespaces only
    command = shlex.join([".venv/bin/python", "bench/flashcrowd/run.py", *argv])
    variants = [
        ("autoscaled", f"autoscaled, 1–{args.hosts} edges", (1, args.hosts)),
        ("single", "fixed single edge", (1, 1)),
    ]
    summaries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="surge-flashcrowd-hosts-") as tmp, Lab("sf") as lab:
        work = Path(tmp)
        print("packaging the crowd and calm titles …", flush=True)
        crowd_source = make_sample(work / "crowd.mp4", width=960, height=540, duration=args.title_duration)
        calm_length = args.calm + args.duration + BUFFER_S
        calm_source = make_sample(work / "calm.mp4", width=640, height=360, duration=calm_length)
        data = work / "data"
        titles = upload(data, work, {"crowd": crowd_source, "calm": calm_source}, SURGE, os.environ)
        ray = RayCluster(lab, RAY, cpus=SERVER_CPU if args.pin else None)
        try:
            edge_hosts = [lab.add_host(f"edge{i}") for i in range(args.hosts)]
            for host in edge_hosts:
                host.shape(egress=args.host_rate, ingress=args.host_rate, queue=args.host_queue)
            players = [lab.add_host(f"player{i}") for i in range(args.crowd_processes)]
            for host in edge_hosts:
                ray.add_node(host, {"surge_edge": 1})
            ray.wait_for_nodes(1 + args.hosts)
            cluster = Cluster(lab, ray, edge_hosts, players[0], packager_hosts=[])
            for key, name, edges in variants:
                if args.only not in (None, key):
                    continue
                print(f"{name}: running about {args.calm + args.duration + 20:.0f} s …", flush=True)
                outcome = run_variant(args, key, name, edges, cluster, players, data, work, titles, ray.env)
                summary = summarize(outcome, args)
                summaries.append(summary)
                RESULTS.mkdir(parents=True, exist_ok=True)
                (RESULTS / f"hosts-{key}.json").write_text(json.dumps(summary, indent=2) + "\n")
                print(json.dumps({k: v for k, v in summary.items() if k != "events"}, indent=1), flush=True)
        finally:
            ray.close()
    facts = (
        f"Run as root; Ray {ray_version()}; the load tests, edges, origin, fleet and Ray processes all on "
        f"this machine's {os.cpu_count()} cores, shared with other work."
    )
    section = report(args, summaries, command, facts)
    print(section)
    if not args.no_doc:
        write_doc(SECTION, section)
        print(f"written: {(ROOT / 'docs' / 'benchmarks.md').relative_to(ROOT)}")


def ray_version() -> str:
    import ray

    return str(ray.__version__)
