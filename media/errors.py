"""surge's error tree. Every member carries the HTTP status a server answers it with and a human message."""

from __future__ import annotations


class SurgeError(Exception):
    """Base of every error surge reports to a person; ``str(err)`` is the one-line message."""

    status: int = 500
    headers: dict[str, str] = {}  # noqa: RUF012 - read-only class default, extra response headers

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(SurgeError):
    status = 400


class NotFound(SurgeError):
    status = 404


class PayloadTooLarge(SurgeError):
    status = 413


class InsufficientStorage(SurgeError):
    status = 507


class AlreadyExists(SurgeError):
    status = 409


class UnsupportedMedia(SurgeError):
    """The file is not a video surge can read at all (not media, or media with no video stream)."""

    status = 415


class DamagedMedia(SurgeError):
    """The file looks like media but cannot be read whole (truncated, corrupt)."""

    status = 422


class ToolMissing(SurgeError):
    """A system program (ffmpeg, ffprobe) is not installed."""

    status = 500


class TranscodeFailed(SurgeError):
    """ffmpeg exited with an error; carries the command, its exit code and the stderr lines that matter."""

    status = 500

    def __init__(self, message: str, *, command: list[str], exit_code: int | None, stderr_tail: str) -> None:
        detail = f"{message} (ffmpeg exit {exit_code})" if exit_code is not None else message
        if stderr_tail:
            detail = f"{detail}: {stderr_tail}"
        super().__init__(detail)
        self.command = command
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail


class InvalidPlaylist(SurgeError):
    """Text that is not a well-formed HLS playlist (RFC 8216)."""

    status = 502
