"""On-demand benchmark: segment and playlist serving by `surge origin` against nginx on the same files.

Both servers are pinned to one CPU (taskset), wrk to another, on 127.0.0.1. nginx gets a minimal config
that adds the Cache-Control, CORS and Vary headers surge sends, so both write similar responses. The
title is packaged by `surge transcode` into a temporary data dir that is removed at the end. Besides
wrk's throughput, each run reads the server's CPU time from /proc: work per CPU-second does not move
when other programs share the machine, throughput does. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/common.py
from common import NGINX_HEAD, WRK_LUA, Sample, free_port, sh, start, stop, version, write_doc, wrk_sample

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv" / "bin"
SECTION = "## Origin: surge origin vs nginx"
TITLE, LADDER = "bench-title", "1920x1080@2000k"  # 6 s segments of about 1.5 MB
UNLOGGED = "surge, no request log"
# The shipped CLI with the `surge.http` request logger raised to WARNING after set-up (metrics still run).
QUIET_SURGE = """import logging, sys
import service.logs as logs
configure = logs.configure_logging
def quiet(component, level=logging.INFO):
    configure(component, level)
    logging.getLogger("surge.http").setLevel(logging.WARNING)
logs.configure_logging = quiet
from surge.cli import main
sys.exit(main(sys.argv[1:]))"""
# Exact totals as one JSON line (wrk's own Transfer/sec has two decimals).
EXPOSED = "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, Age, Content-Encoding"
CORS = f'add_header Access-Control-Allow-Origin "*"; add_header Access-Control-Expose-Headers "{EXPOSED}";'
NGINX_CONF = NGINX_HEAD + """  gzip off; gzip_static on;  # like surge: the packaged .gz to clients that accept gzip, no compression
  client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp; fastcgi_temp_path {prefix}/tmp;
  uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;
  server {{
    listen 127.0.0.1:{port};
    location /titles/ {{
      alias {data}/titles/;
      {cors} add_header Cache-Control "public, max-age=31536000, immutable";
      location ~ \\.m3u8$ {{ {cors} add_header Cache-Control "public, max-age=2"; add_header Vary Accept-Encoding; }}
    }}
  }}
}}
"""  # noqa: E501  # fmt: skip


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    connections: int
    headers: tuple[str, ...] = ()


def ensure_tools() -> None:
    if not (shutil.which("nginx") and shutil.which("wrk")):
        print("installing nginx-light and wrk", file=sys.stderr)
        sh(shlex.split("apt-get -o DPkg::Lock::Timeout=300 install -y -q nginx-light wrk"), 900)
    for tool in ("nginx", "wrk", "ffmpeg", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found")


def make_title(data: Path) -> Path:
    src, titles = data / "source.mp4", data / "titles"
    titles.mkdir(parents=True)
    lavfi = ["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=12",
             "-f", "lavfi", "-i", "sine=frequency=440:duration=12"]  # fmt: skip
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-c:a", "aac", "-shortest"]
    sh(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", *lavfi, *encode, str(src)], 300)
    out = titles / TITLE
    sh([str(VENV / "surge"), "transcode", str(src), "--out", str(out), "--id", TITLE, "--ladder", LADDER,
        "--quiet"], 600)  # fmt: skip
    src.unlink()
    for path in [out, *out.rglob("*")]:  # published dirs are 0700; nginx's worker is not root
        path.chmod(0o755 if path.is_dir() else 0o644)
    return max(out.glob("*p/seg_*.m4s"), key=lambda p: p.stat().st_size).relative_to(titles)


def wrk(args: argparse.Namespace, lua: Path, url: str, t: Target, seconds: float, pid: int) -> Sample:
    argv = ["taskset", "-c", args.client_cpu, "wrk", "-t1", f"-c{t.connections}", f"-d{seconds}s",
            "--latency", "-s", str(lua), *(a for h in t.headers for a in ("-H", h)), url]  # fmt: skip
    return wrk_sample(argv, pid, seconds, args.wait_idle)


def facts() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.machine())  # fmt: skip
    py = [str(VENV / "python"), "-c", "import aiohttp, uvloop, sys; "
          "print(sys.version.split()[0], aiohttp.__version__, uvloop.__version__)"]  # fmt: skip
    pyv, aio, uv = version(py).split()
    head = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = version(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return (f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}; {version(['nginx', '-v'])}; "
            f"{version(['wrk', '-v']).split(' [')[0]}; Python {pyv}, aiohttp {aio}, uvloop {uv}; surge at "
            f"`{head}`{' plus uncommitted changes' if dirty else ''}")  # fmt: skip


def report(res: dict[tuple[str, str], list[Sample]], servers: list[str], targets: list[Target],
           args: argparse.Namespace, command: str, sizes: tuple[int, int]) -> str:  # fmt: skip
    def med(server: str, target: str, field: str) -> float:
        return statistics.median(getattr(s, field) for s in res[server, target])

    rows = [f"| measure | {' | '.join(servers)} | surge / nginx | target | result |",
            "|---|" + "---:|" * len(servers) + "---:|---:|---|"]  # fmt: skip
    for t in targets:
        seg = t.name == "segment"
        goal, unit, scale, size = (0.8, "MB", 1e6, sizes[0]) if seg else (0.25, "req", 1, 1)
        rate = [med(s, t.name, "bps" if seg else "rps") / scale for s in servers]
        per_cpu = [med(s, t.name, "per_cpu_s") * size / scale for s in servers]
        for label, vals, gate in ((f"{unit}/s", rate, f">= {goal}x"), (f"{unit}/CPU-s", per_cpu, "")):
            ratio = vals[0] / vals[servers.index("nginx")]
            verdict = ("pass" if ratio >= goal else "**fail**") if gate else ""
            cells = " | ".join(f"{v:,.0f}" for v in vals)
            rows.append(f"| {t.name}, {label} | {cells} | {ratio:.2f}x | {gate} | {verdict} |")
        lat = " | ".join(f"{med(s, t.name, 'p50_ms'):.2f} / {med(s, t.name, 'p99_ms'):.2f}" for s in servers)
        rows.append(f"| {t.name}, latency p50 / p99 ms | {lat} | | | |")
    idle = [s.idle for samples in res.values() for s in samples]
    busy = " Other programs were busy in some runs: trust the /CPU-s rows more." if min(idle) < 0.9 else ""
    conns = ", ".join(f"{t.name} {t.connections}" for t in targets)
    return f"""{SECTION}

