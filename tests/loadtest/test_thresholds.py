"""``--fail-on`` thresholds: parsing, units and errors, evaluation against a report (pure, tables)."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.thresholds import (
    Broken,
    Passed,
    Threshold,
    Unmeasured,
    broken,
    evaluate,
    parse,
    verdict_json,
    verdict_line,
)
from media.errors import InvalidInput


def latency(p50: float | None, p95: float | None, p99: float | None) -> dict[str, Any]:
    return {"latency_ms": {"p50": p50, "p95": p95, "p99": p99, "max": p99, "mean": p50}}


REPORT: dict[str, Any] = {
    "viewers": {
        "rebuffer_ratio": 0.02,
        "sessions_failed": 0,
        "avg_bitrate_bps": 800_000,
        "startup_s": {"p50": 0.4, "p95": 1.5, "max": 2.5, "count": 10},
    },
    "requests": {
        "total": 200,
        "errors": 1,
        "by_type": {"video": latency(20.0, 90.0, 700.0), "playlist": latency(2.0, 5.0, 900.0)},
    },
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rebuffer_ratio>0.01", [("rebuffer_ratio", ">", 0.01)]),
        ("rebuffer_ratio>1%", [("rebuffer_ratio", ">", 0.01)]),
        ("startup_p95>3s", [("startup_p95", ">", 3.0)]),
        ("startup_p95 >= 1500ms", [("startup_p95", ">=", 1.5)]),
        ("p99_ms>800", [("p99_ms", ">", 800.0)]),
        ("p99_ms>0.8s", [("p99_ms", ">", 800.0)]),
        ("avg_bitrate<1.5M", [("avg_bitrate", "<", 1_500_000.0)]),
        ("errors==0", [("errors", "==", 0.0)]),
        (
            "rebuffer_ratio>0.01,error_rate>0,startup_p95>3s,p99_ms>800",
            [
                ("rebuffer_ratio", ">", 0.01),
                ("error_rate", ">", 0.0),
                ("startup_p95", ">", 3.0),
                ("p99_ms", ">", 800.0),
            ],
        ),
    ],
)
def test_expressions_parse_to_limits_in_the_metric_unit(
    text: str, expected: list[tuple[str, str, float]]
) -> None:
    thresholds = parse(text)
    assert [(t.metric, t.op) for t in thresholds] == [(metric, op) for metric, op, _ in expected]
    assert [t.limit for t in thresholds] == pytest.approx([limit for _, _, limit in expected])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p98_ms>800", "unknown metric 'p98_ms'"),
        ("rebuffer_ratio", "is not metric OP number"),
        ("p99_ms=>800", "is not metric OP number"),
        ("p99_ms>fast", "is not metric OP number"),
        ("startup_p95>3h", "startup_p95 takes units 's', 'ms', not 'h'"),
        ("errors>1%", "errors takes units none, not '%'"),
        ("error_rate>0,,p99_ms>1", "an empty expression"),
        ("", "an empty expression"),
    ],
)
def test_bad_expressions_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_verdicts_read_the_report() -> None:
    verdicts = evaluate(
        parse("rebuffer_ratio>0.01,error_rate>0.01,startup_p95>3s,p99_ms>800,p50_ms>=20,avg_bitrate<1M"),
        REPORT,
    )
    assert [type(v) for v in verdicts] == [Broken, Passed, Passed, Broken, Broken, Broken]
    values = [v.value for v in verdicts if isinstance(v, Passed | Broken)]
    assert values == pytest.approx([0.02, 0.005, 1.5, 900.0, 20.0, 800_000])  # p99: the worst type's
    assert broken(verdicts) == 4
    assert broken(evaluate(parse("error_rate>0.01,startup_max>2.5s"), REPORT)) == 0
    assert broken(()) == 0


def test_a_value_the_run_never_produced_breaks_the_gate() -> None:
    empty = {
        "viewers": {"startup_s": {"p50": None, "p95": None, "max": None, "count": 0}},
        "requests": {"total": 0, "errors": 0, "by_type": {}},
    }
    verdicts = evaluate(parse("startup_p95>3s,error_rate>0,p99_ms>800"), empty)
    assert all(isinstance(v, Unmeasured) for v in verdicts) and broken(verdicts) == 3
    assert verdict_json(verdicts[0])["value"] is None and verdict_json(verdicts[0])["broken"] is True
    assert "not measured" in verdict_line(verdicts[0])


def test_lines_and_json_show_the_measured_value() -> None:
    threshold = Threshold("startup_p95", ">", 3.0, "startup_p95>3s")
    assert verdict_line(Passed(threshold, 1.5)) == "  ok      startup_p95>3s  (measured 1.500 s)"
    assert verdict_line(Broken(threshold, 4.0)).startswith("  BROKEN  startup_p95>3s")
    assert verdict_json(Broken(threshold, 4.0)) == {
        "threshold": "startup_p95>3s", "metric": "startup_p95", "op": ">", "limit": 3.0, "value": 4.0,
        "broken": True,
    }  # fmt: skip
