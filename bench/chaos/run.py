"""On demand (`make chaos`): faults injected into a running surge under real load, and what they cost.

Every scenario starts a fresh stack from one packaged library (a copy of it), runs `surge loadtest`
against the fleet's master for ``--duration`` seconds, injects its fault ``FAULT_AT`` seconds in (and
ends it ``FAULT_FOR`` seconds later when the fault has an end), then stops everything by PID and looks at
what is left. The stack runs under `taskset -c 0` (edges inherit it), the load generator and the
injections on CPU 1, all on 127.0.0.1.

- Edge faults (kill -9, SIGSTOP) run against `surge up --min-edges 2`.
- Origin faults run against `surge origin` and `surge fleet` started apart (in `surge up` they share a
  process, so killing the origin would kill the fleet too).
- The loss of a whole host runs on emulated hosts (tests/hosts.py): three edge hosts, each a Ray worker
  node in a network namespace with one `surge_edge` unit, and `surge up --backend ray` on the bridge
  address; the fault kills every process of the host the viewers' edge runs on.

Measured per scenario, from the load test's report and the servers' files: failed requests and whether
they all fell within a second of the fault's start or end (requests in flight then), viewers' rebuffers
and seconds stalled, recovery (seconds from the fault's end to the last failed request), data lost
(accepted uploads not ready at the end, published titles gone or half-written), residue (files left in
uploads/ and staging/). Results: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
sys.path.insert(0, str(ROOT / "bench"))  # bench/common.py

from common import free_port, start, stop, write_doc  # noqa: E402

from tests.hosts import Host, Lab, RayCluster, unavailable_reason  # noqa: E402
from tests.hosts import free_port as lab_port  # noqa: E402
from transcoder.sample import make_sample  # noqa: E402

PYTHON = [sys.executable, "-m", "surge.cli"]
STACK_CPU, LOAD_CPU = "0", "1"
TOKEN = "chaos-token-0123456789"
DOC = ROOT / "docs" / "reliability.md"
RESULTS = ROOT / "bench" / "results" / "chaos"
SECTION = "## The chaos table"
FAULT_AT, FAULT_FOR = 10.0, 5.0
IN_FLIGHT_WINDOW_S = 1.0  # failures this close to a fault's start or end count as requests in flight


@dataclass
class Stack:
    """The servers of one scenario: `surge up`, or `surge origin` + `surge fleet`."""

    data: Path
    logs: Path
    together: bool
    title: str  # the packaged title the viewers watch
    origin_port: int = field(default_factory=free_port)
    fleet_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    address: str = "127.0.0.1"
    fleet_options: list[str] = field(default_factory=list)  # e.g. the Ray backend's
    hosts: list[Host] = field(default_factory=list)  # emulated edge hosts, when the fleet uses them

    @property
    def origin(self) -> str:
        return f"http://{self.address}:{self.origin_port}"

    @property
    def fleet(self) -> str:
        return f"http://{self.address}:{self.fleet_port}"

    def _run(self, name: str, args: list[str], probe: str) -> None:
        argv = ["taskset", "-c", STACK_CPU, *PYTHON, *args]
        self.procs[name] = start(argv, self.logs / f"{name}.log", probe)

    def start_origin(self) -> None:
        self._run("origin", ["origin", "--port", str(self.origin_port), *self.origin_options],
                  f"{self.origin}/healthz")  # fmt: skip

    @property
    def origin_options(self) -> list[str]:
        return [
            "--data",
            str(self.data),
            "--min-free-disk",
            "0",
            "--preset",
            "ultrafast",
            "--retry-delay",
            "1",
        ]

    def up(self) -> None:
        if self.together:
            ports = ["--port", str(self.origin_port), "--fleet-port", str(self.fleet_port)]
            self._run("up", ["up", "--host", self.address, *ports, "--min-edges", "2", *self.fleet_options,
                             *self.origin_options], f"{self.fleet}/healthz")  # fmt: skip
        else:
            self.start_origin()
            self._run("fleet", ["fleet", "--origin", self.origin, "--port", str(self.fleet_port),
                                "--min-edges", "2"], f"{self.fleet}/healthz")  # fmt: skip

    def origin_pid(self) -> int:
        return self.procs["up" if self.together else "origin"].pid

    def edge_pid(self, edge_id: str) -> int:
        """The PID of the fleet's child process running edge ``edge_id``."""
        parent = str(self.procs["up" if self.together else "fleet"].pid)
        wanted = f"--id\0{edge_id}\0".encode()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if fields[1] == parent and wanted in (stat.parent / "cmdline").read_bytes() + b"\0":
                    return int(stat.parent.name)
        raise RuntimeError(f"no process for edge {edge_id}")

    async def busiest_edge(self) -> tuple[int, str]:
        """PID and URL of the edge serving the most requests now (the one the viewers' title is on)."""
        busiest = max((await _fleet(self))["edges"], key=lambda edge: edge["load_rps"])
        return await asyncio.to_thread(self.edge_pid, busiest["id"]), str(busiest["url"])

    def down(self) -> None:
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            stop(proc)


