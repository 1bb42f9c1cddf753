"""Who starts watching what, and when: the steady and flash-crowd profiles.

Rules of this file: numbers in, a schedule out. Times are seconds from the start of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Profile = Literal["steady", "flash"]
PROFILES: tuple[Profile, ...] = ("steady", "flash")
BACKGROUND_RAMP = 2.0  # seconds over which the flash profile's background viewers arrive, before the crowd
MAX_PLAYERS = 20_000  # players + background viewers in one run


@dataclass(frozen=True)
class Arrival:
    at: float
    url: str
    background: bool = False


def _spread(count: int, start: float, length: float) -> list[float]:
    """``count`` instants evenly spaced over [start, start + length): a linear ramp."""
    return [start + length * i / count for i in range(count)]


def steady(players: int, ramp: float, urls: Sequence[str]) -> list[Arrival]:
    """``players`` viewers ramped in linearly over ``ramp`` seconds, titles dealt round-robin."""
    return [Arrival(at, urls[i % len(urls)]) for i, at in enumerate(_spread(players, 0.0, ramp))]


def flash(
    players: int, ramp: float, url: str, background: int, background_urls: Sequence[str]
) -> list[Arrival]:
    """A background of viewers on the other titles first; then 0 → ``players`` on ``url`` in ``ramp`` s."""
    if background and not background_urls:
        raise ValueError("background viewers need other titles to watch")
    warmup = BACKGROUND_RAMP if background else 0.0
    calm = [
        Arrival(at, background_urls[i % len(background_urls)], background=True)
        for i, at in enumerate(_spread(background, 0.0, warmup))
    ]
    return calm + [Arrival(at, url) for at in _spread(players, warmup, ramp)]


def schedule(
    profile: Profile, players: int, ramp: float, url: str, titles: Sequence[str], background: int
) -> list[Arrival]:
    if profile == "flash":
        return flash(players, ramp, url, background, titles)
    return steady(players, ramp, [url, *titles])
