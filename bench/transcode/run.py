"""On-demand benchmark: `surge transcode` against ONE hand-written ffmpeg command making the same ladder.

The peer's argv is written by hand here, mirroring transcoder/command.py option for option (same split +
scale + setsar + format graph, x264 rate control, GOP, HLS fMP4 muxer settings, AAC audio), so the
difference measured is what surge adds: Python start-up, probing, progress reading, playlists, fsync.
Optionally also one ffmpeg process per rung, run concurrently, for context. Results go to
docs/benchmarks.md; the cached source and scratch outputs live in bench/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "transcode"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Transcode: surge vs one hand-written ffmpeg command"
DURATION_S, FPS = 60, 30
SOURCE = RESULTS / f"source-1080p{FPS}-{DURATION_S}s.mp4"
LADDER = "416x234@145k,640x360@365k,1280x720@3000k,1920x1080@6000k"
TARGET = 1.05  # surge may cost at most 5 % more than the hand-written command
# Mirrors PackageConfig defaults and transcoder/command.py; change them together.
SEGMENT_S, KEYFRAME_S, AUDIO_BPS = 6, 2, 128_000
GLOBAL = shlex.split("ffmpeg -hide_banner -nostdin -loglevel warning -nostats -progress pipe:1")
AUDIO = f"-map 0:a -c:a aac -profile:a aac_low -b:a {AUDIO_BPS} -ac 2 -ar 48000".split()
GRACE_S = 10.0
# A shared machine: a run during which other processes used more than this share of the CPUs is redone.
BUSY_SHARE = 0.05
CPUS = os.cpu_count() or 1
# `surge transcode` in-process (what the console script does), then its own and its children's peak RSS:
# Linux reports a tree's ru_maxrss as a max, not a sum, so the parent must report its own.
SURGE = """import resource, sys
from surge.cli import main
code = main(sys.argv[1:])
me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(f"bench-maxrss-kib {me.ru_maxrss} {kids.ru_maxrss}", file=sys.stderr)
sys.exit(code)"""


@dataclass(frozen=True)
class Rung:
    width: int
    height: int
    bitrate: int

    @property
    def name(self) -> str:
        return f"{self.height}p-{self.bitrate // 1000}k"


@dataclass(frozen=True)
class Sample:
    wall: float  # s
    cpu: float  # s, user + sys of every process in the tree
    rss: float  # MiB, sum of per-process peaks
    parent: float  # MiB, surge's Python parent alone (0 for plain ffmpeg)
    out: float  # MiB written
    others: float  # CPU s the rest of the machine used meanwhile: wall times need it near 0


def parse_ladder(text: str) -> list[Rung]:
    rungs = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)x(\d+)@(\d+)k", part.strip())
        if not match or int(match[1]) * 9 != int(match[2]) * 16 or int(match[2]) > 1080:
            sys.exit(f"bad rung {part!r}: the peer assumes 16:9 WxH@Nk rungs no larger than 1080p")
        rungs.append(Rung(int(match[1]), int(match[2]), int(match[3]) * 1000))
    return sorted(rungs, key=lambda r: (r.bitrate, r.width))  # surge's output order


def video(rung: Rung, preset: str) -> list[str]:
    rate = f"-b:v {rung.bitrate} -maxrate {int(rung.bitrate * 1.1)} -bufsize {rung.bitrate * 2}"
    gop = f"-g {FPS * KEYFRAME_S} -keyint_min {FPS * KEYFRAME_S} -sc_threshold 0"
    keys = f"-force_key_frames expr:gte(t,n_forced*{KEYFRAME_S})"
    return f"-c:v libx264 -preset {preset} -profile:v high {rate} {gop} {keys}".split()


def hls(directory: Path) -> list[str]:
    muxer = f"-f hls -hls_time {SEGMENT_S} -hls_playlist_type vod -hls_segment_type fmp4"
    muxer += " -hls_fmp4_init_filename init.mp4 -hls_flags independent_segments -max_muxing_queue_size 4096"
    segments = ["-hls_segment_filename", str(directory / "seg_%05d.m4s")]
    return [*muxer.split(), *segments, str(directory / "index.m3u8")]


def one_command(out: Path, rungs: list[Rung], preset: str, audio: bool = True) -> list[str]:
    """Decode once, split, scale and encode every rung: the hand-written peer of surge's command."""
    graph = f"[0:v]split={len(rungs)}" + "".join(f"[v{i}]" for i in range(len(rungs)))
    for i, r in enumerate(rungs):
        graph += f";[v{i}]scale={r.width}:{r.height},setsar=1,format=yuv420p[o{i}]"
    argv = [*GLOBAL, "-i", f"file:{SOURCE}", "-filter_complex", graph]
    for index, rung in enumerate(rungs):
        argv += ["-map", f"[o{index}]", *video(rung, preset), *hls(out / rung.name)]
    return argv + ([*AUDIO, *hls(out / "audio")] if audio else [])


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq, steal)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields[i] for i in (0, 1, 2, 5, 6, 7)) / os.sysconf("SC_CLK_TCK")


