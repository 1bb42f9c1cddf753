"""Pass/fail thresholds of a load test (``--fail-on``), as k6's thresholds gate a CI pipeline.

Rules of this file: no I/O. ``parse`` turns ``'rebuffer_ratio>0.01,startup_p95>3s'`` into thresholds,
each a condition that *breaks* the run when true; ``evaluate`` reads the measured values from a report
(the JSON of ``loadtest.report``) and returns one closed verdict per threshold.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from media.errors import InvalidInput

Unit = Literal["ratio", "count", "seconds", "ms", "bps"]
Op = Literal[">", ">=", "<", "<=", "=="]
_OP_NAMES: dict[str, Op] = {op: op for op in get_args(Op)}  # as written -> typed

_OPS: dict[Op, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


def _viewers(key: str) -> Callable[[Mapping[str, Any]], float | None]:
    return lambda report: report["viewers"][key]


def _startup(key: str) -> Callable[[Mapping[str, Any]], float | None]:
    return lambda report: report["viewers"]["startup_s"][key]


def _error_rate(report: Mapping[str, Any]) -> float | None:
    requests = report["requests"]
    return requests["errors"] / requests["total"] if requests["total"] else None


def _worst_latency(key: str) -> Callable[[Mapping[str, Any]], float | None]:
    """The highest per-type latency percentile: an upper bound of the same percentile over all requests
    (a mixture's quantile never exceeds the largest of its parts')."""

    def read(report: Mapping[str, Any]) -> float | None:
        values = [row["latency_ms"][key] for row in report["requests"]["by_type"].values()]
        return max((v for v in values if v is not None), default=None)

    return read


@dataclass(frozen=True)
class Metric:
    unit: Unit
    read: Callable[[Mapping[str, Any]], float | None]
    help: str


METRICS: dict[str, Metric] = {
    "rebuffer_ratio": Metric("ratio", _viewers("rebuffer_ratio"), "stalled / (stalled + playing)"),
    "error_rate": Metric("ratio", _error_rate, "failed requests / requests"),
    "errors": Metric("count", lambda r: r["requests"]["errors"], "failed requests"),
    "sessions_failed": Metric("count", _viewers("sessions_failed"), "sessions given up"),
    "startup_p50": Metric("seconds", _startup("p50"), "median time to first frame"),
    "startup_p95": Metric("seconds", _startup("p95"), "95th percentile time to first frame"),
    "startup_max": Metric("seconds", _startup("max"), "longest time to first frame"),
    "p50_ms": Metric("ms", _worst_latency("p50"), "median request latency (worst request type)"),
    "p95_ms": Metric("ms", _worst_latency("p95"), "95th percentile latency (worst request type)"),
    "p99_ms": Metric("ms", _worst_latency("p99"), "99th percentile latency (worst request type)"),
    "avg_bitrate": Metric("bps", _viewers("avg_bitrate_bps"), "time-weighted bitrate played"),
}

_NUMBER = r"[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?"
_EXPRESSION = re.compile(rf"^\s*([a-z0-9_]+)\s*(>=|<=|==|>|<)\s*({_NUMBER})\s*([a-z%]*)\s*$")
# Suffix -> factor to the metric's unit, per unit; "" is the metric's own unit.
_SUFFIXES: dict[Unit, dict[str, float]] = {
    "ratio": {"": 1.0, "%": 0.01},
    "count": {"": 1.0},
    "seconds": {"": 1.0, "s": 1.0, "ms": 0.001},
    "ms": {"": 1.0, "ms": 1.0, "s": 1000.0},
    "bps": {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9},
}


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: Op
    limit: float  # in the metric's unit
    text: str  # as written, for messages

    def as_json(self) -> dict[str, Any]:
        return {"threshold": self.text, "metric": self.metric, "op": self.op, "limit": self.limit}


def parse(text: str) -> tuple[Threshold, ...]:
    """``metric OP number[unit]`` expressions separated by commas; ``InvalidInput`` names the bad one."""
    thresholds: list[Threshold] = []
    for part in text.split(","):
        expression = part.strip()
        if not expression:
            raise InvalidInput(f"--fail-on {text!r}: an empty expression (write metric>limit, ...)")
        match = _EXPRESSION.match(expression.lower())
        if match is None:
            raise InvalidInput(
                f"--fail-on: {expression!r} is not metric OP number (OP one of > >= < <= ==), e.g. p99_ms>800"
            )
        name, op, number, suffix = match.groups()
        metric = METRICS.get(name)
        if metric is None:
            raise InvalidInput(f"--fail-on: unknown metric {name!r} (known: {', '.join(METRICS)})")
        factors = _SUFFIXES[metric.unit]
        if suffix not in factors:
            units = ", ".join(repr(s) for s in factors if s) or "none"
            raise InvalidInput(f"--fail-on: {expression!r}: {name} takes units {units}, not {suffix!r}")
        thresholds.append(Threshold(name, _OP_NAMES[op], float(number) * factors[suffix], expression))
    return tuple(thresholds)


@dataclass(frozen=True)
class Passed:
    threshold: Threshold
    value: float


@dataclass(frozen=True)
class Broken:
    threshold: Threshold
    value: float


@dataclass(frozen=True)
class Unmeasured:
    """The run produced no value (no session started, no request of any type): counts as broken, since a
    gate that cannot see must not pass."""

    threshold: Threshold


Verdict = Passed | Broken | Unmeasured


def evaluate(thresholds: Sequence[Threshold], report: Mapping[str, Any]) -> tuple[Verdict, ...]:
    verdicts: list[Verdict] = []
    for threshold in thresholds:
        value = METRICS[threshold.metric].read(report)
        if value is None:
            verdicts.append(Unmeasured(threshold))
        elif _OPS[threshold.op](value, threshold.limit):
            verdicts.append(Broken(threshold, value))
        else:
            verdicts.append(Passed(threshold, value))
    return tuple(verdicts)


def broken(verdicts: Sequence[Verdict]) -> int:
    """How many thresholds the run broke (unmeasured ones included)."""
    return sum(not isinstance(v, Passed) for v in verdicts)


def _value_text(metric: str, value: float) -> str:
    match METRICS[metric].unit:
        case "ratio":
            return f"{value:.4g}"
        case "count":
            return f"{value:.0f}"
        case "seconds":
            return f"{value:.3f} s"
        case "ms":
            return f"{value:.1f} ms"
        case "bps":
            return f"{value:.0f} bit/s"


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    match verdict:
        case Passed(threshold, value):
            return {**threshold.as_json(), "value": value, "broken": False}
        case Broken(threshold, value):
            return {**threshold.as_json(), "value": value, "broken": True}
        case Unmeasured(threshold):
            return {**threshold.as_json(), "value": None, "broken": True}


def verdict_line(verdict: Verdict) -> str:
    match verdict:
        case Passed(threshold, value):
            return f"  ok      {threshold.text}  (measured {_value_text(threshold.metric, value)})"
        case Broken(threshold, value):
            return f"  BROKEN  {threshold.text}  (measured {_value_text(threshold.metric, value)})"
        case Unmeasured(threshold):
            return f"  BROKEN  {threshold.text}  (not measured: the run produced no value)"
