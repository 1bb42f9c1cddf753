"""Admin authentication, the same on every server: ``Authorization: Bearer <token>`` (RFC 6750 2.1).

401 (with ``WWW-Authenticate``, RFC 6750 3) without credentials, 403 with wrong ones or when the server
has no token; errors_as_json answers them as JSON. The compare takes constant time, and neither the
expected nor the given token is ever put in a message (messages are logged and sent back).
"""

from __future__ import annotations

import hmac

from aiohttp import web

from media.errors import SurgeError

TOKEN_ENV = "SURGE_ADMIN_TOKEN"
NO_TOKEN = f"admin requests are disabled: start the server with {TOKEN_ENV} or --admin-token"


class Unauthorized(SurgeError):
    status = 401
    headers = {"WWW-Authenticate": 'Bearer realm="surge admin"'}  # noqa: RUF012


class Forbidden(SurgeError):
    status = 403


def bearer_token(request: web.BaseRequest, what: str = "admin token") -> str:
    """The request's bearer token, to be checked by the caller; Unauthorized (401) without one."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized(f"missing {what}: send Authorization: Bearer <token>")
    return given


def check_bearer(request: web.BaseRequest, token: str | None, disabled: str = NO_TOKEN) -> None:
    """Return when the request carries ``token``; else raise Unauthorized or Forbidden.

    ``token`` None or empty: every admin request is refused with ``disabled`` (403)."""
    if not token:
        raise Forbidden(disabled)
    given = bearer_token(request)
    # Bytes of both: compare_digest refuses str with non-ASCII characters (a header may carry them).
    if not hmac.compare_digest(given.encode(errors="surrogateescape"), token.encode()):
        raise Forbidden("wrong admin token")
