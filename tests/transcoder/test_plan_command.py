from fractions import Fraction
from pathlib import Path

import pytest

from media.errors import InvalidInput
from media.ladder import Rung
from media.probe import SourceFacts
from transcoder.chunks import Chunk
from transcoder.command import build_audio_command, build_command, build_video_chunk_command
from transcoder.plan import PackageConfig, make_plan, output_frame_rate
from transcoder.progress import ProgressReader

FACTS = SourceFacts(
    duration=10.0,
    width=640,
    height=360,
    sample_aspect=Fraction(1),
    rotation=0,
    frame_rate=Fraction(30),
    video_codec="h264",
    pix_fmt="yuv420p10le",
    has_audio=True,
    audio_codec="aac",
    audio_channels=6,
    audio_language="fre",
)


def test_plan_from_facts() -> None:
    plan = make_plan(Path("/src/in.mp4"), FACTS, PackageConfig())
    assert [r.name for r in plan.renditions] == ["234p", "360p"]
    assert plan.audio is not None
    assert (plan.audio.channels, plan.audio.bitrate, plan.audio.language) == (2, 128_000, "fre")
    assert plan.gop_frames == 60 and plan.frame_rate == 30 and plan.frame_rate_divisor == 1


def test_plan_mono_and_silent_sources() -> None:
    mono = make_plan(Path("a.mp4"), SourceFacts(**{**FACTS.__dict__, "audio_channels": 1}), PackageConfig())
    assert mono.audio is not None and mono.audio.channels == 1 and mono.audio.bitrate == 64_000
    silent = SourceFacts(
        **{**FACTS.__dict__, "has_audio": False, "audio_codec": None, "audio_language": None}
    )
    assert make_plan(Path("a.mp4"), silent, PackageConfig()).audio is None


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (Fraction(30), (Fraction(30), 1)),
        (Fraction(120), (Fraction(60), 2)),
        (Fraction(144), (Fraction(48), 3)),
    ],
)
def test_output_frame_rate(rate: Fraction, expected: tuple[Fraction, int]) -> None:
    assert output_frame_rate(rate, 60) == expected


@pytest.mark.parametrize(
    "options",
    [
        {"preset": "warp"},
        {"segment_duration": 5},  # not a multiple of the 2 s key frame interval
        {"keyframe_interval": 0},
        {"segment_duration": 0},
        {"audio_bitrate": 1_000},
        {"ladder": ()},
        {"audio_language": "english"},
        {"chunk_seconds": -1},
        {"chunk_seconds": 86_401},
    ],
)
def test_config_rejects_nonsense(options: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        PackageConfig(**options)  # type: ignore[arg-type]


def test_audio_language_option_is_stored_as_its_shortest_tag() -> None:
    assert PackageConfig(audio_language="ger").audio_language == "de"
    assert PackageConfig(audio_language="pt-BR").audio_language == "pt-BR"
    assert PackageConfig().audio_language == "und"


def test_command_is_one_ffmpeg_process_with_one_decode() -> None:
    config = PackageConfig(ladder=(Rung(416, 234, 145_000), Rung(640, 360, 365_000)), preset="fast")
    plan = make_plan(Path("/src/in.mp4"), FACTS, config)
    assert build_command(plan, Path("/stage")) == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-nostats", "-progress", "pipe:1",
        "-i", "file:/src/in.mp4",
        "-filter_complex",
        "[0:v]split=2[s0][s1];[s0]scale=416:234[s2];[s2]setsar=1[s3];[s3]format=yuv420p[s4];"
        "[s1]scale=640:360[s5];[s5]setsar=1[s6];[s6]format=yuv420p[s7]",
        "-map", "[s4]", "-f", "hls", "-b:v", "145000", "-bufsize", "290000", "-c:v", "libx264",
        "-force_key_frames", "expr:gte(t,n_forced*2)", "-g", "60", "-hls_flags", "independent_segments",
        "-hls_fmp4_init_filename", "init.mp4", "-hls_playlist_type", "vod",
        "-hls_segment_filename", "/stage/234p/seg_%05d.m4s", "-hls_segment_type", "fmp4", "-hls_time", "6",
        "-keyint_min", "60", "-max_muxing_queue_size", "4096", "-maxrate", "159500", "-preset", "fast",
        "-profile:v", "high", "-sc_threshold", "0", "/stage/234p/index.m3u8",
        "-map", "[s7]", "-f", "hls", "-b:v", "365000", "-bufsize", "730000", "-c:v", "libx264",
        "-force_key_frames", "expr:gte(t,n_forced*2)", "-g", "60", "-hls_flags", "independent_segments",
        "-hls_fmp4_init_filename", "init.mp4", "-hls_playlist_type", "vod",
        "-hls_segment_filename", "/stage/360p/seg_%05d.m4s", "-hls_segment_type", "fmp4", "-hls_time", "6",
        "-keyint_min", "60", "-max_muxing_queue_size", "4096", "-maxrate", "401500", "-preset", "fast",
        "-profile:v", "high", "-sc_threshold", "0", "/stage/360p/index.m3u8",
        "-map", "0:a", "-f", "hls", "-ac", "2", "-ar", "48000", "-b:a", "128000", "-c:a", "aac",
        "-hls_flags", "independent_segments", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_playlist_type", "vod", "-hls_segment_filename", "/stage/audio/seg_%05d.m4s",
        "-hls_segment_type", "fmp4", "-hls_time", "6", "-max_muxing_queue_size", "4096",
        "-profile:a", "aac_low", "/stage/audio/index.m3u8",
    ]  # fmt: skip


