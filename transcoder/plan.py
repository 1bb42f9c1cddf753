"""What to encode, decided from source facts and configuration (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from media.errors import InvalidInput
from media.ladder import DEFAULT_LADDER, Rendition, Rung, choose_ladder
from media.probe import SourceFacts, bcp47_language

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
AUDIO_DIR = "audio"


@dataclass(frozen=True)
class PackageConfig:
    ladder: tuple[Rung, ...] = DEFAULT_LADDER
    preset: str = "veryfast"
    segment_duration: int = 6  # seconds; Apple HLS authoring spec 7.5
    keyframe_interval: int = 2  # seconds; IDR cadence, aligned across renditions
    audio_bitrate: int = 128_000
    audio_language: str = "und"
    max_frame_rate: int = 60
    stall_timeout: float = 120.0  # seconds without progress from ffmpeg before it is stopped
    # Longer titles are encoded in chunks of about this many seconds, in parallel, when packager slots are
    # free (transcoder/chunks.py); 0 keeps every title in one ffmpeg process.
    chunk_seconds: int = 60

    def __post_init__(self) -> None:
        if self.preset not in X264_PRESETS:
            raise InvalidInput(f"unknown x264 preset {self.preset!r}; one of {', '.join(X264_PRESETS)}")
        if not 1 <= self.keyframe_interval <= 10:
            raise InvalidInput("the key frame interval must be 1-10 s")
        if not 1 <= self.segment_duration <= 30:
            raise InvalidInput("the segment duration must be 1-30 s")
        if self.segment_duration % self.keyframe_interval:
            # Segments can only be cut at key frames; anything else makes segments longer than the target.
            raise InvalidInput(
                f"the segment duration ({self.segment_duration} s) must be a multiple of the key frame "
                f"interval ({self.keyframe_interval} s)"
            )
        if not 0 <= self.chunk_seconds <= 86_400:
            raise InvalidInput("the chunk length must be 0 (off) to 86400 s")
        if not 16_000 <= self.audio_bitrate <= 512_000:
            raise InvalidInput("the audio bitrate must be 16k-512k")
        if not self.ladder:
            raise InvalidInput("the ladder is empty")
        if self.audio_language != "und":
            standard = bcp47_language(self.audio_language)
            if standard is None:
                raise InvalidInput(f"{self.audio_language!r} is not a language tag (e.g. en, fr, pt-BR)")
            object.__setattr__(self, "audio_language", standard)  # eng -> en, as HLS wants


@dataclass(frozen=True)
class AudioPlan:
    name: str
    bitrate: int
    channels: int
    sample_rate: int
    language: str


@dataclass(frozen=True)
class PackagePlan:
    source: Path
    duration: float
    renditions: tuple[Rendition, ...]
    audio: AudioPlan | None
    frame_rate: Fraction
    frame_rate_divisor: int  # 1 keeps every frame; n keeps one frame in n
    segment_duration: int
    keyframe_interval: int
    preset: str
    source_facts: SourceFacts = field(compare=False)

    @property
    def gop_frames(self) -> int:
        return max(1, round(self.frame_rate * self.keyframe_interval))


def output_frame_rate(source_rate: Fraction, max_rate: int) -> tuple[Fraction, int]:
    """Keep the source's rate, or divide it by the smallest whole number that brings it within the cap."""
    divisor = 1
    while source_rate / divisor > max_rate:
        divisor += 1
    return source_rate / divisor, divisor


def make_plan(source: Path, facts: SourceFacts, config: PackageConfig) -> PackagePlan:
    renditions = choose_ladder(facts.display_width, facts.display_height, config.ladder)
    frame_rate, divisor = output_frame_rate(facts.frame_rate, config.max_frame_rate)
    audio = None
    if facts.has_audio:
        channels = 1 if facts.audio_channels == 1 else 2
        audio = AudioPlan(
            name=AUDIO_DIR,
            bitrate=config.audio_bitrate if channels == 2 else config.audio_bitrate // 2,
            channels=channels,
            sample_rate=48_000,
            language=facts.audio_language or config.audio_language,
        )
    return PackagePlan(
        source=source,
        duration=facts.duration,
        renditions=tuple(renditions),
        audio=audio,
        frame_rate=frame_rate,
        frame_rate_divisor=divisor,
        segment_duration=config.segment_duration,
        keyframe_interval=config.keyframe_interval,
        preset=config.preset,
        source_facts=facts,
    )