def wait_idle(limit: float) -> None:
    """Wait, at most ``limit`` s, for a 5 s window in which the rest of the machine is (nearly) idle."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = busy_cpu()
        time.sleep(5)
        if busy_cpu() - before < BUSY_SHARE * 5 * CPUS:
            return


def disturbed(sample: Sample) -> bool:
    return sample.others > BUSY_SHARE * sample.wall * CPUS


def run_tree(commands: list[list[str]], timeout: float, logs: Path) -> tuple[float, list[os.struct_rusage]]:
    """Start the commands at once; wall time until the last exits, and each one's rusage (from wait4)."""
    start = time.perf_counter()
    procs = []
    for index, argv in enumerate(commands):
        with (logs / f"stderr-{index}.log").open("wb") as err:
            procs.append(subprocess.Popen(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=err))
    usages: dict[int, os.struct_rusage] = {}
    while len(usages) < len(procs):
        for proc in procs:
            if proc.pid not in usages and (done := os.wait4(proc.pid, os.WNOHANG))[0]:
                proc.returncode, usages[proc.pid] = os.waitstatus_to_exitcode(done[1]), done[2]
        if time.perf_counter() - start > timeout:
            stop([p for p in procs if p.returncode is None])
            sys.exit(f"timed out after {timeout:.0f} s: {shlex.join(commands[0])}\n{tail(logs, 0)}")
        time.sleep(0.01)
    wall = time.perf_counter() - start
    for index, proc in enumerate(procs):
        if proc.returncode:
            sys.exit(f"exit {proc.returncode}: {shlex.join(commands[index])}\n{tail(logs, index)}")
    return wall, [usages[p.pid] for p in procs]


