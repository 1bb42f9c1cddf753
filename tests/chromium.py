"""Debian's Chromium and chromedriver, headless, as the browser tests and the hls.js benchmarks run them."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


@contextlib.contextmanager
def chromium_options(*extra_flags: str) -> Iterator[webdriver.ChromeOptions]:
    """Options for Debian's Chromium with ``CHROMIUM_FLAGS`` and a profile in a temporary directory, removed
    on exit: left to chromedriver, the profile (14 MB) stays in /tmp whenever Chromium is killed rather
    than quit. Quit the browser before leaving the block."""
    with tempfile.TemporaryDirectory(prefix="surge-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        yield options
