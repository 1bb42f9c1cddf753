"""The origin's configuration: frozen and validated once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from media.errors import InvalidInput
from media.signing import SigningKeys
from transcoder.plan import PackageConfig

MiB = 1024 * 1024
PACKAGERS = ("local", "processes", "ray")
GiB = 1024 * MiB


@dataclass(frozen=True)
class OriginConfig:
    data: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = 8080
    max_upload: int = 4 * GiB
    min_free_disk: int = 1 * GiB  # refuse uploads (507) that would leave less than this free
    jobs: int = 1  # packaging jobs at once
    admin_token: str | None = None  # None: SURGE_ADMIN_TOKEN, else DATA/admin.token
    cors_origin: str = "*"  # Access-Control-Allow-Origin on delivery; "" turns CORS off
    playlist_max_age: int = 2  # seconds; segments are immutable
    shutdown_timeout: float = 30.0
    delivery_memory: int = 256 * MiB  # published files kept in memory for delivery
    signing_keys: SigningKeys | None = None  # delivery needs signed URLs when set
    package: PackageConfig = field(default_factory=PackageConfig)
    packaging_attempts: int = 3  # transient failures (ffmpeg killed, disk full) are retried up to this
    retry_delay: float = 2.0  # seconds before the first retry; doubled for each next one
    fleet: str | None = None  # the fleet's URL: deleting a title purges it there
    # Who runs packaging jobs: "local" ffmpeg processes (``jobs`` at once), or workers leased jobs over
    # HTTP (origin/remote.py): "ray" (machines offering surge_packager units), "processes" (child
    # processes of this machine, ``jobs`` at once: the remote path without a cluster).
    packagers: str = "local"
    ray_address: str | None = None  # the Ray head's host:port; None: this machine's cluster
    ray_namespace: str = "surge"
    lease_duration: float = 30.0  # seconds a worker's lease runs without renewal
    lease_start_timeout: float = 120.0  # seconds for a worker to be placed, start and first renew

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidInput(f"invalid port {self.port}")
        if self.max_upload <= 0:
            raise InvalidInput("--max-upload must be positive")
        if not 1 <= self.jobs <= 64:
            raise InvalidInput("--jobs must be 1-64")
        if not 1 <= self.packaging_attempts <= 20 or not 0 <= self.retry_delay <= 3600:
            raise InvalidInput("--packaging-attempts must be 1-20 and --retry-delay 0-3600 s")
        if self.min_free_disk < 0 or self.playlist_max_age < 0:
            raise InvalidInput("sizes and ages cannot be negative")
        if self.fleet is not None:
            parts = urlsplit(self.fleet)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InvalidInput(f"invalid --fleet URL {self.fleet!r}: expected http://host:port")
        if self.packagers not in PACKAGERS:
            raise InvalidInput(f"--packagers must be one of {', '.join(PACKAGERS)}")
        if not 1 <= self.lease_duration <= self.lease_start_timeout <= 3600:
            raise InvalidInput("--packager-lease must be 1-3600 s and --packager-start-timeout at least that")


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": MiB,
          "g": 1000**3, "gb": 1000**3, "gib": GiB, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}  # fmt: skip


def parse_size(text: str) -> int:
    """``"512MiB"``, ``"2G"``, ``"1000"`` → bytes."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if match is None or match[2].lower() not in _UNITS:
        raise InvalidInput(f"invalid size {text!r}: expected e.g. 512MiB, 2G or 1000000")
    return int(float(match[1]) * _UNITS[match[2].lower()])
