"""The player core, scripted from both ends: the test plays the network and the clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadtest.abr import AbrConfig
from loadtest.player import (
    ABR_PROFILES,
    AUDIO,
    FIRST_PARSE,
    VIDEO,
    Abort,
    Continue,
    Finish,
    Load,
    LoadInit,
    LoadPlaylist,
    LoadSegment,
    Phase,
    PlayerConfig,
    PlayerCore,
    SessionResult,
    Wait,
    player_model,
)
from loadtest.playlists import Timeline

TWO_SECONDS = Timeline.of((2.0,) * 5, has_init=True)  # a 10 s title
LADDER = (300_000, 600_000)
# Network: (action, now) -> seconds it takes, or None for a failure.
Network = Callable[[Load, float], float | None]


def fast(_action: Load, _now: float) -> float:
    return 0.01


def play(
    core: PlayerCore, network: Network, until: float = 1000.0, log: list[object] | None = None
) -> SessionResult:
    """Carry out the core's actions with ``network`` on a fake clock, from its start to ``until``."""
    now = core.started_at
    while now < until:
        action = core.next_action(now)
        if log is not None:
            log.append(action)
        if isinstance(action, Finish):
            break
        if isinstance(action, Wait):
            assert action.until > now, "a wait must move time forward"
            now = min(action.until, until)
            continue
        took = network(action, now)
        if took is None:
            now += 0.01
            core.on_failure(now, action)
            continue
        now += took
        if isinstance(action, LoadPlaylist):
            core.on_playlist(now, action.track, action.rung, TWO_SECONDS)
        elif isinstance(action, LoadInit):
            core.on_init(now, action.track, action.rung)
        else:
            core.on_segment(now, action.track, action.rung, action.index, 100_000, took)
    return core.finish(min(now, until))


def new_core(speed: float = 1.0, audio: bool = True, **config: object) -> PlayerCore:
    return PlayerCore(
        LADDER,
        has_audio=audio,
        started_at=100.0,
        config=PlayerConfig(speed=speed, **config),  # type: ignore[arg-type]
    )


def test_first_actions_load_playlists_then_init_then_segments() -> None:
    core = new_core()
    log: list[object] = []
    play(core, fast, until=100.07, log=log)
    assert log[:6] == [
        LoadPlaylist(VIDEO, 0),  # 500 kbit/s assumed: 600k needs 857k
        LoadPlaylist(AUDIO, 0),
        LoadInit(VIDEO, 0),
        LoadSegment(VIDEO, 0, 0),
        LoadInit(AUDIO, 0),
        LoadSegment(AUDIO, 0, 0),
    ]


def test_a_fast_network_starts_after_the_start_buffer_and_plays_to_the_end_in_real_time() -> None:
    result = play(new_core(), fast)
    # Playlists (2), video init and segment, audio init and segment: 6 fetches of 10 ms.
    assert result.startup == pytest.approx(0.06)
    assert (result.stalls, result.ended, result.failed) == (0, True, False)
    assert result.played_total == pytest.approx(10.0)


def test_speed_plays_faster_and_startup_is_wall_time() -> None:
    core = new_core(speed=4.0, audio=False)
    result = play(core, fast)
    assert result.startup == pytest.approx(0.03)
    assert result.ended and result.played_total == pytest.approx(10.0)
    assert core.phase_at(100.03 + 2.5 - 0.01) is Phase.ENDED  # 10 s of media in 2.5 s


def test_a_late_segment_stalls_for_exactly_the_missing_time() -> None:
    def late_third(action: Load, _now: float) -> float:
        return 5.0 if isinstance(action, LoadSegment) and action.index == 2 else 0.0

    core = new_core(audio=False)
    result = play(core, late_third)
    # Start at 100 (all instant), segments 0-1 buffered = 4 s; segment 2 arrives at 105: stalled 104-105.
    assert result.startup == 0.0
    assert result.stalls == 1
    assert result.stall_time == pytest.approx(1.0)
    assert result.ended and result.played_total == pytest.approx(10.0)


def test_phase_at_sees_a_stall_before_the_next_event() -> None:
    core = new_core(audio=False)
    play(core, fast, until=100.1)
    assert core.phase is Phase.PLAYING
    assert core.phase_at(100.1 + 5) is Phase.PLAYING
    # Wait actions stop at the buffer goal (30 s > title): the title is buffered, so playback just ends.
    assert core.phase_at(100.1 + 11) is Phase.ENDED


