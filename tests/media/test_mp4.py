import json
import struct
import subprocess
from pathlib import Path

import pytest

from media.errors import DamagedMedia
from media.mp4 import aac_codec_string, avc_codec_string, first_sample, iter_boxes, track_setup


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def test_iter_boxes_walks_siblings_and_large_sizes() -> None:
    data = box(b"ftyp", b"isom") + struct.pack(">I4sQ", 1, b"mdat", 16 + 3) + b"abc"
    kinds = [(b.kind, b.start, b.body, b.end) for b in iter_boxes(data)]
    assert kinds == [(b"ftyp", 0, 8, 12), (b"mdat", 12, 28, 31)]


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">I4s", 100, b"moov"),  # overruns
        struct.pack(">I4s", 4, b"moov"),  # smaller than its header
        struct.pack(">I4s", 1, b"mdat") + b"\x00",  # 64-bit size cut short
    ],
)
def test_malformed_boxes_raise_domain_errors(data: bytes) -> None:
    with pytest.raises(DamagedMedia):
        list(iter_boxes(data))


def test_init_without_tracks() -> None:
    with pytest.raises(DamagedMedia):
        avc_codec_string(box(b"ftyp", b"isom"))
    with pytest.raises(DamagedMedia):
        first_sample(box(b"styp", b"msdh"))


def _hls_fmp4(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
            "-f", "lavfi", "-i", "sine=duration=4", *args,
            "-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", "2", "-hls_playlist_type", "vod",
            "-hls_segment_filename", str(out / "seg_%05d.m4s"), str(out / "index.m3u8"),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return out


def _ffprobe_stream(out: Path) -> dict[str, object]:
    """ffprobe's view of the rendition's init segment followed by its first media segment."""
    joined = out / "joined.mp4"
    joined.write_bytes((out / "init.mp4").read_bytes() + (out / "seg_00000.m4s").read_bytes())
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(joined)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return json.loads(done.stdout)["streams"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("profile", "profile_idc"), [("high", 0x64), ("main", 0x4D), ("baseline", 0x42)])
def test_avc_codec_string_matches_ffprobe(tmp_path: Path, profile: str, profile_idc: int) -> None:
    out = _hls_fmp4(tmp_path, "-map", "0:v", "-c:v", "libx264", "-profile:v", profile, "-level", "2.1")
    codec = avc_codec_string((out / "init.mp4").read_bytes())
    stream = _ffprobe_stream(out)
    assert codec.startswith("avc1.")
    assert int(codec[5:7], 16) == profile_idc
    assert int(codec[9:11], 16) == stream["level"] == 21


def test_aac_codec_string(tmp_path: Path) -> None:
    out = _hls_fmp4(tmp_path, "-map", "1:a", "-c:a", "aac", "-profile:a", "aac_low")
    assert aac_codec_string((out / "init.mp4").read_bytes()) == "mp4a.40.2"
    assert _ffprobe_stream(out)["profile"] == "LC"
    with pytest.raises(DamagedMedia):
        avc_codec_string((out / "init.mp4").read_bytes())


def test_first_sample_is_the_key_frame(tmp_path: Path) -> None:
    out = _hls_fmp4(tmp_path, "-map", "0:v", "-c:v", "libx264", "-g", "50", "-sc_threshold", "0")
    init = (out / "init.mp4").read_bytes()
    segment = (out / "seg_00001.m4s").read_bytes()
    sample = first_sample(segment)
    assert sample.is_sync
    assert 0 < sample.end < len(segment)
    # ffprobe agrees: init + the byte range decodes to exactly one key frame.
    clip = tmp_path / "iframe.mp4"
    clip.write_bytes(init + segment[: sample.end])
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_packets", "-of", "json", str(clip)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    packets = json.loads(done.stdout)["packets"]
    assert packets and packets[0]["flags"].startswith("K")
    assert int(packets[0]["size"]) == sample.end - int(packets[0]["pos"]) + len(init)
    with pytest.raises(DamagedMedia):
        first_sample(segment[: sample.end - 1][:200])


def test_track_setup_tells_alike_encodes_from_different_ones(tmp_path: Path) -> None:
    def init(name: str, *args: str) -> bytes:
        directory = tmp_path / name
        directory.mkdir()
        return (_hls_fmp4(directory, "-map", "0:v", "-c:v", "libx264", *args) / "init.mp4").read_bytes()

    first = track_setup(init("first", "-preset", "veryfast"))
    assert track_setup(init("again", "-preset", "veryfast")) == first
    assert track_setup(init("other", "-preset", "ultrafast")).sample_description != first.sample_description
    # ffprobe agrees on the timescale (the stream's time base) and sees the edit list.
    joined = tmp_path / "first" / "out"
    stream = _ffprobe_stream(joined)
    assert stream["time_base"] == f"1/{first.timescale}"
    assert first.edit_list  # B-frames: presentation starts after the first decode times
    with pytest.raises(DamagedMedia, match="sample description"):
        track_setup(box(b"moov", box(b"trak", b"")))
