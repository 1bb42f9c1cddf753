"""On-demand benchmark: HTTPS hits of `surge origin` against nginx with the same certificate and cipher,
and signed playlist hits against unsigned ones, in one run.

Every server is pinned to one CPU (taskset), wrk to the other, on 127.0.0.1; the servers take turns.
HTTPS: a self-signed ECDSA P-256 certificate made with `openssl req`, TLS 1.3 on both servers, and the
cipher suite each one negotiates with an OpenSSL client (the same library wrk uses) is checked to be the
same and printed. nginx runs without kernel TLS (its default), so both encrypt in user space. Signed:
two plain-HTTP origins on the same files, one started with --signing-key and asked through a signed URL.
Then py-spy samples the HTTPS origin under each load, and the functions holding most samples are listed.
Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/common.py
from common import (
    NGINX_HEAD,
    WRK_LUA,
    Sample,
    free_port,
    run_wrks_at_once,
    sample_of,
    sh,
    start,
    stop,
    wait_for_quiet,
    write_doc,
    wrk_sample,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(1, str(ROOT))
from media.signing import Grant, SigningKeys, TokenChecker, make_token, signed_path  # noqa: E402
from service.front import parse_simple  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_origin", ROOT / "bench" / "origin" / "run.py")
assert _spec is not None and _spec.loader is not None
origin_bench = sys.modules["bench_origin"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(origin_bench)  # its title maker, nginx headers and machine facts

SECTION = "## HTTPS and signed URLs: surge origin vs nginx"
KEY = "bench-signing-key-0123456789"
WAITING = frozenset(("epoll_pwait", "epoll_wait", "PyThread_acquire_lock_timed"))
PY_SPY = str(Path(sys.executable).parent / "py-spy")  # from PyPI, in the same environment
NGINX_TLS = NGINX_HEAD + """  client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp; fastcgi_temp_path {prefix}/tmp;
  uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert}; ssl_certificate_key {key}; ssl_protocols TLSv1.3;
    location /titles/ {{
      alias {data}/titles/;
      {cors} add_header Cache-Control "public, max-age=31536000, immutable";
      location ~ \\.m3u8$ {{ {cors} add_header Cache-Control "public, max-age=2"; add_header Vary Accept-Encoding; }}
    }}
  }}
}}
"""  # noqa: E501  # fmt: skip


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert)], 60)  # fmt: skip
    key.chmod(0o644)  # nginx's worker reads it; a throwaway key in a throwaway dir
    return cert, key


def negotiated(port: int, cert: Path) -> str:
    """The protocol and cipher suite an OpenSSL client with default settings gets (verifying ``cert``)."""
    context = ssl.create_default_context(cafile=str(cert))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        name, protocol, _ = tls.cipher() or ("?", "?", 0)
        return f"{protocol} {name}"


def profile(pid: int, seconds: int, load: list[str], out: Path) -> list[tuple[str, float]]:
    """py-spy samples of ``pid`` (native frames too) while ``load`` runs: the leaf functions with the most
    samples, as shares of all samples."""
    spy = subprocess.Popen([PY_SPY, "record", "--native", "--pid", str(pid), "--duration", str(seconds),
                            "--rate", "100", "--format", "raw", "--output", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        libraries = mapped_files(pid)
        sh(load, seconds + 60)
        spy.wait(timeout=seconds + 60)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    leaves: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines() if out.is_file() else []:
        stack, _, count = line.rpartition(" ")
        frames = [frame.split(" (")[0] for frame in stack.split(";")]
        if WAITING.intersection(frames):
            continue  # the event loop waiting for events, or an idle thread of the pool: no work
        leaf = frames[-1]
        if leaf.startswith("0x"):  # a stripped library's frame: its library, under the nearest named caller
            caller = next((f for f in reversed(frames) if not f.startswith("0x")), "?")
            leaf = f"{library_of(libraries, int(leaf, 16))} under {caller}"
        leaves[leaf] += int(count)
    total = sum(leaves.values()) or 1
    return [(name, n / total) for name, n in leaves.most_common(8)]


def mapped_files(pid: int) -> list[tuple[int, int, int, str]]:
    """(start, end, file offset, path) of the executable mappings of ``pid``."""
    found = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and "x" in fields[1]:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            found.append((start, end, int(fields[2], 16), fields[5]))
    return found


def library_of(libraries: list[tuple[int, int, int, str]], address: int) -> str:
    return next((Path(path).name for low, high, _, path in libraries if low <= address < high), hex(address))


def token_cost_us(rounds: int = 200_000) -> tuple[float, float]:
    """Microseconds of this CPU the front spends on a signed playlist request beyond an unsigned one:
    recognising the longer request line, then checking the remembered token. (median of 5, both)"""
    keys = SigningKeys((KEY.encode(),))
    path = "/titles/bench-title/1080p/index.m3u8"
    signed = signed_path(make_token(keys, Grant("/titles/bench-title/", 2**31)), path)
    checker = TokenChecker(keys)
    heads = [f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:8080".encode() for target in (path, signed)]

    def plain() -> None:
        parse_simple(heads[0])

    def with_token() -> None:
        request = parse_simple(heads[1])
        assert request is not None
        checker.path_or_refusal(request.path, "127.0.0.1", 1.0)

    costs = [
        statistics.median(timeit.repeat(f, number=rounds, repeat=5)) / rounds * 1e6
        for f in (plain, with_token)
    ]
    return costs[0], costs[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per target (default 2)")
    parser.add_argument("--server-cpu", default="0", help="taskset CPU for the servers (default 0)")
    parser.add_argument("--client-cpu", default="1", help="taskset CPU for wrk (default 1)")
    parser.add_argument("--segment-connections", type=int, default=16, help="(default 16)")
    parser.add_argument("--playlist-connections", type=int, default=50, help="(default 50)")
    parser.add_argument("--wait-idle", type=float, default=20, help="wait up to S s for >= 90%% idle CPUs")
    parser.add_argument("--profile-seconds", type=int, default=4, help="py-spy per load; 0 skips it")
    parser.add_argument("--no-doc", action="store_true", help="print the section only")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the servers
    origin_bench.ensure_tools()
    tmp = Path(tempfile.mkdtemp(prefix="surge-bench-tls-"))
    tmp.chmod(0o755)  # nginx's worker runs as an unprivileged user
    procs: dict[str, subprocess.Popen[bytes]] = {}
    # The surge of this checkout, for the servers and for packaging the title.
    os.environ["PYTHONPATH"] = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    try:
        data, ng, lua = tmp / "data", tmp / "nginx", tmp / "report.lua"
        segment = origin_bench.make_title(data)
        playlist = segment.parent / "index.m3u8"
        (ng / "tmp").mkdir(parents=True)
        lua.write_text(WRK_LUA)
        cert, key = make_certificate(tmp)
        os.environ["SSL_CERT_FILE"] = str(cert)  # start()'s probes verify the servers against it
        pin = ["taskset", "-c", args.server_cpu]
        surge = [*pin, sys.executable, "-m", "surge.cli", "origin", "--data", str(data), "--no-access-log"]
        ports = {name: free_port() for name in ("surge https", "nginx https", "surge", "surge signed")}
        conf = ng / "nginx.conf"
        conf.write_text(NGINX_TLS.format(prefix=ng, port=ports["nginx https"], data=data, cert=cert, key=key,
                                         cors=origin_bench.CORS))  # fmt: skip
        tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
        argv = {
            "surge https": [*surge, *tls, "--port", str(ports["surge https"])],
            "nginx https": [*pin, "nginx", "-c", str(conf), "-p", str(ng), "-g", "daemon off;"],
            "surge": [*surge, "--port", str(ports["surge"])],
            "surge signed": [*surge, "--signing-key", KEY, "--port", str(ports["surge signed"])],
        }
        prefix = f"/titles/{segment.parts[0]}/"
        token = make_token(SigningKeys((KEY.encode(),)), Grant(prefix, 2**31))
        base = {
            "surge https": f"https://127.0.0.1:{ports['surge https']}",
            "nginx https": f"https://127.0.0.1:{ports['nginx https']}",
            "surge": f"http://127.0.0.1:{ports['surge']}",
            "surge signed": f"http://127.0.0.1:{ports['surge signed']}/t/{token}",
        }
        for i, (name, command) in enumerate(argv.items()):
            procs[name] = start(command, tmp / f"server{i}.log", f"{base[name]}/titles/{playlist}")
        ciphers = {name: negotiated(ports[name], cert) for name in ("surge https", "nginx https")}
        if len(set(ciphers.values())) != 1:
            sys.exit(f"the servers negotiate different ciphers: {ciphers}")
        https = ["surge https", "nginx https"]
        loads = [  # (measure, path, connections, servers compared: subject first)
            ("HTTPS segment", f"/titles/{segment}", args.segment_connections, https),
            ("HTTPS playlist", f"/titles/{playlist}", args.playlist_connections, https),
            ("signed playlist", f"/titles/{playlist}", args.playlist_connections, ["surge signed", "surge"]),
        ]

        def wrk_argv(name: str, path: str, connections: int, seconds: float) -> list[str]:
            return ["taskset", "-c", args.client_cpu, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                    "--latency", "-s", str(lua), base[name] + path]  # fmt: skip

        res: dict[tuple[str, str], list[Sample]] = collections.defaultdict(list)
        for _, path, connections, servers in loads:
            for name in servers:
                wrk_sample(wrk_argv(name, path, connections, args.warmup), procs[name].pid, args.warmup, 0)
        for round_ in range(args.repeat):
            for measure, path, connections, servers in loads:
                if measure.startswith("signed"):
                    # Side by side: both on the server CPU at the same moment, so whatever else the
                    # machine does weighs on both alike; their req/s are then shares of one CPU.
                    idle = wait_for_quiet(args.wait_idle)
                    side = [(wrk_argv(n, path, connections, args.duration), procs[n].pid) for n in servers]
                    for name, (totals, cpu) in zip(
                        servers, run_wrks_at_once(side, args.duration), strict=True
                    ):
                        res[measure, name].append(sample_of(totals, cpu, idle))
                    print(f"run {round_ + 1} {measure}: {[res[measure, n][-1] for n in servers]}",
                          file=sys.stderr, flush=True)  # fmt: skip
                    continue
                for name in servers if round_ % 2 == 0 else servers[::-1]:
                    argv_ = wrk_argv(name, path, connections, args.duration)
                    sample = wrk_sample(argv_, procs[name].pid, args.duration, args.wait_idle)
                    res[measure, name].append(sample)
                    print(f"run {round_ + 1} {measure} {name}: {sample}", file=sys.stderr, flush=True)
        profiles = {}
        if args.profile_seconds and Path(PY_SPY).is_file():
            for measure, path, connections, _ in loads[:2]:
                load = wrk_argv("surge https", path, connections, args.profile_seconds)
                out = tmp / f"{measure.replace(' ', '-')}.txt"
                profiles[measure] = profile(procs["surge https"].pid, args.profile_seconds, load, out)
        command = shlex.join([".venv/bin/python", "bench/tls/run.py", *sys.argv[1:]])
        sizes = {"segment": (data / "titles" / segment).stat().st_size,
                 "playlist": (data / "titles" / playlist).stat().st_size}  # fmt: skip
        os.sched_setaffinity(0, {int(args.server_cpu)})  # where the servers ran
        costs = token_cost_us()
        section = report(res, loads, ciphers, profiles, sizes, costs, args, command)
        print(section)
        if not args.no_doc:
            write_doc(SECTION, section)
    finally:
        for proc in procs.values():
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def report(res: dict[tuple[str, str], list[Sample]], loads: list[tuple[str, str, int, list[str]]],
           ciphers: dict[str, str], profiles: dict[str, list[tuple[str, float]]], sizes: dict[str, int],
           costs: tuple[float, float], args: argparse.Namespace, command: str) -> str:  # fmt: skip
    def med(measure: str, name: str, field: str) -> float:
        return statistics.median(getattr(s, field) for s in res[measure, name])

    rows = [
        "| measure | subject | peer | subject / peer | target | result |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for measure, _, _, (subject, peer) in loads:
        seg = measure.endswith("segment")
        unit, field, scale = ("MB/s", "bps", 1e6) if seg else ("req/s", "rps", 1)
        goal = 0.9 if measure.startswith("signed") else 0.5
        a, b = med(measure, subject, field) / scale, med(measure, peer, field) / scale
        verdict = "pass" if a / b >= goal else "**fail**"
        rows.append(f"| {measure}, {unit} ({subject} / {peer}) | {a:,.0f} | {b:,.0f} | {a / b:.2f}x "
                    f"| >= {goal}x | {verdict} |")  # fmt: skip
        cpu_a = med(measure, subject, "per_cpu_s") * (sizes["segment"] / scale if seg else 1)
        cpu_b = med(measure, peer, "per_cpu_s") * (sizes["segment"] / scale if seg else 1)
        rows.append(f"| {measure}, {unit.split('/')[0]}/CPU-s | {cpu_a:,.0f} | {cpu_b:,.0f} "
                    f"| {cpu_a / cpu_b:.2f}x | | |")  # fmt: skip
        lat = [f"{med(measure, n, 'p50_ms'):.2f} / {med(measure, n, 'p99_ms'):.2f}" for n in (subject, peer)]
        rows.append(f"| {measure}, latency p50 / p99 ms | {lat[0]} | {lat[1]} | | | |")
    idle = [s.idle for samples in res.values() for s in samples]
    spy = []
    for measure, leaves in profiles.items():
        listed = "; ".join(f"`{name}` {share:.0%}" for name, share in leaves[:6])
        spy.append(f"- {measure} (surge https): {listed}")
    spy_text = "\n".join(spy) if spy else "(py-spy was not run)"
    unsigned_us = 1e6 / med("signed playlist", "surge", "per_cpu_s")
    added = costs[1] - costs[0]
    token_text = (
        f"In-process, on the servers' CPU after the runs: recognising a plain playlist request line takes "
        f"{costs[0]:.2f} us; the signed one, recognised and its remembered token checked, {costs[1]:.2f} us. "
        f"The {added:.2f} us added, against the {unsigned_us:.1f} us of server CPU an unsigned playlist hit "
        f"cost in the runs above, predict signed hits at {unsigned_us / (unsigned_us + added):.2f}x unsigned."
    )
    return f"""{SECTION}

