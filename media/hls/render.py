"""Playlist values → text (RFC 8216 section 4). Output is deterministic: same model, same bytes."""

from __future__ import annotations

from fractions import Fraction

from media.hls.model import MasterPlaylist, MediaPlaylist


def _quoted(value: str) -> str:
    # RFC 8216 4.2: quoted-string may not contain CR, LF or DQUOTE.
    if any(ch in value for ch in '"\r\n'):
        raise ValueError(f"value cannot be a quoted-string: {value!r}")
    return f'"{value}"'


def _duration(seconds: float) -> str:
    return f"{seconds:.6f}".rstrip("0").rstrip(".") if seconds != int(seconds) else str(int(seconds))


def _frame_rate(rate: Fraction | float) -> str:
    return f"{float(rate):.3f}"


def render_media(playlist: MediaPlaylist) -> str:
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{playlist.version}"]
    lines.append(f"#EXT-X-TARGETDURATION:{playlist.effective_target_duration}")
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{playlist.media_sequence}")
    if playlist.playlist_type:
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist.playlist_type}")
    if playlist.independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    if playlist.iframes_only:
        lines.append("#EXT-X-I-FRAMES-ONLY")
    if playlist.map_uri is not None:
        lines.append(f"#EXT-X-MAP:URI={_quoted(playlist.map_uri)}")
    for segment in playlist.segments:
        lines.append(f"#EXTINF:{_duration(segment.duration)},")
        if segment.byterange is not None:
            lines.append(f"#EXT-X-BYTERANGE:{segment.byterange.length}@{segment.byterange.offset}")
        lines.append(segment.uri)
    if playlist.endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def render_master(playlist: MasterPlaylist) -> str:
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{playlist.version}"]
    if playlist.independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    if playlist.content_steering is not None:
        attrs = [f"SERVER-URI={_quoted(playlist.content_steering.server_uri)}"]
        if playlist.content_steering.pathway_id:
            attrs.append(f"PATHWAY-ID={_quoted(playlist.content_steering.pathway_id)}")
        lines.append("#EXT-X-CONTENT-STEERING:" + ",".join(attrs))
    for audio in playlist.audio:
        attrs = [
            "TYPE=AUDIO",
            f"GROUP-ID={_quoted(audio.group_id)}",
            f"NAME={_quoted(audio.name)}",
        ]
        if audio.language:
            attrs.append(f"LANGUAGE={_quoted(audio.language)}")
        attrs.append(f"DEFAULT={'YES' if audio.default else 'NO'}")
        attrs.append(f"AUTOSELECT={'YES' if audio.autoselect else 'NO'}")
        if audio.channels:
            attrs.append(f"CHANNELS={_quoted(str(audio.channels))}")
        attrs.append(f"URI={_quoted(audio.uri)}")
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs))
    for variant in playlist.variants:
        attrs = [f"BANDWIDTH={variant.bandwidth}"]
        if variant.average_bandwidth is not None:
            attrs.append(f"AVERAGE-BANDWIDTH={variant.average_bandwidth}")
        attrs.append(f"CODECS={_quoted(variant.codecs)}")
        attrs.append(f"RESOLUTION={variant.resolution[0]}x{variant.resolution[1]}")
        if variant.frame_rate is not None:
            attrs.append(f"FRAME-RATE={_frame_rate(variant.frame_rate)}")
        if variant.audio_group is not None:
            attrs.append(f"AUDIO={_quoted(variant.audio_group)}")
        if variant.pathway_id is not None:
            attrs.append(f"PATHWAY-ID={_quoted(variant.pathway_id)}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(variant.uri)
    for iframe in playlist.iframe_variants:
        attrs = [f"BANDWIDTH={iframe.bandwidth}"]
        if iframe.average_bandwidth is not None:
            attrs.append(f"AVERAGE-BANDWIDTH={iframe.average_bandwidth}")
        attrs.append(f"CODECS={_quoted(iframe.codecs)}")
        attrs.append(f"RESOLUTION={iframe.resolution[0]}x{iframe.resolution[1]}")
        if iframe.pathway_id is not None:
            attrs.append(f"PATHWAY-ID={_quoted(iframe.pathway_id)}")
        attrs.append(f"URI={_quoted(iframe.uri)}")
        lines.append("#EXT-X-I-FRAME-STREAM-INF:" + ",".join(attrs))
    return "\n".join(lines) + "\n"