def test_fetch_ahead_stops_at_the_buffer_goal() -> None:
    # maxBufferSize of 100 kB is 2.7 s at 300k: maxBufferLength (4 s) is the goal.
    config = PlayerConfig(max_buffer=4.0, start_buffer=2.0, abr=AbrConfig(max_buffer_size=100_000))
    core = PlayerCore(LADDER, has_audio=False, started_at=0.0, config=config)
    now, fetched, buffers = 0.0, [], []
    while now < 5.0:
        action = core.next_action(now)
        if isinstance(action, Wait):
            now = action.until
        elif isinstance(action, LoadPlaylist):
            core.on_playlist(now, action.track, action.rung, TWO_SECONDS)
        elif isinstance(action, LoadInit):
            core.on_init(now, action.track, action.rung)
        elif isinstance(action, LoadSegment):
            buffers.append(core.buffer)
            fetched.append((round(now, 3), action.index))
            core.on_segment(now, action.track, action.rung, action.index, 100_000, 0.0)
    # Two segments at once (4 s buffered), then one each time the buffer falls below 4 s: every 2 s.
    assert fetched == [(0.0, 0), (0.0, 1), (0.002, 2), (2.002, 3), (4.002, 4)]
    assert max(buffers) < 4.0


def test_the_buffer_goal_grows_to_what_max_buffer_size_holds_at_the_rung() -> None:
    # hls.js's 60 MB at 300k is 1600 s, capped at 600: the whole 10 s title is fetched at once.
    core = new_core(audio=False, max_buffer=4.0)
    log: list[object] = []
    play(core, fast, until=100.1, log=log)
    assert [a.index for a in log if isinstance(a, LoadSegment)] == [0, 1, 2, 3, 4]


def test_a_failing_rendition_is_avoided_and_repeated_failures_end_the_session() -> None:
    def top_fails(action: Load, _now: float) -> float | None:
        return None if action.rung == 1 and isinstance(action, LoadSegment) else 0.01

    core = new_core(audio=False, start_bandwidth=10_000_000)  # believes the network is fast: starts at 1
    log: list[object] = []
    result = play(core, top_fails, log=log)
    assert log[2:6] == [
        LoadSegment(VIDEO, 1, 0),
        LoadPlaylist(VIDEO, 0),  # moved off it at once
        LoadInit(VIDEO, 0),
        LoadSegment(VIDEO, 0, 0),
    ]
    assert result.errors == 1 and result.ended and result.played[1] == 0.0

    def everything_fails(_action: Load, _now: float) -> None:
        return None

    result = play(new_core(audio=False, max_errors=3), everything_fails)
    assert result.failed and not result.started and result.errors == 4


def test_audio_failures_back_off_exponentially() -> None:
    core = new_core()
    core.on_failure(100.0, LoadPlaylist(AUDIO, 0))
    assert core.next_action(100.0) == Wait(101.0)
    core.on_failure(101.0, LoadPlaylist(AUDIO, 0))
    assert core.next_action(101.0) == Wait(103.0)


def test_switches_and_time_per_rung_count_what_is_played() -> None:
    core = new_core(audio=False)
    for track, rung in ((VIDEO, 0), (VIDEO, 1)):
        core.on_playlist(100.0, track, rung, TWO_SECONDS)
    for index, rung in enumerate((0, 1, 1, 0, 0)):
        core.on_segment(100.0, VIDEO, rung, index, 1000, 0.1)
    result = core.finish(105.0)  # started at 100: 5 s of 10 played
    assert result.played == pytest.approx((2.0, 3.0))
    assert (result.switches_up, result.switches_down) == (1, 0)
    assert result.first_switch == pytest.approx(2.0)  # the playhead entered segment 1 at 102
    assert core.finish(200.0).switches_down == 1


def test_forgetting_sources_reloads_playlists_but_keeps_the_buffer() -> None:
    core = new_core(audio=False)
    play(core, fast, until=100.1)
    buffered = core.buffered_end
    core.forget_sources()
    assert core.next_action(100.1) == LoadPlaylist(VIDEO, 1)
    assert core.video.end == buffered


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        PlayerConfig(speed=0)
    with pytest.raises(ValueError):
        PlayerConfig(start_buffer=40.0, max_buffer=30.0)


# --- a link that drops under a player on its top rung: hls.js's abandon rule ------------------------

DEFAULT_PEAKS = (200_000, 450_000, 900_000, 2_400_000, 3_600_000)
DEFAULT_AVERAGES = (145_000, 365_000, 730_000, 2_000_000, 3_000_000)
SIX_SECONDS = Timeline.of((6.0,) * 10, has_init=True)  # a 60 s title


