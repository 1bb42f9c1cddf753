"""The run's results as JSON (schema ``surge-loadtest/1``, documented in README.md), text and a plot.

matplotlib is optional (``pip install 'surge[plot]'``) and imported only when a plot is asked for.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtest.config import LoadTestConfig
from loadtest.metrics import SATURATED, STARVED, Second
from loadtest.player import player_model
from loadtest.tally import GeneratorRun, combined_generator, merge_generators
from media.errors import SurgeError, ToolMissing

SCHEMA = "surge-loadtest/1"
PLOT_HINT = "--plot needs matplotlib: pip install 'surge[plot]'"


def build_report(config: LoadTestConfig, runs: Sequence[GeneratorRun]) -> dict[str, Any]:
    """The report of a run on one generator or several (merged exactly: ``loadtest.tally``)."""
    tally = merge_generators(runs)
    generators = [run.summary() for run in runs]
    viewers = tally.overall.summary()
    viewers["peak_active"] = max((s.active for s in tally.series), default=tally.active)
    return {
        "schema": SCHEMA,
        "started_at": dt.datetime.fromtimestamp(tally.started, dt.UTC).isoformat(timespec="seconds"),
        "wall_s": round(tally.wall, 3),
        "interrupted": tally.interrupted,
        "config": {
            "url": config.url,
            "titles": list(config.titles),
            "profile": config.profile,
            "players": config.players,
            "background": config.background_viewers,
            "ramp_s": config.ramp,
            "duration_s": config.duration,
            "speed": config.speed,
            "cmcd": config.cmcd,
            "on_end": config.on_end,
            "max_buffer_s": config.max_buffer,
            "start_buffer_s": config.start_buffer,
            "start_bandwidth_bps": config.start_bandwidth,
            "timeout_s": config.timeout,
        },
        "player_model": player_model(config.player(), config.abr_profile),
        "generator": combined_generator(generators, tally.series),
        "generators": generators,
        "viewers": viewers,
        "titles": {
            url: {"background": title.background, **title.stats.summary()}
            for url, title in tally.titles.items()
        },
        "requests": tally.recorder.summary(tally.wall),
        "series": [second.as_json() for second in tally.series],
        "thresholds": [],  # the --fail-on verdicts, filled in once the run is judged
    }


def write_json(report: Mapping[str, Any], path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(path)  # a reader never sees half a report


# --- text ---------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _rate(bits_per_second: float | None) -> str:
    if bits_per_second is None:
        return "-"
    for unit, size in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits_per_second >= size:
            return f"{bits_per_second / size:.2f} {unit}"
    return f"{bits_per_second:.0f} bit/s"


def _size(nbytes: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.2f} {unit}"
    return f"{nbytes:.0f} B"


def _shares(table: Mapping[str, Mapping[str, int]]) -> str:
    total = sum(row["requests"] for row in table.values()) or 1
    ranked = sorted(table.items(), key=lambda kv: -kv[1]["requests"])
    return ", ".join(f"{key} {row['requests'] * 100 / total:.1f} %" for key, row in ranked[:8])


def progress_line(second: Second, errors: int) -> str:
    line = (
        f"{second.t:6.0f} s  players {second.active:>6}  req/s {second.requests:>6}  "
        f"p99 {_ms(second.p99_ms):>10}  errors {errors:>5}  stalled {second.stalled:>5}  "
        f"cpu {second.cpu * 100:3.0f} %"
    )
    if second.edges is not None:
        line += f"  edges {second.edges}"
    if second.saturated:
        line += "  GENERATOR SATURATED"
    elif second.starved:
        line += "  GENERATOR WAITING FOR CPU"
    return line


def _viewer_lines(viewers: Mapping[str, Any]) -> list[str]:
    startup = viewers["startup_s"]
    return [
        f"  sessions {viewers['sessions']} (started {viewers['sessions_started']}, "
        f"ended {viewers['sessions_ended']}, failed {viewers['sessions_failed']}); "
        f"startup p50 {_s(startup['p50'])}, p95 {_s(startup['p95'])}",
        f"  rebuffers {viewers['rebuffers']} in {viewers['sessions_with_rebuffer']} session(s), "
        f"{viewers['rebuffer_s']:.2f} s, ratio {_pct(viewers['rebuffer_ratio'])}; "
        f"avg bitrate {_rate(viewers['avg_bitrate_bps'])}; "
        f"top rendition {_pct(viewers['top_rendition_share'])}; "
        f"switches {viewers['switches']} (up {viewers['switches_up']}, down {viewers['switches_down']})",
        "  time by rendition: "
        + (", ".join(f"{r['label']} {_pct(r['share'])}" for r in viewers["renditions"]) or "-"),
    ]


def _generator_line(generator: Mapping[str, Any]) -> str:
    line = (
        f"  {generator['node']}: {generator['players']} players, CPU mean {_pct(generator['cpu_mean'])}, "
        f"max {_pct(generator['cpu_max'])}"
    )
    if generator["saturated"]:
        line += f", saturated {generator['saturated_s']} s"
    if generator["lost"]:
        line += f"; LOST after {generator['seconds']} s ({generator['lost']}): its totals are missing"
    return line


def summary_text(report: Mapping[str, Any]) -> str:
    config, requests, generator = report["config"], report["requests"], report["generator"]
    lines = [
        f"surge loadtest: {config['players']} players ({config['profile']}, ramp {config['ramp_s']:g} s, "
        f"{config['duration_s']:g} s at {config['speed']:g}x) against {config['url']}",
        "viewers",
        *_viewer_lines(report["viewers"]),
    ]
    if len(report["titles"]) > 1:
        for url, title in report["titles"].items():
            lines.append(f"title {url}{' (background)' if title['background'] else ''}")
            lines.extend(_viewer_lines(title))
    lines += [
        "requests",
        f"  {requests['total']} ({requests['requests_per_s']:.0f}/s), {_size(requests['bytes'])} "
        f"({_rate(requests['throughput_bps'])}), errors {requests['errors']}"
        + (
            " — " + ", ".join(f"{kind} {n}" for kind, n in requests["errors_by_kind"].items())
            if requests["errors_by_kind"]
            else ""
        ),
    ]
    for name, row in requests["by_type"].items():
        latency, ttfb = row["latency_ms"], row["ttfb_ms"]
        lines.append(
            f"  {name:<9} {row['requests']:>8}  latency p50 {_ms(latency['p50'])}, "
            f"p95 {_ms(latency['p95'])}, p99 {_ms(latency['p99'])}; ttfb p99 {_ms(ttfb['p99'])}"
        )
    lines.append(f"  X-Cache: {_shares(requests['x_cache']) or '-'}")
    lines.append(f"  X-Served-By: {_shares(requests['served_by']) or '-'}")
    generators = report["generators"]
    several = len(generators) > 1
    which = f"{len(generators)} generators, the busiest" if several else "generator"
    lines.append(
        f"{which}: CPU mean {_pct(generator['cpu_mean'])} of one core, max {_pct(generator['cpu_max'])}; "
        f"waiting for a CPU {_pct(generator['cpu_wait_mean'])}; loop lag max "
        f"{generator['loop_lag_max_ms']:.1f} ms; peak RSS {generator['max_rss_mib']:.0f} MiB"
    )
    if several or any(g["lost"] for g in generators):
        lines.extend(_generator_line(g) for g in generators)
    subject = "a generator" if several else "the generator"
    if generator["saturated"]:
        lines.append(
            f"WARNING: {subject} was CPU-saturated (> {SATURATED * 100:.0f} % of one core) for "
            f"{generator['saturated_s']} s; latencies in those seconds include its own delays. "
            "Use fewer players per process, or more processes."
        )
    if generator["starved"]:
        lines.append(
            f"WARNING: {subject} waited for a CPU (> {STARVED * 100:.0f} % of the second, other "
            f"programs on this machine) in {generator['starved_s']} s; latencies then include that wait."
        )
    return "\n".join(lines)


# --- plot ---------------------------------------------------------------------------------------


def check_plot_available() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise ToolMissing(PLOT_HINT)


def plot(report: Mapping[str, Any], path: Path) -> None:
    """Per-second panels: players (and edges), requests and errors, p99 latency, generator CPU."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise ToolMissing(PLOT_HINT) from None
    matplotlib.use("Agg")
    pyplot = importlib.import_module("matplotlib.pyplot")
    series = report["series"]
    t = [row["t"] for row in series]
    figure, axes = pyplot.subplots(4, 1, sharex=True, figsize=(10, 10), constrained_layout=True)
    try:
        players, traffic, latency, cpu = axes
        players.plot(t, [r["active"] for r in series], label="active players")
        players.plot(t, [r["stalled"] for r in series], label="stalled")
        if any(r["edges"] is not None for r in series):
            edges = players.twinx()
            edges.step(t, [r["edges"] for r in series], color="tab:green", where="post", label="edges")
            edges.set_ylabel("edges")
        players.legend(loc="upper left")
        traffic.plot(t, [r["requests"] for r in series], label="requests/s")
        traffic.plot(t, [r["errors"] for r in series], label="errors/s", color="tab:red")
        traffic.legend(loc="upper left")
        latency.plot(t, [r["p99_ms"] for r in series], label="p99 latency, ms")
        latency.legend(loc="upper left")
        cpu.plot(t, [r["cpu"] * 100 for r in series], label="generator CPU, % of one core")
        cpu.axhline(SATURATED * 100, color="tab:red", linestyle="--", linewidth=0.8)
        cpu.legend(loc="upper left")
        cpu.set_xlabel("seconds since start")
        figure.suptitle(f"surge loadtest: {report['config']['url']}")
        figure.savefig(path, dpi=100)
    except (OSError, ValueError) as error:
        raise SurgeError(f"cannot write the plot {path}: {error}") from None
    finally:
        pyplot.close(figure)