@dataclass
class Outcome:
    name: str
    fault: str
    report: dict[str, Any] = field(default_factory=dict)
    fault_start: float = 0.0  # wall clock (time.time())
    fault_end: float | None = None
    uploads_accepted: int = 0
    uploads_lost: int = 0
    titles_half_published: int = 0
    residue: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    probes: list[tuple[str, bool, str]] = field(default_factory=list)  # (what, answered 200, X-Cache)

    def probe_summary(self, what: str) -> str:
        """``answered/asked``, and how many of the answers were stale."""
        mine = [(ok, cache) for w, ok, cache in self.probes if w == what]
        stale = sum(cache == "STALE" for _, cache in mine)
        return f"{sum(ok for ok, _ in mine)}/{len(mine)}" + (f" ({stale} STALE)" if stale else "")

    def row(self) -> dict[str, Any]:
        requests, viewers = self.report["requests"], self.report["viewers"]
        # Seconds of the load test's series; its start is known to the second, hence the slack below.
        started = dt.datetime.fromisoformat(self.report["started_at"]).timestamp()
        failed_at = [row["t"] for row in self.report["series"] for _ in range(row["errors"])]
        marks = [m - started for m in (self.fault_start, self.fault_end) if m is not None]
        near_a_mark = all(any(m - 1 <= t <= m + IN_FLIGHT_WINDOW_S + 1 for m in marks) for t in failed_at)
        # A viewer has one request in flight at a time, and one that gives up failed more than that.
        in_flight = near_a_mark and len(failed_at) <= self.report["config"]["players"] * len(marks)
        in_flight = in_flight and viewers["sessions_failed"] == 0
        recovery = max((t + 1 - marks[-1] for t in failed_at), default=0.0)
        return {
            "scenario": self.name,
            "fault": self.fault,
            "requests": requests["total"],
            "failed": requests["errors"],
            "failed_by_kind": requests["errors_by_kind"],
            "failed_by_type": {k: v["errors"] for k, v in requests["by_type"].items() if v["errors"]},
            "only_in_flight": in_flight,
            "rebuffers": viewers["rebuffers"],
            "rebuffer_s": round(viewers["rebuffer_s"], 2),
            "sessions_failed": viewers["sessions_failed"],
            "recovery_s": round(max(0.0, recovery), 1),
            "uploads_accepted": self.uploads_accepted,
            "uploads_lost": self.uploads_lost,
            "titles_half_published": self.titles_half_published,
            "residue": self.residue,
            "x_cache": {k: v["requests"] for k, v in requests["x_cache"].items()},
            "probes": {what: self.probe_summary(what) for what in ("master", "playlist")},
            "notes": self.notes,
        }


Inject = Callable[[Stack, Outcome, aiohttp.ClientSession], Awaitable[None]]


# Faults. Each runs FAULT_AT seconds into the load test and returns once it is over.


async def no_fault(_stack: Stack, _outcome: Outcome, _session: aiohttp.ClientSession) -> None:
    return


