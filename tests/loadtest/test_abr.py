"""The estimator and the rung chooser, as tables: no sockets, no clock."""

from __future__ import annotations

import math

import pytest

from loadtest.abr import (
    AbrConfig,
    BandwidthEstimator,
    Budget,
    Ewma,
    KeepLoading,
    Level,
    Loading,
    SwitchDown,
    abandon_rule,
    buffer_goal,
    find_best,
    first_level,
    lowest_switch,
    next_level,
)

# surge's default ladder as the chooser sees it: peak (BANDWIDTH), average, 6 s segments once loaded.
PEAKS = (200_000, 450_000, 900_000, 2_400_000, 3_600_000)
AVERAGES = (145_000, 365_000, 730_000, 2_000_000, 3_000_000)
LADDER = tuple(Level(p, a, 6.0) for p, a in zip(PEAKS, AVERAGES, strict=True))
UNLOADED = tuple(Level(p, a) for p, a in zip(PEAKS, AVERAGES, strict=True))
TTFB = 0.1


def test_ewma_of_a_constant_is_that_constant_from_the_first_sample() -> None:
    ewma = Ewma(half_life=3)
    for _ in range(5):
        ewma.sample(1.0, 800.0)
        assert ewma.estimate == pytest.approx(800.0)


def test_ewma_weights_by_duration_with_the_given_half_life() -> None:
    ewma = Ewma(half_life=2)
    ewma.sample(100.0, 1000.0)  # long enough to forget the zero start
    ewma.sample(2.0, 0.0)  # one half-life at 0 halves the estimate
    assert ewma.estimate == pytest.approx(500.0, rel=1e-6)


