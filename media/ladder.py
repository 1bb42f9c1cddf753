"""The rendition ladder: which sizes and bitrates to encode a source into.

Rungs follow the H.264 table of Apple's HLS authoring spec (section 2.4): each rung is a 16:9 box and a
video bitrate. A source is fitted into each box with its aspect kept; boxes the source would have to grow
into are dropped (never upscale), and a source smaller than every box still gets one rung at its own size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from media.errors import InvalidInput


@dataclass(frozen=True, order=True)
class Rung:
    """A landscape box and the video bitrate (bits/s) for content that fills it."""

    width: int
    height: int
    bitrate: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}@{self.bitrate // 1000}k"


@dataclass(frozen=True)
class Rendition:
    """One video rendition to encode: its name (also its directory), size and rate control."""

    name: str
    width: int
    height: int
    bitrate: int
    maxrate: int
    bufsize: int


APPLE_H264_LADDER: tuple[Rung, ...] = (
    Rung(416, 234, 145_000),
    Rung(640, 360, 365_000),
    Rung(768, 432, 730_000),
    Rung(768, 432, 1_100_000),
    Rung(960, 540, 2_000_000),
    Rung(1280, 720, 3_000_000),
    Rung(1280, 720, 4_500_000),
    Rung(1920, 1080, 6_000_000),
    Rung(1920, 1080, 7_800_000),
)

DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung(416, 234, 145_000),
    Rung(640, 360, 365_000),
    Rung(768, 432, 730_000),
    Rung(960, 540, 2_000_000),
    Rung(1280, 720, 3_000_000),
    Rung(1920, 1080, 6_000_000),
)

# Capped VBR: short peaks up to MAXRATE_FACTOR x the target, smoothed over BUFSIZE_FACTOR x target bits.
MAXRATE_FACTOR = 1.1
BUFSIZE_FACTOR = 2.0
# A picture smaller than its box still needs bits for motion and detail: never drop below this share.
MIN_BITRATE_SHARE = 0.5

_RUNG_SPEC = re.compile(r"(\d{2,5})x(\d{2,5})@(\d+(?:\.\d+)?)([kKmM]?)")


def parse_ladder(text: str) -> tuple[Rung, ...]:
    """``"416x234@145k,640x360@365k"`` → rungs, sorted by bitrate. Boxes are given landscape."""
    rungs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _RUNG_SPEC.fullmatch(part)
        if match is None:
            raise InvalidInput(
                f"invalid ladder rung {part!r}: expected WIDTHxHEIGHT@BITRATE such as 640x360@365k"
            )
        width, height = int(match[1]), int(match[2])
        scale = {"": 1, "k": 1_000, "m": 1_000_000}[match[4].lower()]
        bitrate = int(float(match[3]) * scale)
        if width < 16 or height < 16 or width % 2 or height % 2:
            raise InvalidInput(f"invalid ladder rung {part!r}: sides must be even and at least 16")
        if bitrate < 16_000:
            raise InvalidInput(f"invalid ladder rung {part!r}: bitrate below 16k")
        rungs.append(Rung(max(width, height), min(width, height), bitrate))
    if not rungs:
        raise InvalidInput("the ladder is empty")
    return tuple(sorted(rungs, key=lambda r: (r.bitrate, r.width * r.height)))


def even(value: float) -> int:
    """Nearest even integer, at least 2 (H.264 with 4:2:0 chroma needs even sides)."""
    return max(2, round(value / 2.0) * 2)


def even_floor(value: int) -> int:
    """The even integer at or below ``value``, at least 2: a size that never exceeds the source."""
    return max(2, value // 2 * 2)


def fit_in_box(src_width: int, src_height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """The largest even size with the source's aspect that fits the box (the box turned for portrait)."""
    if src_height > src_width:
        box_width, box_height = box_height, box_width
    scale = min(box_width / src_width, box_height / src_height)
    return even(src_width * scale), even(src_height * scale)


def choose_ladder(
    display_width: int, display_height: int, rungs: tuple[Rung, ...] = DEFAULT_LADDER
) -> list[Rendition]:
    """Renditions for a source shown at ``display_width`` x ``display_height``, lowest bitrate first."""
    if display_width <= 0 or display_height <= 0:
        raise InvalidInput(f"invalid source size {display_width}x{display_height}")
    if not rungs:
        raise InvalidInput("the ladder is empty")
    chosen: list[tuple[int, int, int]] = []
    for rung in sorted(rungs, key=lambda r: (r.bitrate, r.width * r.height)):
        width, height = fit_in_box(display_width, display_height, rung.width, rung.height)
        if width > even_floor(display_width) or height > even_floor(display_height):
            continue  # never upscale
        chosen.append((width, height, _scaled_bitrate(rung, width, height)))
    if not chosen:
        # Smaller than every box: one rendition at the source's own size.
        smallest = min(rungs, key=lambda r: (r.bitrate, r.width * r.height))
        width, height = even_floor(display_width), even_floor(display_height)
        chosen.append((width, height, _scaled_bitrate(smallest, width, height)))
    return _named(chosen)


def _scaled_bitrate(rung: Rung, width: int, height: int) -> int:
    share = max(MIN_BITRATE_SHARE, min(1.0, (width * height) / (rung.width * rung.height)))
    return round(rung.bitrate * share / 1000.0) * 1000


def _named(sizes: list[tuple[int, int, int]]) -> list[Rendition]:
    short_sides = [min(w, h) for w, h, _ in sizes]
    renditions = []
    for (width, height, bitrate), short in zip(sizes, short_sides, strict=True):
        name = f"{short}p" if short_sides.count(short) == 1 else f"{short}p-{bitrate // 1000}k"
        renditions.append(
            Rendition(
                name=name,
                width=width,
                height=height,
                bitrate=bitrate,
                maxrate=int(bitrate * MAXRATE_FACTOR),
                bufsize=int(bitrate * BUFSIZE_FACTOR),
            )
        )
    return renditions
