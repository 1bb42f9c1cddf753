"""The edge's configuration: frozen and validated once."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from media.errors import InvalidInput
from media.signing import SigningKeys


def _default_id() -> str:
    return f"{socket.gethostname().split('.')[0]}-{os.getpid()}"


@dataclass(frozen=True)
class EdgeConfig:
    upstreams: tuple[str, ...]
    parent: str | None = None
    host: str = "127.0.0.1"
    port: int = 8081
    cache_mem: int = 512 * 1024 * 1024
    cache_dir: Path | None = None
    cache_disk: int = 0
    edge_id: str = field(default_factory=_default_id)
    max_object_share: float = 0.25  # objects larger than this share of a tier pass through it
    prefetch: int = 2  # next segments filled in the background after a segment request
    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    admin_token: str | None = None
    cors_origin: str = "*"  # Access-Control-Allow-Origin of preflight answers; "" turns them off
    signing_keys: SigningKeys | None = None  # None: no signed URLs needed
    shutdown_timeout: float = 30.0
    access_log: bool = True
    header_timeout: float = 10.0  # a client slower than this with its request headers gets 408
    keepalive_timeout: float = 75.0  # an idle client connection is closed after this
    # How long past its freshness a cached object may stand in while every upstream fails (Varnish's
    # grace); VOD playlists and segments never change, so a day by default.
    stale_grace: float = 86_400.0

    def __post_init__(self) -> None:
        if not self.upstreams and not self.parent:
            raise InvalidInput("an edge needs at least one --upstream (or a --parent)")
        for url in (*self.upstreams, *([self.parent] if self.parent else [])):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InvalidInput(f"invalid upstream URL {url!r}: expected http://host:port")
        if self.cache_mem <= 0:
            raise InvalidInput("--cache-mem must be positive")
        if self.cache_disk < 0 or (self.cache_disk > 0 and self.cache_dir is None):
            raise InvalidInput("--cache-disk needs --cache-dir")
        if not 0 < self.max_object_share <= 1:
            raise InvalidInput("the largest cacheable share must be within (0, 1]")
        if not self.header_timeout > 0 or not self.keepalive_timeout > 0:
            raise InvalidInput("--header-timeout and --keepalive-timeout must be positive")
        if not self.stale_grace >= 0:
            raise InvalidInput("--stale-grace must be 0 or more seconds")
        if not 0 <= self.prefetch <= 10:
            raise InvalidInput("--prefetch must be 0-10")
        if not 0 <= self.port <= 65535:
            raise InvalidInput(f"invalid port {self.port}")
        if not self.edge_id or any(c.isspace() or c == "," for c in self.edge_id):
            raise InvalidInput(f"invalid edge id {self.edge_id!r}")
