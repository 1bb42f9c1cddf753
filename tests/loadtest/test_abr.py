"""The estimator and the rung chooser, as tables: no sockets, no clock."""

from __future__ import annotations

import math

import pytest

from loadtest.abr import AbrConfig, BandwidthEstimator, Ewma, choose_rung

LADDER = (300_000, 600_000, 1_200_000, 2_400_000)


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


@pytest.mark.parametrize(
    ("current", "estimate", "buffer", "playing", "expected", "why"),
    [
        (None, 500_000, 0.0, False, 0, "start: 600k needs 600/0.7 = 857k"),
        (None, 900_000, 0.0, False, 0, "start: 600k is sustainable but 6 s of it takes 5.7 s > 4 s"),
        (None, 1_500_000, 0.0, False, 1, "start: 6 s of 600k in 3.4 s; 1.2M needs 1714k"),
        (1, 1_000_000, 20.0, True, 1, "stay: 1.2M needs 1714k to go up"),
        (1, 1_800_000, 20.0, True, 2, "up: 1.8M x 0.7 = 1.26M covers 1.2M"),
        (2, 1_300_000, 20.0, True, 2, "stay: 1.3M x 0.95 covers 1.2M"),
        (2, 1_200_000, 20.0, True, 1, "down: 1.2M x 0.95 < 1.2M"),
        (3, 10_000_000, 0.5, True, 1, "buffer low: only 600k x 6 s arrives within 0.5 s"),
        (3, 10_000_000, 0.0, False, 3, "stalled: 4 s may be spent fetching"),
        (3, 100_000, 30.0, True, 0, "nothing sustainable: the lowest rung"),
    ],
)
def test_choose_rung(
    current: int | None, estimate: float, buffer: float, playing: bool, expected: int, why: str
) -> None:
    assert choose_rung(LADDER, current, estimate, buffer, 6.0, playing=playing) == expected, why


def test_choose_rung_skips_rungs_not_allowed() -> None:
    for allowed, expected in (([True, True, True, False], 2), ([True, True, False, False], 1)):
        assert choose_rung(LADDER, 3, 3_000_000, 30.0, 6.0, playing=True, allowed=allowed) == expected
    assert choose_rung(LADDER, 3, 100, 30.0, 6.0, playing=True, allowed=[False, True, True, True]) == 1
    assert choose_rung(LADDER, 3, 100, 30.0, 6.0, playing=True, allowed=[False] * 4) == 0


def test_abr_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        AbrConfig(up_factor=0)
    with pytest.raises(ValueError):
        AbrConfig(max_starvation=-1)
