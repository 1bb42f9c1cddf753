"""The admin token: from SURGE_ADMIN_TOKEN, else generated once into DATA/admin.token (mode 0600)."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from aiohttp import web

from media.errors import SurgeError

TOKEN_ENV = "SURGE_ADMIN_TOKEN"


class Unauthorized(SurgeError):
    status = 401
    headers = {"WWW-Authenticate": 'Bearer realm="surge admin"'}  # noqa: RUF012


class Forbidden(SurgeError):
    status = 403


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


def bearer_token(request: web.Request, what: str = "admin token") -> str:
    """The request's bearer token; 401 without one."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized(f"missing {what}: send Authorization: Bearer <token>")
    return given.strip()


def check_bearer(request: web.Request, token: str) -> None:
    """401 without credentials, 403 with wrong ones; compared in constant time."""
    if not hmac.compare_digest(bearer_token(request).encode(), token.encode()):
        raise Forbidden("wrong admin token")