def shaped(core: PlayerCore, rate_at: Callable[[float], float], until: float) -> list[tuple[str, int, int]]:
    """Play ``core`` over a link of ``rate_at(t)`` bit/s (t from 0), in 10 ms steps while a segment loads,
    asking ``check_load`` every step; segments weigh their rung's average bitrate. Returns the loads."""
    now, step, log = 0.0, 0.01, []
    while now < until:
        action = core.next_action(now)
        if isinstance(action, Finish):
            break
        if isinstance(action, Wait):
            now = min(action.until, until)
            continue
        if isinstance(action, LoadPlaylist):
            core.on_playlist(now + 0.02, action.track, action.rung, SIX_SECONDS, 0.02, 0.01)
            now += 0.02
            continue
        if isinstance(action, LoadInit):
            core.on_init(now + 0.02, action.track, action.rung)
            now += 0.02
            continue
        assert isinstance(action, LoadSegment)
        size = int(6.0 * DEFAULT_AVERAGES[action.rung] / 8)
        started, loaded, t = now, 0.0, now + 0.01  # 10 ms to the first byte
        outcome = "loaded"
        while loaded < size:
            loaded += rate_at(t) / 8 * step
            t += step
            check = core.check_load(t, action, started, 0.01, int(min(loaded, size)))
            if isinstance(check, Abort):
                outcome = "aborted"
                core.on_abort(t, action)
                break
            assert isinstance(check, Continue) and check.at > t - step
        now = t
        log.append((outcome, action.rung, action.index))
        if outcome == "loaded":
            core.on_segment(now, action.track, action.rung, action.index, size, now - started, 0.01)
    return log


def test_a_link_that_drops_under_the_top_rung_is_abandoned_for_a_lower_one() -> None:
    core = PlayerCore(
        DEFAULT_AVERAGES, has_audio=False, started_at=0.0, peaks=DEFAULT_PEAKS, config=PlayerConfig()
    )
    log = shaped(core, lambda t: 8_000_000 if t < 3.5 else 300_000, until=60.0)
    aborted = [entry for entry in log if entry[0] == "aborted"]
    assert aborted, log
    _, rung, index = aborted[0]
    assert rung >= 3  # the link carried the top rungs until it dropped
    # The same segment is loaded next, from a lower rung.
    after = log[log.index(aborted[0]) + 1]
    assert after[0] == "loaded" and after[2] == index and after[1] < rung
    assert core.abandons >= 1


def test_a_segment_caught_by_an_outage_is_dropped_and_the_player_climbs_back_at_once() -> None:
    # hls.js drops the request as soon as the abandon rule switches down, even to the lowest rung (the
    # stream controller loads the replacement, and its loader holds one request at a time): the link's
    # return then shows in a short sample of the replacement, not in one spanning the outage.
    core = PlayerCore(DEFAULT_AVERAGES, has_audio=False, started_at=0.0, peaks=DEFAULT_PEAKS)
    for rung in range(len(DEFAULT_AVERAGES)):
        core.on_playlist(0.0, VIDEO, rung, SIX_SECONDS)
        core.on_init(0.0, VIDEO, rung)
    size = int(6.0 * DEFAULT_AVERAGES[2] / 8)  # 547 kB, 1.75 s at 2.5 Mbit/s
    for index in range(8):
        core.on_segment(1.75 * (index + 1), VIDEO, 2, index, size, 1.75, ttfb=0.0)
    assert core.estimator.estimate() == pytest.approx(2_500_000, rel=0.01)
    stuck = LoadSegment(VIDEO, 2, 8)
    started = 14.0  # 60 kB in, then the link goes silent
    at, check = started + 3.0, core.check_load(started + 3.0, stuck, started, 0.01, 60_000)
    while isinstance(check, Continue) and at < started + 5.0:  # checked every 100 ms
        at += 0.1
        check = core.check_load(at, stuck, started, 0.01, 60_000)
    assert check == Abort(), check  # dropped while the link is still silent
    core.on_abort(at, stuck)
    assert core.next_action(at) == LoadSegment(VIDEO, 0, 8)
    back = 19.5  # the link is back: the replacement (108 kB) comes in at 2.5 Mbit/s
    core.on_segment(back + 0.35, VIDEO, 0, 8, int(6.0 * DEFAULT_AVERAGES[0] / 8), 0.35, ttfb=0.0)
    assert core.next_action(back + 0.35) == LoadSegment(VIDEO, 2, 9)