On demand ([bench/origin/README.md](../bench/origin/README.md)). Servers pinned to CPU {args.server_cpu},
wrk to CPU {args.client_cpu}, all on 127.0.0.1. Each figure is the median of {args.repeat} runs of
{args.duration} s after a {args.warmup} s warm-up, with the servers taking turns. wrk -t1; connections:
{conns}. `segment` is a {sizes[0] / 1e6:.2f} MB 1080p fMP4 segment packaged by
`surge transcode --ladder {LADDER}`. `playlist` is its {sizes[1]}-byte media playlist; wrk sends no
Accept-Encoding. `playlist-gz` is the same request with `Accept-Encoding: gzip`; both servers then send
the packaged `.gz`. surge runs as shipped (`surge origin`, one JSON log line per request, stderr to a
file). `{UNLOGGED}` is the same server with the `surge.http` logger raised to WARNING, to show what the
log line costs. nginx runs 1 worker with sendfile, tcp_nopush, access_log off, gzip_static on, and
surge's Cache-Control, CORS and Vary headers. "/CPU-s" divides by the server's user + sys
time; other programs on the machine hardly change it. In the second before each run the whole machine
was {statistics.median(idle):.0%} idle (median; lowest {min(idle):.0%}).{busy}

```
{command}
```

Machine: {facts()}.

{chr(10).join(rows)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per target (default 3)")
    parser.add_argument("--server-cpu", default="0", help="taskset CPU for the servers (default 0)")
    parser.add_argument("--client-cpu", default="1", help="taskset CPU for wrk (default 1)")
    parser.add_argument("--segment-connections", type=int, default=16, help="(default 16)")
    parser.add_argument("--playlist-connections", type=int, default=50, help="(default 50)")
    parser.add_argument("--unlogged", action=argparse.BooleanOptionalAction, default=True,
                        help="also run surge with its request log off (default on)")  # fmt: skip
    parser.add_argument("--wait-idle", type=float, default=60, help="wait up to S s for >= 90%% idle CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (title, configs, logs)")
    parser.add_argument("--no-doc", action="store_true", help="print the table only")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the servers
    ensure_tools()
    tmp = Path(tempfile.mkdtemp(prefix="surge-bench-origin-"))
    tmp.chmod(0o755)  # nginx's worker runs as an unprivileged user
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        data, ng, lua = tmp / "data", tmp / "nginx", tmp / "report.lua"
        segment = make_title(data)
        playlist = segment.parent / "index.m3u8"
        (ng / "tmp").mkdir(parents=True)
        lua.write_text(WRK_LUA)
        pin = ["taskset", "-c", args.server_cpu]
        ports = {name: free_port() for name in ("surge", "nginx", *([UNLOGGED] if args.unlogged else []))}
        origin = ["origin", "--data", str(data), "--host", "127.0.0.1", "--port"]
        conf = ng / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=ng, port=ports["nginx"], data=data, cors=CORS))
        argv = {"surge": [*pin, str(VENV / "surge"), *origin, str(ports["surge"])],
                "nginx": [*pin, "nginx", "-c", str(conf), "-p", str(ng), "-g", "daemon off;"]}  # fmt: skip
        if args.unlogged:
            argv[UNLOGGED] = [*pin, str(VENV / "python"), "-c", QUIET_SURGE, *origin, str(ports[UNLOGGED])]
        servers = list(argv)
        urls = {s: f"http://127.0.0.1:{ports[s]}/titles/" for s in servers}
        for i, s in enumerate(servers):
            procs[s] = start(argv[s], tmp / f"server{i}.log", urls[s] + str(playlist))
        targets = [Target("segment", str(segment), args.segment_connections),
                   Target("playlist", str(playlist), args.playlist_connections),
                   Target("playlist-gz", str(playlist), args.playlist_connections,
                          ("Accept-Encoding: gzip",))]  # fmt: skip
        res: dict[tuple[str, str], list[Sample]] = {(s, t.name): [] for s in servers for t in targets}
        for t in targets:
            for s in servers:
                wrk(args, lua, urls[s] + t.path, t, args.warmup, procs[s].pid)
        for round_ in range(args.repeat):
            for t in targets:
                for s in servers if round_ % 2 == 0 else servers[::-1]:
                    sample = wrk(args, lua, urls[s] + t.path, t, args.duration, procs[s].pid)
                    res[s, t.name].append(sample)
                    print(f"run {round_ + 1} {t.name} {s}: {sample}", file=sys.stderr, flush=True)
        command = shlex.join([".venv/bin/python", "bench/origin/run.py", *sys.argv[1:]])
        sizes = ((data / "titles" / segment).stat().st_size, (data / "titles" / playlist).stat().st_size)
        section = report(res, servers, targets, args, command, sizes)
        print(section)
        if not args.no_doc:
            write_doc(SECTION, section)
    finally:
        for proc in procs.values():
            stop(proc)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
