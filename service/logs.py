"""Structured logs: one JSON object per line on stderr, e.g.
``{"ts": "2026-11-25T10:00:00.123Z", "level": "info", "component": "origin", "event": "request", ...}``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

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
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(line, default=str, separators=(",", ":"))


def configure_logging(component: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log is replaced by our request log line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def log(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={_FIELDS: fields})
