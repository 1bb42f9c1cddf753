"""On-demand benchmark: `surge edge` against Varnish (malloc storage) in front of the same origin.

The caches are pinned to one CPU (taskset), wrk, the origin and the coalescing client to the other, all on
127.0.0.1. The origin is this script (`--serve-origin`, aiohttp): a synthetic title with surge origin's
headers, a long max-age on playlists (so playlist runs are pure hits for both caches), and a `slow/`
rendition sent at --origin-rate that counts requests. Measures warm playlist hits, warm segment hits from
memory and from the edge's disk tier, and N concurrent cold requests for one segment (coalescing). Shared
plumbing comes from bench/common.py. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/common.py
from common import (
    WRK_LUA,
    Sample,
    free_port,
    run_wrks_at_once,
    sh,
    start,
    stop,
    version,
    wait_for_quiet,
    write_doc,
    wrk_sample,
)

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv" / "bin"
SECTION = "## Edge: surge edge vs Varnish"
TITLE, SEGMENT_BYTES, SEGMENTS = "bench-title", 1_500_000, 10
PLAYLIST, SEGMENT = f"/titles/{TITLE}/1080p/index.m3u8", f"/titles/{TITLE}/1080p/seg_00000.m4s"
SURGE, QUIET, DISK, QUIET_DISK = "surge", "surge, no access log", "surge disk", "surge disk, no access log"
VARNISH, NGINX, DISK_TIER = "Varnish", "nginx", "segment, disk tier"
EXPOSE = "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, Age, Content-Encoding"
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": EXPOSE}
IMMUTABLE = "public, max-age=31536000, immutable"
VCL = 'vcl 4.1;\nbackend origin {{ .host = "127.0.0.1"; .port = "{port}"; }}\n'  # builtin VCL does the rest
NGINX_CONF = """worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; proxy_temp_path {d}/tmp; client_body_temp_path {d}/tmp;
  proxy_cache_path {d}/cache keys_zone=edge:10m max_size=1g;
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://127.0.0.1:{origin};
    proxy_http_version 1.1; proxy_cache edge; proxy_cache_lock on; proxy_cache_lock_timeout 60s; }} }} }}
