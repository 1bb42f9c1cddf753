"""On-demand benchmark: packaging on emulated worker hosts (`surge origin --packagers ray`).

Every worker host is a network namespace on a bridge in 198.51.100.0/24 (tests/hosts.py), a Ray worker
node offering one `surge_packager` unit, each pinned to its own core (`taskset`); the origin and the Ray
head run on the bridge address in the root namespace. Two measures, each on 1 worker host and then on 2:

- batch: N titles uploaded at once, time from the first upload to the last title ready (throughput);
- long title: one long 1080p title, time to ready. On one host it is packaged by one process; on two, when
  the origin chunks titles across workers (`--chunk-seconds`), its chunks are spread over both. Output
  bytes and the top rendition's PSNR against the source (ffmpeg's `psnr` filter) are compared.

Results: docs/benchmarks.md (section "Packaging on emulated hosts"), per-run JSON in
bench/results/packaging/.

    .venv/bin/python bench/packaging/on_hosts.py [--titles 4] [--title-seconds 20] [--long-seconds 120]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from subprocess import DEVNULL

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/common.py
sys.path.insert(0, str(ROOT / "bench" / "flashcrowd"))  # its run.py: starting and stopping servers

from common import write_doc  # noqa: E402
from run import busy_seconds, listening, machine, pin, stop  # noqa: E402

from tests.hosts import Host, Lab, RayCluster, unavailable_reason  # noqa: E402
from transcoder.sample import make_sample  # noqa: E402

SECTION = "## Packaging on emulated hosts"
RESULTS = ROOT / "bench" / "results" / "packaging"
SURGE = [sys.executable, "-m", "surge.cli"]
RAY = str(Path(sys.executable).with_name("ray"))
TOKEN = "bench-packaging-token"
HOST_CPUS = ("0", "1")  # worker host i on core i
GOAL_BATCH, GOAL_LONG, GOAL_BYTES, GOAL_PSNR_DB = 1.8, 1.7, 0.03, 0.5


@dataclass
class Run:
    hosts: int
    seconds: float
    titles: list[str]
    output_bytes: int = 0
    psnr_db: float | None = None
    chunked: bool = False
    worker_cpu_s: float = 0.0  # CPU seconds of the worker hosts' processes (Ray node, workers, ffmpeg)
    control_cpu_s: float = 0.0  # the rest of the machine: origin, uploads, Ray head


def title_bytes(data: Path, title: str) -> int:
    return sum(f.stat().st_size for f in (data / "titles" / title).rglob("*") if f.is_file())


def top_rendition(data: Path, title: str) -> Path:
    info = json.loads((data / "titles" / title / "title.json").read_text())
    top = max(info["renditions"], key=lambda r: r["width"] * r["height"])
    return data / "titles" / title / top["name"] / "index.m3u8"


def psnr(rendition: Path, source: Path) -> float:
    """Mean PSNR (dB) of ``rendition`` against ``source``, scaled to the rendition's size."""
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(rendition), "-i", str(source), "-lavfi",
         "[1:v][0:v]scale2ref=flags=bicubic[ref][main];[main][ref]psnr", "-f", "null", "-"],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    found = re.search(r"PSNR .* average:([0-9.]+|inf)", done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"psnr failed: {done.stderr[-2000:]}")
    return float(found[1])


class HostsCpu:
    """CPU seconds of the hosts' processes over a period: /proc read every ``interval`` s, each process's
    last reading kept, because a host's processes come and go (a Ray worker per lease, killed with its
    ffmpeg's time in it) and a dead process's time is gone from /proc. A process's last ``interval`` may
    be missed."""

    def __init__(self, hosts: Sequence[Host], interval: float = 0.2) -> None:
        self.hosts, self.interval = hosts, interval
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="hosts cpu")

    def _read(self) -> dict[int, int]:
        ticks = {}
        for pid in (pid for host in self.hosts for pid in host.pids()):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                # utime + stime: each process is read on its own, so its children's (cutime) are not added
                ticks[pid] = int(fields[11]) + int(fields[12])
        return ticks

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._last.update(self._read())

    def __enter__(self) -> HostsCpu:
        self._first = self._read()
        self._last = dict(self._first)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._last.update(self._read())

    @property
    def seconds(self) -> float:
        return (sum(self._last.values()) - sum(self._first.values())) / os.sysconf("SC_CLK_TCK")


