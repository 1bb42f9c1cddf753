"""The fidelity bench's judgement: runs pooled per player and schedule, then compared with the targets."""

from __future__ import annotations

import pytest

from tests.bench.loading import load_bench

fidelity = load_bench("abr-fidelity/run.py", "abr_fidelity_run")


def result(played: dict[str, float], switches: int = 1, stall: float = 0.0, startup: float = 0.8) -> dict:
    return {
        "player": "p",
        "played": played,
        "switches": switches,
        "first_switch": 6.0 if switches else None,
        "stalls": 1 if stall else 0,
        "stall_time": stall,
        "startup": startup,
    }


def test_pooled_takes_each_renditions_mean_share_and_the_mean_counts() -> None:
    pooled = fidelity.pooled(
        [
            result({"0": 6, "2": 54}, switches=1, startup=0.6),
            result({"0": 6, "1": 6, "2": 48}, switches=2, stall=3),
        ]
    )
    assert pooled["played"] == pytest.approx({"0": 0.1, "1": 0.05, "2": 0.85})
    assert (pooled["switches"], pooled["stalls"], pooled["stall_time"]) == (1.5, 0.5, 1.5)
    assert pooled["startup"] == pytest.approx(0.7)
    assert pooled["runs"] == 2


def test_a_segment_apart_in_one_of_two_runs_is_judged_on_the_means() -> None:
    # hls.js took one segment on 360p in its second run, the viewer in its first: each run alone is 20
    # points apart, the schedule as played by each player is not.
    rows = [
        ("steady, run 1", result({"0": 6, "2": 54}), result({"0": 6, "1": 6, "2": 48}, switches=2), None),
        ("steady, run 2", result({"0": 6, "1": 6, "2": 48}, switches=2), result({"0": 6, "2": 54}), None),
    ]
    rows = [(name, a, b, fidelity.compare(a, b)) for name, a, b, _ in rows]
    assert [row[3].within for row in rows] == [False, False]
    [(name, _, _, judged)] = fidelity.by_schedule(rows)
    assert name == "steady"
    assert judged.share_points == pytest.approx(0.0)
    assert judged.within


def test_a_difference_every_run_shows_stays_outside_the_targets() -> None:
    rows = [
        (f"step, run {run}", hlsjs, surge, fidelity.compare(hlsjs, surge))
        for run, hlsjs, surge in (
            (1, result({"0": 12, "3": 48}), result({"0": 12, "2": 12, "3": 36})),
            (2, result({"0": 12, "3": 48}, stall=0.5), result({"0": 12, "2": 6, "3": 42}, stall=2.0)),
        )
    ]
    [(_, _, _, judged)] = fidelity.by_schedule(rows)
    assert judged.share_points == pytest.approx(30.0)
    assert judged.stall_s == pytest.approx(0.75)
    assert not judged.within


def test_the_document_judges_schedules_and_lists_every_run() -> None:
    rows = [
        (f"steady, run {run}", hlsjs, surge, fidelity.compare(hlsjs, surge))
        for run, hlsjs, surge in (
            (1, result({"0": 6, "2": 54}), result({"0": 6, "1": 6, "2": 48}, switches=2)),
            (2, result({"0": 6, "1": 6, "2": 48}, switches=2), result({"0": 6, "2": 54})),
        )
    ]
    text = fidelity.document(["python bench/abr-fidelity/run.py --repeat 2"], rows, 30.0)
    assert "Within targets: 1 of 1 schedules" in text
    assert "a 30 ms round trip" in text
    assert "| steady | difference | 0.0 points | +0 |" in text
    assert "| steady, run 1 | difference | 20.0 points | +1 |" in text
    assert "| steady | 20.0 | +1 |" in text  # hls.js against itself


def test_saved_runs_from_several_files_are_numbered_on_and_pooled() -> None:
    command = "python bench/abr-fidelity/run.py --repeat 1"
    one_segment_on_360p = result({"0": 6, "1": 6, "2": 48}, switches=2)
    straight_to_432p = result({"0": 6, "2": 54})
    steady = "steady 2.5 Mbit/s"
    first = {"command": command, "rtt_ms": 30.0, "rows": [{"schedule": steady, "hlsjs": straight_to_432p,
                                           "surge": one_segment_on_360p}]}  # fmt: skip
    old_outage = {"schedule": "outage 5 s at 20 s (2.5 Mbit/s)", "hlsjs": straight_to_432p,
                  "surge": straight_to_432p}  # fmt: skip
    second = {"command": command, "rtt_ms": 30.0, "rows": [{"schedule": steady, "hlsjs": one_segment_on_360p,
                                            "surge": straight_to_432p}, old_outage]}  # fmt: skip
    commands, rows, rtt_ms = fidelity.saved_runs([first, second])
    assert commands == [command, command] and rtt_ms == 30.0
    # The outage of an older harness (at 20 s, not 18-24 s) is not judged as today's.
    assert [label for label, *_ in rows] == [f"{steady}, run 1", f"{steady}, run 2"]
    text = fidelity.document(commands, rows, rtt_ms)
    assert text.count(command) == 1 and f"`{command}` (2 times)" in text
    assert "Judged on each schedule's 2 runs per player pooled" in text
    assert f"| {steady} | difference | 0.0 points | +0 |" in text
    # A schedule run more often than the others says so.
    outage = {"schedule": "outage 5 s at 18-24 s (2.5 Mbit/s)", "hlsjs": straight_to_432p,
              "surge": straight_to_432p}  # fmt: skip
    third = {"command": command, "rtt_ms": 30.0, "rows": [outage, outage, outage]}
    text = fidelity.document(*fidelity.saved_runs([first, second, third]))
    assert (
        "Judged on each schedule's 2 runs per player (outage 5 s at 18-24 s (2.5 Mbit/s): 3) pooled" in text
    )
    # Runs over links of another round trip (files from before it was kept had none) are not pooled.
    with pytest.raises(ValueError, match="different round trips"):
        fidelity.saved_runs([first, {"command": command, "rows": [outage]}])


def test_outages_fall_all_over_a_segment_and_each_run_has_its_own() -> None:
    starts = [fidelity.outage_start(run) for run in range(1, 9)]
    assert all(18.0 <= start < 24.0 for start in starts)
    assert len(set(starts)) == 8
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert max(gaps) < 1.5 and min(sorted(starts)) < 19.0 and max(starts) > 23.0
    steps = fidelity.SCHEDULES["outage 5 s at 18-24 s (2.5 Mbit/s)"](3)
    assert steps == [(0.0, "2500kbit"), (starts[2], None), (starts[2] + 5.0, "2500kbit")]
