"""A virtual HLS player's decisions: what to fetch next, when playback starts, stalls, resumes and ends.

Rules of this file: no I/O and no clock. The async driver asks ``next_action(now)``, carries the action
out and reports back with ``on_playlist`` / ``on_init`` / ``on_segment`` / ``on_failure``, each with the
``now`` at which it happened. Playback is computed, not ticked: between two events the playhead moves at
``speed`` media seconds per wall second, and the moment it ran dry is worked out exactly.

One fetch at a time: the track (video or audio) whose buffer ends first is filled next, which keeps the
two aligned. Player timings (buffers, retry delays, penalties) are viewer seconds; wall time is viewer
time divided by ``speed``, so a 10x run behaves like a 1x run on a network 10x as fast.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from loadtest.abr import DEFAULT_ABR, AbrConfig, BandwidthEstimator, choose_rung
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
class PlayerConfig:
    speed: float = 1.0
    start_buffer: float = 2.0  # media seconds buffered before the first frame
    resume_buffer: float = 2.0  # and before playing again after a stall
    max_buffer: float = 30.0  # fetch ahead until this much is buffered (hls.js maxBufferLength)
    start_bandwidth: float = 500_000.0  # bit/s assumed before the first sample (hls.js default)
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
    ) -> None:
        if not bitrates:
            raise ValueError("a player needs at least one rendition")
        self.config = config or PlayerConfig()
        self.bitrates = tuple(bitrates)
        # Viewer-time units: a sample's bits over (wall seconds x speed), floored at 50 ms of viewer time.
        self.estimator = BandwidthEstimator(default=self.config.start_bandwidth)
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
        self.current: int | None = None  # rung of the last video segment fetched
        self._penalized_until = [float("-inf")] * len(bitrates)
        self._errors = 0
        self.errors = 0
        self._retry_at = float("-inf")
        self._content_end = float("inf")

    # --- what the driver asks -------------------------------------------------------------------

    def next_action(self, now: float) -> Action:
        self.advance(now)
        if self.phase in (Phase.ENDED, Phase.FAILED):
            return Finish(self.phase)
        if now < self._retry_at:
            return Wait(self._retry_at)
        if not self.video.timelines:
            return LoadPlaylist(VIDEO, self._choose(now))
        if self.audio is not None and not self.audio.timelines:
            return LoadPlaylist(AUDIO, 0)
        end = self.content_end
        lagging = [track for track in self.tracks if track.end < end - _EPSILON]
        if not lagging:  # everything is buffered: wait for the playhead to reach the end
            self._maybe_play(now)
            return Wait(self._anchor + (end - self.position) / self.config.speed)
        track = min(lagging, key=lambda t: t.end)
        ahead = track.end - self.position
        if ahead > self.config.max_buffer - _EPSILON and self.phase is Phase.PLAYING:
            # Fetch once below the goal (hls.js maxBufferLength); wake just past it, never at ``now``.
            return Wait(now + (ahead - self.config.max_buffer + 2 * _EPSILON) / self.config.speed)
        rung = self._choose(now) if track is self.video else 0
        timeline = track.timelines.get(rung)
        if timeline is None:
            return LoadPlaylist(track.name, rung)
        if timeline.has_init and rung not in track.inits:
            return LoadInit(track.name, rung)
        return LoadSegment(track.name, rung, timeline.index_at(track.end))

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
    def throughput(self) -> float:
        """The estimate in wall bit/s, what the network really carried (CMCD ``mtp``)."""
        return self.estimator.estimate() * self.config.speed

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

    def on_playlist(self, now: float, track: str, rung: int, timeline: Timeline) -> None:
        self.advance(now)
        self._track(track).timelines[rung] = timeline
        self._update_content_end()
        self._errors = 0
        if not timeline.durations:
            self.phase = Phase.ENDED  # an empty playlist: nothing to play
        self._maybe_play(now)

    def on_init(self, now: float, track: str, rung: int) -> None:
        self.advance(now)
        self._track(track).inits.add(rung)
        self._errors = 0

    def on_segment(self, now: float, track: str, rung: int, index: int, nbytes: int, seconds: float) -> None:
        self.advance(now)
        state = self._track(track)
        timeline = state.timelines[rung]
        end = timeline.end_of(index)
        state.end = max(state.end, end)
        if state is self.video:
            self._queue.append((timeline.starts[index], end, rung))
            self.current = rung
        self.estimator.sample(seconds * self.config.speed, nbytes)
        self._errors = 0
        self._maybe_play(now)

    def on_failure(self, now: float, action: Load) -> None:
        self.advance(now)
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

        The buffer is kept: segments already fetched still play.
        """
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
                self._playing_rung = rung
            stop = min(end, to)
            self._played[rung] += stop - max(start, at)
            at = stop
            if end <= to:
                queue.popleft()

    # --- choices --------------------------------------------------------------------------------

    def _choose(self, now: float) -> int:
        allowed = [until <= now for until in self._penalized_until]
        timeline = next(iter(self.video.timelines.values()), None)
        if timeline is not None and timeline.durations:
            segment = timeline.durations[timeline.index_at(self.video.end)]
        else:
            segment = 6.0  # unknown before the first playlist: the authoring spec's target
        return choose_rung(
            self.bitrates,
            self.current,
            self.estimator.estimate(),
            self.buffer,
            segment,
            playing=self.phase is Phase.PLAYING,
            allowed=allowed,
            config=self.config.abr,
        )

    def _track(self, name: str) -> _Track:
        if name == VIDEO:
            return self.video
        if self.audio is None:
            raise ValueError("this player has no audio track")
        return self.audio
