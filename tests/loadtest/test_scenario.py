"""Arrival schedules of the two profiles."""

from __future__ import annotations

import pytest

from loadtest.scenario import BACKGROUND_RAMP, Arrival, flash, schedule, steady


def test_steady_ramps_linearly_and_deals_titles_round_robin() -> None:
    assert steady(4, 2.0, ["a", "b"]) == [
        Arrival(0.0, "a"),
        Arrival(0.5, "b"),
        Arrival(1.0, "a"),
        Arrival(1.5, "b"),
    ]
    assert [a.at for a in steady(3, 0.0, ["a"])] == [0.0, 0.0, 0.0]


def test_flash_puts_the_background_first_then_the_crowd_on_one_title() -> None:
    arrivals = flash(4, 2.0, "hot", background=2, background_urls=["x", "y"])
    assert arrivals[:2] == [Arrival(0.0, "x", True), Arrival(BACKGROUND_RAMP / 2, "y", True)]
    crowd = arrivals[2:]
    assert [a.url for a in crowd] == ["hot"] * 4
    assert [a.at for a in crowd] == [BACKGROUND_RAMP + t for t in (0.0, 0.5, 1.0, 1.5)]
    assert [a.at for a in flash(2, 1.0, "hot", 0, [])] == [0.0, 0.5]
    with pytest.raises(ValueError):
        flash(2, 1.0, "hot", 1, [])


def test_schedule_picks_the_profile() -> None:
    assert {a.url for a in schedule("steady", 4, 1.0, "u", ["t"], 0)} == {"u", "t"}
    assert [a.background for a in schedule("flash", 2, 1.0, "u", ["t"], 1)] == [True, False, False]
