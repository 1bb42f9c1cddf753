"""The decisions of ``surge loadtest --ray-address`` (loadtest/ray_generators.py), values in, values out.
The run itself, on real hosts: tests/cluster/test_ray_loadtest.py."""

from __future__ import annotations

import pytest

pytest.importorskip("ray", reason="the ray package is not installed (pip install 'surge[ray]')")

from loadtest.ray_generators import Sent, plan_generators, ready_keys
from media.errors import SurgeError


@pytest.mark.parametrize(
    ("sent", "emitted", "ready"),
    [
        ([([1, 2, 3], True), ([1, 2], True)], 0, [1, 2]),  # the slower one holds the rest back
        ([([1, 2, 3], True), ([1, 2], True)], 2, []),
        ([([1, 2, 3], True), ([], True)], 0, []),  # one has sent nothing yet
        ([([1, 2, 3], True), ([1, 2], False)], 0, [1, 2, 3]),  # done (or lost): it holds nothing back
        ([([1, 2, 3], False), ([1, 2, 5], False)], 2, [3, 5]),  # all done: everything left
        ([([1, 3, 4], True), ([1, 2, 3], True)], 1, [2, 3]),  # a skipped second (a late loop)
        ([], 0, []),
    ],
)
def test_a_second_is_shown_once_every_running_generator_has_sent_it(
    sent: list[Sent], emitted: int, ready: list[int]
) -> None:
    assert ready_keys(sent, emitted) == ready


@pytest.mark.parametrize(
    ("units", "wanted", "count"), [(3.0, None, 3), (3.0, 2, 2), (1.0, 1, 1), (2.5, None, 2)]
)
def test_generators_are_the_units_of_the_cluster_or_as_many_as_asked(
    units: float, wanted: int | None, count: int
) -> None:
    assert plan_generators(units, wanted) == count


@pytest.mark.parametrize(
    ("units", "wanted", "message"),
    [
        (0.0, None, "no machine of the Ray cluster offers surge_loadgen units"),
        (0.5, None, "ray start --address HEAD --resources"),
        (2.0, 3, "--generators 3: the cluster offers 2 surge_loadgen unit(s)"),
        (2.0, 0, "--generators 0"),
    ],
)
def test_too_few_units_is_a_clear_error(units: float, wanted: int | None, message: str) -> None:
    with pytest.raises(SurgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_generators(units, wanted)
