"""The log helper's failure path: an exception is logged with its type, message and traceback."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from service.logs import log, loggable_path
from tests.service.logcapture import json_lines_of, lines


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    with json_lines_of("surge.test-logs") as stream:
        yield stream


def fail() -> None:
    raise ValueError("the disk said no")


def test_exc_info_logs_the_exception_not_a_field(captured: io.StringIO) -> None:
    logger = logging.getLogger("surge.test-logs")
    try:
        fail()
    except ValueError:
        log(logger, "unhandled error", logging.ERROR, path="/x", exc_info=True)
    (line,) = lines(captured)
    assert "exc_info" not in line
    assert line["level"] == "error" and line["event"] == "unhandled error" and line["path"] == "/x"
    exception = line["exception"]
    assert isinstance(exception, dict)
    assert exception["type"] == "ValueError" and exception["message"] == "the disk said no"
    traceback = exception["traceback"]
    assert isinstance(traceback, list) and traceback[0] == "Traceback (most recent call last):"
    assert any("in fail" in frame for frame in traceback)
    assert traceback[-1] == "ValueError: the disk said no"


def test_an_exception_object_can_be_passed(captured: io.StringIO) -> None:
    log(logging.getLogger("surge.test-logs"), "failed", logging.WARNING, exc_info=OSError(28, "No space"))
    (line,) = lines(captured)
    assert line["exception"] == {
        "type": "OSError",
        "message": "[Errno 28] No space",
        "traceback": ["OSError: [Errno 28] No space"],
    }


def test_without_exc_info_there_is_no_exception_key(captured: io.StringIO) -> None:
    log(logging.getLogger("surge.test-logs"), "fine", title="abc")
    (line,) = lines(captured)
    assert "exception" not in line and line["title"] == "abc"


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/titles", "", "/titles"),
        ("/t/a/master.m3u8", "token=abc123", "/t/a/master.m3u8?token=REDACTED"),
        ("/x", "CMCD=br%3D8&sig=d&Key-Pair-Id=K&e=9", "/x?CMCD=br%3D8&sig=REDACTED&Key-Pair-Id=REDACTED&e=9"),
        ("/x", "access_token=a&P=b&X-Amz-Sig=c", "/x?access_token=REDACTED&P=b&X-Amz-Sig=REDACTED"),
        ("/x", "token&auth=", "/x?token&auth=REDACTED"),
    ],
)  # fmt: skip
def test_credential_like_query_values_are_redacted(path: str, query: str, expected: str) -> None:
    assert loggable_path(path, query) == expected
