"""A load test's settings: frozen, validated once. Bounded in count and time by construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from yarl import URL

from loadtest.cmcd import MODES, Mode
from loadtest.player import ABR_PROFILES, SETTINGS, PlayerConfig
from loadtest.scenario import MAX_PLAYERS, PROFILES, Arrival, Profile, schedule
from media.errors import InvalidInput

MAX_DURATION = 24 * 3600.0
OnEnd = Literal["replay", "leave"]


def _check_url(url: str, what: str) -> None:
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput(f"{what} must be an http(s) URL with a host, not {url!r}")


@dataclass(frozen=True)
class LoadTestConfig:
    url: str
    players: int = 10
    ramp: float = 0.0  # seconds from 0 to ``players``
    duration: float = 30.0  # seconds from the first arrival to the end of the run, ramp included
    speed: float = 1.0
    profile: Profile = "steady"
    titles: tuple[str, ...] = ()
    background: int | None = None  # flash profile: viewers of the other titles (default players // 10)
    cmcd: Mode = "query"
    on_end: OnEnd = "replay"  # a viewer who reaches the end starts again, keeping the load constant
    timeout: float = 20.0  # seconds for one request, first byte to last
    connect_timeout: float = 5.0
    grace: float = 5.0  # seconds to close everything after the end of the run
    max_buffer: float = 30.0
    start_buffer: float = 2.0
    start_bandwidth: float = 500_000.0
    allow_remote: bool = False
    fleet_url: str | None = None  # default: <scheme://host:port of url>/fleet, used if it answers
    abr_profile: str = "hls.js"  # hls.js's defaults, or a named set of changes to them (ABR_PROFILES)
    abr_settings: tuple[tuple[str, float], ...] = ()  # hls.js settings by name, applied last
    share: tuple[int, int] = (0, 1)  # (i, n): this generator plays every n-th arrival from the i-th

    def __post_init__(self) -> None:
        _check_url(self.url, "the URL")
        for title in self.titles:
            _check_url(title, "--titles")
        if self.profile not in PROFILES:
            raise InvalidInput(f"unknown profile {self.profile!r}; one of {', '.join(PROFILES)}")
        if self.cmcd not in MODES:
            raise InvalidInput(f"unknown CMCD mode {self.cmcd!r}; one of {', '.join(MODES)}")
        if self.players < 1:
            raise InvalidInput("--players must be at least 1")
        if self.background_viewers < 0:
            raise InvalidInput("--background must not be negative")
        if self.background_viewers and not self.titles:
            raise InvalidInput("--background viewers need --titles to watch")
        if self.total_players > MAX_PLAYERS:
            raise InvalidInput(f"at most {MAX_PLAYERS} players (players + background) in one run")
        if not 0 < self.duration <= MAX_DURATION:
            raise InvalidInput(f"--duration must be in (0, {MAX_DURATION:.0f}] seconds")
        if not 0 <= self.ramp <= self.duration:
            raise InvalidInput("--ramp must be between 0 and --duration")
        if not 0 < self.speed <= 100:
            raise InvalidInput("--speed must be in (0, 100]")
        if not (0 < self.timeout <= 300 and 0 < self.connect_timeout <= self.timeout):
            raise InvalidInput("--timeout must be in (0, 300] seconds, and at least the connect timeout")
        if not 0 <= self.grace <= 60:
            raise InvalidInput("the grace period must be 0-60 seconds")
        if not 0 < self.start_buffer <= self.max_buffer:
            raise InvalidInput("--start-buffer must be positive and at most --max-buffer")
        if self.start_bandwidth <= 0:
            raise InvalidInput("--start-bandwidth must be positive")
        if self.abr_profile not in ABR_PROFILES:
            raise InvalidInput(
                f"unknown --abr-profile {self.abr_profile!r}; one of {', '.join(ABR_PROFILES)}"
            )
        for name, _ in self.abr_settings:
            if name not in SETTINGS:
                raise InvalidInput(
                    f"unknown hls.js setting {name!r} in --abr-set; one of {', '.join(SETTINGS)}"
                )
        index, generators = self.share
        if not 0 <= index < generators:
            raise InvalidInput(f"a share is (i, n) with 0 <= i < n, not {self.share}")
        try:
            self.player()
        except ValueError as error:
            raise InvalidInput(f"--abr-profile/--abr-set: {error}") from None

    @property
    def background_viewers(self) -> int:
        if self.profile != "flash":
            return 0
        if self.background is not None:
            return self.background
        return self.players // 10 if self.titles else 0

    @property
    def total_players(self) -> int:
        return self.players + self.background_viewers

    def arrivals(self) -> list[Arrival]:
        """This generator's arrivals: its share of the whole schedule, at their times in it (dealt in
        turn, so every generator's players span the whole ramp and the counts differ by one at most)."""
        index, generators = self.share
        everyone = schedule(
            self.profile, self.players, self.ramp, self.url, self.titles, self.background_viewers
        )
        return everyone[index::generators]

    def player(self) -> PlayerConfig:
        config = PlayerConfig(
            speed=self.speed,
            start_buffer=self.start_buffer,
            resume_buffer=min(self.start_buffer, self.max_buffer),
            max_buffer=self.max_buffer,
            start_bandwidth=self.start_bandwidth,
        )
        return config.with_settings({**ABR_PROFILES[self.abr_profile], **dict(self.abr_settings)})

    @property
    def fleet(self) -> str:
        return self.fleet_url or str(URL(self.url).origin() / "fleet")
