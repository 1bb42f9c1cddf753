"""A package plan → ffmpeg argument lists: ONE process that decodes once, splits, scales and encodes every
rung (``build_command``), or, for a title encoded in chunks, one per chunk of video and one for the audio.

ffmpeg-python cannot express the hls muxer's ``var_stream_map`` (ffmpeg-python issue 275), so instead of
one multi-stream hls output each rendition is its own hls output fed from the same filter graph: one
decode, one ``split``, N encoders, N+1 muxers (N video renditions and the audio one), all in one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ffmpeg

from media.ladder import Rendition
from transcoder.chunks import Chunk
from transcoder.plan import AudioPlan, PackagePlan

INIT_NAME = "init.mp4"
SEGMENT_PATTERN = "seg_%05d.m4s"
PLAYLIST_NAME = "index.m3u8"
# Several outputs fed from one decode: let each muxer queue enough packets while the others catch up.
MUXING_QUEUE = 4096
# Machine-readable progress on stdout; warnings and errors (not the banner or stats) on stderr.
GLOBAL_OPTIONS = ("-hide_banner", "-nostdin", "-loglevel", "warning", "-nostats", "-progress", "pipe:1")


def _hls_options(plan: PackagePlan, directory: Path) -> dict[str, Any]:
    return {
        "f": "hls",
        "hls_time": plan.segment_duration,
        "hls_playlist_type": "vod",
        "hls_segment_type": "fmp4",
        "hls_fmp4_init_filename": INIT_NAME,
        "hls_segment_filename": str(directory / SEGMENT_PATTERN),
        "hls_flags": "independent_segments",
        "max_muxing_queue_size": MUXING_QUEUE,
    }


def _video_options(plan: PackagePlan, rendition: Rendition) -> dict[str, Any]:
    return {
        "c:v": "libx264",
        "preset": plan.preset,
        "profile:v": "high",
        "b:v": rendition.bitrate,
        "maxrate": rendition.maxrate,
        "bufsize": rendition.bufsize,
        "g": plan.gop_frames,
        "keyint_min": plan.gop_frames,
        "sc_threshold": 0,
        # IDR at every multiple of the interval, on the same frames in every rung (aligned switching points).
        "force_key_frames": f"expr:gte(t,n_forced*{plan.keyframe_interval})",
    }


def _audio_options(audio: AudioPlan) -> dict[str, Any]:
    return {
        "c:a": "aac",
        "profile:a": "aac_low",
        "b:a": audio.bitrate,
        "ac": audio.channels,
        "ar": audio.sample_rate,
    }


def _source(path: Path, **options: Any) -> Any:
    # "file:" keeps a source named like a protocol ("http:...") or an option ("-i") a plain file.
    return ffmpeg.input(f"file:{path.resolve()}", **options)


def _ladder_outputs(plan: PackagePlan, video: Any, out_dir: Path, **extra: Any) -> list[Any]:
    """Every rung from one decoded video stream: one ``split``, then scale and encode each branch."""
    if plan.frame_rate_divisor > 1:
        video = video.filter("fps", fps=str(plan.frame_rate))
    branches = video.filter_multi_output("split", len(plan.renditions))
    outputs = []
    for index, rendition in enumerate(plan.renditions):
        scaled = (
            branches.stream(index)
            .filter("scale", rendition.width, rendition.height)
            .filter("setsar", 1)
            .filter("format", "yuv420p")
        )
        directory = out_dir / rendition.name
        options = _video_options(plan, rendition) | _hls_options(plan, directory) | extra
        outputs.append(ffmpeg.output(scaled, str(directory / PLAYLIST_NAME), **options))
    return outputs


def _audio_output(plan: PackagePlan, audio: AudioPlan, source: Any, out_dir: Path) -> Any:
    directory = out_dir / audio.name
    options = _audio_options(audio) | _hls_options(plan, directory)
    return ffmpeg.output(source.audio, str(directory / PLAYLIST_NAME), **options)


def _argv(outputs: list[Any], *global_options: str) -> list[str]:
    # Global options go first: ffmpeg-python would append them after the last output.
    return ["ffmpeg", *GLOBAL_OPTIONS, *global_options, *ffmpeg.merge_outputs(*outputs).get_args()]


def build_command(plan: PackagePlan, out_dir: Path) -> list[str]:
    """The full argv (starting with ``ffmpeg``); rendition directories under ``out_dir`` must exist."""
    source = _source(plan.source)
    outputs = _ladder_outputs(plan, source.video, out_dir)
    if plan.audio is not None:
        outputs.append(_audio_output(plan, plan.audio, source, out_dir))
    return _argv(outputs)


def build_video_chunk_command(source: Path, plan: PackagePlan, chunk: Chunk, out_dir: Path) -> list[str]:
    """Every rung of one chunk of the video, on the title's timeline (no audio).

    ``-copyts -start_at_zero`` keeps the title's timestamps (the source's, less its start time, as one
    process has them) all the way through the filters, the encoder and the muxer, so each frame gets the
    very timestamp it would get from one process, at non-integer frame rates too. Input ``-ss`` decodes
    from the key frame before the chunk and drops the frames before its start, and ``-t`` stops at its
    end: consecutive chunks share no frame and miss none. The IDR expression counts from the chunk's
    first frame, on the key frame grid, so it forces the frames one process would. With ``frag_discont``
    the mp4 muxer takes each fragment's decode time (``tfdt``) from its packets instead of starting at 0
    and writing the offset into ``init.mp4`` as an empty edit; with negative timestamps kept (no shift of
    the first chunk's alone), every chunk writes the same ``init.mp4``. ``fragment_index`` numbers the
    fragments (``mfhd``) on from the chunks before.
    """
    input_options: dict[str, Any] = {"ss": chunk.start}
    if not chunk.last:
        input_options["t"] = chunk.duration
    first_fragment = chunk.first_segment(plan.segment_duration) + 1
    outputs = _ladder_outputs(
        plan,
        _source(source, **input_options).video,
        out_dir,
        avoid_negative_ts="disabled",
        hls_segment_options=f"movflags=+frag_discont:fragment_index={first_fragment}",
    )
    return _argv(outputs, "-copyts", "-start_at_zero")


def build_audio_command(source: Path, plan: PackagePlan, out_dir: Path) -> list[str]:
    """The audio rendition alone, for the whole title: the same output as in ``build_command``."""
    if plan.audio is None:
        raise ValueError("the plan has no audio")
    return _argv([_audio_output(plan, plan.audio, _source(source), out_dir)])
