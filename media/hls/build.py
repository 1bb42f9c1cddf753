"""Playlists built from MEASURED facts of a packaged title (pure: numbers in, playlists out).

BANDWIDTH is the peak segment bitrate and AVERAGE-BANDWIDTH the mean over the whole rendition, both from
real segment sizes and durations (RFC 8216 4.3.4.2; Apple HLS authoring spec 1.10: within 10 %), with the
audio group's figures added to each video variant that plays with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from media.hls.model import (
    AudioRendition,
    ByteRange,
    IFrameVariant,
    MasterPlaylist,
    MediaPlaylist,
    Segment,
    Variant,
)

AUDIO_GROUP = "audio"


@dataclass(frozen=True)
class Bitrates:
    peak: int
    average: int


def measure_bitrates(sizes: list[int], durations: list[float]) -> Bitrates:
    """Peak and average bits per second of segments with the given byte sizes and durations."""
    if len(sizes) != len(durations) or not sizes:
        raise ValueError("need one duration per segment and at least one segment")
    total_duration = sum(durations)
    if total_duration <= 0:
        raise ValueError("segments with no duration")
    peak = max(size * 8 / duration for size, duration in zip(sizes, durations, strict=True) if duration > 0)
    average = sum(sizes) * 8 / total_duration
    return Bitrates(peak=round(peak), average=round(average))


@dataclass(frozen=True)
class MeasuredVideo:
    uri: str
    iframe_uri: str
    width: int
    height: int
    frame_rate: Fraction
    codecs: str
    bitrates: Bitrates
    iframe_bitrates: Bitrates


@dataclass(frozen=True)
class MeasuredAudio:
    uri: str
    codecs: str
    bitrates: Bitrates
    language: str
    name: str
    channels: int


def build_master(videos: list[MeasuredVideo], audio: MeasuredAudio | None) -> MasterPlaylist:
    """Variants in ascending bandwidth, each with its audio group added in; I-frame variants after."""
    extra_peak = audio.bitrates.peak if audio else 0
    extra_average = audio.bitrates.average if audio else 0
    variants = tuple(
        Variant(
            uri=video.uri,
            bandwidth=video.bitrates.peak + extra_peak,
            average_bandwidth=video.bitrates.average + extra_average,
            codecs=f"{video.codecs},{audio.codecs}" if audio else video.codecs,
            resolution=(video.width, video.height),
            frame_rate=video.frame_rate,
            audio_group=AUDIO_GROUP if audio else None,
        )
        for video in sorted(videos, key=lambda v: (v.bitrates.peak, v.width * v.height))
    )
    iframes = tuple(
        IFrameVariant(
            uri=video.iframe_uri,
            bandwidth=video.iframe_bitrates.peak,
            average_bandwidth=video.iframe_bitrates.average,
            codecs=video.codecs,
            resolution=(video.width, video.height),
        )
        for video in sorted(videos, key=lambda v: (v.bitrates.peak, v.width * v.height))
    )
    renditions = (
        (
            AudioRendition(
                group_id=AUDIO_GROUP,
                name=audio.name,
                uri=audio.uri,
                language=audio.language,
                channels=audio.channels,
            ),
        )
        if audio
        else ()
    )
    return MasterPlaylist(variants=variants, audio=renditions, iframe_variants=iframes)


def build_iframe_playlist(media: MediaPlaylist, key_frame_ends: list[int]) -> MediaPlaylist:
    """One I-frame per segment: its key frame is the first sample, ``key_frame_ends[i]`` bytes in.

    Each entry lasts until the next I-frame, which is the segment's own duration (RFC 8216 4.3.3.6).
    """
    if len(key_frame_ends) != len(media.segments):
        raise ValueError("need one key frame position per segment")
    segments = tuple(
        Segment(uri=segment.uri, duration=segment.duration, byterange=ByteRange(length=end, offset=0))
        for segment, end in zip(media.segments, key_frame_ends, strict=True)
    )
    return MediaPlaylist(
        segments=segments,
        map_uri=media.map_uri,
        playlist_type="VOD",
        independent_segments=True,
        iframes_only=True,
        endlist=True,
    )
