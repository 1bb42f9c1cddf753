"""Plumbing the bench scripts share: free ports, checked commands, servers started and stopped by PID,
CPU accounting from /proc, waiting for a quiet machine, and their section of the results doc."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
# wrk's done hook: exact totals and percentiles as one JSON line, read by run_wrk.
WRK_LUA = """done = function(s, lat, req)
  local e = s.errors
  io.write(string.format('bench-json {"requests":%d,"bytes":%d,"us":%d,"p50":%d,"p99":%d,"errors":%d}\\n',
    s.requests, s.bytes, s.duration, lat:percentile(50), lat:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end"""


# The start of the nginx configuration the benches compare against (a .format template): one worker,
# no access log, sendfile, the HLS types. Each bench adds its own server block.
NGINX_HEAD = """worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on; keepalive_requests 1000000;
  types {{ application/vnd.apple.mpegurl m3u8; video/mp4 mp4; video/iso.segment m4s; }}
  default_type application/octet-stream;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(argv: list[str], timeout: float) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {shlex.join(argv)}\n{done.stderr[-2000:]}")
    return done.stdout + done.stderr


def start(argv: list[str], log: Path | None, probe: str, timeout: float = 30) -> subprocess.Popen[bytes]:
    """Start a server in its own session (output to ``log``) and wait until ``probe`` answers 200."""
    with log.open("ab") if log is not None else contextlib.nullcontext(None) as out:
        target = out if out is not None else DEVNULL
        proc = subprocess.Popen(argv, stdin=DEVNULL, stdout=target, stderr=target, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), urllib.request.urlopen(probe, timeout=2) as response:
            if response.status == 200:
                return proc
        time.sleep(0.2)
    stop(proc)
    tail = log.read_text()[-2000:] if log is not None else ""
    sys.exit(f"did not come up: {shlex.join(argv)}\n{tail}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL to its session (the server and its workers only) if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def session_cpu_seconds(session: int) -> float:
    """user + sys time of every process in a session (nginx's worker is a child of its master)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_ticks() -> tuple[int, int]:
    """Machine-wide (idle + iowait, total) jiffies from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return values[3] + values[4], sum(values[:8])


def idle_fraction(seconds: float = 1.0) -> float:
    idle0, total0 = cpu_ticks()
    time.sleep(seconds)
    idle1, total1 = cpu_ticks()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(limit: float) -> float:
    """Wait (up to ``limit`` s) for a machine at least 90 % idle; returns the last idle share seen."""
    deadline = time.monotonic() + limit
    while (idle := idle_fraction()) < 0.9 and time.monotonic() < deadline:
        pass
    return idle


@dataclass(frozen=True)
class Sample:
    """One wrk run against one server."""

    rps: float
    bps: float
    p50_ms: float
    p99_ms: float
    per_cpu_s: float  # requests per second of the server's CPU time (user + sys, its whole session)
    idle: float  # share of the machine idle just before the run


def wrk_sample(argv: list[str], server_session: int, seconds: float, wait_idle: float) -> Sample:
    """Wait (up to ``wait_idle`` s) for a quiet machine, then run wrk (``argv`` loads WRK_LUA)."""
    idle = wait_for_quiet(wait_idle)
    r, cpu = run_wrk(argv, server_session, seconds)
    return sample_of(r, cpu, idle)


def sample_of(totals: dict[str, int], cpu: float, idle: float) -> Sample:
    """A Sample from wrk's totals (WRK_LUA) and the server's CPU seconds meanwhile."""
    s = totals["us"] / 1e6
    return Sample(totals["requests"] / s, totals["bytes"] / s, totals["p50"] / 1000, totals["p99"] / 1000,
                  totals["requests"] / max(cpu, 0.01), idle)  # fmt: skip


def run_wrk(argv: list[str], server_session: int, seconds: float) -> tuple[dict[str, int], float]:
    """Run wrk (``argv`` loads WRK_LUA with -s): its totals, and the server session's CPU seconds meanwhile.
    Exits with wrk's output when it failed or more than 1 % of its requests did."""
    cpu = session_cpu_seconds(server_session)
    out = sh(argv, seconds + 60)
    cpu = session_cpu_seconds(server_session) - cpu
    return wrk_totals(argv, out), cpu


def run_wrks_at_once(
    loads: list[tuple[list[str], int]], seconds: float
) -> list[tuple[dict[str, int], float]]:
    """Several wrk runs (argv, server session) at the same moment: each one's totals and its server's CPU
    seconds meanwhile. Servers sharing a CPU then share whatever else the machine is doing, too."""
    before = [session_cpu_seconds(session) for _, session in loads]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for argv, _ in loads]  # fmt: skip
    try:
        outs = [proc.communicate(timeout=seconds + 60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    spent = [session_cpu_seconds(session) - b for (_, session), b in zip(loads, before, strict=True)]
    return [(wrk_totals(argv, out), cpu) for (argv, _), out, cpu in zip(loads, outs, spent, strict=True)]


def wrk_totals(argv: list[str], out: str) -> dict[str, int]:
    """wrk's totals from its output (the WRK_LUA line); exits when it failed or over 1 % of requests did."""
    line = next((x for x in out.splitlines() if x.startswith("bench-json ")), None)
    if line is None:
        sys.exit(f"wrk failed: {shlex.join(argv)}\n{out}")
    totals: dict[str, int] = json.loads(line.removeprefix("bench-json "))
    if totals["errors"] > totals["requests"] // 100:
        sys.exit(
            f"wrk: {totals['errors']} errors in {totals['requests']} requests: {shlex.join(argv)}\n{out}"
        )
    return totals


def version(argv: list[str]) -> str:
    """The first line a tool prints about its version ('' when it prints nothing)."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    return ((done.stdout + done.stderr).strip().splitlines() or [""])[0]


def write_doc(heading: str, section: str, doc: Path = DOC) -> None:
    """Put ``section`` (which starts with ``heading``) in place of the old one, or append it."""
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n\n"  # re-read now: others edit it too
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section.rstrip("\n") + "\n" + (text[end:] if end >= 0 else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
