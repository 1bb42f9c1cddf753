"""An independent check of a packaged title: the ``m3u8`` package for playlists, ffprobe for media.

Nothing here reuses surge's own parser or box reader, so a bug there cannot hide itself.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import m3u8

# ffprobe's profile names → H.264 profile_idc (ITU-T H.264 A.2).
PROFILE_IDC = {"Constrained Baseline": 0x42, "Baseline": 0x42, "Main": 0x4D, "High": 0x64}
TOLERANCE = 0.10  # Apple HLS authoring spec: declared bitrates within 10 % of measured


def ffprobe_joined(directory: Path, segment: str, scratch: Path) -> dict[str, Any]:
    """ffprobe of init.mp4 + one segment: the stream and the first packet."""
    joined = scratch / f"{directory.name}-{segment}.mp4"
    joined.write_bytes((directory / "init.mp4").read_bytes() + (directory / segment).read_bytes())
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_packets", "-read_intervals", "%+#1", "-of", "json",
         str(joined)],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    joined.unlink()
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def segment_bitrates(directory: Path, playlist: m3u8.M3U8) -> tuple[float, float]:
    sizes = [(directory / s.uri).stat().st_size for s in playlist.segments]
    durations = [s.duration for s in playlist.segments]
    peak = max(size * 8 / d for size, d in zip(sizes, durations, strict=True))
    return peak, sum(sizes) * 8 / sum(durations)


def within(measured: float, declared: float) -> bool:
    return abs(measured - declared) <= TOLERANCE * declared


def check_title(title: Path, scratch: Path, *, target: int = 6) -> dict[str, Any]:
    """Assert every rule of a packaged title; returns facts for further assertions."""
    master = m3u8.load(str(title / "master.m3u8"))
    assert master.is_variant and master.playlists
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in (title / "master.m3u8").read_text()
    audio_media = [m for m in master.media if m.type == "AUDIO"]
    audio_peak = audio_average = 0.0
    if audio_media:
        assert len(audio_media) == 1 and audio_media[0].language and audio_media[0].name
        audio_dir = title / Path(audio_media[0].uri).parent
        audio_playlist = m3u8.load(str(title / audio_media[0].uri))
        audio_peak, audio_average = segment_bitrates(audio_dir, audio_playlist)
        audio_probe = ffprobe_joined(audio_dir, audio_playlist.segments[0].uri, scratch)["streams"][0]
        assert audio_probe["codec_name"] == "aac" and audio_probe["profile"] == "LC"
    durations = None
    facts: dict[str, Any] = {"variants": []}
    for variant in master.playlists:
        info = variant.stream_info
        directory = title / Path(variant.uri).parent
        playlist = m3u8.load(str(title / variant.uri))
        assert playlist.playlist_type == "vod" and playlist.is_endlist
        assert playlist.segment_map and playlist.segment_map[0].uri == "init.mp4"
        assert playlist.version is not None and playlist.version >= 6  # EXT-X-MAP without I-frames only
        # Target duration rules (RFC 8216 4.3.3.1) and no segment over target + 0.5 s.
        assert playlist.target_duration <= target
        for segment in playlist.segments:
            assert round(segment.duration) <= playlist.target_duration
            assert segment.duration <= target + 0.5
        # Every rung cut at the same instants.
        these = [round(s.duration, 3) for s in playlist.segments]
        assert durations is None or these == durations, (these, durations)
        durations = these
        # Every segment starts with a key frame, in the right size, profile and pixel format.
        codecs = info.codecs.split(",")
        for segment in playlist.segments:
            probed = ffprobe_joined(directory, segment.uri, scratch)
            stream, packet = probed["streams"][0], probed["packets"][0]
            assert packet["flags"].startswith("K"), (
                f"{directory.name}/{segment.uri} starts without a key frame"
            )
            assert (stream["width"], stream["height"]) == tuple(info.resolution)
            assert stream["pix_fmt"] == "yuv420p"
            assert (
                codecs[0] == f"avc1.{PROFILE_IDC[stream['profile']]:02x}{codecs[0][7:9]}{stream['level']:02x}"
            )
        assert codecs[1:] == (["mp4a.40.2"] if audio_media else [])
        # Declared bandwidth is what was measured (video + its audio group).
        peak, average = segment_bitrates(directory, playlist)
        assert within(peak + audio_peak, info.bandwidth), (peak + audio_peak, info.bandwidth)
        assert within(average + audio_average, info.average_bandwidth)
        assert info.frame_rate
        facts["variants"].append({"name": directory.name, "resolution": tuple(info.resolution)})
    # Trick play: one I-frame playlist per video rendition, with byte ranges inside the segments.
    assert len(master.iframe_playlists) == len(master.playlists)
    for iframe in master.iframe_playlists:
        directory = title / Path(iframe.uri).parent
        playlist = m3u8.load(str(title / iframe.uri))
        assert playlist.is_i_frames_only and playlist.segment_map[0].uri == "init.mp4"
        for segment in playlist.segments:
            length, offset = (int(x) for x in segment.byterange.split("@"))
            assert offset == 0 and 0 < length < (directory / segment.uri).stat().st_size
    title_json = json.loads((title / "title.json").read_text())
    assert len(title_json["renditions"]) == len(master.playlists)
    facts["segments"] = durations
    facts["title"] = title_json
    facts["master"] = master
    return facts