async def edge_kill(stack: Stack, outcome: Outcome, _session: aiohttp.ClientSession) -> None:
    os.kill((await stack.busiest_edge())[0], signal.SIGKILL)


async def edge_stop(stack: Stack, outcome: Outcome, _session: aiohttp.ClientSession) -> None:
    pid, _ = await stack.busiest_edge()
    os.kill(pid, signal.SIGSTOP)
    await asyncio.sleep(FAULT_FOR)
    with contextlib.suppress(ProcessLookupError):  # the fleet may have replaced (killed) it meanwhile
        os.kill(pid, signal.SIGCONT)
    outcome.fault_end = time.time()


async def host_loss(stack: Stack, outcome: Outcome, _session: aiohttp.ClientSession) -> None:
    busiest = max((await _fleet(stack))["edges"], key=lambda edge: edge["load_rps"])
    host = next(h for h in stack.hosts if h.address == busiest["node"])
    await asyncio.to_thread(host.kill)  # its Ray node, the edge actor and the edge: the machine is gone
    outcome.notes.append(f"host {host.address} ({busiest['id']}) lost")


async def origin_kill(stack: Stack, outcome: Outcome, _session: aiohttp.ClientSession) -> None:
    os.kill(stack.origin_pid(), signal.SIGKILL)
    stack.procs.pop("origin").wait(10)
    await asyncio.sleep(FAULT_FOR)
    await asyncio.to_thread(stack.start_origin)
    outcome.fault_end = time.time()


async def upload(stack: Stack, session: aiohttp.ClientSession, source: Path, outcome: Outcome) -> str | None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: a chunked upload
        with source.open("rb") as handle:
            while block := handle.read(256 * 1024):
                yield block

    async with session.post(
        f"{stack.origin}/admin/titles",
        params={"name": "chaos upload"},
        data=chunks(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "video/mp4"},
    ) as response:
        body = await response.json()
        if response.status != 202:
            outcome.notes.append(f"upload refused: {response.status} {body.get('error', '')[:80]}")
            return None
    outcome.uploads_accepted += 1
    return str(body["id"])


def ffmpeg_under(data: Path) -> int | None:
    """The PID of an ffmpeg packaging into ``data``, if one runs."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            text = cmdline.read_bytes()
            if text.startswith(b"ffmpeg") and str(data).encode() in text:
                return int(cmdline.parent.name)
    return None


async def wait_packaging(stack: Stack, limit: float = 30) -> int:
    """The running ffmpeg's PID (a child of the origin), once it runs."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        pid = await asyncio.to_thread(ffmpeg_under, stack.data)
        if pid is not None:
            return pid
        await asyncio.sleep(0.05)
    raise RuntimeError("ffmpeg never started")


def ffmpeg_kill(source: Path) -> Inject:
    async def inject(stack: Stack, outcome: Outcome, session: aiohttp.ClientSession) -> None:
        if await upload(stack, session, source, outcome) is not None:
            os.kill(await wait_packaging(stack), signal.SIGKILL)

    return inject


def origin_kill_packaging(source: Path) -> Inject:
    async def inject(stack: Stack, outcome: Outcome, session: aiohttp.ClientSession) -> None:
        if await upload(stack, session, source, outcome) is None:
            return
        await wait_packaging(stack)
        os.kill(stack.origin_pid(), signal.SIGKILL)
        stack.procs.pop("origin").wait(10)
        await asyncio.sleep(FAULT_FOR)
        await asyncio.to_thread(stack.start_origin)
        outcome.fault_end = time.time()

    return inject


def full_disk(source: Path) -> Inject:
    async def inject(stack: Stack, outcome: Outcome, session: aiohttp.ClientSession) -> None:
        filler = stack.data / "filler"
        free = shutil.disk_usage(stack.data).free
        await asyncio.to_thread(_fill, filler, free)
        await upload(stack, session, source, outcome)  # refused: 507
        await asyncio.sleep(FAULT_FOR)
        filler.unlink()
        outcome.fault_end = time.time()
        await upload(stack, session, source, outcome)  # taken again once there is room

    return inject


