"""Title ids: ``[a-z0-9][a-z0-9-]{2,63}``, made by the server from a human name plus a random suffix."""

from __future__ import annotations

import re
import secrets
import unicodedata

from media.errors import InvalidInput

TITLE_ID = re.compile(r"[a-z0-9][a-z0-9-]{2,63}")
_SUFFIX_LEN = 6


def is_title_id(text: str) -> bool:
    return TITLE_ID.fullmatch(text) is not None


def validate_title_id(text: str) -> str:
    if not is_title_id(text):
        raise InvalidInput(f"invalid title id {text!r}: expected [a-z0-9][a-z0-9-]{{2,63}}")
    return text


def slugify(name: str, max_len: int = 64 - _SUFFIX_LEN - 1) -> str:
    """Lower-case ASCII words joined by '-', at most ``max_len`` characters; may be empty."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:max_len].rstrip("-")


def new_title_id(name: str, token: str | None = None) -> str:
    """A fresh id such as ``big-buck-bunny-k3x9q2``; ``token`` fixes the random suffix (tests)."""
    suffix = token if token is not None else secrets.token_hex(_SUFFIX_LEN)[:_SUFFIX_LEN]
    slug = slugify(name)
    return validate_title_id(f"{slug}-{suffix}" if slug else f"title-{suffix}")