On demand: `bench/tls/run.py`. Servers pinned to CPU {args.server_cpu}, wrk to CPU {args.client_cpu}, on
127.0.0.1; each figure is the median of {args.repeat} runs of {args.duration} s after a {args.warmup} s
warm-up, servers taking turns. `segment` is a {sizes["segment"] / 1e6:.2f} MB 1080p fMP4 segment,
`playlist` its {sizes["playlist"]}-byte media playlist (as in the origin benchmark; 16 and 50
connections). HTTPS: one self-signed ECDSA P-256 certificate for both servers, TLS 1.3, and both
negotiated `{ciphers["surge https"]}` with an OpenSSL client; nginx 1 worker without kernel TLS (its
default), access_log off; surge `origin --no-access-log` (metrics stay). Signed: two plain-HTTP surge
origins on the same files, one with `--signing-key`, asked through `/t/<token>/titles/...`, the other
through `/titles/...`, loaded side by side (both wrks at the same moment, both servers on CPU
{args.server_cpu}: whatever else the machine runs weighs on both alike, and each req/s is its share of
the CPU). "/CPU-s" divides by the server's user + sys time. The machine was
{statistics.median(idle):.0%} idle before the runs (median; lowest {min(idle):.0%}).

```
{command}
```

Machine: {origin_bench.facts()}.

{chr(10).join(rows)}

{token_text}

Where the HTTPS origin spends its time (py-spy `record --native`, {args.profile_seconds} s per load, the
leaf functions with most samples, as shares of the samples of work — the event loop waiting in epoll and
idle pool threads left out; a frame of a stripped library, which py-spy cannot name, is given as its
library under the nearest caller it could name):

{spy_text}
"""


if __name__ == "__main__":
    main()
