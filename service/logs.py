"""Structured logs: one JSON object per line on stderr, e.g.
``{"ts": "2026-11-25T10:00:00.123Z", "level": "info", "component": "origin", "event": "request", ...}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import sys
import time
import traceback
from types import TracebackType
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

_FIELDS = "surge_fields"


class JsonLineFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": self.component,
            "event": record.getMessage(),
        }
        line.update(getattr(record, _FIELDS, {}))
        if record.exc_info and record.exc_info[1] is not None:
            line["exception"] = exception_fields(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


LEVELS = ("debug", "info", "warning", "error")
LIFECYCLE_LOGGER = "surge.serve"


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def exception_fields(exc_info: ExcInfo | tuple[None, None, None]) -> dict[str, Any]:
    """An exception as JSON: its type, its message and its traceback, one list item per line."""
    kind, error, tb = exc_info
    if kind is None or error is None:
        return {}
    lines = "".join(traceback.format_exception(kind, error, tb)).splitlines()
    return {"type": kind.__qualname__, "message": str(error), "traceback": lines}


# Query parameters whose values are credentials (signed URLs, tokens): never written to a log.
_SECRET_PARAMETER = re.compile(r"(?i)token|sig|key|auth|pass|secret|credential|session|jwt|hmac")


def loggable_path(path: str, query: str) -> str:
    """``path?query`` with the values of credential-like query parameters replaced by ``REDACTED``."""
    if not query:
        return path
    parts = []
    for item in query.split("&"):
        name, equals, _value = item.partition("=")
        parts.append(f"{name}=REDACTED" if equals and _SECRET_PARAMETER.search(name) else item)
    return f"{path}?{'&'.join(parts)}"


class _QuietRejects(logging.Filter):
    """aiohttp logs every request its parser rejects at error level with the offending bytes (an
    over-long ``Authorization`` header among them); surge logs those once itself (service.http
    AccessLog), without header values."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, HttpProcessingError)


def configure_logging(component: str, level: int | str = logging.INFO) -> None:
    """JSON lines on stderr from ``level`` up (a number, or a name of ``LEVELS``)."""
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _QuietRejects) for f in server.filters):
        server.addFilter(_QuietRejects())
    # A server's own lifecycle (listening, with its URL; shutting down; stopped) is always written:
    # whoever started it (a fleet, a test, an operator) learns its port from the "listening" line.
    logging.getLogger(LIFECYCLE_LOGGER).setLevel(min(level, logging.INFO))
    # aiohttp's own access log is replaced by our request log line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def log(
    logger: logging.Logger,
    event: str,
    level: int = logging.INFO,
    *,
    exc_info: bool | BaseException = False,
    **fields: Any,
) -> None:
    """One event; ``exc_info=True`` (inside ``except``) or an exception adds it as ``exception``."""
    logger.log(level, event, exc_info=exc_info, extra={_FIELDS: fields})


def _json_handler() -> logging.StreamHandler[Any] | None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonLineFormatter) and isinstance(handler, logging.StreamHandler):
            return handler
    return None


class RequestLines:
    """The ``request`` log line of the hot path: the same JSON line ``log(logger, "request", ...)`` writes,
    formatted without the logging machinery (a third of a cached answer's CPU time otherwise) and written
    in batches, as nginx's ``access_log ... buffer= flush=`` does: at most ``FLUSH_AFTER`` seconds late,
    or sooner once ``FLUSH_CHARS`` have gathered, and on ``flush()`` (at shutdown); a write per event-loop
    pass was a write per ~15 segment hits. Paths must need no JSON escaping (the front's recogniser only
    lets plain ones through)."""

    FLUSH_AFTER = 0.05
    FLUSH_CHARS = 64 * 1024

    def __init__(self, logger: logging.Logger, site: str) -> None:
        self.logger = logger
        self.site = site
        self._site_json = json.dumps(site)
        self._lines: list[str] = []
        self._chars = 0
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._ts_prefix = ""
        self._component = ""
        self._handler: logging.StreamHandler[Any] | None = None

    def add(self, method: str, path: str, status: int, size: int, seconds: float, peer: str) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        now = time.time()
        second = int(now)
        if second != self._second:  # once a second: the handler (configuration may change), the stamp
            self.flush()  # what was gathered goes where it was meant to
            self._second = second
            self._handler = _json_handler()
            self._ts_prefix = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            if self._handler is not None and isinstance(self._handler.formatter, JsonLineFormatter):
                self._component = json.dumps(self._handler.formatter.component)
        handler = self._handler
        if handler is None:
            log(self.logger, "request", method=method, path=path, status=status, bytes=size,
                ms=round(seconds * 1000, 2), peer=peer, server=self.site)  # fmt: skip
            return
        line = (
            f'{{"ts":"{self._ts_prefix}.{int((now - second) * 1000):03d}+00:00","level":"info",'
            f'"component":{self._component},"event":"request","method":"{method}","path":"{path}",'
            f'"status":{status},"bytes":{size},"ms":{round(seconds * 1000, 2)},"peer":"{peer}",'
            f'"server":{self._site_json}}}'
        )
        self._lines.append(line)
        self._chars += len(line)
        if self._chars >= self.FLUSH_CHARS:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        handler = self._handler
        if not self._lines or handler is None:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines.clear()
        self._chars = 0
        handler.acquire()
        try:
            handler.stream.write(text)
            handler.flush()
        except (OSError, ValueError):
            pass  # stderr closed or gone (its reader died): serving goes on, as with the logging module
        finally:
            handler.release()
