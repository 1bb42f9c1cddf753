"""The numbers of the flash-crowd benchmark on emulated hosts (bench/flashcrowd/on_hosts.py): values in,
values out, on hand-made load-test reports, /fleet polls and log lines."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "flashcrowd" / "on_hosts.py"
    spec = importlib.util.spec_from_file_location("bench_flashcrowd_on_hosts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


hosts = _load()
T0 = 1_800_000_000.0


def series(*rows: tuple[float, int, int, int]) -> list[dict[str, Any]]:
    """Rows (t, bytes, active, stalled) of a load-test report's series."""
    return [{"t": t, "bytes": b, "active": a, "stalled": s} for t, b, a, s in rows]


def viewers(played: float, top: float | None, stalled: float, p95: float | None) -> dict[str, Any]:
    return {"sessions": 10, "sessions_failed": 0, "played_s": played, "top_rendition_share": top,
            "rebuffer_s": stalled, "startup_s": {"p95": p95}}  # fmt: skip


def poll(t: float, *edges: tuple[str, str, float, float]) -> tuple[float, dict[str, Any]]:
    """A /fleet answer at T0 + t with edges (id, state, Mbit/s, req/s)."""
    return T0 + t, {"edges": [{"id": i, "state": s, "load_mbit": m, "load_rps": r} for i, s, m, r in edges],
                    "events": []}  # fmt: skip


def test_delivered_mbit_counts_the_rows_that_end_inside_the_span_of_every_report() -> None:
    a = {"series": series((1, 1_000_000, 1, 0), (2, 2_000_000, 1, 0), (3, 4_000_000, 1, 0))}
    b = {"series": series((1, 500_000, 1, 0), (2, 500_000, 1, 0))}
    # a began at T0, b at T0 + 1.5: rows ending in (T0 + 1, T0 + 3] are a's 2nd and 3rd, b's 1st.
    mbit = hosts.delivered_mbit([(T0, a), (T0 + 1.5, b)], T0 + 1, T0 + 3)
    assert mbit == pytest.approx((2_000_000 + 4_000_000 + 500_000) * 8 / 2 / 1e6)


def test_viewers_of_several_processes_merge_weighted_by_play_time() -> None:
    merged = hosts.merged_viewers([{"viewers": viewers(300, 0.5, 3, 1.0)},
                                   {"viewers": viewers(100, 0.9, 7, 2.5)}])  # fmt: skip
    assert merged["top_share"] == pytest.approx((150 + 90) / 400)
    assert merged["rebuffer_ratio"] == pytest.approx(10 / 410)
    assert merged["startup_p95_s"] == 2.5  # the highest: percentiles do not merge
    assert merged["sessions"] == 20


def test_nothing_played_has_no_shares() -> None:
    merged = hosts.merged_viewers([{"viewers": viewers(0, None, 0, None)}])
    assert (
        merged["top_share"] is None and merged["rebuffer_ratio"] is None and merged["startup_p95_s"] is None
    )


def test_stalled_share_is_of_the_seconds_inside_the_span() -> None:
    report = {"series": series((1, 0, 100, 50), (2, 0, 100, 2), (3, 0, 100, 0))}
    assert hosts.stalled_share([(T0, report)], T0 + 1.5, T0 + 3) == pytest.approx(2 / 200)
    assert hosts.stalled_share([(T0, report)], T0 + 10, T0 + 20) is None


def test_crossing_is_the_first_poll_after_the_start_above_the_rate() -> None:
    polls = [poll(-1, ("edge-1", "active", 200, 50)),  # before the crowd: not counted
             poll(0.5, ("edge-1", "active", 100, 50)),
             poll(1.0, ("edge-1", "active", 90, 50), ("edge-2", "starting", 40, 0)),
             poll(1.5, ("edge-1", "active", 150, 50))]  # fmt: skip
    assert hosts.crossing(polls, T0, 126.0) == T0 + 1.0  # every edge's rate counts
    assert hosts.crossing(polls, T0, 500.0) is None


def test_first_answer_is_the_first_growth_of_the_request_count_after_active() -> None:
    samples = [(T0 + 9.8, 12), (T0 + 9.9, 14),  # the fleet's warming requests
               (T0 + 10.05, 14), (T0 + 10.15, 14),  # active at T0 + 10: nothing new yet
               (T0 + 10.25, 15), (T0 + 10.35, 40)]  # fmt: skip
    assert hosts.first_answer(samples, T0 + 10) == T0 + 10.25
    assert hosts.first_answer(samples[:4], T0 + 10) is None  # no player came
    assert hosts.first_answer(samples[2:], T0 + 10) is None  # no count from before: nothing to compare


def test_events_seen_in_several_polls_are_kept_once_in_time_order() -> None:
    started = {"time": "2027-01-15T08:00:02.000+00:00", "kind": "edge started", "edge": "edge-2"}
    decided = {"time": "2027-01-15T08:00:01.000+00:00", "kind": "scale-out", "edge": None}
    polls = [(T0, {"events": [started]}), (T0 + 1, {"events": [decided, started]})]
    assert hosts.events_of(polls) == [decided, started]


def test_origin_requests_are_its_media_lines_by_path() -> None:
    def line(server: str, path: str) -> str:
        return json.dumps({"event": "request", "server": server, "path": path, "status": 200})

    lines = [line("origin", "/titles/crowd/540p/seg_00001.m4s"),
             line("origin", "/titles/crowd/540p/seg_00001.m4s?CMCD=br%3D2000"),
             line("origin", "/titles/crowd/540p/init.mp4"),
             line("origin", "/titles/crowd/master.m3u8"),  # a master: not a media object
             line("fleet", "/titles/crowd/540p/seg_00002.m4s"),  # never the origin's
             "surge: not a JSON line",
             json.dumps({"event": "listening", "url": "http://198.51.100.1:8080"})]  # fmt: skip
    assert hosts.origin_requests(lines) == {"/titles/crowd/540p/seg_00001.m4s": 2,
                                            "/titles/crowd/540p/init.mp4": 1}  # fmt: skip


def summary(name: str, mbit: float, **extra: Any) -> dict[str, Any]:
    base = {"name": name, "phases": {"crowd": {"mbit": mbit, "top_share": 0.85}},
            "rebuffer_once_scaled": 0.002, "decision_s": 1.0, "crossed_s": 1.5,
            "new_edges": [{"first_answer": 7.0}], "failed": 0, "origin_max": 1}  # fmt: skip
    return base | extra


def test_targets_are_judged_on_the_measured_values() -> None:
    verdicts = {
        (t.variant, t.name.split(" ")[0]): t.met
        for t in hosts.targets(summary("auto", 500.0), summary("single", 180.0, failed=3, origin_max=2))
    }
    assert verdicts[("both", "autoscaled")] is True  # 2.78x
    assert verdicts[("auto", "crowd")] is True
    assert verdicts[("auto", "scale-out")] is True  # the decision came before the crossing
    assert verdicts[("auto", "a")] is False  # 6 s from the decision to the first answer
    assert verdicts[("single", "0")] is False and verdicts[("single", "≤")] is False
    unmeasured = hosts.targets(summary("auto", 500.0, decision_s=None), None)
    assert {t.name: t.met for t in unmeasured}[
        f"scale-out decision ≤ {hosts.GOAL_DECISION_S:g} s after crossing capacity"
    ] is None
