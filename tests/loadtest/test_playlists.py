"""Playlist text → ladders and timelines with resolved URLs (parsing itself is media.hls's)."""

from __future__ import annotations

import pytest
from yarl import URL

from loadtest.playlists import Timeline, read_master, read_media, relative_ref
from loadtest.steering import PathwayClone
from media.hls import (
    AudioRendition,
    MasterPlaylist,
    MediaPlaylist,
    Segment,
    Variant,
    render_master,
    render_media,
)

BASE = "http://127.0.0.1:8080/titles/demo/master.m3u8"


def _master() -> str:
    return render_master(
        MasterPlaylist(
            variants=(
                Variant("360p/index.m3u8", 600_000, "avc1", (640, 360), 500_000, audio_group="aac"),
                Variant("234p/index.m3u8", 300_000, "avc1", (416, 234), None, audio_group="aac"),
            ),
            audio=(AudioRendition("aac", "Main", "audio/index.m3u8"),),
        )
    )


def test_master_ladder_ascends_with_resolved_urls() -> None:
    master = read_master(_master(), BASE)
    ladder = master.ladder(master.first_pathway)
    assert [(r.label, r.bitrate, r.bandwidth) for r in ladder] == [
        ("234p", 300_000, 300_000),
        ("360p", 500_000, 600_000),
    ]
    assert ladder[0].url == "http://127.0.0.1:8080/titles/demo/234p/index.m3u8"
    assert ladder[1].audio_url == "http://127.0.0.1:8080/titles/demo/audio/index.m3u8"
    assert master.steering is None and master.first_pathway == "."
    assert master.hosts == {"127.0.0.1"}


def test_master_groups_variants_by_pathway_and_resolves_the_steering_uri() -> None:
    text = (
        "#EXTM3U\n"
        '#EXT-X-CONTENT-STEERING:SERVER-URI="/steer",PATHWAY-ID="b"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=200000,PATHWAY-ID="a"\nhttp://localhost:1/a.m3u8\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=200000,PATHWAY-ID="b"\nb.m3u8\n'
    )
    master = read_master(text, BASE)
    assert set(master.pathways) == {"a", "b"} and master.first_pathway == "b"
    assert master.ladder("a")[0].url == "http://localhost:1/a.m3u8"
    assert master.ladder("unknown") == master.ladder("b")
    assert master.steering is not None and master.steering.server_uri == "http://127.0.0.1:8080/steer"
    assert master.hosts == {"127.0.0.1", "localhost"}
    assert master.ladder("a")[0].label == "200k"  # no RESOLUTION


def test_clones_replace_host_and_add_params() -> None:
    text = (
        "#EXTM3U\n"
        '#EXT-X-CONTENT-STEERING:SERVER-URI="/steer",PATHWAY-ID="e1"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a-e1",NAME="Main",URI="http://127.0.0.1:8101/t/x/audio/index.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=200000,AUDIO="a-e1",PATHWAY-ID="e1"\n'
        "http://127.0.0.1:8101/t/x/234p/index.m3u8\n"
    )
    master = read_master(text, BASE)
    clones = (
        PathwayClone("e1", "e2", "localhost:8102", (("s", "1"),)),
        PathwayClone("gone", "e3", "localhost:9"),  # unknown base: ignored
        PathwayClone("e1", "e1", "localhost:9"),  # already known: kept as is
    )
    cloned = master.with_clones(clones)
    assert set(cloned.pathways) == {"e1", "e2"} and cloned.ladder("e1") == master.ladder("e1")
    (rendition,) = cloned.ladder("e2")
    assert rendition.url == "http://localhost:8102/t/x/234p/index.m3u8?s=1"
    assert rendition.audio_url == "http://localhost:8102/t/x/audio/index.m3u8?s=1"
    assert cloned.hosts == {"127.0.0.1", "localhost"}
    assert master.with_clones(()) is master


def test_media_timeline_urls_ranges_and_next_refs() -> None:
    text = render_media(
        MediaPlaylist(
            segments=(Segment("seg_0.m4s", 2.0), Segment("seg_1.m4s", 2.0), Segment("/other/seg_2.m4s", 1.5)),
            map_uri="init.mp4",
        )
    )
    media = read_media(text, "http://127.0.0.1:8080/titles/demo/360p/index.m3u8")
    assert media.timeline == Timeline((2.0, 2.0, 1.5), (0.0, 2.0, 4.0), has_init=True)
    assert media.urls[1] == "http://127.0.0.1:8080/titles/demo/360p/seg_1.m4s"
    assert media.init_url == "http://127.0.0.1:8080/titles/demo/360p/init.mp4"
    assert media.next_refs == ("seg_1.m4s", "/other/seg_2.m4s", "")
    assert media.ranges == (None, None, None)


@pytest.mark.parametrize(
    ("position", "index"), [(0.0, 0), (1.9, 0), (1.9995, 1), (2.0, 1), (3.0, 1), (4.0, 2), (9.0, 2)]
)
def test_timeline_index_at(position: float, index: int) -> None:
    timeline = Timeline.of((2.0, 2.0, 1.5))
    assert timeline.index_at(position) == index
    assert timeline.total == 5.5


@pytest.mark.parametrize(
    ("source", "target", "ref"),
    [
        ("http://h/t/a/1.m4s", "http://h/t/a/2.m4s", "2.m4s"),
        ("http://h/t/a/1.m4s", "http://h/t/a/2.m4s?x=1", "2.m4s?x=1"),
        ("http://h/t/a/1.m4s", "http://h/t/b/2.m4s", "/t/b/2.m4s"),
        ("http://h/t/a/1.m4s", "http://g/t/a/2.m4s", "http://g/t/a/2.m4s"),
    ],
)
def test_relative_ref(source: str, target: str, ref: str) -> None:
    assert relative_ref(URL(source), URL(target)) == ref
