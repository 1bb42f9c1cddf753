"""Child processes that do not outlive surge."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """Runs in the child before exec: if surge is killed outright (kill -9), the kernel kills the child."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for subprocesses (Linux only; None elsewhere)."""
    return _die_with_parent if sys.platform == "linux" else None
