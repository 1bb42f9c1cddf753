"""The web pages: their routes over HTTP, then both pages in Debian's headless Chromium against a real origin.

The browser is driven through Debian's chromedriver (selenium, with the driver path given, so Selenium
Manager never runs and nothing is downloaded). Playback goes through hls.js from ``make setup``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from origin.web import WEB_DIR
from tests.chromium import CHROMEDRIVER, CHROMIUM, chromium_options
from tests.conftest import MakeSource, PrivateCA
from tests.origin.conftest import TOKEN, OriginProcess, SurgeProcess, upload, wait_for_status

HLS_JS = WEB_DIR / "vendor" / "hls.min.js"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: `make test` installs chromium with apt-get"
)


# --- the routes, over plain HTTP ------------------------------------------------------------------


async def test_pages_and_static_files_are_served(origin: OriginProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for path, marker in (("/", 'id="video"'), ("/admin/", 'id="upload-form"')):
            async with session.get(f"{origin.url}{path}") as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/html; charset=utf-8"
                assert marker in await response.text()
        async with session.get(f"{origin.url}/admin", allow_redirects=False) as response:
            assert response.status == 301 and response.headers["Location"] == "/admin/"
        for name, content_type in (("player.js", "text/javascript"), ("style.css", "text/css")):
            async with session.get(f"{origin.url}/static/{name}") as response:
                assert response.status == 200 and response.content_type == content_type
                assert response.headers["Cache-Control"] == "no-cache" and "ETag" in response.headers
        # A missing file (hls.js before `make setup`, say), a path that climbs out, a Python file: JSON 404s.
        for path in ("/static/vendor/missing.js", "/static/..%2Fweb.py", "/static/../web.py", "/static/x.py"):
            async with session.get(f"{origin.url}{path}") as response:
                assert response.status == 404, path
                assert (await response.json())["error"].lower() == "not found"


# --- the pages in Chromium ------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@contextlib.contextmanager
def chromium(*extra_flags: str) -> Iterator[WebDriver]:
    if not CHROMEDRIVER.exists():
        pytest.fail(f"{CHROMEDRIVER} is missing: `make test` installs chromium-driver with apt-get")
    with chromium_options(*extra_flags) as options:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            driver.set_page_load_timeout(30)
            driver.set_script_timeout(30)
            yield driver
        finally:
            driver.quit()  # stops Chromium and chromedriver


@pytest.fixture
def web_origin(tmp_path: Path) -> Iterator[OriginProcess]:
    server = OriginProcess(tmp_path / "data", "--preset", "ultrafast").start()
    try:
        yield server
    finally:
        server.stop()


def console(driver: WebDriver) -> str:
    try:
        return "\n".join(entry["message"] for entry in driver.get_log("browser"))
    except WebDriverException as err:
        return f"(no console log: {err.msg})"


def until(driver: WebDriver, script: str, timeout: float, what: str) -> Any:
    """Evaluates ``script`` (a JS function body returning a value) until it is truthy; returns it."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    page = driver.find_element(By.TAG_NAME, "main").text
    raise AssertionError(f"{what}: not after {timeout} s (last {value!r})\npage:\n{page}\n{console(driver)}")


def until_alert(driver: WebDriver, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return driver.switch_to.alert
        except NoAlertPresentException:
            assert time.monotonic() < deadline, "no confirm() dialog"
            time.sleep(0.1)


def text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def sign_in(driver: WebDriver, url: str, token: str) -> None:
    driver.get(f"{url}/admin/")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()


def upload_through_page(driver: WebDriver, path: Path, name: str) -> None:
    driver.find_element(By.ID, "file").send_keys(str(path))
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "upload-button").click()


