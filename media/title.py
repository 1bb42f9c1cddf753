"""``title.json``: what a packaged title is, written next to its playlists."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RenditionInfo:
    name: str
    width: int
    height: int
    frame_rate: float
    codecs: str
    bandwidth: int  # measured peak, bits/s
    average_bandwidth: int
    segments: int


@dataclass(frozen=True)
class AudioInfo:
    codecs: str
    language: str
    channels: int
    bandwidth: int
    average_bandwidth: int
    segments: int


@dataclass(frozen=True)
class TitleInfo:
    id: str
    name: str
    duration: float
    created: str  # ISO 8601, UTC
    renditions: tuple[RenditionInfo, ...]
    audio: AudioInfo | None
    segment_duration: int
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def codecs(self) -> list[str]:
        codecs = sorted({r.codecs for r in self.renditions})
        return codecs + ([self.audio.codecs] if self.audio else [])

    def to_json(self) -> str:
        data = asdict(self)
        data["codecs"] = self.codecs
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TitleInfo:
        data = json.loads(text)
        data.pop("codecs", None)
        data["renditions"] = tuple(RenditionInfo(**r) for r in data["renditions"])
        data["audio"] = AudioInfo(**data["audio"]) if data.get("audio") else None
        return cls(**data)
