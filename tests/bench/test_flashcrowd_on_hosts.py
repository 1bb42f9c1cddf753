"""The numbers of the flash-crowd benchmark on emulated hosts (bench/flashcrowd/on_hosts.py): values in,
values out, on hand-made load-test reports, /fleet polls and log lines."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

import pytest

from tests.bench.loading import load_bench

hosts = load_bench("flashcrowd/on_hosts.py", "bench_flashcrowd_on_hosts")
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
    base = {"name": name, "phases": {"crowd": {"mbit": mbit, "top_share": 0.4}},
            "top_share_once_scaled": 0.85, "rebuffer_once_scaled": 0.002, "decision_s": 1.0, "crossed_s": 1.5,
            "new_edges": [{"requested": 1.0, "first_answer": 4.0}, {"requested": 3.0, "first_answer": 9.0}],
            "failed": 0, "origin_max": 1}  # fmt: skip
    return base | extra


def test_targets_are_judged_on_the_measured_values() -> None:
    verdicts = {
        (t.variant, t.name.split(" ")[0]): t.met
        for t in hosts.targets(summary("auto", 500.0), summary("single", 180.0, failed=3, origin_max=2))
    }
    assert verdicts[("both", "autoscaled")] is True  # 2.78x
    assert verdicts[("auto", "crowd")] is True  # once scaled out, not over the whole run (0.4)
    assert verdicts[("auto", "scale-out")] is True  # the decision came before the crossing
    assert verdicts[("auto", "every")] is False  # the second new edge: 6 s from its decision to its answer
    assert verdicts[("single", "0")] is False and verdicts[("single", "≤")] is False
    unmeasured = hosts.targets(summary("auto", 500.0, decision_s=None), None)
    assert {t.name: t.met for t in unmeasured}[
        f"scale-out decision ≤ {hosts.GOAL_DECISION_S:g} s after crossing capacity"
    ] is None


def test_the_slowest_new_edge_decides_and_one_that_never_answered_leaves_it_unmeasured() -> None:
    edges = [{"requested": 1.0, "first_answer": 4.5}, {"requested": 2.0, "first_answer": 6.0}]
    assert hosts.slowest_answer(edges) == 4.0
    assert hosts.slowest_answer([*edges, {"requested": 3.0, "first_answer": None}]) is None
    assert hosts.slowest_answer([]) is None


def played_rows(*rows: tuple[float, dict[str, float]]) -> list[dict[str, Any]]:
    """Rows (t, play time by rendition) of a load-test report's series."""
    return [{"t": t, "bytes": 0, "active": 1, "stalled": 0, "played": played} for t, played in rows]


def test_rendition_share_is_of_the_play_time_in_the_rows_inside_the_span() -> None:
    a = {"series": played_rows((1, {"234p": 4.0}), (2, {"234p": 1.0, "540p": 3.0}), (3, {"540p": 4.0}))}
    b = {"series": played_rows((1, {"360p": 2.0}), (2, {"540p": 2.0}))}
    # a began at T0, b at T0 + 1: rows ending in (T0 + 1.5, T0 + 3] are a's 2nd and 3rd, b's 1st and 2nd.
    share = hosts.rendition_share([(T0, a), (T0 + 1, b)], "540p", T0 + 1.5, T0 + 3)
    assert share == pytest.approx((3 + 4 + 2) / (4 + 4 + 2 + 2))
    assert hosts.rendition_share([(T0, a)], "540p", T0 + 10, T0 + 20) is None  # nothing played then
    assert hosts.rendition_share([(T0, a)], None, T0, T0 + 3) is None


def test_shares_by_window_split_the_span_and_the_last_window_ends_with_it() -> None:
    a = {"series": played_rows(*((t, {"234p": 1.0}) for t in range(1, 5)),
                               *((t, {"540p": 1.0}) for t in range(5, 8)))}  # fmt: skip
    assert hosts.shares_by_window([(T0, a)], "540p", T0, T0 + 7, 3.0) == [0.0, pytest.approx(2 / 3), 1.0]
    assert hosts.shares_by_window([(T0, a)], "540p", T0, T0 + 6, 3.0) == [0.0, pytest.approx(2 / 3)]
    assert hosts.shares_by_window([(T0, a)], "540p", T0 + 5, T0 + 5, 3.0) == []


def test_the_top_label_is_the_highest_bitrate_played() -> None:
    def report(*renditions: tuple[str, int]) -> dict[str, Any]:
        return {"viewers": {"renditions": [{"label": label, "bitrate": rate} for label, rate in renditions]}}

    assert (
        hosts.top_label([report(("234p", 145_000), ("360p", 365_000)), report(("540p", 2_000_000))]) == "540p"
    )
    assert hosts.top_label([report()]) is None