def _fill(path: Path, size: int) -> None:
    with contextlib.suppress(OSError), path.open("wb") as handle:
        for _ in range(size // (1 << 20) + 1):
            handle.write(b"\0" * (1 << 20))


async def slowloris(stack: Stack, outcome: Outcome, _session: aiohttp.ClientSession) -> None:
    """200 connections to an edge that send their request headers one byte a second (bounded: 20 s)."""
    _, url = await stack.busiest_edge()
    host, port = url.removeprefix("http://").split(":")
    cut_after: list[float] = []

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        started = time.monotonic()
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
                writer.write(bytes([byte]))
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1024), 1.0) or reader.at_eof():
                        cut_after.append(time.monotonic() - started)
                        return
                if time.monotonic() - started > 20:
                    return
        except ConnectionError:
            cut_after.append(time.monotonic() - started)
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(200)))
    cut = sorted(cut_after)
    outcome.notes.append(
        f"{len(cut)}/200 slow connections cut by the edge, after {cut[len(cut) // 2]:.1f} s (median)"
        if cut
        else "no slow connection was cut"
    )
    outcome.fault_end = time.time()


async def slow_readers(stack: Stack, outcome: Outcome, _session: aiohttp.ClientSession) -> None:
    """50 clients that ask an edge for a segment and read it at 4 KiB/s, for 15 s."""
    _, edge = await stack.busiest_edge()
    host, port = edge.removeprefix("http://").split(":")
    read = [0] * 50

    async def one(index: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port), limit=4096)
        path = f"/titles/{stack.title}/360p/seg_{index % 5:05d}.m4s"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        deadline = time.monotonic() + 15
        with contextlib.suppress(ConnectionError):
            while time.monotonic() < deadline:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                read[index] += len(chunk)
                await asyncio.sleep(1)
        writer.close()

    await asyncio.gather(*(one(i) for i in range(50)))
    outcome.notes.append(f"50 slow readers read {sum(read) // 1024} KiB in all")
    outcome.fault_end = time.time()


async def _fleet(stack: Stack) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{stack.fleet}/fleet") as response:
        data: dict[str, Any] = await response.json()
        return data


# Running a scenario.


async def note_fleet_events(stack: Stack, outcome: Outcome) -> None:
    """What the fleet did from the fault on: edges started and stopped, and why."""
    fleet = await _fleet(stack)
    since = [
        e for e in fleet["events"] if dt.datetime.fromisoformat(e["time"]).timestamp() >= outcome.fault_start
    ]
    if since:
        said = [e["kind"] + (f" ({e['reason']})" if e.get("reason") else "") for e in since]
        outcome.notes.append("fleet: " + ", ".join(said))
    outcome.notes.append(f"{len(fleet['edges'])} edges at the end")


async def probe(stack: Stack, outcome: Outcome, until: float) -> None:
    """Twice a second, the master from the fleet and the first variant's media playlist from the edge it
    names (the last one named while the master fails): what a player starting then would get."""
    variant = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < until:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{stack.fleet}/titles/{stack.title}/master.m3u8") as response:
                    text = await response.text()
                    outcome.probes.append(("master", response.status == 200, ""))
                    if response.status == 200:
                        variant = next(line for line in text.splitlines() if line.startswith("http"))
            if variant is not None:
                try:
                    async with session.get(variant) as response:
                        await response.read()
                        outcome.probes.append(
                            ("playlist", response.status == 200, response.headers.get("X-Cache", ""))
                        )
                except (aiohttp.ClientError, TimeoutError):
                    outcome.probes.append(("playlist", False, ""))
            await asyncio.sleep(0.5)


def prepare_data(library: Path, data: Path, disk_mib: int | None) -> None:
    """A copy of the library at ``data``, on a tmpfs of ``disk_mib`` MiB when given."""
    data.parent.mkdir(parents=True)
    if disk_mib is None:
        shutil.copytree(library, data)
        return
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={disk_mib}m", "tmpfs", str(data)], check=True)
    subprocess.run(["cp", "-a", f"{library}/.", str(data)], check=True)


