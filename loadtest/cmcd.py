"""Common Media Client Data (CTA-5004, CMCD v1): what a player tells the CDN about each request.

Rules of this file: values in, strings out. The same data goes either into one ``CMCD=`` query argument
or into the four ``CMCD-*`` headers (CTA-5004 section 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

Mode = Literal["query", "headers", "off"]
MODES: tuple[Mode, ...] = ("query", "headers", "off")
Value = str | int | float | bool

# CTA-5004 3.3: each key belongs to the header whose values vary at the same rate.
HEADER_OF: dict[str, str] = {
    **dict.fromkeys(("br", "d", "ot", "tb"), "CMCD-Object"),
    **dict.fromkeys(("bl", "dl", "mtp", "nor", "nrr", "su"), "CMCD-Request"),
    **dict.fromkeys(("cid", "pr", "sf", "sid", "st", "v"), "CMCD-Session"),
    **dict.fromkeys(("bs", "rtp"), "CMCD-Status"),
}
_TOKENS = frozenset(("ot", "sf", "st"))  # token values go unquoted (CTA-5004 3.3 table)


def _value(key: str, value: Value) -> str:
    if isinstance(value, bool):
        raise TypeError("booleans are written by key alone")
    if isinstance(value, str):
        if key in _TOKENS:
            return value
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}".rstrip("0")
    return str(int(value))


def encode(data: Mapping[str, Value]) -> str:
    """``key=value`` pairs, keys in alphabetical order, comma-separated (CTA-5004 3.2).

    A true boolean is the key alone; a false boolean and an empty string are left out.
    """
    parts = []
    for key in sorted(data):
        value = data[key]
        if value is False or value == "":
            continue
        parts.append(key if value is True else f"{key}={_value(key, value)}")
    return ",".join(parts)


def headers(data: Mapping[str, Value]) -> dict[str, str]:
    grouped: dict[str, dict[str, Value]] = {}
    for key, value in data.items():
        grouped.setdefault(HEADER_OF.get(key, "CMCD-Request"), {})[key] = value
    encoded = {name: encode(values) for name, values in grouped.items()}
    return {name: text for name, text in encoded.items() if text}


def with_query(url: str, data: Mapping[str, Value]) -> str:
    """``url`` with the data appended as one URL-encoded ``CMCD`` query argument (CTA-5004 2.2)."""
    text = encode(data)
    if not text:
        return url
    return f"{url}{'&' if '?' in url else '?'}CMCD={quote(text, safe='')}"


@dataclass(frozen=True)
class Session:
    """Keys fixed for one playback session."""

    sid: str
    speed: float = 1.0
    stream_type: str = "v"  # VOD
    content_id: str = ""

    def keys(self) -> dict[str, Value]:
        data: dict[str, Value] = {"sf": "h", "sid": self.sid, "st": self.stream_type}
        if self.speed != 1:
            data["pr"] = self.speed
        if self.content_id:
            data["cid"] = self.content_id[:64]
        return data


def request_keys(
    session: Session,
    *,
    object_type: str,
    buffer_ms: float | None = None,
    duration_ms: float | None = None,
    bitrate_bps: float | None = None,
    top_bitrate_bps: float | None = None,
    throughput_bps: float | None = None,
    next_object: str | None = None,
    startup: bool = False,
    starved: bool = False,
) -> dict[str, Value]:
    """All keys for one request. ``bl`` is rounded to 100 ms and ``mtp`` to 100 kbit/s, as CTA-5004 asks."""
    data = session.keys()
    data["ot"] = object_type
    if buffer_ms is not None:
        data["bl"] = round(buffer_ms / 100) * 100
    if duration_ms is not None:
        data["d"] = round(duration_ms)
    if bitrate_bps is not None:
        data["br"] = round(bitrate_bps / 1000)
    if top_bitrate_bps is not None:
        data["tb"] = round(top_bitrate_bps / 1000)
    if throughput_bps is not None:
        data["mtp"] = round(throughput_bps / 100_000) * 100
    if next_object:
        data["nor"] = quote(next_object, safe="")  # CTA-5004: nor is URL-encoded inside its quotes
    data["su"] = startup
    data["bs"] = starved
    return data
