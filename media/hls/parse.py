"""Text → playlist values (RFC 8216 section 4). Unknown tags are skipped, as clients must (4.1)."""

from __future__ import annotations

import re
from fractions import Fraction

from media.errors import InvalidPlaylist
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

# RFC 8216 4.2: AttributeName=AttributeValue, where a value is a quoted-string or runs to the next comma.
_ATTRIBUTE = re.compile(r'\s*([A-Z0-9-]+)=("[^"\r\n]*"|[^",]*)\s*(?:,|$)')


def parse_attributes(text: str) -> dict[str, str]:
    attributes: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _ATTRIBUTE.match(text, position)
        if match is None or match.end() == position:
            raise InvalidPlaylist(f"malformed attribute list: {text!r}")
        value = match[2]
        attributes[match[1]] = value[1:-1] if value.startswith('"') else value
        position = match.end()
    return attributes


def _lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    if not lines or lines[0] != "#EXTM3U":
        raise InvalidPlaylist("a playlist must start with #EXTM3U")
    return [line for line in lines[1:] if line]


def _int(value: str, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidPlaylist(f"{what} is not an integer: {value!r}") from None
    if number < 0:
        raise InvalidPlaylist(f"{what} is negative: {value!r}")
    return number


def _resolution(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", value)
    if match is None:
        raise InvalidPlaylist(f"malformed RESOLUTION {value!r}")
    return int(match[1]), int(match[2])


def _require(attributes: dict[str, str], name: str, tag: str) -> str:
    if name not in attributes:
        raise InvalidPlaylist(f"{tag} without {name}")
    return attributes[name]


def parse_media(text: str) -> MediaPlaylist:
    segments: list[Segment] = []
    target_duration = None
    media_sequence = 0
    playlist_type = None
    map_uri = None
    independent = iframes_only = endlist = False
    duration: float | None = None
    byterange: ByteRange | None = None
    next_offset = 0
    for line in _lines(text):
        if not line.startswith("#"):
            if duration is None:
                raise InvalidPlaylist(f"segment {line!r} has no #EXTINF")
            segments.append(Segment(uri=line, duration=duration, byterange=byterange))
            if byterange is not None:
                next_offset = byterange.offset + byterange.length
            duration, byterange = None, None
            continue
        tag, _, value = line.partition(":")
        if tag == "#EXTINF":
            try:
                duration = float(value.split(",", 1)[0])
            except ValueError:
                raise InvalidPlaylist(f"malformed #EXTINF {value!r}") from None
            if duration < 0:
                raise InvalidPlaylist(f"negative #EXTINF {value!r}")
        elif tag == "#EXT-X-BYTERANGE":
            length, _, offset = value.partition("@")
            start = _int(offset, "byte range offset") if offset else next_offset
            byterange = ByteRange(_int(length, "byte range length"), start)
        elif tag == "#EXT-X-TARGETDURATION":
            target_duration = _int(value, "#EXT-X-TARGETDURATION")
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            media_sequence = _int(value, "#EXT-X-MEDIA-SEQUENCE")
        elif tag == "#EXT-X-PLAYLIST-TYPE":
            if value not in ("VOD", "EVENT"):
                raise InvalidPlaylist(f"unknown #EXT-X-PLAYLIST-TYPE {value!r}")
            playlist_type = value
        elif tag == "#EXT-X-MAP":
            map_uri = _require(parse_attributes(value), "URI", tag)
        elif tag == "#EXT-X-INDEPENDENT-SEGMENTS":
            independent = True
        elif tag == "#EXT-X-I-FRAMES-ONLY":
            iframes_only = True
        elif tag == "#EXT-X-ENDLIST":
            endlist = True
        elif tag == "#EXT-X-STREAM-INF":
            raise InvalidPlaylist("this is a master (multivariant) playlist, not a media playlist")
    if target_duration is None:
        raise InvalidPlaylist("media playlist without #EXT-X-TARGETDURATION")
    return MediaPlaylist(
        segments=tuple(segments),
        map_uri=map_uri,
        playlist_type=playlist_type,
        media_sequence=media_sequence,
        independent_segments=independent,
        iframes_only=iframes_only,
        endlist=endlist,
        target_duration=target_duration,
    )


def parse_master(text: str) -> MasterPlaylist:
    variants: list[Variant] = []
    audio: list[AudioRendition] = []
    iframes: list[IFrameVariant] = []
    independent = False
    steering: ContentSteering | None = None
    pending: dict[str, str] | None = None
    for line in _lines(text):
        if not line.startswith("#"):
            if pending is None:
                continue  # a URI with no EXT-X-STREAM-INF before it is not a variant
            variants.append(
                Variant(
                    uri=line,
                    bandwidth=_int(_require(pending, "BANDWIDTH", "#EXT-X-STREAM-INF"), "BANDWIDTH"),
                    average_bandwidth=(
                        _int(pending["AVERAGE-BANDWIDTH"], "AVERAGE-BANDWIDTH")
                        if "AVERAGE-BANDWIDTH" in pending
                        else None
                    ),
                    codecs=pending.get("CODECS", ""),
                    resolution=_resolution(pending["RESOLUTION"]) if "RESOLUTION" in pending else (0, 0),
                    frame_rate=Fraction(pending["FRAME-RATE"]) if "FRAME-RATE" in pending else None,
                    audio_group=pending.get("AUDIO"),
                    pathway_id=pending.get("PATHWAY-ID"),
                )
            )
            pending = None
            continue
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-STREAM-INF":
            pending = parse_attributes(value)
        elif tag == "#EXT-X-MEDIA":
            attrs = parse_attributes(value)
            if attrs.get("TYPE") == "AUDIO":
                audio.append(
                    AudioRendition(
                        group_id=_require(attrs, "GROUP-ID", tag),
                        name=_require(attrs, "NAME", tag),
                        uri=attrs.get("URI", ""),
                        language=attrs.get("LANGUAGE"),
                        default=attrs.get("DEFAULT") == "YES",
                        autoselect=attrs.get("AUTOSELECT") == "YES",
                        channels=int(attrs["CHANNELS"].split("/")[0]) if "CHANNELS" in attrs else None,
                    )
                )
        elif tag == "#EXT-X-I-FRAME-STREAM-INF":
            attrs = parse_attributes(value)
            iframes.append(
                IFrameVariant(
                    uri=_require(attrs, "URI", tag),
                    bandwidth=_int(_require(attrs, "BANDWIDTH", tag), "BANDWIDTH"),
                    codecs=attrs.get("CODECS", ""),
                    resolution=_resolution(attrs["RESOLUTION"]) if "RESOLUTION" in attrs else (0, 0),
                    average_bandwidth=(
                        _int(attrs["AVERAGE-BANDWIDTH"], "AVERAGE-BANDWIDTH")
                        if "AVERAGE-BANDWIDTH" in attrs
                        else None
                    ),
                    pathway_id=attrs.get("PATHWAY-ID"),
                )
            )
        elif tag == "#EXT-X-INDEPENDENT-SEGMENTS":
            independent = True
        elif tag == "#EXT-X-CONTENT-STEERING":
            attrs = parse_attributes(value)
            steering = ContentSteering(_require(attrs, "SERVER-URI", tag), attrs.get("PATHWAY-ID"))
        elif tag in ("#EXTINF", "#EXT-X-TARGETDURATION"):
            raise InvalidPlaylist("this is a media playlist, not a master (multivariant) playlist")
    if not variants:
        raise InvalidPlaylist("master playlist without any #EXT-X-STREAM-INF variant")
    return MasterPlaylist(
        variants=tuple(variants),
        audio=tuple(audio),
        iframe_variants=tuple(iframes),
        independent_segments=independent,
        content_steering=steering,
    )