def test_a_steady_link_never_abandons() -> None:
    core = PlayerCore(
        DEFAULT_AVERAGES, has_audio=False, started_at=0.0, peaks=DEFAULT_PEAKS, config=PlayerConfig()
    )
    log = shaped(core, lambda _t: 2_500_000, until=60.0)
    assert all(outcome == "loaded" for outcome, _, _ in log)
    assert core.abandons == 0
    result = core.finish(60.0)
    assert result.stalls == 0
    # 2.5 Mbit/s: 900k's peak (rung 2) is within 0.7 x 2.5M, 2.4M is not; never higher than 2.
    assert max(rung for _, rung, _ in log) == 2


def test_settings_go_by_their_hls_js_names() -> None:
    config = PlayerConfig().with_settings({"abrBandWidthUpFactor": 0.9, "maxBufferLength": 60})
    assert config.abr.up_factor == 0.9 and config.max_buffer == 60
    model = player_model(config, "custom")
    assert model["emulates"] == "hls.js 1.6.19"
    assert model["changed"] == {"abrBandWidthUpFactor": 0.9, "maxBufferLength": 60}
    assert PlayerConfig().settings()["abrEwmaDefaultEstimate"] == 500_000
    with pytest.raises(ValueError, match=r"unknown hls\.js setting .abrFoo."):
        PlayerConfig().with_settings({"abrFoo": 1})
    for profile, changes in ABR_PROFILES.items():
        assert player_model(PlayerConfig().with_settings(changes), profile)["changed"] == changes


def test_video_and_audio_load_side_by_side_audio_no_further_than_the_video_loading() -> None:
    core = new_core()
    inf = float("inf")
    assert core.next_action(100.0) == LoadPlaylist(VIDEO, 0)
    assert core.next_action(100.0) == LoadPlaylist(AUDIO, 0)
    assert core.next_action(100.0) == Wait(inf)  # both tracks have a load in flight
    core.on_playlist(100.1, VIDEO, 0, TWO_SECONDS)
    assert core.next_action(100.1) == LoadInit(VIDEO, 0)  # the audio playlist is still loading
    core.on_init(100.2, VIDEO, 0)
    # Each track at its own pace, as hls.js's stream controllers: in bench/abr-fidelity's captures on links
    # with a round trip, the first video segment is requested before the audio init segment is in.
    assert core.next_action(100.2) == LoadSegment(VIDEO, 0, 0)
    core.on_playlist(100.3, AUDIO, 0, TWO_SECONDS)
    assert core.next_action(100.3) == LoadInit(AUDIO, 0)
    core.on_init(100.4, AUDIO, 0)
    assert core.next_action(100.4) == LoadSegment(AUDIO, 0, 0)
    core.on_segment(100.5, AUDIO, 0, 0, 30_000, 0.1)
    # Audio segment 1 starts at 2 s, where video segment 0 (loading) ends: it waits for video segment 1.
    assert core.next_action(100.5) == Wait(inf)
    core.on_segment(101.2, VIDEO, 0, 0, 50_000, 1.0, ttfb=0.0)
    # Video segment 1 goes out, then audio segment 1 with it (it starts where video segment 0 ended).
    assert core.next_action(101.2) == LoadSegment(VIDEO, 0, 1)  # 400 kbit/s: 600k stays out of reach
    assert core.next_action(101.2) == LoadSegment(AUDIO, 0, 1)
    # A load reported as failed is no longer in flight: after the retry delay the track loads again.
    core.on_failure(101.3, LoadSegment(AUDIO, 0, 1))
    assert core.next_action(101.3) == Wait(102.3)
    assert core.next_action(102.3) == LoadSegment(AUDIO, 0, 1)
    core.on_segment(102.4, AUDIO, 0, 1, 30_000, 0.1)
    # Audio segment 2 starts at 4 s, where video segment 1 (loading) ends.
    assert core.next_action(102.4) == Wait(inf)


