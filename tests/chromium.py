"""Debian's Chromium and chromedriver, headless, as the browser tests and the hls.js benchmarks run them."""

from __future__ import annotations

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


def chromium_options(profile: Path | str, *extra_flags: str) -> webdriver.ChromeOptions:
    """Options for Debian's Chromium with ``CHROMIUM_FLAGS`` and a profile in ``profile``, a directory the
    caller makes and removes: left to chromedriver, the profile (14 MB) stays in /tmp whenever Chromium
    is killed rather than quit."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return options
