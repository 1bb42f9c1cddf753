"""Signed playback URLs: a token in the path, ``/t/<token>/titles/<id>/...``, so that every relative URI
in the playlists inherits it and any HLS player works unchanged (the idea of nginx's ``secure_link`` and
CloudFront's signed URLs, in the path rather than the query).

Rules of this file: no I/O and no clock (``now`` is a parameter); decisions are values.

A token is ``S1.<expires>.<scope>.<client>.<mac>``:
- ``expires``: Unix seconds, decimal;
- ``scope``: the path prefix it opens, base64url without padding (``/titles/<id>/`` for a whole title);
- ``client``: the client address it is bound to, base64url, or empty for any client;
- ``mac``: HMAC-SHA256 (RFC 2104) with a signing key over ``S1.<expires>.<scope>.<client>``, base64url.

A title id (``[a-z0-9][a-z0-9-]{2,63}``) has neither capitals nor dots, so ``/t/<title-id>/...`` (the
fleet's short alias of a master) can never be taken for a token. Two keys may be configured at once:
the first signs, either verifies, so a key is rotated without breaking URLs already handed out.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from dataclasses import dataclass
from typing import TypeVar

from media.errors import InvalidInput, SurgeError

VERSION = "S1"
PREFIX = "/t/"
MIN_KEY_BYTES = 16
MAX_KEYS = 2  # the current key and the one being retired
MAX_EXPIRES_DIGITS = 12
T = TypeVar("T")
_SIGNED_START = f"{PREFIX}{VERSION}."
_TOKEN_AT = len(_SIGNED_START)


class Forbidden(SurgeError):
    status = 403


@dataclass(frozen=True)
class SigningKeys:
    keys: tuple[bytes, ...]  # the first signs; every one verifies

    def __post_init__(self) -> None:
        if not 1 <= len(self.keys) <= MAX_KEYS:
            raise InvalidInput(f"give one or two signing keys (the new one first), not {len(self.keys)}")
        if any(len(key) < MIN_KEY_BYTES for key in self.keys):
            raise InvalidInput(f"a signing key must be at least {MIN_KEY_BYTES} bytes long")

    @classmethod
    def from_texts(cls, texts: list[str]) -> SigningKeys | None:
        """Keys as given on the command line or in a key file (blank lines and ``#`` comments skipped);
        None when there are none: signing is off."""
        keys = [text.strip() for text in texts]
        keys = [key for key in keys if key and not key.startswith("#")]
        return cls(tuple(key.encode() for key in keys)) if keys else None


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token opens: paths under ``prefix`` until ``expires``, for ``client`` (None: anyone)."""

    prefix: str
    expires: int
    client: str | None = None


class Refusal(enum.Enum):
    MISSING = "this server needs a signed URL: /t/<token>/titles/..."
    MALFORMED = "the URL's token is malformed"
    BAD_SIGNATURE = "the URL's token has a wrong signature"
    EXPIRED = "the URL's token has expired"
    WRONG_PATH = "the URL's token is for another title or path"
    WRONG_CLIENT = "the URL's token is for another client address"


@dataclass(frozen=True)
class Allowed:
    path: str  # the path without the token: what is served, and the cache key


@dataclass(frozen=True)
class Refused:
    reason: Refusal


Access = Allowed | Refused


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def _mac(key: bytes, signed: str) -> str:
    digest = hmac.new(key, signed.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_token(keys: SigningKeys, grant: Grant) -> str:
    if not grant.prefix.startswith("/titles/"):
        raise InvalidInput("a token opens a path under /titles/")
    client = _b64(grant.client) if grant.client else ""
    signed = f"{VERSION}.{grant.expires}.{_b64(grant.prefix)}.{client}"
    return f"{signed}.{_mac(keys.keys[0], signed)}"


def signed_path(token: str, path: str) -> str:
    """``/titles/<id>/...`` → ``/t/<token>/titles/<id>/...``."""
    return f"{PREFIX}{token}{path}"


def split_signed(path: str) -> tuple[str, str] | None:
    """``/t/<token>/titles/...`` → (token, ``/titles/...``); None for any other path."""
    if not path.startswith(_SIGNED_START):
        return None
    end = path.find("/", _TOKEN_AT)
    if end < 0 or not path.startswith("/titles/", end):
        return None
    return path[len(PREFIX) : end], path[end:]


def verify_token(keys: SigningKeys, token: str) -> Grant | Refusal:
    """The grant a token carries, if one of ``keys`` signed it (whatever the time or path)."""
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != VERSION:
        return Refusal.MALFORMED
    _, expires, scope, client, mac = parts
    if not expires.isdigit() or len(expires) > MAX_EXPIRES_DIGITS or not scope:
        return Refusal.MALFORMED
    signed = token[: -len(mac) - 1]
    # Every key is tried, in constant time each: which key matched is no secret, the MAC is.
    if not any([hmac.compare_digest(_mac(key, signed), mac) for key in keys.keys]):
        return Refusal.BAD_SIGNATURE
    try:
        prefix = _unb64(scope)
        address = _unb64(client) if client else None
    except (binascii.Error, UnicodeDecodeError):
        return Refusal.MALFORMED  # signed by us, so never in practice
    return Grant(prefix, int(expires), address)


def still_valid(grant: Grant, client: str, now: float) -> Refusal | None:
    """Why a verified grant no longer opens its paths for ``client`` at ``now``; None when it does."""
    if now >= grant.expires:
        return Refusal.EXPIRED
    if grant.client is not None and grant.client != client:
        return Refusal.WRONG_CLIENT
    return None


class TokenChecker:
    """The checks of one server. Tokens already verified are remembered (a player sends the same token
    with every request), and so are signed paths already found inside their token's prefix: a request
    seen before costs one dict lookup and two comparisons, not an HMAC."""

    LIMIT = 10_000

    def __init__(self, keys: SigningKeys | None) -> None:
        self.keys = keys
        self._verified: dict[str, Grant | Refusal] = {}
        self._paths: dict[str, tuple[str, Grant]] = {}  # signed path -> (path without the token, grant)

    def path_or_refusal(self, path: str, client: str, now: float) -> str | Refusal:
        """The path to serve (the token taken out), or why not: ``check`` without allocating, for the
        fast path. With signing off, nothing is refused (a token is dropped)."""
        keys = self.keys
        if keys is not None and (known := self._paths.get(path)) is not None:
            return still_valid(known[1], client, now) or known[0]
        split = split_signed(path)
        if split is None:
            return path if keys is None else Refusal.MISSING
        token, inner = split
        if keys is None:
            return inner
        verified = self._verified.get(token)
        if verified is None:
            verified = _remember(self._verified, token, verify_token(keys, token))
        if isinstance(verified, Refusal):
            return verified
        if not inner.startswith(verified.prefix):
            return Refusal.WRONG_PATH
        _remember(self._paths, path, (inner, verified))
        return still_valid(verified, client, now) or inner

    def check(self, path: str, client: str, now: float) -> Access:
        """The decision for a request path."""
        found = self.path_or_refusal(path, client, now)
        return Refused(found) if isinstance(found, Refusal) else Allowed(found)

    def allowed_path(self, path: str, client: str, now: float) -> str:
        """``check`` for a handler: the path to serve, or Forbidden (403) with the reason."""
        match self.check(path, client, now):
            case Allowed(path=inner):
                return inner
            case Refused(reason=reason):
                raise Forbidden(reason.value)


def _remember(memo: dict[str, T], key: str, value: T) -> T:
    if len(memo) >= TokenChecker.LIMIT:
        memo.clear()  # simpler than an LRU, and a full table of live tokens is rare
    memo[key] = value
    return value