def tail(logs: Path, index: int) -> str:
    return (logs / f"stderr-{index}.log").read_text(errors="replace")[-2000:]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT (ffmpeg and surge both stop cleanly), then SIGKILL the process and its direct children."""
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            for pid in [proc.pid, *map(int, children.read_text().split() if children.exists() else [])]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()


def measure(variant: str, args: argparse.Namespace, rungs: list[Rung], pin: list[str]) -> Sample:
    work = RESULTS / f"run-{variant.replace(' ', '-')}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = work / "out"
    busy_before = busy_cpu()
    try:
        if variant == "surge":
            argv = [sys.executable, "-c", SURGE, "transcode", str(SOURCE), "--out", str(out), "--quiet"]
            argv += ["--preset", args.preset, "--ladder", args.ladder]
            wall, (usage,) = run_tree([pin + argv], args.timeout, work)
            found = re.findall(r"bench-maxrss-kib (\d+) (\d+)", (work / "stderr-0.log").read_text())
            parent_kib, child_kib = map(int, found[-1])  # the Python parent's peak, its ffmpeg child's
            rss_kib = parent_kib + child_kib
            usages = [usage]
        else:
            groups = [rungs] if variant == "ffmpeg" else [[r] for r in rungs]
            for name in [r.name for r in rungs] + ["audio"]:
                (out / name).mkdir(parents=True)
            commands = [pin + one_command(out, group, args.preset, i == 0) for i, group in enumerate(groups)]
            wall, usages = run_tree(commands, args.timeout, work)
            rss_kib, parent_kib = sum(u.ru_maxrss for u in usages), 0
        others = busy_cpu() - busy_before
        playlists = list(out.glob("*/index.m3u8"))
        if len(playlists) != len(rungs) + 1:
            sys.exit(f"{variant}: expected {len(rungs) + 1} renditions, found {len(playlists)}")
        written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cpu = sum(u.ru_utime + u.ru_stime for u in usages)
    mib = {"rss": rss_kib / 1024, "parent": parent_kib / 1024, "out": written / 2**20}
    return Sample(wall=wall, cpu=cpu, others=max(0.0, others - cpu), **mib)


def make_source(timeout: float) -> None:
    if SOURCE.is_file():
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = SOURCE.with_suffix(".partial")
    lavfi = f"testsrc2=size=1920x1080:rate={FPS}:duration={DURATION_S}"
    tone = f"sine=frequency=440:sample_rate=48000:duration={DURATION_S}"
    argv = [*shlex.split("ffmpeg -hide_banner -nostdin -loglevel error -y -f lavfi -i"), lavfi, "-f", "lavfi"]
    argv += ["-i", tone, *shlex.split("-c:v libx264 -preset ultrafast -crf 18 -pix_fmt yuv420p -c:a aac")]
    argv += [*shlex.split("-b:a 192k -ac 2 -f mp4"), str(partial)]
    print(f"generating {SOURCE.name}: {shlex.join(argv)}", file=sys.stderr)
    subprocess.run(argv, check=True, timeout=timeout)
    partial.rename(SOURCE)


def capture(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout


def median(samples: list[Sample], field: str) -> float:
    return statistics.median(getattr(s, field) for s in samples)


def report(
    results: dict[str, list[Sample]], args: argparse.Namespace, pin: list[str], command: str, redone: int
) -> str:
    head = "| variant | wall s, median (min–max) | x realtime | CPU s | peak RSS MiB | output MiB"
    rows = [head + " | others' CPU s, max |", "|---|---|---|---|---|---|---|"]
    for variant, samples in results.items():
        walls, wall = [s.wall for s in samples], median(samples, "wall")
        cells = [f"{wall:.1f} ({min(walls):.1f}–{max(walls):.1f})", f"{DURATION_S / wall:.2f}"]
        cells += [f"{median(samples, 'cpu'):.1f}", f"{median(samples, 'rss'):.0f}"]
        cells += [f"{median(samples, 'out'):.1f}", f"{max(s.others for s in samples):.1f}"]
        rows.append(f"| {variant} | {' | '.join(cells)} |")
    ratios = []
    for field, label in (("wall", "wall"), ("cpu", "CPU"), ("rss", "peak RSS")):
        ratio = median(results["surge"], field) / median(results["ffmpeg"], field)
        verdict = f"{'meets' if ratio <= TARGET else 'MISSES'} the {TARGET}x target"
        if field == "wall" and any(disturbed(s) for s in results["surge"] + results["ffmpeg"]):
            verdict = "no verdict: other processes were busy during kept runs, see others' CPU"
        ratios.append(f"{label} {ratio:.3f}x ({verdict})")
    version = capture("ffmpeg", "-version")
    revision = f"`{capture('git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD').strip() or 'unknown'}`"
    if capture("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no").strip():
        revision += " with uncommitted changes"
    cpu_model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    pinning = f"`{shlex.join(pin)}` for every variant" if pin else "not pinned (no taskset)"
    if pin and len(os.sched_getaffinity(0)) <= len(args.cpus.split(",")):
        pinning += " (that is every CPU here: ffmpeg needs them all, so the pin only keeps runs comparable)"
    peer = shlex.join(one_command(Path("OUT"), parse_ladder(args.ladder), args.preset))
    return "\n".join([
        SECTION, "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}; {args.repeat} run(s) per variant, "
        f"order alternated; {redone} run(s) redone because other processes were busy).",
        "",
        f"Machine: {CPUS} CPUs ({cpu_model[1] if cpu_model else 'unknown'}), "
        f"ffmpeg {version.split()[2]}, Python {sys.version.split()[0]}; "
        f"surge at {revision}; pinned with {pinning}.",
        f"Source: {DURATION_S} s 1920x1080 {FPS} fps testsrc2 + 440 Hz sine (x264 ultrafast crf 18, AAC); "
        f"ladder `{args.ladder}`, preset {args.preset}.",
        "", *rows, "",
        f"surge / hand-written, medians: {'; '.join(ratios)}.",
        "CPU is user + sys of every process in the tree; peak RSS sums per-process peaks (for surge: the "
        f"Python parent, {median(results['surge'], 'parent'):.0f} MiB, + its ffmpeg child; for `ffmpeg xN`: "
        "all N processes). A sum of peaks is an upper bound on the tree's peak. Others' CPU: what processes "
        "outside the benchmark (and VM steal) used during the run; wall times are comparable only near 0.",
        "", "<details><summary>The hand-written command</summary>", "", "```", peer.replace(str(ROOT), "."),
        "```", "", "</details>", "",
    ])  # fmt: skip


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.is_file() else (
        "# Benchmarks\n\nEvery figure here was made by the command shown with it.\n\n")  # fmt: skip
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        # A blank line ends the <details> HTML block; without it the next heading would not render.
        text = text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--ladder", default=LADDER, help=f"16:9 rungs WxH@Nk,... (default {LADDER})")
    parser.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast, surge's)")
    parser.add_argument("--cpus", default="0,1", help="taskset CPU list for every variant (default 0,1)")
    parser.add_argument("--separate", action=argparse.BooleanOptionalAction, default=True,
                        help="also run one ffmpeg process per rung, concurrently (default on)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900.0, help="limit per run, s (default 900)")
    parser.add_argument("--settle", type=float, default=300.0, help="longest wait for an idle machine, s")
    parser.add_argument("--retries", type=int, default=3, help="redos of a run the machine disturbed")
    parser.add_argument("--no-doc", action="store_true", help="print the table only")
    args = parser.parse_args()
    rungs = parse_ladder(args.ladder)
    pin = ["taskset", "-c", args.cpus] if shutil.which("taskset") else []
    make_source(args.timeout)
    variants = ["surge", "ffmpeg"] + ([f"ffmpeg x{len(rungs)}"] if args.separate else [])
    results: dict[str, list[Sample]] = {v: [] for v in variants}
    redone = 0
    for round_ in range(args.repeat):
        for variant in variants if round_ % 2 == 0 else variants[::-1]:
            for attempt in range(args.retries + 1):
                wait_idle(args.settle)
                sample = measure(variant, args, rungs, pin)
                verdict = "redone: machine busy" if disturbed(sample) and attempt < args.retries else "kept"
                print(f"round {round_ + 1} {variant}: {sample} {verdict}", file=sys.stderr, flush=True)
                if verdict == "kept":
                    break
                redone += 1
            results[variant].append(sample)
    command = shlex.join([".venv/bin/python", "bench/transcode/run.py", *sys.argv[1:]])
    section = report(results, args, pin, command, redone)
    print(section)
    if not args.no_doc:
        write_doc(section)


if __name__ == "__main__":
    main()