def test_a_video_sample_is_its_own_load_and_audio_is_not_sampled() -> None:
    # hls.js samples main fragments over their own load (abr-controller onFragBuffered); an audio one
    # loading alongside only shows in how long the video one took.
    core = new_core()
    for track in (VIDEO, AUDIO):
        core.on_playlist(100.0, track, 0, TWO_SECONDS)
    core.on_segment(101.0, VIDEO, 0, 0, 100_000, 1.0, ttfb=0.0)
    # The first one also counts its parsing, which starts hls.js's transmuxer.
    first = 800_000 / (1.0 + FIRST_PARSE)
    assert core.estimator.estimate() == pytest.approx(first)
    core.on_segment(101.5, AUDIO, 0, 0, 50_000, 0.5, ttfb=0.0)
    assert core.estimator.estimate() == pytest.approx(first)
    fresh = new_core()
    for track in (VIDEO, AUDIO):
        fresh.on_playlist(100.0, track, 0, TWO_SECONDS)
    fresh.on_segment(101.0, VIDEO, 0, 0, 100_000, 1.0, ttfb=0.0)
    fresh.on_segment(102.0, VIDEO, 0, 1, 100_000, 1.0, ttfb=0.0)  # the same 1 s, later: no parsing added
    assert fresh.estimator.estimate() > first


def test_an_audio_segment_arriving_does_not_undo_the_abandon_rules_decision() -> None:
    core = PlayerCore(DEFAULT_AVERAGES, has_audio=True, started_at=0.0, peaks=DEFAULT_PEAKS)
    for rung in range(len(DEFAULT_AVERAGES)):
        core.on_playlist(0.0, VIDEO, rung, SIX_SECONDS)
        core.on_init(0.0, VIDEO, rung)
    core.on_playlist(0.0, AUDIO, 0, SIX_SECONDS)
    core.on_segment(0.4, VIDEO, 0, 0, 100_000, 0.4, ttfb=0.0)
    core.on_segment(0.5, AUDIO, 0, 0, 50_000, 0.1, ttfb=0.0)
    assert core.phase is Phase.PLAYING
    # Rung 4's segment 1 at 1 Mbit/s: 15 s to go with 2.4 s buffered; rung 1's would take 2.7 s.
    top = LoadSegment(VIDEO, 4, 1)
    loaded = int(3.1 * 1_000_000 / 8)
    assert core.check_load(4.1, top, 1.0, 0.0, loaded) == Abort()
    assert core.abandons == 1
    core.on_abort(4.1, top)
    core.on_segment(4.3, AUDIO, 0, 1, 50_000, 0.2, ttfb=0.0)  # loaded alongside meanwhile
    assert core.next_action(4.3) == LoadSegment(VIDEO, 0, 1)  # the same segment, from the rule's rung


def test_the_abr_rules_judge_by_the_video_buffer_alone() -> None:
    # hls.js with audio apart: abr-controller sees the video SourceBuffer (getMainFwdBufferInfo).
    core = new_core()
    for track in (VIDEO, AUDIO):
        core.on_playlist(100.0, track, 0, TWO_SECONDS)
    core.on_segment(101.0, VIDEO, 0, 0, 112_500, 1.5, ttfb=0.5)
    core.on_segment(101.0, AUDIO, 0, 0, 25_000, 0.5)  # plays from 101
    for index in (1, 2):  # 900 kbit/s once the 0.5 s to the first byte is taken off
        core.on_segment(101.0, VIDEO, 0, index, 112_500, 1.5, ttfb=0.5)
    assert core.estimator.estimate() == pytest.approx(900_000, rel=0.02)  # the first also counts its parsing
    core.advance(102.5)
    assert (core.buffer, core.video_buffer) == pytest.approx((0.5, 4.5))
    # Rung 1's segment (and its playlist) loads in 0.5 + 1.9 + 0.5 s: within the 4.5 s of video, not
    # within the 0.5 s of audio and the 2 s of stall accepted.
    assert core.next_action(102.5) == LoadInit(AUDIO, 0)  # no init was reported: audio asks first
    assert core.next_action(102.5) == LoadPlaylist(VIDEO, 1)


def test_the_second_video_segment_waits_for_the_first_audio_one() -> None:
    # hls.js appends nothing before both tracks' first segments are in, nor loads past an unappended one.
    core = new_core()
    for track in (VIDEO, AUDIO):
        core.on_playlist(100.0, track, 0, TWO_SECONDS)
        core.on_init(100.0, track, 0)
    assert core.next_action(100.0) == LoadSegment(VIDEO, 0, 0)
    assert core.next_action(100.0) == LoadSegment(AUDIO, 0, 0)
    core.on_segment(100.5, VIDEO, 0, 0, 25_000, 0.5)
    assert core.next_action(100.5) == Wait(float("inf"))
    core.on_segment(100.8, AUDIO, 0, 0, 25_000, 0.8)
    assert core.next_action(100.8) == LoadSegment(VIDEO, 0, 1)
    assert core.next_action(100.8) == LoadSegment(AUDIO, 0, 1)
