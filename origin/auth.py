"""The origin's admin token: from SURGE_ADMIN_TOKEN, else generated once into DATA/admin.token (mode
0600). Requests are checked by ``service.auth.check_bearer``, as on every server."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from service.auth import TOKEN_ENV

__all__ = ["TOKEN_ENV", "load_or_create_token"]  # TOKEN_ENV: where the token may come from


def load_or_create_token(path: Path, configured: str | None = None) -> tuple[str, str]:
    """(token, where it came from). Creates the file atomically with 0600 when nothing is configured."""
    token = configured or os.environ.get(TOKEN_ENV)
    if token:
        return token, "configured" if configured else TOKEN_ENV
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing, str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    partial.rename(path)
    return token, str(path)