def test_estimator_default_until_the_first_sample_then_min_of_fast_and_slow() -> None:
    estimator = BandwidthEstimator(default=123.0)
    assert estimator.estimate() == 123.0
    estimator.sample(10.0, 10_000_000 // 8 * 10)  # 10 s at 10 Mbit/s
    assert estimator.estimate() == pytest.approx(10_000_000)
    estimator.sample(1.0, 1_000_000 // 8)  # a drop to 1 Mbit/s: the fast average reacts first
    fast, slow = Ewma(3.0), Ewma(9.0)
    for ewma in (fast, slow):
        ewma.sample(10.0, 10_000_000)
        ewma.sample(1.0, 1_000_000)
    assert estimator.estimate() == pytest.approx(min(fast.estimate, slow.estimate))
    assert estimator.estimate() == pytest.approx(fast.estimate)


def test_estimator_floors_the_duration_of_instant_samples() -> None:
    estimator = BandwidthEstimator(min_seconds=0.05)
    estimator.sample(0.0, 1000)  # 8000 bits "in no time" count as 8000 bits in 50 ms
    assert estimator.estimate() == pytest.approx(160_000)
    assert math.isfinite(estimator.estimate())


def test_estimator_ttfb_defaults_to_100_ms_then_follows_samples() -> None:
    estimator = BandwidthEstimator()
    assert estimator.ttfb() == pytest.approx(0.1)
    for _ in range(20):
        estimator.sample_ttfb(0.03)
    assert estimator.ttfb() == pytest.approx(0.03)


@pytest.mark.parametrize(
    ("estimate", "expected", "why"),
    [
        (500_000, 1, "hls.js's default 500k covers 450k in full (factor 1 at the start)"),
        (100_000, 0, "below every rung: the lowest one's peak stands in for the estimate"),
        (1_000_000, 2, "900k fits, 2.4M does not"),
        (50_000_000, 4, "the top"),
    ],
)
def test_first_level_is_the_highest_peak_the_estimate_covers(
    estimate: float, expected: int, why: str
) -> None:
    assert first_level(UNLOADED, estimate, AbrConfig()) == expected, why


def choose(current: int, estimate: float, buffer: float, levels: tuple[Level, ...] = LADDER) -> int:
    return next_level(levels, current, estimate, buffer, fragment=6.0, ttfb=TTFB, playlist=0.05)


@pytest.mark.parametrize(
    ("current", "estimate", "buffer", "expected", "why"),
    [
        (1, 1_000_000, 12.0, 1, "stay: 1M x 0.7 < 730k, rung 2's average (two segments buffered)"),
        (1, 1_050_000, 12.0, 2, "up: 1050k x 0.7 = 735k covers it"),
        (1, 1_250_000, 11.0, 1, "stay: under two segments buffered, rung 2's 900k peak counts"),
        (3, 2_600_000, 6.0, 3, "stay: 2.6M x 0.95 = 2.47M covers the 2.4M peak"),
        (3, 2_300_000, 6.0, 2, "down: 2.3M x 0.95 < the 2.4M peak with under two segments buffered"),
        (3, 2_300_000, 20.0, 3, "stay: two segments buffered, the 2M average is what counts"),
        (4, 5_300_000, 20.0, 4, "stay: 5.3M x 0.95 covers the 3M average; 6 s of it loads in 3.6 s"),
        (2, 1_000_000, 0.5, 1, "none loads within 0.5 s; with 4 s of stall, 450k does (2.9 s), 900k not"),
        (4, 200_000, 0.0, 0, "nothing loads in time: the lowest rung, cheaper than the current one"),
    ],
)
def test_next_level(current: int, estimate: float, buffer: float, expected: int, why: str) -> None:
    assert choose(current, estimate, buffer) == expected, why


def test_next_level_charges_a_playlist_not_loaded_yet_and_skips_rungs_not_allowed() -> None:
    budget = Budget(bandwidth=1_300_000, buffer=4.5, max_starvation=0, down_factor=0.95, up_factor=0.7)
    # 6 s of 900k at 910k takes 5.93 s: over the 4.5 s buffer, so the current rung 1 it is.
    assert find_best(LADDER, budget, base=1, top=4, fragment=6.0, ttfb=TTFB, playlist=0.0) == 1
    wide = Budget(bandwidth=1_300_000, buffer=6.05, max_starvation=0, down_factor=0.95, up_factor=0.7)
    assert find_best(LADDER, wide, base=1, top=4, fragment=6.0, ttfb=TTFB, playlist=0.0) == 2
    # Not loaded yet: its playlist costs a TTFB and a load time more, and 6.05 s no longer suffices.
    levels = (*LADDER[:2], Level(900_000, 730_000), *LADDER[3:])
    assert find_best(levels, wide, base=1, top=4, fragment=6.0, ttfb=TTFB, playlist=0.2) == 1
    allowed = [True, True, False, True, True]
    assert next_level(LADDER, 1, 1_300_000, 12.0, fragment=6.0, ttfb=TTFB, playlist=0, allowed=allowed) == 1


@pytest.mark.parametrize(
    ("peak", "expected"),
    [(3_600_000, 8 * 60e6 / 3_600_000), (200_000, 600.0), (100_000_000, 30.0)],
)
def test_buffer_goal_follows_max_buffer_size_within_its_limits(peak: float, expected: float) -> None:
    assert buffer_goal(peak, 30.0, AbrConfig()) == pytest.approx(expected)


def loading(rung: int, elapsed: float, loaded: int, ttfb: float | None = 0.05) -> Loading:
    return Loading(rung=rung, duration=6.0, elapsed=elapsed, ttfb=ttfb, loaded=loaded)


def abandon(state: Loading, buffer: float, estimate: float = 3_000_000) -> object:
    return abandon_rule(LADDER, state, buffer=buffer, estimate=estimate, ttfb=TTFB, playlist=0.05)


def test_abandon_waits_half_a_segment_and_spares_the_lowest_rungs() -> None:
    slow = 100_000 // 8  # bytes per second at 100 kbit/s
    assert abandon(loading(4, 2.9, 3 * slow), buffer=1.0) == KeepLoading()  # before half of 6 s
    assert abandon(loading(0, 5.0, 5 * slow), buffer=1.0) == KeepLoading()  # the lowest rung
    assert abandon(loading(1, 5.0, 5 * slow), buffer=1.0) == KeepLoading()  # nothing between it and 0


def test_abandon_keeps_a_segment_that_arrives_before_the_buffer_runs_out() -> None:
    rate = 3_000_000 // 8  # 3 Mbit/s: 4.5 s of 2M-average segment left after 3.1 s... of 6 s at 2M
    state = loading(3, 3.1, int(3.05 * rate))
    # 1.5 MB expected, 1.14 MB loaded: 1 s to go, with 5 s buffered.
    assert abandon(state, buffer=5.0) == KeepLoading()


def test_abandon_switches_down_and_aborts_when_the_rest_takes_over_twice_the_replacement() -> None:
    rate = 800_000 // 8  # the link fell to 800 kbit/s under a 2M-average rung
    state = loading(3, 3.5, int(3.45 * rate))
    decision = abandon(state, buffer=7.0)
    # Left: 1.5 MB - 345 kB at 100 kB/s = 11.6 s > 7 s buffered. At 800k, 6 s of 450k takes 3.5 s:
    # rung 1 (900k's 6.9 s is over a segment's duration); 11.6 > 2 x 3.5: the request is dropped at once.
    # hls.js abortAndSwitch runs then: the player goes lower still (``lowest_switch``).
    assert decision == SwitchDown(rung=1, lowest=True, sample=True, reset_to=450_000)
    # With 6 s buffered, a segment of rung 1 at its own bitrate (6.1 s) no longer fits: the lowest rung,
    # below which there is nothing to go to.
    assert abandon(state, buffer=6.0) == SwitchDown(rung=0, lowest=False, sample=True, reset_to=450_000)


def test_abandon_close_to_the_replacement_keeps_the_rung_it_found() -> None:
    rate = 1_500_000 // 8
    state = loading(4, 5.5, int(5.45 * rate))
    decision = abandon(state, buffer=6.5)
    # Left: 2.25 MB - 1.02 MB at 187.5 kB/s = 6.55 s > 6.5 s; rung 2 (900k) loads in 3.7 s; 6.55 < 2 x 3.7.
    assert decision == SwitchDown(rung=2, lowest=False, sample=True, reset_to=900_000)


def test_abandon_with_no_byte_yet_uses_the_estimate_and_does_not_sample() -> None:
    decision = abandon(loading(4, 3.5, 0, ttfb=None), buffer=3.0, estimate=1_000_000)
    # 2.25 MB at 1 Mbit/s: 18 s; rung 1 loads 6 s of 450k in 2.8 s < 3 s buffered, but not at 450k itself.
    assert decision == SwitchDown(rung=0, lowest=False, sample=False, reset_to=450_000)


def test_after_an_abort_the_player_drops_to_the_lowest_rung_that_fits() -> None:
    assert lowest_switch(LADDER, 3, 2.0, fragment=6.0, ttfb=TTFB, playlist=0.05) == 0
    assert lowest_switch(LADDER, 3, 20.0, fragment=6.0, ttfb=TTFB, playlist=0.05) == 0  # 200k is the bar


def test_abr_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        AbrConfig(up_factor=0)
    with pytest.raises(ValueError):
        AbrConfig(max_starvation=-1)
    with pytest.raises(ValueError):
        AbrConfig(fast_half_life=0)
    with pytest.raises(ValueError):
        AbrConfig(max_buffer_size=0)
