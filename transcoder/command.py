"""A package plan → ONE ffmpeg argument list: decode once, split, scale and encode every rung.

ffmpeg-python cannot express the hls muxer's ``var_stream_map`` (ffmpeg-python issue 275), so instead of
one multi-stream hls output each rendition is its own hls output fed from the same filter graph: one
decode, one ``split``, N encoders, N+1 muxers (N video renditions and the audio one), all in one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ffmpeg

from media.ladder import Rendition
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


def build_command(plan: PackagePlan, out_dir: Path) -> list[str]:
    """The full argv (starting with ``ffmpeg``); rendition directories under ``out_dir`` must exist."""
    # "file:" keeps a source named like a protocol ("http:...") or an option ("-i") a plain file.
    source = ffmpeg.input(f"file:{plan.source.resolve()}")
    video = source.video
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
        options = _video_options(plan, rendition) | _hls_options(plan, directory)
        outputs.append(ffmpeg.output(scaled, str(directory / PLAYLIST_NAME), **options))
    if plan.audio is not None:
        directory = out_dir / plan.audio.name
        options = _audio_options(plan.audio) | _hls_options(plan, directory)
        outputs.append(ffmpeg.output(source.audio, str(directory / PLAYLIST_NAME), **options))
    # Global options go first: ffmpeg-python would append them after the last output.
    return ["ffmpeg", *GLOBAL_OPTIONS, *ffmpeg.merge_outputs(*outputs).get_args()]
