"""The HLS playlist model (RFC 8216): ``model`` values, ``render`` to text, ``parse`` from text. No I/O."""

from media.hls.model import (
    AudioRendition,
    ByteRange,
    ContentSteering,
    IFrameVariant,
    MasterPlaylist,
    MediaPlaylist,
    Segment,
    Variant,
)
from media.hls.parse import parse_master, parse_media
from media.hls.render import render_master, render_media

__all__ = [
    "AudioRendition",
    "ByteRange",
    "ContentSteering",
    "IFrameVariant",
    "MasterPlaylist",
    "MediaPlaylist",
    "Segment",
    "Variant",
    "parse_master",
    "parse_media",
    "render_master",
    "render_media",
]