def catalog(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/titles", timeout=10) as response:
        titles: list[dict[str, Any]] = json.load(response)["titles"]
    return titles


# Every text the upload status shows, so the test sees the XMLHttpRequest progress events' own lines.
RECORD_UPLOAD_STATUS = """
const out = document.getElementById("upload-status");
window.uploadStatuses = [];
new MutationObserver(() => window.uploadStatuses.push(out.textContent))
    .observe(out, {childList: true, characterData: true, subtree: true});
"""

VIDEO_STATE = """
const v = document.getElementById("video");
return {time: v.currentTime, height: v.videoHeight, frames: v.getVideoPlaybackQuality().totalVideoFrames,
        paused: v.paused};
"""


def force_level(driver: WebDriver, index: int, height: int) -> None:
    """Clicks the level's button and waits for frames of that height to play."""
    # Rewind first so an 8 s title cannot run out mid-switch.
    driver.execute_script('document.getElementById("video").currentTime = 0;')
    driver.find_element(By.CSS_SELECTOR, f'#levels button[data-level="{index}"]').click()
    until(
        driver,
        f"""const v = document.getElementById("video");
            return v.videoHeight === {height} && v.currentTime > 0.3 && !v.paused
                && document.getElementById("level").dataset.height === "{height}";""",
        30,
        f"playing level {index} ({height}p)",
    )
    button = driver.find_element(By.CSS_SELECTOR, f'#levels button[data-level="{index}"]')
    assert button.get_attribute("aria-pressed") == "true"
    assert text(driver, "resolution") == ("640×360" if height == 360 else "416×234")
    assert text(driver, "level").startswith(f"{height}p")


@needs_chromium
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_upload_package_play_switch_levels_and_delete_in_the_browser(
    browser: WebDriver, web_origin: OriginProcess, make_source: MakeSource
) -> None:
    assert HLS_JS.is_file(), f"{HLS_JS} is missing: run `make setup` (npm ci copies hls.js there)"
    source = make_source("browser.mp4", width=640, height=360, duration=8)
    url = web_origin.url

    # Admin page: sign in, upload through the file input, follow packaging until ready.
    sign_in(browser, url, TOKEN)
    until(browser, 'return !document.getElementById("signed-in").hidden', 10, "signed in")
    browser.execute_script(RECORD_UPLOAD_STATUS)
    upload_through_page(browser, source, "Browser <b>Test</b>")
    status = until(
        browser,
        """const s = document.getElementById("job-status").dataset.status;
           return ["ready", "failed"].includes(s) && s;""",
        180,
        "packaging finished",
    )
    assert status == "ready", text(browser, "job")
    assert browser.execute_script('return document.getElementById("upload-progress").value') == 1
    assert browser.execute_script('return document.getElementById("job-progress").value') == 1
    assert text(browser, "upload-status").startswith("Uploaded ")
    seen = browser.execute_script("return window.uploadStatuses")
    assert any(re.fullmatch(r"Uploading \d+% \(.+ of .+\)", line) for line in seen), seen  # XHR progress
    assert text(browser, "job-status").startswith("Ready")
    assert not browser.find_element(By.ID, "job-error").is_displayed()
    [title] = catalog(url)
    assert title["name"] == "Browser <b>Test</b>"
    row = f'#titles tr[data-id="{title["id"]}"]'
    until(browser, f"return document.querySelector('{row}[data-status=\"ready\"]') !== null", 10, "ready row")
    assert "Browser <b>Test</b>" in browser.find_element(By.CSS_SELECTOR, row).text  # text, not markup

    # Player page: pick the title, playback starts, frames are decoded.
    browser.get(f"{url}/")
    until(browser, f"return document.querySelector('button.title[data-id=\"{title['id']}\"]')", 10, "catalog")
    browser.find_element(By.CSS_SELECTOR, f'button.title[data-id="{title["id"]}"]').click()
    state = until(
        browser,
        VIDEO_STATE.replace("return {", "const s = {") + "return s.time > 1.2 && s.frames > 0 && s;",
        60,
        "playback past 1.2 s",
    )
    assert state["height"] in (234, 360) and not state["paused"]
    assert text(browser, "now-title") == "Browser <b>Test</b>"
    heights = browser.execute_script("return window.hls.levels.map((l) => l.height)")
    assert heights == [234, 360]
    buttons = browser.find_elements(By.CSS_SELECTOR, "#levels button")
    assert [b.text for b in buttons] == ["Auto", "234p", "360p"]

    # Forcing a level changes the decoded picture, both ways.
    first = 0 if state["height"] == 360 else 1
    force_level(browser, first, heights[first])
    force_level(browser, 1 - first, heights[1 - first])
    assert browser.execute_script("return window.hls.currentLevel") == 1 - first
    frames = browser.execute_script(VIDEO_STATE)["frames"]
    assert frames > state["frames"]

    # Back on the admin page the token is still there (sessionStorage); delete the title.
    browser.get(f"{url}/admin/")
    until(browser, f"return document.querySelector('{row}') !== null", 10, "title listed")
    assert not browser.find_element(By.ID, "login").is_displayed()
    browser.find_element(By.CSS_SELECTOR, f"{row} button.delete").click()
    alert = until_alert(browser)
    assert "Browser <b>Test</b>" in alert.text
    alert.accept()
    until(browser, f"return document.querySelector('{row}') === null", 10, "row removed")
    assert browser.find_element(By.ID, "titles-empty").is_displayed()
    assert catalog(url) == []


@needs_chromium
@pytest.mark.timeout(120)
def test_wrong_token_and_non_video_upload_show_the_origins_errors(
    browser: WebDriver, web_origin: OriginProcess, tmp_path: Path
) -> None:
    sign_in(browser, web_origin.url, "not-the-token")
    until(browser, 'return !document.getElementById("token-error").hidden', 10, "token refused")
    assert text(browser, "token-error") == "wrong admin token"
    assert browser.execute_script('return sessionStorage.getItem("surge.adminToken")') is None

    sign_in(browser, web_origin.url, TOKEN)
    until(browser, 'return !document.getElementById("signed-in").hidden', 10, "signed in")
    until(browser, 'return !document.getElementById("titles-empty").hidden', 10, "empty list")
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a video\n")
    upload_through_page(browser, notes, "Notes")
    until(browser, 'return !document.getElementById("job-error").hidden', 30, "upload error shown")
    assert "is not a readable video file" in text(browser, "job-error")
    assert text(browser, "upload-status") == "Upload failed (HTTP 415)"
    assert browser.find_element(By.ID, "upload-button").is_enabled()
    assert catalog(web_origin.url) == []


@needs_chromium
@pytest.mark.timeout(60)
def test_player_explains_a_missing_hls_js(browser: WebDriver, web_origin: OriginProcess) -> None:
    # The page as it is before `make setup`: the script fails to load (here: blocked in the browser).
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/static/vendor/hls.min.js"]})
    browser.get(f"{web_origin.url}/")
    assert browser.execute_script("return typeof window.Hls") == "undefined", "the block did not work"
    until(browser, 'return !document.getElementById("notice").hidden', 10, "notice shown")
    assert "hls.js is not installed" in text(browser, "notice") and "make setup" in text(browser, "notice")
    empty = 'return document.getElementById("catalog-status").textContent.startsWith("No titles")'
    until(browser, empty, 10, "empty catalog")


def spki_hash(cert: Path) -> str:
    """Base64 of the SHA-256 of a certificate's SubjectPublicKeyInfo: what Chromium's
    ``--ignore-certificate-errors-spki-list`` trusts (that key only; every other certificate is still
    verified)."""
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@needs_chromium
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_hls_js_plays_over_https_from_the_fleets_edges(
    tmp_path: Path, test_ca: PrivateCA, make_source: MakeSource
) -> None:
    assert HLS_JS.is_file(), f"{HLS_JS} is missing: run `make setup` (npm ci copies hls.js there)"
    cert, key = test_ca.issue()
    up = SurgeProcess("up", "--data", str(tmp_path / "data"), "--fleet-port", "0", "--preset", "ultrafast",
                      "--tls-cert", str(cert), "--tls-key", str(key)).start()  # fmt: skip
    try:
        fleet = wait_for_site(up, "fleet")
        origin = wait_for_site(up, "origin")
        assert fleet.startswith("https://") and origin.startswith("https://")
        title_id = asyncio.run(publish_over_https(test_ca, origin, make_source))
        with chromium(f"--ignore-certificate-errors-spki-list={spki_hash(cert)}") as browser:
            browser.get(f"{fleet}/player/#{title_id}")
            state = until(
                browser,
                VIDEO_STATE.replace("return {", "const s = {") + "return s.time > 1.2 && s.frames > 0 && s;",
                60,
                "playback past 1.2 s over HTTPS",
            )
            assert state["height"] in (234, 360) and not state["paused"]
            # Every request went over HTTPS: the page, the fleet's master, the edges' playlists and media.
            urls = browser.execute_script(
                "return performance.getEntriesByType('resource').map((e) => e.name)"
            )
            media = [u for u in urls if u.endswith((".m3u8", ".m4s", ".mp4"))]
            assert media and all(u.startswith("https://127.0.0.1:") for u in media), urls
            edges = {u.split("/titles/")[0] for u in media} - {fleet}
            assert edges, urls  # playlists and segments came from an edge, not the fleet
    finally:
        assert up.stop() == 0


def wait_for_site(process: SurgeProcess, name: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for event in list(process.log):
            if event.get("event") == "listening" and event.get("name") == name:
                return str(event["url"])
        time.sleep(0.05)
    raise AssertionError(f"{name} is not listening: {process.log}")


async def publish_over_https(test_ca: PrivateCA, origin: str, make_source: MakeSource) -> str:
    async with test_ca.session() as session:
        source = make_source("https-browser.mp4", width=640, height=360, duration=6)
        _, created, _ = await upload(session, origin, source)
        await wait_for_status(session, origin, created["id"], {"ready"})
        return str(created["id"])
