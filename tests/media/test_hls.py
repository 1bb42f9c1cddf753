from dataclasses import replace
from fractions import Fraction

import m3u8
import pytest

from media.errors import InvalidPlaylist
from media.hls import (
    AudioRendition,
    ByteRange,
    ContentSteering,
    IFrameVariant,
    MasterPlaylist,
    MediaPlaylist,
    Segment,
    Variant,
    parse_master,
    parse_media,
    render_master,
    render_media,
)
from media.hls.build import (
    Bitrates,
    MeasuredAudio,
    MeasuredVideo,
    build_iframe_playlist,
    build_master,
    measure_bitrates,
)
from media.hls.model import target_duration_for
from media.hls.parse import parse_attributes

MEDIA = MediaPlaylist(
    segments=(Segment("seg_00000.m4s", 6.0), Segment("seg_00001.m4s", 6.0), Segment("seg_00002.m4s", 2.5)),
    map_uri="init.mp4",
)

MEDIA_TEXT = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:6
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXTINF:6,
seg_00000.m4s
#EXTINF:6,
seg_00001.m4s
#EXTINF:2.5,
seg_00002.m4s
#EXT-X-ENDLIST
"""

MASTER = MasterPlaylist(
    variants=(
        Variant(
            "234p/index.m3u8",
            bandwidth=300_000,
            average_bandwidth=250_000,
            codecs="avc1.64000d,mp4a.40.2",
            resolution=(416, 234),
            frame_rate=Fraction(30000, 1001),
            audio_group="audio",
        ),
    ),
    audio=(AudioRendition("audio", "Main", "audio/index.m3u8", language="en", channels=2),),
    iframe_variants=(IFrameVariant("234p/iframes.m3u8", 40_000, "avc1.64000d", (416, 234), 30_000),),
)

MASTER_TEXT = """#EXTM3U
#EXT-X-VERSION:4
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="Main",LANGUAGE="en",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2",URI="audio/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=300000,AVERAGE-BANDWIDTH=250000,CODECS="avc1.64000d,mp4a.40.2",RESOLUTION=416x234,FRAME-RATE=29.970,AUDIO="audio"
234p/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=40000,AVERAGE-BANDWIDTH=30000,CODECS="avc1.64000d",RESOLUTION=416x234,URI="234p/iframes.m3u8"
"""


def test_media_playlist_golden() -> None:
    assert render_media(MEDIA) == MEDIA_TEXT


def test_master_playlist_golden() -> None:
    assert render_master(MASTER) == MASTER_TEXT


def test_media_round_trip() -> None:
    parsed = parse_media(render_media(MEDIA))
    assert parsed.segments == MEDIA.segments
    assert parsed.map_uri == "init.mp4"
    assert parsed.target_duration == 6
    assert parsed.endlist and parsed.independent_segments and parsed.playlist_type == "VOD"
    assert render_media(parsed) == MEDIA_TEXT


def test_master_round_trip() -> None:
    parsed = parse_master(render_master(MASTER))
    assert parsed.audio == MASTER.audio
    assert parsed.iframe_variants == MASTER.iframe_variants
    assert parsed.variants[0].frame_rate == Fraction("29.970")
    assert render_master(parsed) == MASTER_TEXT


def test_steered_master_round_trip() -> None:
    """RFC 8216bis 4.4.6.3, 4.4.6.6: PATHWAY-ID on variants and I-frame variants survives a round trip."""
    base = parse_master(MASTER_TEXT)  # FRAME-RATE is written with three decimals: start from those
    steered = replace(
        base,
        variants=tuple(replace(v, pathway_id=p) for v in base.variants for p in ("edge-a", "edge-b")),
        iframe_variants=tuple(
            replace(i, pathway_id=p) for i in base.iframe_variants for p in ("edge-a", "edge-b")
        ),
        content_steering=ContentSteering("/steer/show.json", "edge-a"),
    )
    assert steered.iframe_variants, "the fixture must have an I-frame variant"
    assert parse_master(render_master(steered)) == steered


def test_second_opinion_from_the_m3u8_package() -> None:
    master = m3u8.loads(MASTER_TEXT)
    assert master.is_variant
    playlist = master.playlists[0]
    assert playlist.stream_info.bandwidth == 300_000
    assert playlist.stream_info.average_bandwidth == 250_000
    assert playlist.stream_info.codecs == "avc1.64000d,mp4a.40.2"
    assert playlist.stream_info.resolution == (416, 234)
    assert playlist.stream_info.audio == "audio"
    assert master.media[0].type == "AUDIO" and master.media[0].language == "en"
    assert master.iframe_playlists[0].uri == "234p/iframes.m3u8"
    media = m3u8.loads(MEDIA_TEXT)
    assert [s.duration for s in media.segments] == [6.0, 6.0, 2.5]
    assert media.target_duration == 6 and media.version == 6 and media.is_endlist
    assert media.segment_map[0].uri == "init.mp4"


def test_iframe_playlist() -> None:
    iframes = build_iframe_playlist(MEDIA, [900, 800, 700])
    text = render_media(iframes)
    assert "#EXT-X-I-FRAMES-ONLY" in text
    assert "#EXT-X-VERSION:5" in text  # EXT-X-MAP with I-frames only
    assert "#EXT-X-BYTERANGE:900@0\nseg_00000.m4s" in text
    parsed = m3u8.loads(text)
    assert parsed.is_i_frames_only
    assert [s.byterange for s in parsed.segments] == ["900@0", "800@0", "700@0"]
    assert parse_media(text).segments[2].byterange == ByteRange(700, 0)
    with pytest.raises(ValueError):
        build_iframe_playlist(MEDIA, [1])


@pytest.mark.parametrize(
    ("playlist", "version"),
    [
        (MediaPlaylist(segments=(Segment("a.ts", 6),), map_uri=None), 1),
        (MediaPlaylist(segments=(Segment("a.ts", 6.5),), map_uri=None), 3),
        (MediaPlaylist(segments=(Segment("a.ts", 6, ByteRange(10, 0)),), map_uri=None), 4),
        (MediaPlaylist(segments=(Segment("a.ts", 6),), map_uri=None, iframes_only=True), 4),
        (MediaPlaylist(segments=(Segment("a.m4s", 6),), map_uri="i.mp4", iframes_only=True), 5),
        (MediaPlaylist(segments=(Segment("a.m4s", 6),), map_uri="i.mp4"), 6),
    ],
)
def test_version_follows_features(playlist: MediaPlaylist, version: int) -> None:
    assert playlist.version == version


def test_master_version() -> None:
    assert MASTER.version == 4
    assert MasterPlaylist(variants=MASTER.variants).version == 1


def test_target_duration_rounds_to_nearest() -> None:
    # RFC 8216 4.3.3.1: each EXTINF rounded to the nearest integer is at most the target.
    assert target_duration_for((Segment("a", 6.006), Segment("b", 2.0))) == 6
    assert target_duration_for((Segment("a", 6.5),)) == 7
    assert target_duration_for(()) == 1


def test_measure_bitrates() -> None:
    assert measure_bitrates([750_000, 375_000], [6.0, 2.0]) == Bitrates(peak=1_500_000, average=1_125_000)
    with pytest.raises(ValueError):
        measure_bitrates([1], [])
    with pytest.raises(ValueError):
        measure_bitrates([], [])


def test_build_master_adds_audio_to_every_variant() -> None:
    video = MeasuredVideo(
        uri="360p/index.m3u8",
        iframe_uri="360p/iframes.m3u8",
        width=640,
        height=360,
        frame_rate=Fraction(30),
        codecs="avc1.64001e",
        bitrates=Bitrates(400_000, 350_000),
        iframe_bitrates=Bitrates(50_000, 20_000),
    )
    low = MeasuredVideo(
        **{**video.__dict__, "uri": "234p/index.m3u8", "bitrates": Bitrates(200_000, 150_000)}
    )
    audio = MeasuredAudio("audio/index.m3u8", "mp4a.40.2", Bitrates(130_000, 128_000), "en", "Main", 2)
    master = build_master([video, low], audio)
    assert [v.uri for v in master.variants] == ["234p/index.m3u8", "360p/index.m3u8"]
    assert master.variants[1].bandwidth == 530_000
    assert master.variants[1].average_bandwidth == 478_000
    assert master.variants[1].codecs == "avc1.64001e,mp4a.40.2"
    assert master.iframe_variants[1].bandwidth == 50_000 and master.iframe_variants[1].codecs == "avc1.64001e"
    silent = build_master([video], None)
    assert silent.variants[0].audio_group is None and silent.variants[0].bandwidth == 400_000
    assert "#EXT-X-MEDIA" not in render_master(silent)


def test_attribute_lists() -> None:
    assert parse_attributes('BANDWIDTH=1,CODECS="a,b",RESOLUTION=2x3') == {
        "BANDWIDTH": "1",
        "CODECS": "a,b",
        "RESOLUTION": "2x3",
    }
    with pytest.raises(InvalidPlaylist):
        parse_attributes('CODECS="unterminated')


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a playlist",
        "#EXTM3U\n#EXTINF:6,\nseg.m4s\n",  # no target duration
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\nseg.m4s\n",  # segment without EXTINF
        "#EXTM3U\n#EXT-X-TARGETDURATION:six\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:abc,\nseg.m4s\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:LIVE\n",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n",
    ],
)
def test_parse_media_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidPlaylist):
        parse_media(text)


@pytest.mark.parametrize(
    "text",
    [
        "#EXTM3U\n",
        '#EXTM3U\n#EXT-X-STREAM-INF:CODECS="a"\na.m3u8\n',  # no BANDWIDTH
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=big\na.m3u8\n",
        MEDIA_TEXT,
    ],
)
def test_parse_master_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidPlaylist):
        parse_master(text)


def test_parse_skips_unknown_tags_and_accepts_crlf() -> None:
    text = MEDIA_TEXT.replace("#EXT-X-ENDLIST", "#EXT-X-FUTURE-TAG:1\n#EXT-X-ENDLIST").replace("\n", "\r\n")
    assert parse_media(text).segments == MEDIA.segments


def test_render_refuses_unquotable_values() -> None:
    bad = MasterPlaylist(variants=(Variant('x"y.m3u8', 1, 'avc1"', (2, 2)),))
    with pytest.raises(ValueError):
        render_master(bad)