def inspect_data(data: Path, outcome: Outcome) -> None:
    """Files left where only work in progress lives, and title directories without their title.json."""
    for directory in ("uploads", "staging"):
        outcome.residue += [str(p.relative_to(data)) for p in (data / directory).rglob("*") if p.is_file()]
    titles = [t for t in (data / "titles").iterdir() if t.is_dir()]
    outcome.titles_half_published += sum(1 for t in titles if not (t / "title.json").is_file())


def unmount_under(work: Path) -> None:
    for mount in Path("/proc/mounts").read_text().splitlines():
        if mount.split()[1].startswith(str(work)):
            subprocess.run(["umount", "--lazy", mount.split()[1]], check=False)


def start_load(stack: Stack, args: argparse.Namespace, report: Path) -> subprocess.Popen[bytes]:
    argv = ["taskset", "-c", LOAD_CPU, *PYTHON, "loadtest", f"{stack.fleet}/titles/{stack.title}/master.m3u8",
            "--players", str(args.players), "--duration", str(args.duration), "--speed", str(args.speed),
            "--timeout", "5", "--report", str(report), "--quiet"]  # fmt: skip
    if stack.address != "127.0.0.1":
        argv.append("--allow-remote")  # the emulated hosts' documentation-range addresses
    with (stack.logs / "loadtest.log").open("wb") as log:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)


async def run_scenario(
    name: str, fault: str, inject: Inject, library: Path, title: str, work: Path, args: argparse.Namespace,
    *, together: bool, disk_mib: int | None = None, lab: LabCluster | None = None,
) -> Outcome:  # fmt: skip
    outcome = Outcome(name, fault)
    data = work / name / "data"
    await asyncio.to_thread(prepare_data, library, data, disk_mib)
    stack = Stack(data, work / name, together, title)
    if lab is not None:
        stack.address, stack.hosts = lab.lab.address, lab.hosts
        stack.origin_port, stack.fleet_port = lab_port(lab.lab.address), lab_port(lab.lab.address)
        stack.fleet_options = ["--backend", "ray", "--ray-address", lab.ray.address, "--ray-namespace", name]
    try:
        await asyncio.to_thread(stack.up)
        report = work / name / "loadtest.json"
        load = await asyncio.to_thread(start_load, stack, args, report)
        prober = asyncio.create_task(probe(stack, outcome, time.monotonic() + args.duration))
        try:
            await asyncio.sleep(FAULT_AT)
            outcome.fault_start = time.time()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
                await inject(stack, outcome, session)
                await asyncio.to_thread(load.wait, args.duration + 60)
                outcome.report = json.loads(await asyncio.to_thread(report.read_text))
                await check_data(stack, outcome, session)
                await note_fleet_events(stack, outcome)
        finally:
            prober.cancel()
            if load.poll() is None:
                os.killpg(load.pid, signal.SIGKILL)
                await asyncio.to_thread(load.wait)
    finally:
        await asyncio.to_thread(stack.down)
        await asyncio.to_thread(inspect_data, data, outcome)
        if disk_mib is not None:
            await asyncio.to_thread(unmount_under, data)
    return outcome


