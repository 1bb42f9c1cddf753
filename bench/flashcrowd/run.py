"""On-demand benchmark: a scripted flash crowd against `surge up` (origin + fleet + real edge processes),
then the same crowd against a fleet held at one edge (`--max-edges 1`).

The stack runs under `taskset -c 0` (its edges inherit the pin), this script's crowd on CPU 1, all on
127.0.0.1. Players follow the router's master and its HLS Content Steering (reloaded at the manifest's
TTL, as hls.js does) and fetch the media playlist, init and segments from the edge they are steered to,
each at a fixed request rate; every request's start, latency, status and X-Served-By is kept. Measures:
time from the surge to each scale-out decision (the fleet's /fleet events) and to each new edge's first
answer (X-Served-By), latency p50/p99 before/during/after the surge, failed requests, and origin requests
per object (the origin's request log lines in `surge up`'s stderr). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from edge.router.scaler import ScalerConfig  # noqa: E402
from media.hls import parse_master, parse_media  # noqa: E402
from service.loop import run  # noqa: E402
from transcoder.sample import make_sample  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/common.py
from common import write_doc  # noqa: E402

SURGE = ROOT / ".venv" / "bin" / "surge"
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results" / "flashcrowd"
SECTION = "## Flash crowd: surge up vs a fixed single edge"
TOKEN = "bench-flashcrowd-token-0123456789"
UTILIZATION = ScalerConfig().target_utilization  # the scaler's share of --edge-capacity it fills
GOAL_DECISION_S, GOAL_P99_RATIO = 2.0, 2.0


class Request(NamedTuple):
    start: float  # wall clock (time.time()), so it lines up with the fleet's event times
    latency: float  # seconds to the end of the body
    ok: bool
    served_by: str  # X-Served-By, "" for the router's answers and failures
    kind: str  # master | steering | playlist | init | segment


class Failed(Exception):
    pass


@dataclass
class Crowd:
    """Players that watch one title over and over, each at ``rate`` requests/s (paced, not closed-loop:
    a slow answer does not lower the offered load, so latency is not hidden by coordinated omission)."""

    session: aiohttp.ClientSession
    fleet: str
    rate: float
    records: list[Request] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    async def get(self, url: str, kind: str) -> bytes:
        start, began = time.time(), time.perf_counter()
        try:
            async with self.session.get(url) as response:
                body = await response.read()
                ok = response.status == 200
                served_by = response.headers.get("X-Served-By", "")
        except (aiohttp.ClientError, TimeoutError) as err:
            self.records.append(Request(start, time.perf_counter() - began, False, "", kind))
            self.errors[f"{kind}: {err.__class__.__name__}"] += 1
            raise Failed(kind) from None
        self.records.append(Request(start, time.perf_counter() - began, ok, served_by, kind))
        if not ok:
            self.errors[f"{kind}: HTTP {response.status}"] += 1
            raise Failed(kind)
        return body

    async def player(self, title: str) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()

        async def paced(url: str, kind: str) -> bytes:
            nonlocal due
            due = max(due + 1 / self.rate, loop.time() - 1 / self.rate)  # late: no catch-up burst
            await asyncio.sleep(max(0.0, due - loop.time()))
            return await self.get(url, kind)

        while True:
            try:
                await self.watch(title, paced)
            except (Failed, ValueError, KeyError):
                await asyncio.sleep(0.5)  # a real player retries after a failed load, not at once

    async def watch(self, title: str, get: Any) -> None:
        """One viewing: master, steering, then the playlist, init and every segment from the edge the
        steering manifest prefers; steering reloads at its TTL and may move the player mid-title."""
        master = parse_master((await get(f"{self.fleet}/titles/{title}/master.m3u8", "master")).decode())
        hosts = {v.pathway_id: urlsplit(v.uri).netloc for v in master.variants}
        steering = master.content_steering
        if steering is None:
            raise ValueError("no content steering in the master")
        steer_url, pathway = self.fleet + steering.server_uri, steering.pathway_id
        variant = master.variants[0]  # the lowest rung: request rate, not bytes, is what is measured
        index, segments, directory, next_steer = 0, None, "", 0.0
        while segments is None or index < len(segments):
            if time.monotonic() >= next_steer:
                manifest = json.loads(await get(steer_url, "steering"))
                for clone in manifest.get("PATHWAY-CLONES", []):
                    hosts[clone["ID"]] = clone["URI-REPLACEMENT"]["HOST"]
                chosen = next((p for p in manifest["PATHWAY-PRIORITY"] if p in hosts), None)
                if chosen is None:
                    raise ValueError("no known pathway in the steering manifest")
                steer_url = self.fleet + manifest["RELOAD-URI"]
                next_steer = time.monotonic() + float(manifest.get("TTL", 300))
                if chosen != pathway or segments is None:
                    pathway, segments = chosen, None  # a new pathway: its playlist and init first
            if segments is None:
                url = variant.uri.replace(urlsplit(variant.uri).netloc, hosts[pathway])
                media = parse_media((await get(url, "playlist")).decode())
                directory, segments = url.rsplit("/", 1)[0], media.segments
                if media.map_uri:
                    await get(f"{directory}/{media.map_uri}", "init")
            await get(f"{directory}/{segments[index].uri}", "segment")
            index += 1


# --- the stack ------------------------------------------------------------------------------------


def pin(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu is not None else []


def listening(log: Path, names: set[str], proc: subprocess.Popen[bytes], timeout: float) -> dict[str, str]:
    """URLs from the server's 'listening' log lines, by site name."""
    deadline, urls = time.monotonic() + timeout, {}
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "listening":
                    urls[event.get("name", "server")] = event["url"]
        if names <= urls.keys():
            return urls
        time.sleep(0.1)
    stop(proc, [])
    sys.exit(f"did not start: {shlex.join(map(str, proc.args))}\n{log.read_text()[-2000:]}")  # type: ignore[arg-type]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine, all CPUs (/proc/stat: all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def wait_idle(limit: float, busy_cores: float = 0.2) -> float:
    """Waits (up to ``limit`` s) for two quiet seconds in a row: others' benchmarks skew latency.
    Returns the busy cores of the last second."""
    deadline, quiet, load = time.monotonic() + limit, 0, 0.0
    while quiet < 2 and time.monotonic() < deadline:
        before = busy_seconds()
        time.sleep(1)
        load = busy_seconds() - before
        quiet = quiet + 1 if load < busy_cores else 0
    return load


