import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from media.errors import DamagedMedia, UnsupportedMedia
from media.probe import bcp47_language, facts_from_probe, looks_like_mp4, probe_error, probe_source
from tests.conftest import MakeSource


def probe_json(**video: Any) -> dict[str, Any]:
    stream = {
        "codec_type": "video",
        "codec_name": "h264",
        "width": 1920,
        "height": 1080,
        "avg_frame_rate": "30000/1001",
        "pix_fmt": "yuv420p",
    } | video
    return {"streams": [stream], "format": {"duration": "12.5"}}


def test_facts_from_probe() -> None:
    facts = facts_from_probe(probe_json())
    assert (facts.width, facts.height, facts.display_width, facts.display_height) == (1920, 1080, 1920, 1080)
    assert facts.frame_rate == Fraction(30000, 1001)
    assert facts.duration == 12.5
    assert facts.rotation == 0 and not facts.has_audio


@pytest.mark.parametrize(
    ("video", "rotation", "display"),
    [
        ({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": 90}]}, 270, (1080, 1920)),
        ({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]}, 90, (1080, 1920)),
        ({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": 180}]}, 180, (1920, 1080)),
        ({"tags": {"rotate": "90"}}, 90, (1080, 1920)),
        ({"sample_aspect_ratio": "4:3", "width": 1440}, 0, (1920, 1080)),
        ({"sample_aspect_ratio": "0:1"}, 0, (1920, 1080)),
    ],
)
def test_rotation_and_sample_aspect(video: dict[str, Any], rotation: int, display: tuple[int, int]) -> None:
    facts = facts_from_probe(probe_json(**video))
    assert facts.rotation == rotation
    assert (facts.display_width, facts.display_height) == display


def test_audio_facts() -> None:
    probe = probe_json()
    probe["streams"].append(
        {"codec_type": "audio", "codec_name": "aac", "channels": 6, "tags": {"language": "fre"}}
    )
    facts = facts_from_probe(probe)
    assert facts.has_audio and facts.audio_codec == "aac" and facts.audio_channels == 6
    assert facts.audio_language == "fr"  # ISO 639-2 in the container, the shortest RFC 5646 tag for HLS


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("eng", "en"), ("ger", "de"), ("deu", "de"), ("chi", "zh"), ("en-US", "en-US"), ("EN", "en"),
     ("yue", "yue"), ("qaa", "qaa"), ("und", None), ("english", None), ("e n", None), ("123", None),
     ("", None)],
)  # fmt: skip
def test_container_languages_become_rfc5646_tags(tag: str, expected: str | None) -> None:
    assert bcp47_language(tag) == expected


@pytest.mark.parametrize(
    ("probe", "error", "message"),
    [
        ({"streams": [{"codec_type": "audio"}], "format": {}}, UnsupportedMedia, "no video stream"),
        ({"streams": [], "format": {}}, UnsupportedMedia, "no video stream"),
        (probe_json(width=0), DamagedMedia, "picture size"),
        ({**probe_json(), "format": {"duration": "N/A"}}, DamagedMedia, "duration"),
        (probe_json(avg_frame_rate="0/0", r_frame_rate="0/0"), DamagedMedia, "frame rate"),
        (
            {"streams": [{**probe_json()["streams"][0], "disposition": {"attached_pic": 1}}], "format": {}},
            UnsupportedMedia,
            "no video stream",
        ),
    ],
)
def test_unusable_probes(probe: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        facts_from_probe(probe, "x.mp4")


def test_probe_error_classification() -> None:
    stderr = "[mov,mp4] moov atom not found\nfile:/tmp/x.mp4: Invalid data found when processing input\n"
    damaged = probe_error(stderr, "x.mp4", b"\x00\x00\x00\x20ftypisom")
    assert isinstance(damaged, DamagedMedia) and damaged.status == 422
    assert str(damaged).endswith(": Invalid data found when processing input")
    not_media = probe_error(stderr, "x.mp4", b"hello world\n")
    assert isinstance(not_media, UnsupportedMedia) and not_media.status == 415
    assert looks_like_mp4(b"\x00\x00\x00\x18ftypmp42") and not looks_like_mp4(b"ftyp")


# Real ffprobe on real files.


def test_probe_real_source(make_source: MakeSource) -> None:
    facts = probe_source(make_source("plain.mp4", width=320, height=240, duration=2))
    assert (facts.width, facts.height) == (320, 240)
    assert facts.has_audio and facts.audio_codec == "aac" and facts.audio_channels == 2
    assert facts.frame_rate == 30 and abs(facts.duration - 2.0) < 0.1
    assert facts.container == "mov,mp4,m4a,3gp,3g2,mj2"


def test_probe_rotated_source(make_source: MakeSource) -> None:
    facts = probe_source(make_source("rotated.mp4", width=320, height=240, duration=2, display_rotation=90))
    assert facts.rotation in (90, 270)
    assert (facts.display_width, facts.display_height) == (240, 320)


def test_probe_text_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(UnsupportedMedia, match=r"notes\.mp4 is not a readable video file"):
        probe_source(text)


def test_probe_truncated_mp4(make_source: MakeSource, tmp_path: Path) -> None:
    whole = make_source("plain.mp4", width=320, height=240, duration=2)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DamagedMedia, match="truncated or damaged"):
        probe_source(cut)


def test_probe_empty_and_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(UnsupportedMedia, match="empty"):
        probe_source(empty)
    with pytest.raises(UnsupportedMedia, match="no such file"):
        probe_source(tmp_path / "missing.mp4")


def test_probe_audio_only(tmp_path: Path) -> None:
    audio = tmp_path / "tone.m4a"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", str(audio)], check=True, timeout=60
    )
    with pytest.raises(UnsupportedMedia, match="no video stream"):
        probe_source(audio)


def test_probe_name_that_looks_like_an_option(make_source: MakeSource, tmp_path: Path) -> None:
    odd = tmp_path / "-i http:x.mp4"
    odd.write_bytes(make_source("plain.mp4", width=320, height=240, duration=2).read_bytes())
    assert probe_source(odd).width == 320