def start_origin(
    lab: Lab, ray: RayCluster, data: Path, log: Path, chunk_seconds: int, control_cpus: str | None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SURGE_ADMIN_TOKEN": TOKEN, "RAY_AUTH_MODE": ray.env["RAY_AUTH_MODE"]}
    argv = [*pin(control_cpus), *SURGE, "origin", "--data", str(data), "--host", lab.address,
            "--port", "0", "--packagers", "ray",
            "--ray-address", ray.address, "--ray-namespace", f"bench-{data.name}",
            "--chunk-seconds", str(chunk_seconds), "--no-access-log"]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdin=DEVNULL, stdout=out, stderr=out, env=env)


def package(lab: Lab, ray: RayCluster, hosts: Sequence[Host], work: Path, name: str, sources: Sequence[Path],
            chunk_seconds: int, control_cpus: str | None) -> Run:  # fmt: skip
    """Upload every source at once to a fresh origin and wait until all are ready: the seconds from the
    first upload to the last ready, the title ids and the CPU spent meanwhile."""
    data, log = work / name, work / f"{name}.log"
    proc = start_origin(lab, ray, data, log, chunk_seconds, control_cpus)
    try:
        url = listening(log, {"origin"}, proc, 60)["origin"]
        env = {**os.environ, "SURGE_ADMIN_TOKEN": TOKEN}
        started, busy = time.monotonic(), busy_seconds()
        with HostsCpu(hosts) as workers:
            commands = [
                [*pin(control_cpus), *SURGE, "upload", str(source), "--server", url,
                 "--name", f"{name}-{i}", "--wait", "--quiet"]
                for i, source in enumerate(sources)
            ]  # fmt: skip
            uploads = [
                subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                for command in commands
            ]
            titles = []
            for upload in uploads:
                out, err = upload.communicate(timeout=3600)
                if upload.returncode != 0:
                    sys.exit(f"upload failed: {out}{err}")
                titles.append(out.split(" as ", 1)[1].split()[0])
            seconds = time.monotonic() - started
        worker_cpu = workers.seconds
        control_cpu = busy_seconds() - busy - worker_cpu
        return Run(len(hosts), seconds, titles, worker_cpu_s=worker_cpu, control_cpu_s=control_cpu)
    finally:
        stop(proc, [])
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.log").write_bytes(log.read_bytes())  # the origin's log of the last run


def was_chunked(work: Path, name: str) -> bool:
    return "in chunks" in (work / f"{name}.log").read_text()


def add_worker(ray: RayCluster, hosts: Sequence[Host], index: int) -> None:
    """Worker host ``index`` joins the cluster, pinned to core ``index``; returns once it is a node."""
    ray.add_node(hosts[index], {"surge_packager": 1}, cpus=HOST_CPUS[index])
    ray.wait_for_nodes(2 + index, timeout=120)


def row(measure: str, one: float | str, two: float | str, ratio: float | str, target: str, met: bool) -> str:
    shown = f"{ratio:.2f}x" if isinstance(ratio, float) else ratio
    first, second = (
        f"{v:,}" if isinstance(v, int) else v if isinstance(v, str) else f"{v:,.1f}" for v in (one, two)
    )
    return f"| {measure} | {first} | {second} | {shown} | {target} | {'met' if met else 'NOT MET'} |"