def stop(proc: subprocess.Popen[bytes], edges: list[int]) -> list[int]:
    """SIGTERM the server (it drains and stops its edges); SIGKILL by PID whatever is left. Returns the
    edge PIDs that were still running after the server exited."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    left = [pid for pid in edges if Path(f"/proc/{pid}").exists() and b"edge" in _cmdline(pid)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def package(data: Path, work: Path, duration: float) -> dict[str, str]:
    """Two titles of the same synthetic source, packaged by a `surge origin` on this data dir."""
    source = make_sample(work / "source.mp4", width=320, height=180, duration=duration)
    return upload(data, work, {"hot": source, "calm": source}, [str(SURGE)], os.environ)


def upload(data: Path, work: Path, sources: dict[str, Path], surge: list[str],
           environ: Mapping[str, str]) -> dict[str, str]:  # fmt: skip
    """Each source uploaded as a title (by name) to a `surge origin` on this data dir: their ids."""
    log = work / "package.log"
    env = {**environ, "SURGE_ADMIN_TOKEN": TOKEN}
    with log.open("ab") as out:
        argv = [*surge, "origin", "--data", str(data), "--port", "0", "--preset", "ultrafast"]
        proc = subprocess.Popen(argv, stdin=DEVNULL, stdout=out, stderr=out, env=env)
    try:
        origin = listening(log, {"origin"}, proc, 30)["origin"]
        titles = {}
        for name, source in sources.items():
            done = subprocess.run(
                [*surge, "upload", str(source), "--server", origin, "--name", name, "--wait", "--quiet"],
                capture_output=True, text=True, timeout=600, env=env, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                sys.exit(f"upload failed: {done.stdout}{done.stderr}")
            titles[name] = done.stdout.split(" as ", 1)[1].split()[0]
        return titles
    finally:
        stop(proc, [])


# --- one run --------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    command: str
    records: list[Request]
    errors: Counter[str]
    events: list[dict[str, Any]]
    edges_seen: list[tuple[float, int]]  # (wall time, active edges)
    stack_cpu: list[tuple[float, float]]  # (wall time, CPU seconds of surge up and its edges)
    generator_cpu: list[tuple[float, float]]
    machine_cpu: list[tuple[float, float]]  # busy CPU seconds of the whole machine
    marks: dict[str, float]  # phase boundaries, wall clock
    origin_requests: Counter[str] = field(default_factory=Counter)
    left_behind: list[int] = field(default_factory=list)


async def drive(args: argparse.Namespace, name: str, command: str, fleet: str, titles: dict[str, str],
                stack_pid: int, edge_pids: set[int]) -> Run:  # fmt: skip
    events: dict[tuple[str, str, str], dict[str, Any]] = {}
    edges_seen: list[tuple[float, int]] = []
    stack_cpu: list[tuple[float, float]] = []
    generator_cpu: list[tuple[float, float]] = []
    machine_cpu: list[tuple[float, float]] = []
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        crowd = Crowd(session, fleet, args.rate)

        async def monitor() -> None:
            while True:
                now = time.time()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    async with session.get(f"{fleet}/fleet") as response:
                        state = await response.json()
                    for event in state["events"]:
                        events[(event["time"], event["kind"], str(event.get("edge")))] = event
                    edges_seen.append((now, sum(e["state"] == "active" for e in state["edges"])))
                edge_pids.update(children(stack_pid))
                stack_cpu.append((now, cpu_seconds([stack_pid, *edge_pids])))
                usage = resource.getrusage(resource.RUSAGE_SELF)
                generator_cpu.append((now, usage.ru_utime + usage.ru_stime))
                machine_cpu.append((now, busy_seconds()))
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(monitor())
        marks = {"start": time.time()}
        background = []
        for _ in range(args.base_players):  # arriving over the warm-up, not as a crowd of their own
            background.append(asyncio.create_task(crowd.player(titles["calm"])))
            await asyncio.sleep(args.warmup / 2 / args.base_players)
        await asyncio.sleep(args.warmup / 2)
        marks["before"] = time.time()
        await asyncio.sleep(args.before)
        marks["surge"] = time.time()
        surge = []
        for _ in range(args.crowd_players):
            surge.append(asyncio.create_task(crowd.player(titles["hot"])))
            await asyncio.sleep(args.ramp / args.crowd_players)
        await asyncio.sleep(args.hold)
        marks["leave"] = time.time()
        for task in surge:
            task.cancel()
        await asyncio.gather(*surge, return_exceptions=True)
        await asyncio.sleep(args.after)
        marks["end"] = time.time()
        for task in [*background, watcher]:
            task.cancel()
        await asyncio.gather(*background, watcher, return_exceptions=True)
    order = sorted(events.values(), key=lambda e: e["time"])
    return Run(name, command, crowd.records, crowd.errors, order, edges_seen, stack_cpu, generator_cpu,
               machine_cpu, marks)  # fmt: skip


def run_variant(args: argparse.Namespace, name: str, flags: list[str], data: Path, work: Path,
                titles: dict[str, str]) -> Run:  # fmt: skip
    log = work / f"up-{len(list(work.glob('up-*.log')))}.log"
    argv = [*pin(args.stack_cpu), str(SURGE), "up", "--data", str(data), "--port", "0", "--fleet-port", "0",
            "--edge-capacity", str(args.edge_capacity), "--cache-mem", "256MiB", *flags]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=out,
                                env=os.environ | {"SURGE_ADMIN_TOKEN": TOKEN})  # fmt: skip
    urls = listening(log, {"origin", "fleet"}, proc, 60)
    edge_pids: set[int] = set()
    command = shlex.join(["surge", "up", *argv[argv.index("up") + 1 :]]).replace(str(data), "DATA")
    try:
        result = run(drive(args, name, command, urls["fleet"], titles, proc.pid, edge_pids))
    finally:
        left = stop(proc, sorted(edge_pids))
    result.left_behind = left
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == "request":
                path = str(event.get("path", "")).split("?", 1)[0]
                # /titles/<id>/<rendition>/<file>: only the origin serves these in `surge up` (players
                # get masters and steering from the router, media from edges).
                if path.startswith("/titles/") and path.count("/") == 4:
                    result.origin_requests[path] += 1
    return result


# --- numbers --------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]  # nearest rank


@dataclass(frozen=True)
class Phase:
    name: str
    start: float
    end: float
    requests: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    stack_cpu: float | None  # share of one core
    generator_cpu: float | None
    other_cpu: float | None  # the machine's busy cores minus ours: other people's work

    @property
    def rps(self) -> float:
        return self.requests / max(1e-9, self.end - self.start)


def cpu_share(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def phases(result: Run) -> list[Phase]:
    m = result.marks
    spans = (("before", m["before"], m["surge"]), ("during", m["surge"], m["leave"]),
             ("after", m["leave"] + 1.0, m["end"]))  # fmt: skip
    out = []
    for name, start, end in spans:
        inside = [r for r in result.records if start <= r.start < end]
        latencies = [r.latency * 1000 for r in inside]
        stack, generator = (
            cpu_share(result.stack_cpu, start, end),
            cpu_share(result.generator_cpu, start, end),
        )
        machine = cpu_share(result.machine_cpu, start, end)
        other = None
        if stack is not None and generator is not None and machine is not None:
            other = max(0.0, machine - stack - generator)
        failed = sum(not r.ok for r in inside)
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        out.append(Phase(name, start, end, len(inside), failed, p50, p99, stack, generator, other))
    return out


def crossing(result: Run, threshold: float) -> float | None:
    """Wall time at which the offered request rate (requests started in the trailing second) first
    exceeds ``threshold``, at or after the surge began."""
    starts = sorted(r.start for r in result.records if r.start >= result.marks["before"])
    low = 0
    for high, start in enumerate(starts):
        while starts[low] < start - 1.0:
            low += 1
        if start >= result.marks["surge"] and high - low + 1 > threshold:
            return start
    return None


def event_time(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(event["time"]).timestamp()


@dataclass(frozen=True)
class EdgeTimeline:
    edge: str
    started: float | None
    active: float | None
    first_served: float | None


def new_edges(result: Run) -> list[EdgeTimeline]:
    first: dict[str, float] = {}
    for r in result.records:
        if r.served_by and (r.served_by not in first or r.start < first[r.served_by]):
            first[r.served_by] = r.start
    out = []
    for event in result.events:
        if event["kind"] == "edge started" and event_time(event) >= result.marks["surge"]:
            edge = event["edge"]
            active = next((event_time(e) for e in result.events
                           if e["kind"] == "edge active" and e["edge"] == edge), None)  # fmt: skip
            out.append(EdgeTimeline(edge, event_time(event), active, first.get(edge)))
    return out


def edges_at(result: Run, when: float) -> int:
    return next((n for t, n in reversed(result.edges_seen) if t <= when), 1)


def series(result: Run) -> list[dict[str, Any]]:
    """Per second since the start: requests, latency p50/p99/max (ms) overall and p99 by kind, edges."""
    start, rows = result.marks["start"], []
    for second in range(int(result.marks["end"] - start) + 1):
        inside = [r for r in result.records if start + second <= r.start < start + second + 1]
        latencies = [r.latency * 1000 for r in inside]
        by_kind: dict[str, list[float]] = {}
        for r in inside:
            by_kind.setdefault(r.kind, []).append(r.latency * 1000)
        rows.append(
            {
                "t": round(start + second - result.marks["surge"], 1),
                "requests": len(inside),
                "failed": sum(not r.ok for r in inside),
                "p50": percentile(latencies, 50),
                "p99": percentile(latencies, 99),
                "max": max(latencies, default=None),
                "edges": edges_at(result, start + second + 1),
                "p99_by_kind": {kind: percentile(values, 99) for kind, values in sorted(by_kind.items())},
            }
        )
    return rows


def summarize(result: Run, args: argparse.Namespace, max_edges: int) -> dict[str, Any]:
    surge = result.marks["surge"]
    # What the fleet can take at the surge's start (its edges may have grown with the background).
    threshold = args.edge_capacity * UTILIZATION * edges_at(result, surge)
    crossed = crossing(result, threshold)
    decisions = [e for e in result.events if e["kind"] == "scale-out" and event_time(e) >= surge]
    early = [e for e in result.events if e["kind"] == "scale-out" and event_time(e) < surge]

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - surge, 2)

    immutable = {p: n for p, n in result.origin_requests.items() if p.endswith((".m4s", ".mp4"))}
    playlists = {p: n for p, n in result.origin_requests.items() if p.endswith(".m3u8")}
    return {
        "name": result.name,
        "command": result.command,
        "threshold_rps": threshold,
        "crossed_s": rel(crossed),
        "decisions": [
            {"t_s": rel(event_time(e)), "count": e.get("count"), "reason": e.get("reason")} for e in decisions
        ],
        "first_decision_after_crossing_s": (
            round(event_time(decisions[0]) - crossed, 2) if decisions and crossed is not None else None
        ),
        "new_edges": [
            {
                "edge": e.edge,
                "started_s": rel(e.started),
                "active_s": rel(e.active),
                "first_served_s": rel(e.first_served),
            }
            for e in new_edges(result)
        ],
        "peak_edges": max((n for _, n in result.edges_seen), default=0),
        "max_edges": max_edges,
        "phases": [p.__dict__ | {"rps": round(p.rps, 1)} for p in phases(result)],
        "failed": sum(not r.ok for r in result.records),
        "requests": len(result.records),
        "errors": dict(result.errors),
        "origin_immutable_objects": len(immutable),
        "origin_immutable_max": max(immutable.values(), default=0),
        "origin_immutable_requests": sum(immutable.values()),
        "origin_playlist_objects": len(playlists),
        "origin_playlist_max": max(playlists.values(), default=0),
        "origin_playlist_requests": sum(playlists.values()),
        "left_behind": result.left_behind,
        "scale_outs_before_surge": len(early),
        "edges_at_surge": edges_at(result, surge),
        "series": series(result),
        "marks": result.marks,
    }


# --- the report -----------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f} %"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "FAIL")


def targets(s: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    during, before = s["phases"][1], s["phases"][0]
    lag = s["first_decision_after_crossing_s"]
    ratio = during["p99_ms"] / before["p99_ms"] if during["p99_ms"] and before["p99_ms"] else None
    return [
        (f"first scale-out decision ≤ {GOAL_DECISION_S:g} s after the rate crossed "
         f"{s['threshold_rps']:.0f} req/s", "–" if lag is None else f"{lag:+.2f} s",
         None if lag is None else lag <= GOAL_DECISION_S),
        ("zero failed requests", str(s["failed"]), s["failed"] == 0),
        (f"p99 during ≤ {GOAL_P99_RATIO:g}x p99 before", "–" if ratio is None else f"{ratio:.2f}x",
         None if ratio is None else ratio <= GOAL_P99_RATIO),
    ]  # fmt: skip


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.machine())  # fmt: skip
    import aiohttp as client

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()  # fmt: skip
    return (f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"aiohttp {client.__version__}; surge at `{head}` + work tree")  # fmt: skip


def report(args: argparse.Namespace, summaries: list[dict[str, Any]], command: str, pinned: str) -> str:
    players = args.base_players + args.crowd_players
    lines = [
        SECTION, "",
        f"Command: `{command}` ({dt.date.today().isoformat()}; one run per variant, about "
        f"{args.warmup + args.before + args.ramp + args.hold + args.after:.0f} s of crowd each).", "",
        f"Machine: {machine()}. {pinned}", "",
        f"Crowd (this script's own generator): {args.base_players} background players on a calm title, "
        f"then {args.crowd_players} more on one hot title arriving over {args.ramp:g} s, staying "
        f"{args.hold:g} s, then leaving at once; each player asks {args.rate:g} req/s (paced, so slow "
        f"answers do not lower the offered load): about {args.base_players * args.rate:.0f} req/s before, "
        f"{players * args.rate:.0f} req/s during. A player follows the fleet's master and its content "
        "steering (reloaded at the manifest's TTL), then fetches the lowest rung's playlist, init and "
        "segments from its edge, and starts over at the end of the title "
        f"({args.title_duration:g} s, 320x180, 6 s segments). Phases: before = {args.before:g} s after a "
        f"{args.warmup:g} s warm-up; during = from the first crowd player to the crowd leaving; "
        f"after = {args.after - 1:g} s from 1 s after it left. Latency: request start to end of body, over "
        "every request (master, steering, playlist, init, segment). CPU columns: share of one core used "
        "by `surge up` + its edges, by the crowd, and by everything else on the machine (the whole "
        "machine's busy time from /proc/stat minus ours: other people's work, which skews latency; each "
        f"variant first waits up to {args.wait_idle:g} s for two quiet seconds). Per-second series: "
        "bench/results/flashcrowd/.", "",
        f"Edge capacity `--edge-capacity {args.edge_capacity:g}`: the scaler fills {UTILIZATION:g} of it, "
        f"so one edge is exceeded above {args.edge_capacity * UTILIZATION:.0f} req/s — "
        "\"the rate crossing the target\" below is the first instant the crowd's offered rate (requests "
        "started in the trailing second) passes that.", "",
        "| variant | phase | req/s | p50 ms | p99 ms | failed | stack CPU | generator CPU | others' CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for s in summaries:
        for p in s["phases"]:
            lines.append(f"| {s['name']} | {p['name']} | {p['rps']:.0f} | {ms(p['p50_ms'])} | "
                         f"{ms(p['p99_ms'])} | {p['failed']} | {pct(p['stack_cpu'])} | "
                         f"{pct(p['generator_cpu'])} | {pct(p['other_cpu'])} |")  # fmt: skip
    lines += ["", "Scale-out, seconds from the first crowd player (t = 0):", "",
              "| variant | rate crossed | scale-out decisions (count) | new edges: started / active / first "
              "answer (X-Served-By) | peak active edges |", "|---|---|---|---|---|"]  # fmt: skip
    for s in summaries:
        decisions = ", ".join(f"{d['t_s']:+.2f} ({d['count']})" for d in s["decisions"]) or "none"
        edges = "; ".join(
            f"{e['edge']} {fmt_s(e['started_s'])} / {fmt_s(e['active_s'])} / {fmt_s(e['first_served_s'])}"
            for e in s["new_edges"]
        ) or "none"  # fmt: skip
        lines.append(f"| {s['name']} | {fmt_s(s['crossed_s'])} | {decisions} | {edges} | {s['peak_edges']} |")
    lines += ["", "Origin requests (its request log lines in `surge up`'s stderr; edges run with "
              "`--no-access-log`, the router's lines are for masters and steering only):", "",
              "| variant | segments + init: objects / requests / most per object | media playlists: "
              "objects / requests / most per object | failed requests, by kind | edges left after stop |",
              "|---|---|---|---|---|"]  # fmt: skip
    for s in summaries:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(s["errors"].items())) or "none"
        lines.append(f"| {s['name']} | {s['origin_immutable_objects']} / {s['origin_immutable_requests']} / "
                     f"{s['origin_immutable_max']} | {s['origin_playlist_objects']} / "
                     f"{s['origin_playlist_requests']} / {s['origin_playlist_max']} | {errors} | "
                     f"{len(s['left_behind'])} |")  # fmt: skip
    for s in summaries:
        if s["peak_edges"] > s["max_edges"]:
            lines += ["", f"Note: {s['name']} ran {s['peak_edges']} active edges at once with "
                      f"`--max-edges {s['max_edges']}`."]  # fmt: skip
    lines += ["", "Targets:", "", "| variant | target | measured | result |", "|---|---|---|---|"]
    for s in summaries:
        for name, measured, ok in targets(s):
            if s["peak_edges"] <= 1 and "scale-out" in name:
                ok, measured = None, f"{measured} (held at one edge by `--max-edges 1`)"
            lines.append(f"| {s['name']} | {name} | {measured} | {verdict(ok)} |")
    lines += [
        "",
        "Reading this: with the whole stack on one core, more edges add no capacity here (the fixed single "
        "edge serves the whole crowd with most of that core idle), so `--edge-capacity` is set low on "
        "purpose, to make the autoscaler act at a crowd this machine can generate. What a scale-out costs "
        "(a Python process start per edge, on the same core) is in these numbers; what it buys (more "
        "cores) is not. p99 is the fragile figure on a shared machine: compare it with the others' CPU.",
    ]
    return "\n".join(lines) + "\n"


def fmt_s(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def main() -> None:
    if any(arg == "--hosts" or arg.startswith("--hosts=") for arg in sys.argv[1:]):
        from on_hosts import main as on_hosts  # the same crowd, edges on emulated machines

        on_hosts(sys.argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--base-players", type=int, default=12, help="background players on a calm title (default 12)")
    add("--crowd-players", type=int, default=160, help="players in the flash crowd (default 160)")
    add("--rate", type=float, default=5.0, help="requests/s of each player (default 5)")
    add("--warmup", type=float, default=10.0, help="seconds of background only, not measured (default 10)")
    add("--before", type=float, default=10.0, help="measured seconds before the surge (default 10)")
    add("--ramp", type=float, default=3.0, help="seconds over which the crowd arrives (default 3)")
    add("--hold", type=float, default=20.0, help="seconds the whole crowd stays (default 20)")
    add("--after", type=float, default=10.0, help="seconds after the crowd left (default 10)")
    add("--edge-capacity", type=float, default=200.0, help="surge's --edge-capacity, req/s (default 200)")
    add("--max-edges", type=int, default=4, help="the autoscaled fleet's --max-edges (default 4)")
    add("--title-duration", type=float, default=120.0, help="seconds of the synthetic title (default 120)")
    add("--request-timeout", type=float, default=10.0, help="seconds per request (default 10)")
    add("--stack-cpu", default="0", help="taskset CPU for surge up and its edges (default 0)")
    add("--client-cpu", default="1", help="CPU for this script's crowd (default 1)")
    add("--no-pin", action="store_true", help="pin nothing")
    add("--only", choices=("autoscaled", "single"), help="run one variant")
    add("--wait-idle", type=float, default=300.0, help="most seconds to wait for a quiet machine (300)")
    add("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()
    can_pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if not can_pin:
        args.stack_cpu = None
    pinned = (f"Pinned: `surge up` and its edges with `taskset -c {args.stack_cpu}`, this script (the crowd) "
              f"to CPU {args.client_cpu} (`sched_setaffinity`, as `taskset -c {args.client_cpu}` does); "
              "packaging ran unpinned before." if can_pin else "Nothing pinned.")  # fmt: skip
    command = shlex.join([".venv/bin/python", "bench/flashcrowd/run.py", *sys.argv[1:]])
    variants = [("autoscaled", f"surge up, 1–{args.max_edges} edges", ["--max-edges", str(args.max_edges)]),
                ("single", "fixed single edge", ["--min-edges", "1", "--max-edges", "1"])]  # fmt: skip
    summaries = []
    with tempfile.TemporaryDirectory(prefix="surge-flashcrowd-") as tmp:
        work = Path(tmp)
        data = work / "data"
        print("packaging two titles …", flush=True)
        titles = package(data, work, args.title_duration)
        if can_pin:
            os.sched_setaffinity(0, {int(args.client_cpu)})
        for key, name, flags in variants:
            if args.only not in (None, key):
                continue
            idle = wait_idle(args.wait_idle)
            print(f"{name}: running (machine busy {idle:.2f} cores before) …", flush=True)
            result = run_variant(args, name, flags, data, work, titles)
            summary = summarize(result, args, int(flags[flags.index("--max-edges") + 1]))
            summaries.append(summary)
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / f"{key}.json").write_text(json.dumps(summary, indent=2) + "\n")
            print(json.dumps({k: v for k, v in summary.items() if k not in ("marks", "command")}, indent=1))
    section = report(args, summaries, command, pinned)
    print(section)
    if not args.no_doc:
        write_doc(SECTION, section)
        print(f"written: {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
