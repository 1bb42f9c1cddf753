"""Percentiles, histograms, breakdowns and viewer numbers, against values worked out by hand."""

from __future__ import annotations

import random

import pytest

from loadtest.metrics import (
    LogHistogram,
    Recorder,
    ViewerStats,
    Window,
    cache_status,
    generator_summary,
    percentile,
    second_of,
)
from loadtest.player import SessionResult


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([7.0], 99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        (list(range(1, 101)), 95, 95.05),
    ],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == (pytest.approx(expected) if expected is not None else None)


def test_histogram_percentiles_within_one_percent() -> None:
    rng = random.Random(6)
    values = [rng.lognormvariate(-5, 1) for _ in range(20_000)]
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    ordered = sorted(values)
    for q in (50, 95, 99):
        exact = ordered[max(0, -(-q * len(values) // 100) - 1)]  # nearest rank
        assert histogram.percentile(q) == pytest.approx(exact, rel=0.011)
    assert histogram.max == max(values) and histogram.count == len(values)
    assert LogHistogram().percentile(50) is None


@pytest.mark.parametrize(
    ("header", "status"), [(None, "-"), ("", "-"), ("HIT", "HIT"), ("hit from edge-1", "HIT"), ("  ", "-")]
)
def test_cache_status(header: str | None, status: str) -> None:
    assert cache_status(header) == status


def test_recorder_breaks_requests_down() -> None:
    recorder = Recorder()
    recorder.record("video", latency=0.010, ttfb=0.002, nbytes=1000, x_cache="HIT", served_by="edge-1")
    recorder.record("video", latency=0.030, ttfb=0.020, nbytes=3000, x_cache="MISS", served_by="edge-2")
    recorder.record("video", latency=0.020, ttfb=0.010, nbytes=0, error="http_503", served_by="edge-2")
    recorder.record("audio", latency=5.0, ttfb=None, nbytes=0, error="timeout")
    recorder.mark_error("playlist", "invalid_playlist")
    summary = recorder.summary(wall=2.0)
    assert summary["total"] == 4 and summary["errors"] == 3 and summary["bytes"] == 4000
    assert summary["throughput_bps"] == 16_000 and summary["requests_per_s"] == 2.0
    assert summary["errors_by_kind"] == {"http_503": 1, "invalid_playlist": 1, "timeout": 1}
    assert summary["by_type"]["video"]["requests"] == 3 and summary["by_type"]["video"]["errors"] == 1
    assert summary["by_type"]["video"]["latency_ms"]["max"] == 30.0
    assert summary["x_cache"] == {
        "-": {"requests": 1, "bytes": 0},
        "HIT": {"requests": 1, "bytes": 1000},
        "MISS": {"requests": 1, "bytes": 3000},
    }
    assert summary["served_by"] == {
        "edge-1": {"requests": 1, "bytes": 1000},
        "edge-2": {"requests": 2, "bytes": 3000},
    }
    window = recorder.close_window()
    assert (window.requests, window.errors, window.bytes) == (4, 3, 4000)
    assert recorder.close_window() == Window()


def test_recorder_caps_distinct_header_values() -> None:
    recorder = Recorder()
    for i in range(100):
        recorder.record("video", latency=0.001, ttfb=0.001, nbytes=1, served_by=f"edge-{i}")
    served = recorder.summary(1.0)["served_by"]
    assert len(served) == 65 and served["other"]["requests"] == 36


def _session(**fields: object) -> SessionResult:
    base: dict[str, object] = {
        "started": True,
        "startup": 0.5,
        "stalls": 0,
        "stall_time": 0.0,
        "played": (0.0, 0.0),
        "switches_up": 0,
        "switches_down": 0,
        "ended": True,
        "failed": False,
        "errors": 0,
    }
    return SessionResult(**(base | fields))  # type: ignore[arg-type]


def test_viewer_stats_weigh_bitrate_by_time_and_rebuffering_by_wall_time() -> None:
    stats = ViewerStats()
    ladder, labels = (300_000, 900_000), ("234p", "360p")
    # At 2x: 20 s of media at 300k + 10 s at 900k take 15 s of wall time; stalled 5 s of it.
    stats.add(_session(played=(20.0, 10.0), stalls=2, stall_time=5.0, switches_up=1), ladder, labels, 2.0)
    stats.add(_session(started=False, startup=None, ended=False, failed=True, played=()), [], [], 2.0)
    summary = stats.summary()
    assert summary["avg_bitrate_bps"] == 500_000  # (300k x 20 + 900k x 10) / 30
    assert summary["rebuffer_ratio"] == pytest.approx(5 / (15 + 5))
    assert summary["top_rendition_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["renditions"] == [
        {"label": "234p", "bitrate": 300_000, "played_s": 20.0, "share": pytest.approx(2 / 3, abs=1e-4)},
        {"label": "360p", "bitrate": 900_000, "played_s": 10.0, "share": pytest.approx(1 / 3, abs=1e-4)},
    ]
    assert (summary["sessions"], summary["sessions_started"], summary["sessions_failed"]) == (2, 1, 1)
    assert summary["startup_s"] == {"p50": 0.5, "p95": 0.5, "max": 0.5, "count": 1}
    assert (summary["rebuffers"], summary["sessions_with_rebuffer"], summary["switches"]) == (2, 1, 1)


def test_a_second_and_the_generator_summary() -> None:
    window = Window(requests=3, bytes=10, errors=1)
    for latency in (0.001, 0.002, 0.100):
        window.latency.add(latency)
    busy = second_of(
        1.0, window, active=5, stalled=1, rebuffers=1, cpu=0.95, cpu_wait=0.0, loop_lag=0.004, edges=None
    )
    assert busy.p99_ms == 100.0 and busy.saturated and not busy.starved  # nearest rank
    assert busy.as_json()["saturated"] is True and busy.as_json()["loop_lag_ms"] == 4.0
    shared = second_of(
        2.0, Window(), active=5, stalled=0, rebuffers=0, cpu=0.3, cpu_wait=0.5, loop_lag=0.4, edges=3
    )
    assert shared.p99_ms is None and not shared.saturated and shared.starved
    unknown = second_of(
        3.0, Window(), active=5, stalled=0, rebuffers=0, cpu=0.2, cpu_wait=None, loop_lag=0, edges=3
    )
    assert not unknown.starved and unknown.as_json()["cpu_wait"] is None
    summary = generator_summary([busy, shared, unknown], cpu_seconds=1.45, wall=3.0)
    assert summary == {
        "cpu_s": 1.45,
        "cpu_mean": 0.4833,
        "cpu_max": 0.95,
        "saturated_s": 1,
        "saturated": True,
        "cpu_wait_mean": 0.25,
        "starved_s": 1,
        "starved": True,
        "loop_lag_max_ms": 400.0,
    }
