"""HTTPS for every surge server: the certificate and key files, the server's TLS context, and its reload.

A reload (SIGHUP) loads the files again into the live context: handshakes after it present the new
certificate, connections already open keep theirs (each holds its own TLS session). The files are first
loaded into a scratch context, so a bad pair is refused and the old certificate stays in use.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from media.errors import InvalidInput


@dataclass(frozen=True)
class TlsFiles:
    cert: Path  # PEM: the certificate, then any intermediates
    key: Path  # PEM: its private key

    @classmethod
    def from_flags(cls, cert: str | None, key: str | None) -> TlsFiles | None:
        """``--tls-cert``/``--tls-key``: both or neither."""
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise InvalidInput("--tls-cert and --tls-key go together: give both or neither")
        return cls(Path(cert), Path(key))


def scheme(tls: TlsFiles | None) -> str:
    return "https" if tls is not None else "http"


def _load(context: ssl.SSLContext, files: TlsFiles) -> None:
    try:
        context.load_cert_chain(files.cert, files.key)
    except FileNotFoundError as err:
        raise InvalidInput(f"cannot read {err.filename}: no such file") from None
    except PermissionError as err:
        raise InvalidInput(f"cannot read {err.filename}: permission denied") from None
    except ssl.SSLError as err:
        raise InvalidInput(
            f"{files.cert} and {files.key} are not a PEM certificate and its private key ({err.reason})"
        ) from None


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A server context with Python's secure defaults (TLS 1.2+, forward-secret AEAD ciphers)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])
    _load(context, files)
    return context


def reload(context: ssl.SSLContext, files: TlsFiles) -> None:
    """Load ``files`` into the live ``context``; InvalidInput (and no change) when they are bad."""
    _load(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), files)
    _load(context, files)