def section(args: argparse.Namespace, batch: list[Run], long: list[Run], machine: str) -> str:
    command = " ".join(["bench/packaging/on_hosts.py", *sys.argv[1:]])
    lines = [
        SECTION, "",
        f"Command: `.venv/bin/python {command}` ({dt.date.today().isoformat()}; one run per variant).", "",
        f"Machine: {machine}. Worker hosts: network namespaces on a bridge (tests/hosts.py), each a Ray "
        "worker node with one `surge_packager` unit, pinned to its own core (`taskset`); `surge origin "
        "--packagers ray`, the uploads and the Ray head on the bridge address, "
        + (f"pinned to core {args.control_cpus}." if args.control_cpus else "unpinned."), "",
        f"Batch: {args.titles} titles of {args.title_seconds:g} s, 1280x720 30 fps synthetic sources with "
        f"audio, uploaded at once. Long title: {args.long_seconds:g} s 1920x1080 30 fps with audio, "
        f"`--chunk-seconds {args.chunk_seconds}`. Default ladder and preset.", "",
        "| measure | 1 host | 2 hosts | ratio | target | result |",
        "|---|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    one, two = batch
    lines.append(row("batch: seconds to package all", one.seconds, two.seconds, one.seconds / two.seconds,
                     f">= {GOAL_BATCH}x", one.seconds / two.seconds >= GOAL_BATCH))  # fmt: skip
    if long:
        single, split = long
        assert single.psnr_db is not None and split.psnr_db is not None
        speed = single.seconds / split.seconds
        size = split.output_bytes / single.output_bytes - 1
        quality = split.psnr_db - single.psnr_db
        how = "chunked over both" if split.chunked else "one process: the origin did not chunk it"
        lines += [
            row(f"long title: seconds to ready (2 hosts: {how})", single.seconds, split.seconds, speed,
                f">= {GOAL_LONG}x", speed >= GOAL_LONG),
            row("long title: output bytes", single.output_bytes, split.output_bytes, f"{size:+.1%}",
                f"within {GOAL_BYTES:.0%}", abs(size) <= GOAL_BYTES),
            row("long title: top rendition PSNR vs source, dB", f"{single.psnr_db:.2f}",
                f"{split.psnr_db:.2f}", f"{quality:+.2f} dB", f"within {GOAL_PSNR_DB} dB",
                abs(quality) <= GOAL_PSNR_DB),
        ]  # fmt: skip
    lines += [
        "",
        "CPU while packaging (core-seconds; worker hosts: their Ray nodes, workers and ffmpeg; the rest: "
        "the origin, the uploads, the Ray head and anything else on the machine):",
        "",
        *(
            f"- {what} on {run.hosts} host{'s' if run.hosts > 1 else ''}: worker hosts "
            f"{run.worker_cpu_s:.1f}, the rest {run.control_cpu_s:.1f} "
            f"({run.control_cpu_s / run.seconds:.2f} of a core)"
            for what, runs in (("batch", batch), ("long title", long))
            for run in runs
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="packaging on 1 vs 2 emulated worker hosts")
    parser.add_argument("--titles", type=int, default=4)
    parser.add_argument("--title-seconds", type=float, default=20)
    parser.add_argument("--long-seconds", type=float, default=120, help="0: skip the long title")
    parser.add_argument("--chunk-seconds", type=int, default=30)
    parser.add_argument(
        "--control-cpus",
        help="pin the origin, the uploads and the Ray head to these cores (a taskset list; default: none)",
    )
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(f"no emulated hosts: {reason}")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: one per worker host")
    sys.path.insert(0, str(ROOT / "bench" / "flashcrowd"))

    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="surge-packaging-hosts-") as tmp, Lab("sp") as lab:
        work = Path(tmp)
        print("making sources …", flush=True)
        batch_sources = [
            make_sample(work / f"batch{i}.mp4", width=1280, height=720, duration=args.title_seconds,
                        frame_rate=30, audio=True)
            for i in range(args.titles)
        ]  # fmt: skip
        long_source = None
        if args.long_seconds:
            long_source = make_sample(work / "long.mp4", width=1920, height=1080, duration=args.long_seconds,
                                      frame_rate=30, audio=True)  # fmt: skip
        hosts = [lab.add_host(f"pack{i}") for i in range(2)]
        ray = RayCluster(lab, RAY, cpus=args.control_cpus)
        try:
            batch: list[Run] = []
            long: list[Run] = []
            for count in (1, 2):
                add_worker(ray, hosts, count - 1)  # one more host each round
                print(f"{count} worker host(s): batch of {args.titles} …", flush=True)
                run = package(lab, ray, hosts[:count], work, f"batch{count}", batch_sources,
                              args.chunk_seconds, args.control_cpus)  # fmt: skip
                batch.append(run)
                print(f"  {run.seconds:.1f} s", flush=True)
                if long_source is not None:
                    print(f"{count} worker host(s): long title …", flush=True)
                    name = f"long{count}"
                    run = package(lab, ray, hosts[:count], work, name, [long_source], args.chunk_seconds,
                                  args.control_cpus)  # fmt: skip
                    data, title = work / name, run.titles[0]
                    run.output_bytes = title_bytes(data, title)
                    run.psnr_db = psnr(top_rendition(data, title), long_source)
                    run.chunked = was_chunked(work, name)
                    long.append(run)
                    print(
                        f"  {run.seconds:.1f} s, chunked: {run.chunked}, PSNR {run.psnr_db:.2f} dB",
                        flush=True,
                    )
        finally:
            ray.close()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        results = {"batch": [asdict(r) for r in batch], "long": [asdict(r) for r in long]}
        (RESULTS / f"{stamp}.json").write_text(json.dumps(results, indent=1))
        text = section(args, batch, long, machine())
        print(text)
        if not args.no_doc:
            write_doc(SECTION, text)


if __name__ == "__main__":
    main(sys.argv[1:])
