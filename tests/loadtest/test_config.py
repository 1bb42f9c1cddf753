"""Bounds of a run and the loopback-only rule."""

from __future__ import annotations

import pytest

from loadtest.config import LoadTestConfig
from loadtest.hosts import HostGuard, RemoteRefused, literal_is_loopback
from loadtest.scenario import MAX_PLAYERS
from media.errors import InvalidInput

URL = "http://127.0.0.1:8080/titles/x/master.m3u8"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.8.7", True),
        ("[::1]", True),
        ("localhost", True),
        ("edge.localhost", True),
        ("10.0.0.1", False),
        ("8.8.8.8", False),
        ("::ffff:8.8.8.8", False),
        ("example.com", None),
    ],
)
def test_literal_is_loopback(host: str, loopback: bool | None) -> None:
    assert literal_is_loopback(host) is loopback


async def test_guard_refuses_other_hosts_unless_allowed() -> None:
    guard = HostGuard()
    await guard.check(URL)
    await guard.check("http://localhost:1/x")
    for url in ("http://192.0.2.1/x", "http://10.1.2.3:8080/m.m3u8", "http://no-such-host.invalid/x"):
        with pytest.raises(RemoteRefused, match="--allow-remote"):
            await guard.check(url)
    await HostGuard(allow_remote=True).check("http://192.0.2.1/x")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "ftp://127.0.0.1/x"}, "http"),
        ({"players": 0}, "--players"),
        ({"players": MAX_PLAYERS + 1}, "at most"),
        ({"players": MAX_PLAYERS, "profile": "flash", "titles": (URL,)}, "at most"),
        ({"duration": 0}, "--duration"),
        ({"ramp": 31.0}, "--ramp"),
        ({"speed": 0}, "--speed"),
        ({"timeout": 0}, "--timeout"),
        ({"profile": "flash", "background": 3}, "--titles"),
        ({"cmcd": "smoke"}, "CMCD"),
    ],
)
def test_config_bounds(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        LoadTestConfig(**{"url": URL, "duration": 30.0, **changes})  # type: ignore[arg-type]


def test_flash_background_defaults_to_a_tenth() -> None:
    config = LoadTestConfig(URL, players=50, profile="flash", titles=(URL + "?b",))
    assert config.background_viewers == 5 and config.total_players == 55
    assert LoadTestConfig(URL, players=50).background_viewers == 0
    assert config.fleet == "http://127.0.0.1:8080/fleet"
