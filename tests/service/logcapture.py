"""What a logger writes, as the JSON lines a server would write on stderr."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

from service.logs import JsonLineFormatter


@contextlib.contextmanager
def json_lines_of(name: str) -> Iterator[io.StringIO]:
    """Everything logger ``name`` writes at INFO and above, into the stream yielded, while it is open."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter("test"))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]