def test_chunk_command_encodes_the_video_of_its_span_on_the_titles_timeline() -> None:
    # The rungs, encoder settings and IDR cadence of the single process; video only, from the chunk's start
    # for its duration, with the title's timestamps and fragment numbers.
    config = PackageConfig(ladder=(Rung(416, 234, 145_000),), preset="fast")
    plan = make_plan(Path("/src/in.mp4"), FACTS, config)
    chunk = Chunk(index=2, start=120.0, duration=60.0, last=False)
    assert build_video_chunk_command(Path("/worker/copy.mp4"), plan, chunk, Path("/out")) == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-nostats", "-progress", "pipe:1",
        "-copyts", "-start_at_zero", "-ss", "120.0", "-t", "60.0", "-i", "file:/worker/copy.mp4",
        "-filter_complex", "[0:v]split=1[s0];[s0]scale=416:234[s1];[s1]setsar=1[s2];[s2]format=yuv420p[s3]",
        "-map", "[s3]", "-f", "hls", "-avoid_negative_ts", "disabled", "-b:v", "145000", "-bufsize", "290000",
        "-c:v", "libx264", "-force_key_frames", "expr:gte(t,n_forced*2)", "-g", "60",
        "-hls_flags", "independent_segments", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_playlist_type", "vod", "-hls_segment_filename", "/out/234p/seg_%05d.m4s",
        "-hls_segment_options", "movflags=+frag_discont:fragment_index=21", "-hls_segment_type", "fmp4",
        "-hls_time", "6", "-keyint_min", "60", "-max_muxing_queue_size", "4096", "-maxrate", "159500",
        "-preset", "fast", "-profile:v", "high", "-sc_threshold", "0", "/out/234p/index.m3u8",
    ]  # fmt: skip


def test_last_chunk_runs_to_the_end_of_the_source() -> None:
    plan = make_plan(Path("/src/in.mp4"), FACTS, PackageConfig())
    command = build_video_chunk_command(plan.source, plan, Chunk(1, 6.0, 4.0, last=True), Path("/out"))
    assert command[command.index("-ss") : command.index("-i")] == ["-ss", "6.0"]
    assert "fragment_index=2" in command[command.index("-hls_segment_options") + 1]


def test_audio_command_is_the_audio_output_of_the_single_process() -> None:
    plan = make_plan(Path("/src/in.mp4"), FACTS, PackageConfig())
    single = build_command(plan, Path("/stage"))
    audio = build_audio_command(plan.source, plan, Path("/stage"))
    assert audio == single[: single.index("-filter_complex")] + single[single.index("0:a") - 1 :]
    silent = SourceFacts(**{**FACTS.__dict__, "has_audio": False})
    with pytest.raises(ValueError, match="no audio"):
        build_audio_command(plan.source, make_plan(plan.source, silent, PackageConfig()), Path("/stage"))


def test_command_drops_frames_above_the_cap() -> None:
    fast = SourceFacts(**{**FACTS.__dict__, "frame_rate": Fraction(120), "has_audio": False})
    command = build_command(make_plan(Path("/in.mp4"), fast, PackageConfig()), Path("/stage"))
    graph = command[command.index("-filter_complex") + 1]
    assert graph.startswith("[0:v]fps=fps=60[s0];[s0]split=2")
    assert "0:a" not in command


def test_progress_reader() -> None:
    reader = ProgressReader(duration=10.0)
    assert reader.feed("frame=1") is None
    assert reader.feed("out_time_us=N/A") is None
    assert reader.feed("progress=continue") == 0.0
    reader.feed("out_time_us=2500000")
    assert reader.feed("progress=continue") == 0.25
    reader.feed("out_time_ms=1000000")  # never goes backwards
    assert reader.feed("progress=continue\n") == 0.25
    reader.feed("out_time_us=20000000")
    assert reader.feed("progress=continue") == 0.99  # 1.0 only when ffmpeg says end
    assert reader.feed("progress=end") == 1.0
    assert ProgressReader(duration=0).feed("progress=continue") == 0.0


def test_progress_reader_counting_frames() -> None:
    reader = ProgressReader(duration=4.0, frame_rate=Fraction(25))
    reader.feed("frame=50")
    reader.feed("out_time_us=0")  # what ffmpeg says with -copyts until its first packet is muxed
    assert reader.feed("progress=continue") == 0.5
    reader.feed("frame=oops")
    reader.feed("frame=75")
    assert reader.feed("progress=continue") == 0.75
