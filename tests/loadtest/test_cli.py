"""``surge loadtest`` as a user runs it, against a real ``surge origin``; the report against its schema."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest import report
from surge.cli import main
from tests.conftest import MakeSource
from tests.origin.conftest import OriginProcess, publish_small_title

ROOT = Path(__file__).resolve().parents[2]
NUMBER = (int, float)
MAYBE_NUMBER = (int, float, type(None))


class ListOf:
    def __init__(self, item: Any) -> None:
        self.item = item


class MapOf:
    def __init__(self, value: Any) -> None:
        self.value = value


PERCENTILES = {
    "p50": MAYBE_NUMBER,
    "p95": MAYBE_NUMBER,
    "p99": MAYBE_NUMBER,
    "max": MAYBE_NUMBER,
    "mean": MAYBE_NUMBER,
}
VIEWERS = {
    "sessions": int,
    "sessions_started": int,
    "sessions_ended": int,
    "sessions_failed": int,
    "sessions_with_rebuffer": int,
    "startup_s": {"p50": MAYBE_NUMBER, "p95": MAYBE_NUMBER, "max": MAYBE_NUMBER, "count": int},
    "rebuffers": int,
    "rebuffer_s": NUMBER,
    "rebuffer_ratio": NUMBER,
    "played_s": NUMBER,
    "avg_bitrate_bps": (int, type(None)),
    "switches": int,
    "switches_up": int,
    "switches_down": int,
    "top_rendition_share": MAYBE_NUMBER,
    "renditions": ListOf({"label": str, "bitrate": int, "played_s": NUMBER, "share": MAYBE_NUMBER}),
}
TRAFFIC = {"requests": int, "bytes": int}
GENERATOR = {
    "cpu_s": NUMBER,
    "cpu_mean": NUMBER,
    "cpu_max": NUMBER,
    "saturated_s": int,
    "saturated": bool,
    "cpu_wait_mean": MAYBE_NUMBER,
    "starved_s": int,
    "starved": bool,
    "loop_lag_max_ms": NUMBER,
    "max_rss_mib": NUMBER,
}
SCHEMA = {
    "schema": str,
    "started_at": str,
    "wall_s": NUMBER,
    "interrupted": bool,
    "config": {
        "url": str,
        "titles": ListOf(str),
        "profile": str,
        "players": int,
        "background": int,
        "ramp_s": NUMBER,
        "duration_s": NUMBER,
        "speed": NUMBER,
        "cmcd": str,
        "on_end": str,
        "max_buffer_s": NUMBER,
        "start_buffer_s": NUMBER,
        "start_bandwidth_bps": NUMBER,
        "timeout_s": NUMBER,
    },
    "player_model": {"emulates": str, "profile": str, "changed": MapOf(NUMBER), "settings": MapOf(NUMBER)},
    "generator": GENERATOR,
    "generators": ListOf(
        GENERATOR | {"node": str, "players": int, "lost": (str, type(None)), "seconds": int}
    ),
    "viewers": VIEWERS | {"peak_active": int},
    "titles": MapOf(VIEWERS | {"background": bool}),
    "requests": {
        "total": int,
        "bytes": int,
        "errors": int,
        "throughput_bps": int,
        "requests_per_s": NUMBER,
        "errors_by_kind": MapOf(int),
        "by_type": MapOf(
            {"requests": int, "bytes": int, "errors": int, "latency_ms": PERCENTILES, "ttfb_ms": PERCENTILES}
        ),
        "x_cache": MapOf(TRAFFIC),
        "served_by": MapOf(TRAFFIC),
    },
    "series": ListOf(
        {
            "t": NUMBER,
            "active": int,
            "stalled": int,
            "rebuffers": int,
            "requests": int,
            "bytes": int,
            "errors": int,
            "p99_ms": MAYBE_NUMBER,
            "cpu": NUMBER,
            "cpu_wait": MAYBE_NUMBER,
            "saturated": bool,
            "starved": bool,
            "loop_lag_ms": NUMBER,
            "edges": (int, type(None)),
            "played": MapOf(NUMBER),
        }
    ),
    "thresholds": ListOf(
        {"threshold": str, "metric": str, "op": str, "limit": NUMBER, "value": MAYBE_NUMBER, "broken": bool}
    ),
}


def check(value: Any, spec: Any, where: str = "report") -> None:
    if isinstance(spec, dict):
        assert isinstance(value, dict), where
        assert set(value) == set(spec), f"{where}: {sorted(set(value) ^ set(spec))}"
        for key, item in spec.items():
            check(value[key], item, f"{where}.{key}")
    elif isinstance(spec, ListOf):
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            check(item, spec.item, f"{where}[{i}]")
    elif isinstance(spec, MapOf):
        assert isinstance(value, dict) and all(isinstance(k, str) for k in value), where
        for key, item in value.items():
            check(item, spec.value, f"{where}[{key!r}]")
    else:
        assert isinstance(value, spec) and not (isinstance(value, bool) and spec in (int, NUMBER)), where


def keys_of(spec: Any) -> set[str]:
    if isinstance(spec, dict):
        return set(spec) | {k for item in spec.values() for k in keys_of(item)}
    if isinstance(spec, ListOf | MapOf):
        return keys_of(spec.item if isinstance(spec, ListOf) else spec.value)
    return set()


@pytest.fixture(scope="module")
def origin_master(tmp_path_factory: pytest.TempPathFactory, make_source: MakeSource) -> Iterator[str]:
    """A real origin with one title uploaded through it: 8 s of 640x360, renditions 234p, 360p + audio."""
    origin = OriginProcess(tmp_path_factory.mktemp("origin") / "data", "--preset", "ultrafast").start()
    try:
        yield f"{origin.url}/titles/{publish_small_title(origin, make_source)}/master.m3u8"
    finally:
        origin.stop()


def run_loadtest(url: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``surge loadtest URL OPTIONS --quiet`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "surge.cli", "loadtest", url, *options, "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_loadtest_against_a_real_origin_writes_a_report_of_the_documented_shape(
    origin_master: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    options = ["--players", "3", "--ramp", "0.5", "--duration", "3", "--speed", "8", "--report", str(out)]
    options += ["--abr-profile", "conservative", "--abr-set", "abrEwmaFastVoD=2"]
    done = run_loadtest(origin_master, *options)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"surge loadtest: 3 players (steady, ramp 0.5 s, 3 s at 8x) against {origin_master}"
    )
    assert f"report: {out}" in done.stdout and "GENERATOR" not in done.stdout
    result = json.loads(out.read_text())
    check(result, SCHEMA)
    assert result["schema"] == "surge-loadtest/1"
    model = result["player_model"]
    assert (model["emulates"], model["profile"]) == ("hls.js 1.6.19", "conservative")
    assert model["changed"] == {"abrBandWidthFactor": 0.8, "abrBandWidthUpFactor": 0.5, "abrEwmaFastVoD": 2}
    assert model["settings"]["abrEwmaSlowVoD"] == 9 and model["settings"]["maxBufferSize"] == 60e6
    viewers, requests = result["viewers"], result["requests"]
    assert viewers["sessions"] >= 3 and viewers["sessions_started"] >= 3 and viewers["sessions_failed"] == 0
    assert viewers["sessions_ended"] >= 3  # 8 s of title is 1 s at 8x
    assert {r["label"] for r in viewers["renditions"]} == {"234p", "360p"}
    assert requests["errors"] == 0 and set(requests["by_type"]) == {
        "manifest",
        "playlist",
        "init",
        "video",
        "audio",
    }
    assert requests["x_cache"] == {"-": {"requests": requests["total"], "bytes": requests["bytes"]}}
    assert 2 <= len(result["series"]) <= 4 and result["series"][0]["edges"] is None
    assert list(result["titles"]) == [origin_master]
    [generator] = result["generators"]
    assert (generator["node"], generator["players"], generator["lost"]) == ("local", 3, None)
    # Play time by rendition second by second: at most the whole run's (the end of the last second on).
    for r in viewers["renditions"]:
        by_second = sum(s["played"].get(r["label"], 0.0) for s in result["series"])
        assert by_second <= r["played_s"] + 0.01
    assert sum(sum(s["played"].values()) for s in result["series"]) > 0
    assert result["thresholds"] == []


def test_fail_on_prints_each_threshold_and_exits_99_when_one_is_broken(
    origin_master: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    # startup_max>=0s holds in every run that starts a session: a threshold broken for sure.
    gate = "error_rate>0.5,startup_max>=0s"
    options = ["--players", "2", "--duration", "2", "--speed", "8", "--fail-on", gate, "--report", str(out)]
    done = run_loadtest(origin_master, *options)
    assert done.returncode == 99, done.stderr
    lines = done.stdout.splitlines()
    table = lines[lines.index("thresholds") + 1 :]
    assert table[0] == "  ok      error_rate>0.5  (measured 0)"
    assert table[1].startswith("  BROKEN  startup_max>=0s  (measured ") and table[1].endswith(" s)")
    assert done.stderr.strip().splitlines()[-1] == "surge: 1 threshold(s) broken"
    result = json.loads(out.read_text())
    check(result, SCHEMA)
    assert [(t["threshold"], t["broken"]) for t in result["thresholds"]] == [
        ("error_rate>0.5", False),
        ("startup_max>=0s", True),
    ]
    assert result["thresholds"][1]["value"] == result["viewers"]["startup_s"]["max"]


def test_ctrl_c_ends_the_run_early_with_a_report(origin_master: str, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    argv = [sys.executable, "-m", "surge.cli", "loadtest", origin_master, "--duration", "60", "--speed", "8"]
    process = subprocess.Popen(
        [*argv, "--report", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    time.sleep(2.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("surge: interrupted after 2 s")
    assert "surge loadtest: 10 players" in stdout
    result = json.loads(out.read_text())
    check(result, SCHEMA)
    assert result["interrupted"] is True and 1.5 < result["wall_s"] < 5
    assert result["viewers"]["sessions_started"] >= 10


def test_every_report_key_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### `surge loadtest") : readme.index("## Layout of the code")]
    missing = sorted(key for key in keys_of(SCHEMA) if f"`{key}`" not in section)
    assert not missing, f"undocumented report keys: {missing}"


def test_remote_hosts_are_refused_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest", "http://192.0.2.7/m.m3u8", "--players", "1", "--duration", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("surge: error: refusing to load-test 192.0.2.7")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--players", "20001"], "at most 20000 players"),
        (["--duration", "0"], "--duration"),
        (["--report", "/no/such/dir/r.json"], "is not a directory"),
        (["--fail-on", "p98_ms>1"], "unknown metric 'p98_ms'"),
        (["--fail-on", "p99_ms>>1"], "is not metric OP number"),
        (["--abr-set", "abrFoo=1"], "unknown hls.js setting 'abrFoo'"),
        (["--abr-set", "abrBandWidthUpFactor"], "--abr-set wants NAME=NUMBER"),
        (["--abr-set", "abrBandWidthUpFactor=2"], "the bandwidth factors must be in (0, 1]"),
        (["--generators", "2"], "--generators needs --ray-address"),
        (["--ray-address", "127.0.0.1:9"], "cannot reach the Ray head at 127.0.0.1:9"),
    ],
)
def test_bad_options_are_one_line_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["loadtest", "http://127.0.0.1:9/m.m3u8", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_plot_without_matplotlib_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(report.importlib.util, "find_spec", lambda name: None)
    assert main(["loadtest", "http://127.0.0.1:9/m.m3u8", "--plot", str(tmp_path / "p.png")]) == 1
    assert (
        capsys.readouterr().err.strip() == "surge: error: --plot needs matplotlib: pip install 'surge[plot]'"
    )


def test_plot_draws_the_series(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    series = [
        {
            "t": t,
            "active": t,
            "stalled": 0,
            "requests": 10,
            "errors": 0,
            "p99_ms": 1.0,
            "cpu": 0.5,
            "edges": 1,
        }
        for t in range(1, 4)
    ]
    path = tmp_path / "plot.png"
    report.plot({"series": series, "config": {"url": "http://127.0.0.1/m.m3u8"}}, path)
    assert path.read_bytes().startswith(b"\x89PNG")
