"""A virtual HLS player's decisions: what to fetch next, when playback starts, stalls, resumes and ends.

Rules of this file: no I/O and no clock. The async driver asks ``next_action(now)``, carries the action
out and reports back with ``on_playlist`` / ``on_init`` / ``on_segment`` / ``on_failure``, each with the
``now`` at which it happened. Playback is computed, not ticked: between two events the playhead moves at
``speed`` media seconds per wall second, and the moment it ran dry is worked out exactly.

Video and audio load side by side, as hls.js's stream and audio-stream controllers do: at most one
request per track in flight (``next_action`` hands out a track's next load only while that track has
none), the track whose buffer ends first served first, and no audio segment started beyond the end of
the video segment loading. The driver runs the loads concurrently and reports each as it ends; a caller
that reports every load before asking again gets them one at a time. Player timings (buffers, retry
delays, penalties) are viewer seconds; wall time is viewer time divided by ``speed``, so a 10x run
behaves like a 1x run on a network 10x as fast.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtest.abr import (
    DEFAULT_ABR,
    HLS_JS_VERSION,
    AbrConfig,
    BandwidthEstimator,
    KeepLoading,
    Level,
    Loading,
    SwitchDown,
    abandon_rule,
    buffer_goal,
    first_level,
    lowest_switch,
    next_level,
)
from loadtest.playlists import Timeline

_EPSILON = 1e-3
VIDEO = "video"
AUDIO = "audio"


class Phase(enum.Enum):
    BUFFERING = "buffering"  # before the first frame
    PLAYING = "playing"
    STALLED = "stalled"
    ENDED = "ended"
    FAILED = "failed"


@dataclass(frozen=True)
class LoadPlaylist:
    track: str
    rung: int


@dataclass(frozen=True)
class LoadInit:
    track: str
    rung: int


@dataclass(frozen=True)
class LoadSegment:
    track: str
    rung: int
    index: int


@dataclass(frozen=True)
class Wait:
    until: float


@dataclass(frozen=True)
class Finish:
    phase: Phase


Action = LoadPlaylist | LoadInit | LoadSegment | Wait | Finish
Load = LoadPlaylist | LoadInit | LoadSegment


@dataclass(frozen=True)
class Continue:
    """Let the segment in flight load; ask again at ``at`` (wall time)."""

    at: float


@dataclass(frozen=True)
class Abort:
    """Drop the segment in flight (hls.js's abandon rule); report it with ``on_abort``."""


LoadCheck = Continue | Abort
ABANDON_CHECK_EVERY = 0.1  # viewer seconds; hls.js checks a fragment in flight every 100 ms
# hls.js times a main fragment to the end of its parsing (abr-controller onFragBuffered: parsing.end -
# loading.start), and parsing the first one also starts its transmuxer: 46-48 ms (median) after the last
# byte in bench/abr-fidelity's captures, later fragments 2 ms (left out). On a fast link that is a tenth of
# the first sample, enough to decide the second segment's rung.
FIRST_PARSE = 0.047  # viewer seconds


@dataclass(frozen=True)
class PlayerConfig:
    speed: float = 1.0
    start_buffer: float = 2.0  # media seconds buffered before the first frame
    resume_buffer: float = 2.0  # and before playing again after a stall
    max_buffer: float = 30.0  # fetch ahead at least this much (hls.js maxBufferLength; see buffer_goal)
    start_bandwidth: float = 500_000.0  # bit/s assumed before the first sample (abrEwmaDefaultEstimate)
    max_errors: int = 6  # consecutive failed fetches before the session gives up
    retry_delay: float = 1.0  # doubled per consecutive failure, up to max_retry_delay
    max_retry_delay: float = 8.0
    penalty: float = 30.0  # how long a rendition that failed is avoided
    abr: AbrConfig = DEFAULT_ABR

    def __post_init__(self) -> None:
        if not 0 < self.speed <= 100:
            raise ValueError("speed must be in (0, 100]")
        if not 0 < self.start_buffer <= self.max_buffer or not 0 < self.resume_buffer <= self.max_buffer:
            raise ValueError("start and resume buffers must be positive and at most max_buffer")
        if self.start_bandwidth <= 0:
            raise ValueError("start_bandwidth must be positive")

    def with_settings(self, changes: Mapping[str, float]) -> PlayerConfig:
        """This config with hls.js settings changed, by their hls.js names (``SETTINGS``)."""
        unknown = sorted(set(changes) - set(SETTINGS))
        if unknown:
            raise ValueError(f"unknown hls.js setting {unknown[0]!r}; one of {', '.join(SETTINGS)}")
        mine: dict[str, Any] = {SETTINGS[k][1]: v for k, v in changes.items() if SETTINGS[k][0] == "player"}
        abr = {SETTINGS[k][1]: v for k, v in changes.items() if SETTINGS[k][0] == "abr"}
        return dataclasses.replace(self, **mine, abr=dataclasses.replace(self.abr, **abr))

    def settings(self) -> dict[str, float]:
        """Every hls.js setting this player follows, by its hls.js name."""
        return {
            name: getattr(self.abr if where == "abr" else self, attr)
            for name, (where, attr) in SETTINGS.items()
        }


# hls.js setting -> where our value lives: "player" is PlayerConfig, "abr" its AbrConfig.
SETTINGS: Mapping[str, tuple[str, str]] = {
    "abrEwmaFastVoD": ("abr", "fast_half_life"),
    "abrEwmaSlowVoD": ("abr", "slow_half_life"),
    "abrEwmaDefaultEstimate": ("player", "start_bandwidth"),
    "abrBandWidthFactor": ("abr", "down_factor"),
    "abrBandWidthUpFactor": ("abr", "up_factor"),
    "maxStarvationDelay": ("abr", "max_starvation"),
    "maxBufferLength": ("player", "max_buffer"),
    "maxBufferSize": ("abr", "max_buffer_size"),
    "maxMaxBufferLength": ("abr", "max_max_buffer"),
}

# A profile is a named set of changes to hls.js's defaults and nothing else; the report lists them.
ABR_PROFILES: Mapping[str, Mapping[str, float]] = {
    "hls.js": {},
    "aggressive": {"abrBandWidthFactor": 1.0, "abrBandWidthUpFactor": 0.9},
    "conservative": {"abrBandWidthFactor": 0.8, "abrBandWidthUpFactor": 0.5},
}


def player_model(config: PlayerConfig, profile: str) -> dict[str, object]:
    """What a report says about the player emulated: hls.js's version, the profile, what differs."""
    defaults = PlayerConfig().settings()
    settings = config.settings()
    return {
        "emulates": f"hls.js {HLS_JS_VERSION}",
        "profile": profile,
        "changed": {name: value for name, value in settings.items() if value != defaults[name]},
        "settings": settings,
    }


@dataclass(frozen=True)
class SessionResult:
    started: bool
    startup: float | None  # wall seconds from the session's start to the first frame
    stalls: int
    stall_time: float  # wall seconds
    played: tuple[float, ...]  # media seconds played at each rung
    switches_up: int
    switches_down: int
    ended: bool  # played to the end of the title
    failed: bool  # gave up after repeated errors
    errors: int
    first_switch: float | None = None  # wall seconds from the session's start to the first switch played
    abandons: int = 0  # segment requests dropped by the abandon rule

    @property
    def played_total(self) -> float:
        return sum(self.played)


@dataclass
class _Track:
    name: str
    end: float = 0.0  # buffered up to here, media seconds
    timelines: dict[int, Timeline] = field(default_factory=dict)
    inits: set[int] = field(default_factory=set)


class PlayerCore:
    def __init__(
        self,
        bitrates: Sequence[float],
        *,
        has_audio: bool,
        started_at: float,
        config: PlayerConfig | None = None,
        peaks: Sequence[float] | None = None,
    ) -> None:
        """``bitrates`` are the renditions' average bitrates, ascending; ``peaks`` their BANDWIDTH."""
        if not bitrates:
            raise ValueError("a player needs at least one rendition")
        if peaks is not None and len(peaks) != len(bitrates):
            raise ValueError("one peak bitrate per rendition")
        self.config = config or PlayerConfig()
        self.bitrates = tuple(bitrates)
        self.levels = [
            Level(peak, average) for peak, average in zip(peaks or bitrates, bitrates, strict=True)
        ]
        # Viewer-time units: a sample's bits over (wall seconds x speed), floored at 50 ms of viewer time.
        self.estimator = self._new_estimator(self.config.start_bandwidth)
        self._first: int | None = None  # the start rung, chosen once (hls.js firstSelection)
        self._forced: int | None = None  # the abandon rule's rung, until a segment of it loads
        self._fragment = 0.0  # duration of the last video segment loaded (hls.js fragCurrent)
        self._playlist_time = 0.0  # seconds the last video playlist took after its first byte
        self.abandons = 0
        self._loading: dict[str, Load] = {}  # per track, the request in flight (one at most)
        self.phase = Phase.BUFFERING
        self.started_at = started_at
        self.video = _Track(VIDEO)
        self.audio = _Track(AUDIO) if has_audio else None
        self.tracks = (self.video, self.audio) if self.audio else (self.video,)
        self.position = 0.0
        self._anchor = started_at  # wall time at which the playhead was at ``position``
        self._play_start: float | None = None
        self._stall_start = 0.0
        self.stalls = 0
        self._stall_time = 0.0
        self._reported_stalls = 0
        self._queue: deque[tuple[float, float, int]] = deque()  # buffered video: start, end, rung
        self._played = [0.0] * len(bitrates)
        self._playing_rung: int | None = None
        self._switches = [0, 0]  # up, down
        self._first_switch: float | None = None
        self.current: int | None = None  # rung of the last video segment fetched
        self._penalized_until = [float("-inf")] * len(bitrates)
        self._errors = 0
        self.errors = 0
        self._retry_at = float("-inf")
        self._content_end = float("inf")

    # --- what the driver asks -------------------------------------------------------------------

    def next_action(self, now: float) -> Action:
        """The next load of a track that has none in flight, else when to ask again: ``Wait`` (infinite
        when only the end of a load in flight can change anything). A load returned is in flight until it
        is reported (``on_playlist`` / ``on_init`` / ``on_segment`` / ``on_failure`` / ``on_abort``)."""
        action = self._next(now)
        if isinstance(action, LoadPlaylist | LoadInit | LoadSegment):
            self._loading[action.track] = action
        return action

    def _next(self, now: float) -> Action:
        self.advance(now)
        if self.phase in (Phase.ENDED, Phase.FAILED):
            return Finish(self.phase)
        if now < self._retry_at:
            return Wait(self._retry_at)
        # hls.js loads the video playlist and the audio one at once (level and audio-track controllers).
        idle = [track for track in self.tracks if track.name not in self._loading]
        missing = [track for track in idle if not track.timelines]
        if missing:
            track = missing[0]
            return LoadPlaylist(track.name, self._choose(now) if track is self.video else 0)
        end = self.content_end  # infinite while a playlist loads: a track then goes by its own
        lagging = [
            track for track in self.tracks if track.timelines and track.end < self._end(track) - _EPSILON
        ]
        if not lagging and not self._loading:  # all buffered: wait for the playhead to reach the end
            self._maybe_play(now)
            return Wait(self._anchor + (end - self.position) / self.config.speed)
        video_rung = self._choose(now)
        goal = buffer_goal(self.levels[video_rung].peak, self.config.max_buffer, self.config.abr)
        wake = float("inf")
        for track in sorted((t for t in lagging if t.name not in self._loading), key=lambda t: t.end):
            if track is self.video and self._appending_waits():
                continue
            ahead = track.end - self.position
            if ahead > goal - _EPSILON and self.phase is Phase.PLAYING:
                # Fetch once below the goal; wake just past it, never at ``now``.
                wake = min(wake, now + (ahead - goal + 2 * _EPSILON) / self.config.speed)
                continue
            rung = video_rung if track is self.video else 0
            timeline = track.timelines.get(rung)
            if timeline is None:
                return LoadPlaylist(track.name, rung)
            if timeline.has_init and rung not in track.inits:
                return LoadInit(track.name, rung)
            index = timeline.index_at(track.end)
            if track is self.audio and self._beyond_video(timeline.starts[index]):
                continue
            return LoadSegment(track.name, rung, index)
        return Wait(wake)

    def _end(self, track: _Track) -> float:
        return min(self.content_end, next(iter(track.timelines.values())).total)

    def _appending_waits(self) -> bool:
        """The second video segment waits for the first audio one: hls.js creates the SourceBuffers once
        both tracks' first segments are parsed (buffer-controller checkPendingTracks) and loads the next
        main fragment only once the last one is appended (stream-controller onFragBuffered)."""
        return self.audio is not None and self.audio.end <= 0 and self.video.end > 0

    def _beyond_video(self, start: float) -> bool:
        """An audio segment starting where the video segment loading ends, or later, waits for the next
        video one (hls.js audio-stream-controller doTickIdle, ``atBufferSyncLimit``: ``frag.start >
        mainFragLoading.end``). hls.js sums its starts from EXTINF durations, so a start that ties the end
        counts as later: in every trace of the abr-fidelity bench, audio segment n is requested with video
        segment n, never while video segment n - 1 loads."""
        loading = self._loading.get(VIDEO)
        if not isinstance(loading, LoadSegment):
            return False
        return start > self.video.timelines[loading.rung].end_of(loading.index) - _EPSILON

    def timeline(self, track: str, rung: int) -> Timeline:
        return self._track(track).timelines[rung]

    @property
    def content_end(self) -> float:
        """Media seconds in the title, once every track's playlist is known; infinity before."""
        return self._content_end

    def _update_content_end(self) -> None:
        ends = [next(iter(t.timelines.values())).total for t in self.tracks if t.timelines]
        self._content_end = min(ends) if len(ends) == len(self.tracks) else float("inf")

    @property
    def buffered_end(self) -> float:
        return min(min(track.end for track in self.tracks), self.content_end)

    @property
    def buffer(self) -> float:
        """Media seconds buffered ahead of the playhead (as of the last event)."""
        return max(0.0, self.buffered_end - self.position)

    @property
    def video_buffer(self) -> float:
        """Media seconds of video buffered ahead of the playhead: what the ABR rules see. With audio apart,
        hls.js judges by the video SourceBuffer alone (stream-controller getMainFwdBufferInfo, used by
        abr-controller getNextABRAutoLevel / getStarvationDelay and _abandonRulesCheck)."""
        return max(0.0, min(self.video.end, self.content_end) - self.position)

    @property
    def throughput(self) -> float:
        """The estimate in wall bit/s, what the network really carried (CMCD ``mtp``)."""
        return self.estimator.estimate() * self.config.speed

    @property
    def played(self) -> tuple[float, ...]:
        """Media seconds played at each rung so far (as of the last event, or ``advance``)."""
        return tuple(self._played)

    @property
    def starting(self) -> bool:
        return self.phase is Phase.BUFFERING

    def take_starved(self) -> bool:
        """True once after each stall: CMCD ``bs`` (buffer starvation since the last request)."""
        starved = self.stalls > self._reported_stalls
        self._reported_stalls = self.stalls
        return starved

    def phase_at(self, now: float) -> Phase:
        """The phase at ``now`` without changing anything (for per-second counts)."""
        if self.phase is Phase.PLAYING:
            position = self.position + (now - self._anchor) * self.config.speed
            if position >= self.buffered_end:
                return Phase.ENDED if self.buffered_end >= self.content_end - _EPSILON else Phase.STALLED
        return self.phase

    # --- what the driver reports ----------------------------------------------------------------

    def on_playlist(
        self, now: float, track: str, rung: int, timeline: Timeline, seconds: float = 0.0, ttfb: float = 0.0
    ) -> None:
        """A media playlist arrived; ``seconds`` its load took, ``ttfb`` of which before the first byte."""
        self.advance(now)
        self._loading.pop(track, None)
        self._track(track).timelines[rung] = timeline
        if track == VIDEO and timeline.durations:
            mean = timeline.total / len(timeline.durations)
            self.levels[rung] = dataclasses.replace(self.levels[rung], segment=mean)
            self._playlist_time = max(0.0, seconds - ttfb) * self.config.speed
        self._update_content_end()
        self._errors = 0
        if not timeline.durations:
            self.phase = Phase.ENDED  # an empty playlist: nothing to play
        self._maybe_play(now)

    def on_init(self, now: float, track: str, rung: int) -> None:
        self.advance(now)
        self._loading.pop(track, None)
        self._track(track).inits.add(rung)
        self._errors = 0

    def on_segment(
        self,
        now: float,
        track: str,
        rung: int,
        index: int,
        nbytes: int,
        seconds: float,
        ttfb: float | None = None,
    ) -> None:
        """A segment arrived: ``nbytes`` in ``seconds`` (wall), the first of them after ``ttfb``."""
        self.advance(now)
        self._loading.pop(track, None)
        state = self._track(track)
        timeline = state.timelines[rung]
        end = timeline.end_of(index)
        state.end = max(state.end, end)
        if state is self.video:
            parsing = FIRST_PARSE if self.current is None else 0.0
            self._queue.append((timeline.starts[index], end, rung))
            self.current = rung
            self._fragment = timeline.durations[index]
            if rung == self._forced:
                self._forced = None
            # hls.js samples main fragments only, over their own load less the usual wait for the first
            # byte (abr-controller onFragLoaded / onFragBuffered); an audio segment loading alongside
            # slows the video one down by sharing the link, which the measured seconds already show.
            speed = self.config.speed
            if ttfb is not None:
                self.estimator.sample_ttfb(ttfb * speed)
            took = (seconds - min(self.estimator.ttfb() / speed, seconds if ttfb is None else ttfb)) * speed
            self.estimator.sample(took + parsing, nbytes)
        self._errors = 0
        self._maybe_play(now)

    def check_load(
        self, now: float, action: LoadSegment, started: float, ttfb: float | None, loaded: int
    ) -> LoadCheck:
        """While a video segment loads (sent at ``started``; ``loaded`` bytes so far, the first after
        ``ttfb``): keep loading, or drop it because a lower rung's segment would arrive sooner (hls.js's
        abandon rule); the same segment is then loaded from that rung."""
        self.advance(now)
        speed = self.config.speed
        every = now + ABANDON_CHECK_EVERY / speed
        # hls.js runs the rule only while the video element plays (or waits for data while playing).
        if action.track != VIDEO or self.phase not in (Phase.PLAYING, Phase.STALLED):
            return Continue(every)
        duration = self.video.timelines[action.rung].durations[action.index]
        earliest = started + max(self.estimator.ttfb(), duration / 2) / speed  # the rule waits this long
        if now < earliest:
            return Continue(earliest + _EPSILON / speed)
        loading = Loading(
            action.rung, duration, (now - started) * speed, None if ttfb is None else ttfb * speed, loaded
        )
        decision = abandon_rule(
            self.levels,
            loading,
            buffer=self.video_buffer,
            estimate=self.estimator.estimate(),
            ttfb=self.estimator.ttfb(),
            playlist=self._playlist_time,
        )
        match decision:
            case KeepLoading():
                return Continue(every)
            case SwitchDown(rung=rung, lowest=lowest, sample=sample, reset_to=reset_to):
                if sample:
                    assert loading.ttfb is not None
                    waited = min(self.estimator.ttfb(), loading.ttfb)
                    self.estimator.sample(loading.elapsed - waited, loaded)
                else:
                    self.estimator.sample_ttfb(loading.elapsed)
                if self.estimator.estimate() * self.config.abr.up_factor > reset_to:
                    self.estimator = self._new_estimator(reset_to)
                self._forced = rung
                if lowest:  # hls.js abortAndSwitch: lower still, from a fresh estimate at that rung
                    self._forced = lowest_switch(
                        self.levels,
                        rung,
                        self.video_buffer,
                        fragment=self._fragment,
                        ttfb=self.estimator.ttfb(),
                        playlist=self._playlist_time,
                    )
                    self.estimator = self._new_estimator(self.levels[self._forced].peak)
                self.abandons += 1
                return Abort()

    def on_abort(self, now: float, action: LoadSegment) -> None:
        """The segment ``check_load`` said to drop was dropped."""
        self.advance(now)
        self._loading.pop(action.track, None)

    def on_failure(self, now: float, action: Load) -> None:
        self.advance(now)
        self._loading.pop(action.track, None)
        self._errors += 1
        self.errors += 1
        if self._errors > self.config.max_errors:
            self._close_stall(now)
            self.phase = Phase.FAILED
            return
        speed = self.config.speed
        if action.track == VIDEO:
            self._penalized_until[action.rung] = now + self.config.penalty / speed
            if any(until <= now for until in self._penalized_until):
                return  # another rendition is available: switch to it at once
        delay = min(self.config.retry_delay * 2 ** (self._errors - 1), self.config.max_retry_delay)
        self._retry_at = now + delay / speed

    def forget_sources(self) -> None:
        """Playlists and init segments must be loaded again (Content Steering moved to another pathway).

        The buffer is kept: segments already fetched still play. Loads in flight are forgotten too: the
        driver drops them.
        """
        self._loading.clear()
        for track in self.tracks:
            track.timelines.clear()
            track.inits.clear()
        self._update_content_end()

    def finish(self, now: float) -> SessionResult:
        """The session's numbers as of ``now`` (the end of the title, a failure, or the end of the run)."""
        self.advance(now)
        if self.phase is Phase.STALLED:
            self._close_stall(now)
        return SessionResult(
            started=self._play_start is not None,
            startup=None if self._play_start is None else self._play_start - self.started_at,
            stalls=self.stalls,
            stall_time=self._stall_time,
            played=tuple(self._played),
            switches_up=self._switches[0],
            switches_down=self._switches[1],
            ended=self.phase is Phase.ENDED,
            failed=self.phase is Phase.FAILED,
            errors=self.errors,
            first_switch=self._first_switch,
            abandons=self.abandons,
        )

    # --- playback -------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Move the playhead to ``now``; a stall or the end that happened on the way is dated exactly."""
        if self.phase is not Phase.PLAYING or now <= self._anchor:
            return
        position = self.position + (now - self._anchor) * self.config.speed
        buffered = self.buffered_end
        if position < buffered:
            self._consume(position)
            self.position, self._anchor = position, now
            return
        at = self._anchor + (buffered - self.position) / self.config.speed
        self._consume(buffered)
        self.position, self._anchor = buffered, at
        if buffered >= self.content_end - _EPSILON:
            self.phase = Phase.ENDED
        else:
            self.phase = Phase.STALLED
            self.stalls += 1
            self._stall_start = at

    def _maybe_play(self, now: float) -> None:
        if self.phase not in (Phase.BUFFERING, Phase.STALLED) or self.content_end == float("inf"):
            return
        complete = self.buffered_end >= self.content_end - _EPSILON
        if self.phase is Phase.BUFFERING:
            if complete or self.buffer >= self.config.start_buffer:
                self.phase, self._play_start, self._anchor = Phase.PLAYING, now, now
        elif complete or self.buffer >= self.config.resume_buffer:
            self._close_stall(now)
            self.phase, self._anchor = Phase.PLAYING, now

    def _close_stall(self, now: float) -> None:
        if self.phase is Phase.STALLED:
            self._stall_time += max(0.0, now - self._stall_start)
            self._stall_start = now

    def _consume(self, to: float) -> None:
        """Account media from the playhead to ``to`` to the rung of each buffered segment it crosses."""
        at, queue = self.position, self._queue
        while queue and at < to - 1e-9:
            start, end, rung = queue[0]
            if end <= at:
                queue.popleft()
                continue
            if rung != self._playing_rung:
                if self._playing_rung is not None:
                    self._switches[0 if rung > self._playing_rung else 1] += 1
                    if self._first_switch is None:  # the playhead crossed into it at this wall time
                        crossed = self._anchor + (max(start, at) - self.position) / self.config.speed
                        self._first_switch = crossed - self.started_at
                self._playing_rung = rung
            stop = min(end, to)
            self._played[rung] += stop - max(start, at)
            at = stop
            if end <= to:
                queue.popleft()

    # --- choices --------------------------------------------------------------------------------

    def _new_estimator(self, default: float) -> BandwidthEstimator:
        abr = self.config.abr
        return BandwidthEstimator(
            fast_half_life=abr.fast_half_life, slow_half_life=abr.slow_half_life, default=default
        )

    def _choose(self, now: float) -> int:
        """The rung of the next video segment (hls.js ``nextAutoLevel``)."""
        allowed = [until <= now for until in self._penalized_until]
        if self._forced is not None and allowed[self._forced]:
            return self._forced
        if self.current is None or not self.estimator.can_estimate:
            if self._first is None:
                self._first = first_level(self.levels, self.estimator.estimate(), self.config.abr)
            if allowed[self._first]:
                return self._first
            return next((i for i, ok in enumerate(allowed) if ok), 0)
        return next_level(
            self.levels,
            self.current,
            self.estimator.estimate(),
            self.video_buffer,
            fragment=self._fragment,
            ttfb=self.estimator.ttfb(),
            playlist=self._playlist_time,
            allowed=allowed,
            config=self.config.abr,
        )

    def _track(self, name: str) -> _Track:
        if name == VIDEO:
            return self.video
        if self.audio is None:
            raise ValueError("this player has no audio track")
        return self.audio