async def check_data(stack: Stack, outcome: Outcome, session: aiohttp.ClientSession) -> None:
    """Every accepted upload ready (waiting up to 90 s for packaging), every published title whole."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + 90
    while True:
        async with session.get(f"{stack.origin}/admin/titles", headers=auth) as response:
            titles = (await response.json())["titles"]
        uploads = [t for t in titles if t["id"] != stack.title]
        if all(t["status"] in ("ready", "failed") for t in uploads) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    outcome.uploads_lost = outcome.uploads_accepted - sum(1 for t in uploads if t["status"] == "ready")
    for title in titles:
        if title["status"] == "ready":
            async with session.get(f"{stack.origin}{title['master']}") as response:
                outcome.titles_half_published += int(response.status != 200)
    outcome.notes += [f"{t['id']}: {t['status']}, {t['attempts']} attempt(s)" for t in uploads]


async def make_library(work: Path, source: Path) -> tuple[Path, str]:
    """A packaged library with one title, made by a real origin; and the title's id."""
    library = work / "library"
    port = free_port()
    argv = [*PYTHON, "origin", "--data", str(library), "--port", str(port), "--preset", "ultrafast"]
    proc = await asyncio.to_thread(start, argv, work / "library.log", f"http://127.0.0.1:{port}/healthz")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = await asyncio.to_thread(source.read_bytes)
    try:
        async with aiohttp.ClientSession() as session:
            headers = auth | {"Content-Type": "video/mp4"}
            async with session.post(f"http://127.0.0.1:{port}/admin/titles", params={"name": "chaos"},
                                    data=body, headers=headers) as response:  # fmt: skip
                title_id = str((await response.json())["id"])
            for _ in range(600):
                async with session.get(
                    f"http://127.0.0.1:{port}/admin/titles/{title_id}", headers=auth
                ) as answer:
                    if (await answer.json())["status"] == "ready":
                        break
                await asyncio.sleep(0.2)
    finally:
        await asyncio.to_thread(stop, proc)
    return library, title_id


def markdown(rows: list[dict[str, Any]], command: str, args: argparse.Namespace) -> str:
    columns = ["scenario", "fault", "requests", "failed", "only in flight", "rebuffers (s stalled)",
               "recovery s", "uploads lost / accepted", "half-published", "residue",
               "probes: master; playlist", "notes"]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        if "requests" not in r:
            cells = [r["scenario"], r["fault"], *["—"] * (len(columns) - 3), r["notes"][0]]
        else:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["failed_by_type"].items()))
            kinds += "; " * bool(kinds) + ", ".join(
                f"{k} {v}" for k, v in sorted(r["failed_by_kind"].items())
            )
            cells = [
                r["scenario"], r["fault"], str(r["requests"]),
                f"{r['failed']}" + (f" ({kinds})" if kinds else ""),
                "yes" if r["only_in_flight"] else "no", f"{r['rebuffers']} ({r['rebuffer_s']})",
                str(r["recovery_s"]), f"{r['uploads_lost']} / {r['uploads_accepted']}",
                str(r["titles_half_published"]), f"{len(r['residue'])} files",
                f"{r['probes']['master']}; {r['probes']['playlist']}", "; ".join(r["notes"]),
            ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Measured {stamp} on this repository's 2-CPU test machine: `{command}` "
        f"({args.players} players at {args.speed:g}x for {args.duration:g} s per scenario; fault at "
        f"{FAULT_AT:g} s, ended {FAULT_FOR:g} s later where it has an end).\n\n" + "\n".join(lines) + "\n"
    )


SCENARIOS = ("baseline", "edge-kill", "edge-stop", "origin-kill", "ffmpeg-kill", "origin-kill-packaging",
             "full-disk", "slowloris", "slow-readers", "host-loss")  # fmt: skip


def scenarios(upload_source: Path, library_mib: int) -> dict[str, tuple[str, Inject, bool, int | None]]:
    """name: (fault, injection, against `surge up`, tmpfs size in MiB or None)."""
    pause = f"{FAULT_FOR:g} s"
    return {
        "baseline": ("none", no_fault, True, None),
        "edge-kill": ("kill -9 of one of two edges (`surge up`)", edge_kill, True, None),
        "edge-stop": (f"SIGSTOP of one of two edges for {pause} (`surge up`)", edge_stop, True, None),
        "origin-kill": (f"kill -9 of the origin, restarted {pause} later", origin_kill, False, None),
        "ffmpeg-kill": ("upload, then kill -9 of its ffmpeg", ffmpeg_kill(upload_source), False, None),
        "origin-kill-packaging": (
            f"upload, kill -9 of the origin while packaging, restarted {pause} later",
            origin_kill_packaging(upload_source), False, None,
        ),
        "full-disk": (
            f"disk filled for {pause}, a chunked upload meanwhile and one after",
            full_disk(upload_source), False, library_mib + 24,
        ),
        "slowloris": ("200 connections sending headers at 1 byte/s to an edge", slowloris, True, None),
        "slow-readers": ("50 clients reading segments at 4 KiB/s, 15 s", slow_readers, True, None),
        "host-loss": ("loss of the host of the viewers' edge (3 emulated hosts, Ray backend)", host_loss,
                      True, None),
    }  # fmt: skip


