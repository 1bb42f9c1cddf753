"""Plumbing the bench scripts share: free ports, checked commands, and their section of the results doc."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(argv: list[str], timeout: float) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {shlex.join(argv)}\n{done.stderr[-2000:]}")
    return done.stdout + done.stderr


def write_doc(heading: str, section: str, doc: Path = DOC) -> None:
    """Put ``section`` (which starts with ``heading``) in place of the old one, or append it."""
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n\n"  # re-read now: others edit it too
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section.rstrip("\n") + "\n" + (text[end:] if end >= 0 else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
