"""Facts about a source file, from ffprobe.

``facts_from_probe`` is pure (ffprobe's JSON in, ``SourceFacts`` out); ``probe_source`` is the thin I/O.
ffprobe is run directly rather than through ffmpeg-python's ``probe``: that one (0.2) has no timeout and
would turn a ``timeout=`` keyword into an ffprobe flag, and a hostile upload must not hang a worker.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import langcodes
from langcodes.tag_parser import LanguageTagError

from media.errors import DamagedMedia, ToolMissing, UnsupportedMedia

PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SourceFacts:
    duration: float
    width: int  # coded width, before rotation and sample aspect
    height: int
    sample_aspect: Fraction
    rotation: int  # degrees clockwise the player must rotate: 0, 90, 180 or 270
    frame_rate: Fraction
    video_codec: str
    pix_fmt: str
    has_audio: bool
    audio_codec: str | None
    audio_channels: int
    audio_language: str | None
    container: str = ""  # ffprobe's format names, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or "mpegts"

    @property
    def display_width(self) -> int:
        """Width as shown: sample aspect applied, then rotation."""
        w, _h = self._upright_coded()
        return w

    @property
    def display_height(self) -> int:
        _w, h = self._upright_coded()
        return h

    @property
    def display_aspect(self) -> Fraction:
        return Fraction(self.display_width, self.display_height)

    def _upright_coded(self) -> tuple[int, int]:
        width = round(self.width * self.sample_aspect) if self.sample_aspect > 0 else self.width
        if self.rotation in (90, 270):
            return self.height, width
        return width, self.height


def _fraction(text: str | None) -> Fraction | None:
    if not text or text in ("0/0", "N/A"):
        return None
    try:
        value = Fraction(text.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _rotation(stream: dict[str, Any]) -> int:
    degrees: float = 0.0
    for side_data in stream.get("side_data_list") or []:
        if "rotation" in side_data:
            degrees = float(side_data["rotation"])
            break
    else:
        rotate_tag = (stream.get("tags") or {}).get("rotate")
        if rotate_tag is not None:
            # The legacy tag counts clockwise; the display matrix counts counter-clockwise.
            degrees = -float(rotate_tag)
    return round(-degrees / 90.0) * 90 % 360


def _duration(probe: dict[str, Any], video: dict[str, Any]) -> float | None:
    for text in ((probe.get("format") or {}).get("duration"), video.get("duration")):
        try:
            value = float(text) if text is not None else 0.0
        except ValueError:
            continue
        if value > 0:
            return value
    return None


def facts_from_probe(probe: dict[str, Any], name: str = "source") -> SourceFacts:
    """Turn ffprobe's ``-show_format -show_streams`` JSON into facts; raise a domain error when unusable."""
    streams = probe.get("streams") or []
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos:
        raise UnsupportedMedia(f"{name} has no video stream")
    video = videos[0]
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise DamagedMedia(f"{name}: the video stream has no picture size")
    duration = _duration(probe, video)
    if duration is None:
        raise DamagedMedia(f"{name}: the duration cannot be read (truncated or damaged file?)")
    frame_rate = _fraction(video.get("avg_frame_rate")) or _fraction(video.get("r_frame_rate"))
    if frame_rate is None:
        raise DamagedMedia(f"{name}: the frame rate cannot be read")
    audio = audios[0] if audios else None
    return SourceFacts(
        duration=duration,
        width=width,
        height=height,
        sample_aspect=_fraction(video.get("sample_aspect_ratio")) or Fraction(1),
        rotation=_rotation(video),
        frame_rate=frame_rate,
        video_codec=str(video.get("codec_name") or "unknown"),
        pix_fmt=str(video.get("pix_fmt") or "unknown"),
        has_audio=audio is not None,
        audio_codec=str(audio.get("codec_name")) if audio else None,
        audio_channels=int(audio.get("channels") or 0) if audio else 0,
        audio_language=_language(audio),
        container=str((probe.get("format") or {}).get("format_name") or ""),
    )


def _language(audio: dict[str, Any] | None) -> str | None:
    language = ((audio or {}).get("tags") or {}).get("language")
    return None if not language else bcp47_language(str(language))


def bcp47_language(tag: str) -> str | None:
    """A container's language tag (MP4 and MKV carry ISO 639-2, ``eng``/``fre``/``ger``) as the RFC 5646
    tag HLS wants in ``LANGUAGE`` (its shortest form, ``en``/``fr``/``de``); None when it says nothing
    (``und``) or is not a language tag at all."""
    try:
        standard = langcodes.standardize_tag(tag)
    except LanguageTagError:
        return None
    return standard if standard != "und" and langcodes.tag_is_valid(standard) else None


# Top-level ISO-BMFF box types a real MP4/MOV file may start with.
_MP4_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp"}


def looks_like_mp4(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] in _MP4_FIRST_BOXES


def probe_error(stderr: str, name: str, head: bytes = b"") -> DamagedMedia | UnsupportedMedia:
    """Classify ffprobe's complaint: damaged media (422) versus not media at all (415).

    ``head`` is the first bytes of the file: an MP4 whose index ffprobe cannot find is damaged (usually
    truncated, since the index is written last), but a text file named .mp4 is simply not media.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = lines[-1] if lines else "ffprobe could not read it"
    detail = re.sub(r"^(file:)?\S+: ", "", detail)
    if looks_like_mp4(head) and ("moov atom not found" in stderr or "Invalid data" in stderr):
        return DamagedMedia(f"{name} is a truncated or damaged MP4 (its index cannot be read): {detail}")
    return UnsupportedMedia(f"{name} is not a readable video file: {detail}")


def probe_source(path: Path, name: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> SourceFacts:
    """Run ffprobe on ``path`` (blocking: call it from a worker thread in servers)."""
    label = name or path.name
    if shutil.which("ffprobe") is None:
        raise ToolMissing("ffprobe is not installed (make setup installs it with apt-get)")
    if not path.is_file():
        raise UnsupportedMedia(f"{label}: no such file")
    if path.stat().st_size == 0:
        raise UnsupportedMedia(f"{label} is empty")
    # "file:" keeps a name such as "http:x" or "-i" from being read as a protocol or an option.
    command = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json"]
    command.append(f"file:{path.resolve()}")
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DamagedMedia(f"{label}: ffprobe did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        with path.open("rb") as handle:
            head = handle.read(16)
        raise probe_error(done.stderr.decode(errors="replace"), label, head)
    try:
        probe = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise UnsupportedMedia(f"{label} is not a readable video file") from None
    return facts_from_probe(probe, label)