@dataclass
class LabCluster:
    lab: Lab
    ray: RayCluster
    hosts: list[Host]


@contextlib.contextmanager
def emulated_hosts(count: int = 3) -> Iterator[LabCluster]:
    """Edge hosts on a bridge, each a Ray worker node with one surge_edge unit; torn down by name."""
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(f"chaos: host-loss needs network namespaces: {reason}")
    with Lab("sk") as lab:
        cluster = RayCluster(lab, str(Path(sys.executable).with_name("ray")))
        os.environ["RAY_AUTH_MODE"] = cluster.env["RAY_AUTH_MODE"]  # surge up joins the lab's cluster
        try:
            hosts = [lab.add_host(f"edge{i}", egress="200mbit", ingress="200mbit") for i in range(count)]
            for host in hosts:
                cluster.add_node(host, {"surge_edge": 1})
            cluster.wait_for_nodes(1 + count)
            yield LabCluster(lab, cluster, hosts)
        finally:
            os.environ.pop("RAY_AUTH_MODE", None)
            cluster.close()


def make_sources(work: Path) -> tuple[Path, Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    return (
        make_sample(work / "title.mp4", width=640, height=360, duration=60),
        make_sample(work / "upload.mp4", width=640, height=360, duration=20),
        work,
    )


def library_size_mib(library: Path) -> int:
    return sum(p.stat().st_size for p in library.rglob("*") if p.is_file()) // (1 << 20)


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="surge-chaos-"))
    try:
        title_source, upload_source, _ = await asyncio.to_thread(make_sources, work)
        library, title = await make_library(work, title_source)
        plan = scenarios(upload_source, await asyncio.to_thread(library_size_mib, library))
        rows = []
        for name in args.only or SCENARIOS:
            fault, inject, together, disk = plan[name]
            print(f"chaos: {name}: {fault}", file=sys.stderr)
            if name == "host-loss":
                with emulated_hosts() as lab:
                    outcome = await run_scenario(name, fault, inject, library, title, work, args,
                                                 together=True, lab=lab)  # fmt: skip
            else:
                outcome = await run_scenario(name, fault, inject, library, title, work, args,
                                             together=together, disk_mib=disk)  # fmt: skip
            rows.append(outcome.row())
            print(f"chaos: {name}: {json.dumps(rows[-1])}", file=sys.stderr)
        command = (
            "make chaos" if sys.argv[1:] == [] else f"python bench/chaos/run.py {shlex.join(sys.argv[1:])}"
        )
        table = markdown(rows, command, args)
        await asyncio.to_thread((RESULTS / "chaos.json").write_text, json.dumps(rows, indent=2))
        await asyncio.to_thread((RESULTS / "table.md").write_text, table)
        await asyncio.to_thread(write_doc, SECTION, f"{SECTION}\n\n{table}", DOC)
        print(table)
    finally:
        await asyncio.to_thread(unmount_under, work)
        await asyncio.to_thread(shutil.rmtree, work, True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run these scenarios only")
    parser.add_argument("--players", type=int, default=60, help="viewers per scenario (default 60)")
    parser.add_argument("--duration", type=float, default=35.0, help="seconds of load per scenario")
    parser.add_argument("--speed", type=float, default=4.0, help="playback speed of the viewers")
    return parser.parse_args()


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("chaos: run as root (the full-disk scenario mounts a small tmpfs)")
    if shutil.which("taskset") is None:
        sys.exit("chaos: needs taskset (util-linux)")
    print(f"chaos: {shlex.join(sys.argv)}", file=sys.stderr)
    os.environ["SURGE_ADMIN_TOKEN"] = TOKEN
    os.environ["PYTHONPATH"] = str(ROOT)  # the servers run this tree's code
    asyncio.run(main(parse_args()))
