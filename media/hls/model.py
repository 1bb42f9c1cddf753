"""Playlist values. Frozen dataclasses; versions and target durations are derived, never stored by hand."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class ByteRange:
    length: int
    offset: int


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float
    byterange: ByteRange | None = None


@dataclass(frozen=True)
class MediaPlaylist:
    segments: tuple[Segment, ...]
    map_uri: str | None = None
    playlist_type: str | None = "VOD"  # VOD | EVENT | None (live)
    media_sequence: int = 0
    independent_segments: bool = True
    iframes_only: bool = False
    endlist: bool = True
    target_duration: int | None = None  # None: derived from the segments

    @property
    def duration(self) -> float:
        return sum(segment.duration for segment in self.segments)

    @property
    def effective_target_duration(self) -> int:
        return (
            self.target_duration if self.target_duration is not None else target_duration_for(self.segments)
        )

    @property
    def version(self) -> int:
        return media_playlist_version(self)


@dataclass(frozen=True)
class AudioRendition:
    group_id: str
    name: str
    uri: str
    language: str | None = None
    default: bool = True
    autoselect: bool = True
    channels: int | None = None


@dataclass(frozen=True)
class Variant:
    uri: str
    bandwidth: int
    codecs: str
    resolution: tuple[int, int]
    average_bandwidth: int | None = None
    frame_rate: Fraction | float | None = None
    audio_group: str | None = None
    pathway_id: str | None = None  # HLS Content Steering (RFC 8216bis 4.4.6.6)


@dataclass(frozen=True)
class ContentSteering:
    server_uri: str
    pathway_id: str | None = None  # the pathway to start on


@dataclass(frozen=True)
class IFrameVariant:
    uri: str
    bandwidth: int
    codecs: str
    resolution: tuple[int, int]
    average_bandwidth: int | None = None
    pathway_id: str | None = None


@dataclass(frozen=True)
class MasterPlaylist:
    variants: tuple[Variant, ...]
    audio: tuple[AudioRendition, ...] = ()
    iframe_variants: tuple[IFrameVariant, ...] = ()
    independent_segments: bool = True
    content_steering: ContentSteering | None = None

    @property
    def version(self) -> int:
        return master_playlist_version(self)


def target_duration_for(segments: tuple[Segment, ...]) -> int:
    """RFC 8216 4.3.3.1: every EXTINF, rounded to the nearest integer, is at most the target duration."""
    return max((int(segment.duration + 0.5) for segment in segments), default=1) or 1


def media_playlist_version(playlist: MediaPlaylist) -> int:
    """The lowest EXT-X-VERSION that covers the features used (RFC 8216 section 7)."""
    version = 1
    if any(segment.duration != int(segment.duration) for segment in playlist.segments):
        version = 3  # floating-point EXTINF
    if playlist.iframes_only or any(segment.byterange for segment in playlist.segments):
        version = 4  # EXT-X-BYTERANGE, EXT-X-I-FRAMES-ONLY
    if playlist.map_uri is not None:
        version = max(version, 5 if playlist.iframes_only else 6)
    return version


def master_playlist_version(playlist: MasterPlaylist) -> int:
    # EXT-X-MEDIA and EXT-X-I-FRAME-STREAM-INF arrived with protocol version 4.
    return 4 if playlist.audio or playlist.iframe_variants else 1