"""


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    connections: int
    servers: tuple[str, str]  # logged, unlogged
    goal: float  # surge / Varnish, Varnish serving `versus` from memory
    field: str  # "rps" or "bps"; the disk tier is compared with Varnish's memory hits


@dataclass(frozen=True)
class Stampede:
    origin_requests: int
    first_ms: list[float]  # each waiter's first body byte, from the moment all requests were sent
    origin_end_ms: float  # the origin's last byte, same clock
    labels: dict[str, int]  # X-Cache values


def serve_origin(data: Path, port: int, rate: float) -> None:
    from aiohttp import web

    counts: dict[str, int] = collections.defaultdict(int)
    ends: dict[str, float] = {}
    body = (data / SEGMENT.lstrip("/")).read_bytes()

    async def files(request: web.Request) -> web.StreamResponse:
        counts[request.path] += 1
        parts = request.path.split("/")
        if ".." in parts:
            raise web.HTTPNotFound()
        if parts[-2] != "slow":
            kind, cache = ("application/vnd.apple.mpegurl", "public, max-age=86400") if parts[-1].endswith(
                ".m3u8") else ("video/iso.segment", IMMUTABLE)  # fmt: skip
            headers = {"Content-Type": kind, "Cache-Control": cache, **CORS}
            return web.FileResponse(data / request.path.lstrip("/"), headers=headers)
        response = web.StreamResponse(
            headers={"Content-Type": "video/iso.segment", "Cache-Control": IMMUTABLE}
        )
        response.content_length = len(body)
        await response.prepare(request)
        start, chunk = time.monotonic(), 32 * 1024
        for offset in range(0, len(body), chunk):  # chunk n leaves at start + n * chunk / rate
            await asyncio.sleep(max(0.0, start + offset / rate - time.monotonic()))
            await response.write(body[offset : offset + chunk])
        ends[request.path] = time.monotonic()
        await response.write_eof()
        return response

    async def report(_: web.Request) -> web.Response:
        return web.json_response({"counts": counts, "ends": ends})

    app = web.Application()
    app.router.add_get("/counts", report)
    app.router.add_get("/titles/{tail:.+}", files)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def get(url: str) -> tuple[dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(response.headers), response.read()


def wrk_argv(args: argparse.Namespace, url: str, conns: int, seconds: float) -> list[str]:
    return ["taskset", "-c", args.client_cpu, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
            "-s", str(args.lua), url]  # fmt: skip


def wrk(args: argparse.Namespace, url: str, conns: int, seconds: float, pid: int) -> Sample:
    return wrk_sample(wrk_argv(args, url, conns, seconds), pid, seconds, args.wait_idle)


def side_by_side(args: argparse.Namespace, path: str, conns: int, pids: tuple[int, int],
                 urls: tuple[str, str]) -> tuple[float, float]:  # fmt: skip
    """Two caches under load at the same moment, one wrk each: bytes per CPU-second of each. Both are on
    the server CPU and both wrks on the client CPU, so whatever else the machine does weighs on both alike
    (runs one after the other here differ by up to 2x; the ratio of a side-by-side round, by a few %)."""
    wait_for_quiet(args.wait_idle)
    loads = [
        (wrk_argv(args, url + path, conns, args.side_seconds), pid)
        for url, pid in zip(urls, pids, strict=True)
    ]
    (a, cpu_a), (b, cpu_b) = run_wrks_at_once(loads, args.side_seconds)
    return a["bytes"] / max(cpu_a, 0.01), b["bytes"] / max(cpu_b, 0.01)


async def clients(port: int, path: str, count: int) -> tuple[float, list[tuple[float, str]]]:
    """``count`` connections, then the same GET on all of them at once: (sent, [(first byte, X-Cache)])."""
    gate = asyncio.Event()

    async def one() -> tuple[float, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await gate.wait()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            got = len(await reader.read(65536))
            first = time.monotonic()
            while chunk := await reader.read(1 << 20):
                got += len(chunk)
            if not head.startswith("http/1.1 200") or got < SEGMENT_BYTES:  # chunked framing only adds
                raise RuntimeError(f"bad answer ({got} bytes): {head!r}")
            return first, next(
                (ln[8:].strip().upper() for ln in head.splitlines() if ln[:8] == "x-cache:"), "-"
            )
        finally:
            writer.close()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await asyncio.sleep(0.5)  # every connection accepted before anyone asks
    sent = time.monotonic()
    gate.set()
    return sent, await asyncio.wait_for(asyncio.gather(*tasks), 120)


def stampede(args: argparse.Namespace, port: int, origin: str, path: str) -> Stampede:
    sent, answers = asyncio.run(clients(port, path, args.clients))
    for _ in range(50):  # the origin notes its last byte just after sending it
        counts = json.loads(get(origin + "/counts")[1])
        if path in counts["ends"]:
            break
        time.sleep(0.1)
    firsts = [(first - sent) * 1000 for first, _ in answers]
    labels = collections.Counter(label for _, label in answers)
    return Stampede(counts["counts"][path], firsts, (counts["ends"][path] - sent) * 1000, labels)


def profile(args: argparse.Namespace, url: str, conns: int, pid: int, out: Path) -> str:
    """py-spy on a cache under wrk load: the top frames by own samples and by samples below them."""
    load = subprocess.Popen(wrk_argv(args, url, conns, args.duration + 4), stdout=DEVNULL)
    try:
        time.sleep(1)
        sh([str(VENV / "py-spy"), "record", "--pid", str(pid), "--duration", str(args.duration), "--rate",
            "200", "--format", "speedscope", "-o", str(out)], args.duration + 60)  # fmt: skip
    finally:
        load.wait(timeout=args.duration + 30)
    spec = json.loads(out.read_text())
    frames = [f"{f['name']} ({Path(f.get('file', '?')).name})" for f in spec["shared"]["frames"]]
    own: collections.Counter[str] = collections.Counter()
    below: collections.Counter[str] = collections.Counter()
    for prof in spec["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            own[frames[stack[-1]] if stack else "?"] += weight
            below.update(dict.fromkeys({frames[i] for i in stack}, weight))
    total = sum(own.values())
    lines = [f"self {v / total:6.1%}  {k}" for k, v in own.most_common(10)]
    lines += [f"incl {v / total:6.1%}  {k}" for k, v in below.most_common() if v < 0.99 * total][:10]
    return "\n".join(lines)


def facts() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.machine())  # fmt: skip
    py = version([str(VENV / "python"), "-c", "import aiohttp, uvloop, sys; print(sys.version.split()[0], "
                  "aiohttp.__version__, uvloop.__version__)"]).split()  # fmt: skip
    head = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return (f"nproc {os.cpu_count()} ({cpu}), Linux {platform.release()}; {version(['varnishd', '-V'])}; "
            f"{version(['wrk', '-v']).split(' [')[0]}; {version(['nginx', '-v'])}; Python {py[0]}, "
            f"aiohttp {py[1]}, uvloop {py[2]}; surge at `{head}` + work tree")  # fmt: skip


def report(args: argparse.Namespace, targets: list[Target], res: dict[tuple[str, str], list[Sample]],
           pairs: dict[tuple[str, str], list[tuple[float, float]]], runs: dict[str, list[Stampede]],
           note: str, profiles: list[str], command: str) -> str:  # fmt: skip
    def med(server: str, target: str, field: str) -> float:
        return statistics.median(getattr(s, field) for s in res[server, target])

    def verdicts(ok: list[bool]) -> str:
        return " / ".join("pass" if x else "**fail**" for x in ok)

    rows = ["| measure | surge edge | surge edge, no access log | Varnish | surge / Varnish | target "
            "| result |", "|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for t in targets:
        scale, size, unit = (1e6, SEGMENT_BYTES, "MB") if t.field == "bps" else (1, 1, "req")
        cols = [
            (t.servers[0], t.name),
            (t.servers[1], t.name),
            (VARNISH, "segment" if t.name == DISK_TIER else t.name),
        ]
        for label, field, k, goal in (
            (f"{unit}/s", t.field, 1, t.goal),
            (f"{unit}/CPU-s", "per_cpu_s", size, 0),
        ):
            v = [med(s, n, field) * k / scale for s, n in cols]
            rows.append(f"| {t.name}, {label} | {' | '.join(f'{x:,.0f}' for x in v)} | {v[0] / v[2]:.2f}x / "
                        f"{v[1] / v[2]:.2f}x | {f'>= {goal}x' if goal else ''} | "
                        f"{verdicts([x / v[2] >= goal for x in v[:2]]) if goal else ''} |")  # fmt: skip
        if t.field == "bps" and all((s, t.name) in pairs for s in t.servers):
            rounds = [pairs[s, t.name] for s in t.servers]
            v = [statistics.median(a for a, _ in r) / 1e6 for r in rounds]
            v.append(statistics.median(b for r in rounds for _, b in r) / 1e6)
            ratios = [statistics.median(a / b for a, b in r) for r in rounds]
            rows.append(f"| {t.name}, side by side, MB/CPU-s | {' | '.join(f'{x:,.0f}' for x in v)} | "
                        f"{ratios[0]:.2f}x / {ratios[1]:.2f}x | >= {t.goal}x | "
                        f"{verdicts([r >= t.goal for r in ratios])} |")  # fmt: skip
        lat = " | ".join(f"{med(s, n, 'p50_ms'):.2f} / {med(s, n, 'p99_ms'):.2f}" for s, n in cols)
        rows.append(f"| {t.name}, latency p50 / p99 ms | {lat} | | | |")
    cs = [runs[s] for s in (SURGE, QUIET, VARNISH)]
    count = " | ".join(", ".join(str(r.origin_requests) for r in c) for c in cs)
    first = " | ".join(f"{statistics.median(statistics.median(r.first_ms) for r in c):.0f} / "
                       f"{statistics.median(max(r.first_ms) for r in c):.0f}" for c in cs)  # fmt: skip
    end = " | ".join(f"{statistics.median(r.origin_end_ms for r in c):.0f}" for c in cs)
    rows += [f"| {args.clients} concurrent misses: origin requests, each run | {count} | | exactly 1 | "
             f"{verdicts([all(r.origin_requests == 1 for r in c) for c in cs[:2]])} |",
             f"| their first body byte, ms: p50 / max | {first} | | < origin's last byte | "
             f"{verdicts([all(max(r.first_ms) < r.origin_end_ms for r in c) for c in cs[:2]])} |",
             f"| origin's last byte, ms | {end} | | | |"]  # fmt: skip
    c = runs[NGINX]
    rows.append(f"\nnginx `proxy_cache` + `proxy_cache_lock`, same coalescing test: origin requests "
                f"{', '.join(str(r.origin_requests) for r in c)}; first body byte p50 "
                f"{statistics.median(statistics.median(r.first_ms) for r in c):.0f} ms, max "
                f"{statistics.median(max(r.first_ms) for r in c):.0f} ms (waiters are answered from the "
                "finished cache file).")  # fmt: skip
    nl = "\n"
    return nl.join([
        SECTION, "",
        f"On demand; method and caveats in [bench/edge/README.md](../bench/edge/README.md). Caches on CPU "
        f"{args.server_cpu}, wrk, origin and clients on CPU {args.client_cpu}; medians of {args.repeat} runs "
        f"of {args.duration} s; playlist {args.playlist_connections} connections, segment "
        f"{args.segment_connections} ({SEGMENT_BYTES / 1e6:.1f} MB); coalescing origin at "
        f"{args.origin_rate / 1e6:g} MB/s, times from the moment all {args.clients} requests were sent. "
        f"Ratios: surge edge / Varnish and surge edge --no-access-log / Varnish. \"Side by side\": each edge "
        f"and Varnish loaded at the same moment on the same CPU, one wrk each, {args.side_rounds} rounds of "
        f"{args.side_seconds} s; bytes per CPU-second of each, ratio = median of the rounds' ratios (the "
        f"machine's load weighs on both alike). {note}", "",
        f"```\n{command}\n```", "", f"Machine: {facts()}.", "", *rows, "",
        *(f"<details><summary>{p.split(nl)[0]}</summary>\n\n```\n{p.split(nl, 1)[1]}\n```\n\n</details>\n"
          for p in profiles),
    ])  # fmt: skip


def make_data(data: Path) -> None:
    rendition = data / SEGMENT.lstrip("/").rsplit("/", 1)[0]
    rendition.mkdir(parents=True)
    (rendition / "seg_00000.m4s").write_bytes(os.urandom(SEGMENT_BYTES))  # as incompressible as video
    for n in range(1, SEGMENTS):  # every entry exists and is cacheable: the edges prefetch the next ones
        os.link(rendition / "seg_00000.m4s", rendition / f"seg_{n:05d}.m4s")
    entries = "".join(f"#EXTINF:6.000,\nseg_{n:05d}.m4s\n" for n in range(SEGMENTS))
    (rendition / "index.m3u8").write_text(f"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n{entries}"
                                          "#EXT-X-ENDLIST\n")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    add("--duration", type=int, default=10, help="seconds per wrk run and per profile (default 10)")
    add("--warmup", type=int, default=3, help="warm-up seconds per target and cache (default 3)")
    add("--server-cpu", default="0", help="taskset CPU for the caches (default 0)")
    add("--client-cpu", default="1", help="taskset CPU for wrk, origin and clients (default 1)")
    add("--segment-connections", type=int, default=16, help="(default 16)")
    add("--playlist-connections", type=int, default=50, help="(default 50)")
    add("--side-rounds", type=int, default=10, help="side-by-side rounds per segment target (default 10)")
    add("--side-seconds", type=int, default=5, help="seconds per side-by-side round (default 5)")
    add("--clients", type=int, default=200, help="concurrent cold requests (default 200)")
    add("--origin-rate", type=float, default=1e6, help="slow origin bytes/s (default 1e6)")
    add("--profile", action=argparse.BooleanOptionalAction, default=True, help="py-spy the edges")
    add("--wait-idle", type=float, default=30, help="wait up to S s for >= 90%% idle CPUs before a run")
    add("--keep", action="store_true", help="keep the temp dir (data, configs, logs, profiles)")
    add("--no-doc", action="store_true", help="print the section only")
    add("--serve-origin", type=Path, help=argparse.SUPPRESS)
    add("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_origin:
        return serve_origin(args.serve_origin, args.port, args.origin_rate)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the servers
    if not all(shutil.which(tool) for tool in ("varnishd", "wrk", "nginx")):
        sh(shlex.split("apt-get -o DPkg::Lock::Timeout=300 install -y -q varnish wrk nginx-light"), 900)
    if args.profile and not (VENV / "py-spy").exists():
        sh([str(VENV / "pip"), "install", "-q", "py-spy"], 300)
    os.sched_setaffinity(0, {int(args.client_cpu)})  # the coalescing clients
    tmp = Path(tempfile.mkdtemp(prefix="surge-bench-edge-"))
    tmp.chmod(0o755)  # Varnish's and nginx's workers are unprivileged
    args.lua, procs = tmp / "report.lua", {}
    try:
        make_data(tmp / "data")
        args.lua.write_text(WRK_LUA)
        names = [SURGE, QUIET, DISK, QUIET_DISK, VARNISH, NGINX]
        port = {name: free_port() for name in ["origin", *names]}
        url = {name: f"http://127.0.0.1:{port[name]}" for name in port}
        origin = ["taskset", "-c", args.client_cpu, str(VENV / "python"), __file__, "--port",
                  str(port["origin"]), "--origin-rate", str(args.origin_rate), "--serve-origin",
                  str(tmp / "data")]  # fmt: skip
        procs["origin"] = start(origin, tmp / "origin.log", url["origin"] + "/counts")
        pin, argv = ["taskset", "-c", args.server_cpu], {}
        for i, name in enumerate(names[:4]):  # memory edges, then disk-tier edges; logged, then not
            tiers = ["--cache-mem", "4MB", "--cache-dir", str(tmp / f"disk{i}"), "--cache-disk", "1GiB"]
            argv[name] = [*pin, str(VENV / "surge"), "edge", "--upstream", url["origin"], "--port",
                          str(port[name]), "--id", f"bench-{i}", *(tiers if i > 1 else ["--cache-mem",
                          "256MiB"]), *(["--no-access-log"] if i % 2 else [])]  # fmt: skip
        (tmp / "default.vcl").write_text(VCL.format(port=port["origin"]))
        argv[VARNISH] = [*pin, "varnishd", "-F", "-f", str(tmp / "default.vcl"), "-a", url[VARNISH][7:],
                         "-s", "malloc,256m", "-n", str(tmp / "varnish"), "-T", "127.0.0.1:0"]  # fmt: skip
        (tmp / "nginx" / "tmp").mkdir(parents=True)
        (tmp / "nginx").chmod(0o777)
        conf = NGINX_CONF.format(d=tmp / "nginx", port=port[NGINX], origin=port["origin"])
        (tmp / "nginx.conf").write_text(conf)
        argv[NGINX] = [*pin, "nginx", "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"]
        for i, name in enumerate(names):
            procs[name] = start(argv[name], tmp / f"server{i}.log", url[name] + PLAYLIST)
        for name in (DISK, QUIET_DISK):  # the segment must be answered from the disk tier, not from memory
            get(url[name] + SEGMENT)
            time.sleep(1)  # the disk write runs in the background
            label, stats = (
                get(url[name] + SEGMENT)[0].get("X-Cache"),
                json.loads(get(url[name] + "/stats")[1]),
            )
            if label != "HIT" or not stats["objects_disk"] or stats["bytes_cached_memory"] >= SEGMENT_BYTES:
                sys.exit(f"{name}: the segment is not a disk-tier hit: X-Cache {label}, /stats {stats}")
        targets = [Target("playlist", PLAYLIST, args.playlist_connections, (SURGE, QUIET), 0.5, "rps"),
                   Target("segment", SEGMENT, args.segment_connections, (SURGE, QUIET), 1.0, "bps"),
                   Target(DISK_TIER, SEGMENT, args.segment_connections, (DISK, QUIET_DISK), 0.7,
                          "bps")]  # fmt: skip
        order = [
            (t, s) for t in targets for s in (*t.servers, VARNISH) if s != VARNISH or t.name != DISK_TIER
        ]
        res: dict[tuple[str, str], list[Sample]] = {(s, t.name): [] for t, s in order}
        runs: dict[str, list[Stampede]] = {s: [] for s in (SURGE, QUIET, VARNISH, NGINX)}
        for t, s in order:
            wrk(args, url[s] + t.path, t.connections, args.warmup, procs[s].pid)
        for n in range(1, args.repeat + 1):
            for t, s in order if n % 2 else order[::-1]:
                res[s, t.name].append(wrk(args, url[s] + t.path, t.connections, args.duration, procs[s].pid))
                print(f"run {n} {t.name} {s}: {res[s, t.name][-1]}", file=sys.stderr, flush=True)
            for s in runs:  # a new cold object for every run and cache
                cold = f"/titles/{TITLE}/slow/{n}-{port[s]}.m4s"
                runs[s].append(stampede(args, port[s], url["origin"], cold))
                r = runs[s][-1]
                print(
                    f"run {n} coalescing {s}: origin {r.origin_requests}, first byte p50 "
                    f"{statistics.median(r.first_ms):.0f} ms, {r.labels}",
                    file=sys.stderr,
                    flush=True,
                )
        pairs: dict[tuple[str, str], list[tuple[float, float]]] = {}  # (cache, target): [(it, Varnish)]
        for n in range(args.side_rounds):
            for t in targets:
                for s in t.servers if t.field == "bps" else ():
                    got = side_by_side(args, t.path, t.connections, (procs[s].pid, procs[VARNISH].pid),
                                       (url[s], url[VARNISH]))  # fmt: skip
                    pairs.setdefault((s, t.name), []).append(got)
                    line = f"side by side {n + 1} {t.name} {s} / Varnish: {got[0] / got[1]:.3f}"
                    print(line, file=sys.stderr, flush=True)
        counts = json.loads(get(url["origin"] + "/counts")[1])["counts"]
        note = (
            f"Origin requests for the hot objects over the whole run: segment {counts.get(SEGMENT, 0)}, "
            f"playlist {counts.get(PLAYLIST, 0)}: one per cache, every measured request was a hit."
        )
        profiles = []
        for s in (SURGE, QUIET) if args.profile else ():
            for t in targets[:2]:
                out = tmp / f"profile-{port[s]}-{t.name}.json"
                text = profile(args, url[s] + t.path, t.connections, procs[s].pid, out)
                profiles.append(f"py-spy: {s}, {t.name} hits, share of samples\n{text}")
                print(profiles[-1], file=sys.stderr, flush=True)
        command = shlex.join([".venv/bin/python", "bench/edge/run.py", *sys.argv[1:]])
        section = report(args, targets, res, pairs, runs, note, profiles, command)
        print(section)
        if not args.no_doc:
            write_doc(SECTION, section)
    finally:
        for proc in procs.values():
            stop(proc)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