def test_scaled_out_is_when_the_last_new_edge_became_active() -> None:
    edges = [{"edge": "edge-2", "active": T0 + 4.0}, {"edge": "edge-3", "active": T0 + 6.5},
             {"edge": "edge-4", "active": None}]  # fmt: skip
    assert hosts.scaled_out_at(edges) == T0 + 6.5
    assert hosts.scaled_out_at([{"edge": "edge-2", "active": None}]) is None
    assert hosts.scaled_out_at([]) is None


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(T0 + t, dt.UTC).isoformat()


def load_report(
    wall: float, series: list[dict[str, Any]], renditions: list[tuple[str, int]]
) -> dict[str, Any]:
    """A load-test report with what ``summarize`` reads."""
    return {
        "wall_s": wall,
        "series": series,
        "viewers": {"sessions": 10, "sessions_failed": 0, "played_s": 100.0, "top_rendition_share": 0.3,
                    "rebuffer_s": 0.0, "startup_s": {"p95": 1.0},
                    "renditions": [{"label": label, "bitrate": rate} for label, rate in renditions]},
        "requests": {"errors": 0, "errors_by_kind": {}, "served_by": {}},
        "generator": {"cpu_mean": 0.2, "cpu_max": 0.4, "saturated_s": 0, "starved_s": 0},
    }  # fmt: skip


def test_the_crowd_top_share_once_scaled_out_counts_the_seconds_after_the_new_edges_are_active() -> None:
    ladder = [("234p", 145_000), ("540p", 2_000_000)]
    # The crowd climbs: 234p only until its new edge is active at T0 + 5, mostly 540p after.
    crowd = played_rows(*((t, {"234p": 4.0}) for t in range(1, 6)),
                        *((t, {"234p": 1.0, "540p": 3.0}) for t in range(6, 11)))  # fmt: skip
    calm = played_rows(*((t, {"234p": 2.0}) for t in range(1, 21)))
    events = [{"time": iso(2.0), "kind": "scale-out", "edge": None, "count": 2, "reason": "x"},
              {"time": iso(2.5), "kind": "edge requested", "edge": "edge-2"},
              {"time": iso(3.0), "kind": "edge started", "edge": "edge-2", "node": "198.51.100.3"},
              {"time": iso(5.0), "kind": "edge active", "edge": "edge-2"}]  # fmt: skip
    polls = [(T0 + t / 2, {"edges": [{"id": "edge-1", "state": "active", "load_mbit": 10.0, "load_rps": 5},
                                     {"id": "edge-2", "state": "active" if t >= 10 else "starting",
                                      "load_mbit": 5.0, "load_rps": 2}],
                           "events": events}) for t in range(0, 21)]  # fmt: skip
    outcome = hosts.Outcome("autoscaled", "autoscaled, 1–2 edges", "surge up", 2, polls=polls,
                            calm=load_report(20.0, calm, [("234p", 145_000)]),
                            crowd=[load_report(10.0, crowd, ladder)],
                            starts={"autoscaled-calm": T0 - 10, "autoscaled-crowd-0": T0})  # fmt: skip
    args = argparse.Namespace(ramp=2.0, edge_capacity="2000rps,180mbit", players=10, duration=10.0,
                              calm_ramp=2.0)  # fmt: skip
    summary = hosts.summarize(outcome, args)
    assert summary["once_scaled_from_s"] == 5.0
    assert summary["top_share_once_scaled"] == pytest.approx(15 / 20)  # rows 6..10 only
    assert summary["top_share_by_minute"] == [pytest.approx(15 / 20)]
    assert summary["phases"]["crowd"]["top_share"] == 0.3  # the whole sessions', as the reports say
    assert [t.met for t in hosts.targets(summary, None) if "top rendition" in t.name] == [False]


def test_a_promoted_edge_is_timed_from_its_promotion_and_its_activity_since() -> None:
    def at(seconds: float, kind: str, **extra: Any) -> dict[str, Any]:
        when = dt.datetime.fromtimestamp(T0 + seconds, dt.UTC).isoformat()
        return {"time": when, "kind": kind, "edge": "edge-2"} | extra

    events = [at(0, "edge requested", standby=True), at(1, "edge started", node="198.51.100.4"),
              at(2, "edge active"),  # as a new edge before it stood by: not this promotion's
              at(30, "edge promoted", node="198.51.100.4"), at(32, "edge active")]  # fmt: skip
    served = {"edge-2": [(T0 + 31.0, 5), (T0 + 32.5, 5), (T0 + 32.6, 9)]}
    started = hosts.first_event_time(events, "edge started", "edge-2")
    timed = hosts.edge_timeline(events[3], events, served, T0 + 30, started)
    assert timed == {"edge": "edge-2", "node": "198.51.100.4", "requested": T0 + 30, "started": T0 + 1,
                     "active": T0 + 32, "first_answer": T0 + 32.6}  # fmt: skip
    assert hosts.first_event_time(events, "edge cancelled", "edge-2") is None
