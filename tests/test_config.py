"""Option values from SURGE_<FLAG> and a TOML --config file: precedence, types, errors naming the source."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from media.errors import InvalidInput
from surge.cli import _commands, build_parser, main
from surge.config import parse_args

SURGE = [sys.executable, "-m", "surge.cli"]
ROOT = Path(__file__).resolve().parents[1]


def parsed(argv: list[str], environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    parser = build_parser()
    return parse_args(parser, _commands(parser), argv, environ or {})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "surge.toml"
    path.write_text(text)
    return path


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        'cache-mem = "64MiB"\nprefetch = 4\nlog_level = "warning"\n'
        '[edge]\nport = 9001\nupstream = ["http://127.0.0.1:1", "http://127.0.0.1:2"]\n'
        "no-access-log = true\n",
    )
    env = {"SURGE_PREFETCH": "5", "SURGE_PORT": "9002", "SURGE_HEADER_TIMEOUT": "3.5"}
    args = parsed(["edge", "--config", str(config), "--port", "9003"], env)
    assert args.port == 9003  # flag over environment over file
    assert args.prefetch == 5 and args.header_timeout == 3.5  # environment over file, typed
    assert args.cache_mem == "64MiB" and args.log_level == "warning"  # top-level keys of the file
    assert args.upstream == ["http://127.0.0.1:1", "http://127.0.0.1:2"] and args.no_access_log is True
    assert args.read_timeout == 10.0  # untouched options keep their defaults


def test_lists_from_flags_replace_configured_ones_and_switches_read_like_a_shell() -> None:
    env = {"SURGE_UPSTREAM": "http://127.0.0.1:1,http://127.0.0.1:2", "SURGE_NO_ACCESS_LOG": "yes"}
    assert parsed(["edge"], env).upstream == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert parsed(["edge"], env).no_access_log is True
    assert parsed(["edge", "--upstream", "http://127.0.0.1:3"], env).upstream == ["http://127.0.0.1:3"]
    assert parsed(["edge"], {"SURGE_NO_ACCESS_LOG": "0"}).no_access_log is False
    assert parsed(["loadtest", "http://127.0.0.1:9/m.m3u8"], {"SURGE_TITLES": "a b"}).titles == ["a", "b"]


def test_a_required_option_may_come_from_the_environment_or_the_file(tmp_path: Path) -> None:
    assert parsed(["fleet"], {"SURGE_ORIGIN": "http://127.0.0.1:8080"}).origin == "http://127.0.0.1:8080"
    config = write(tmp_path, '[fleet]\norigin = "http://127.0.0.1:8081"\n')
    assert parsed(["fleet"], {"SURGE_CONFIG": str(config)}).origin == "http://127.0.0.1:8081"
    assert parsed(["fleet", f"--config={config}"]).origin == "http://127.0.0.1:8081"


def test_top_level_keys_apply_only_to_commands_that_have_the_option(tmp_path: Path) -> None:
    config = write(tmp_path, 'cache-dir = "/srv/cache"\njobs = 3\n')
    assert parsed(["edge", "--config", str(config)]).cache_dir == "/srv/cache"
    origin = parsed(["origin", "--config", str(config)])
    assert origin.jobs == 3 and not hasattr(origin, "cache_dir")


@pytest.mark.parametrize(
    ("argv", "env", "text", "message"),
    [
        (["edge"], {"SURGE_PORT": "eighty"}, "", "SURGE_PORT='eighty': --port: not a valid int"),
        (["origin"], {"SURGE_PRESET": "fastest"}, "", "SURGE_PRESET='fastest': --preset must be one of"),
        (["edge"], {"SURGE_NO_ACCESS_LOG": "maybe"}, "", "--no-access-log is a switch: true or false"),
        (["edge"], {}, "[edge]\nport = 'x'\n", "surge.toml [edge] port='x': --port: not a valid int"),
        (["edge"], {}, "[edge]\nno-access-log = 'yes'\n", "[edge] no-access-log='yes': --no-access-log is a"),
        (["edge"], {}, "[edge]\nport = [1, 2]\n", "--port takes one value"),
        (["edge"], {}, "[edge]\njobs = 1\n", "surge.toml: [edge] has no option 'jobs'"),
        (["edge"], {}, "prt = 1\n", "surge.toml: unknown option 'prt'"),
        (["edge"], {}, "edge = 1\n", "surge.toml: edge must be a table ([edge])"),
        (["edge"], {}, "port = \n", "surge.toml: not valid TOML: "),
    ],
)
def test_bad_values_name_where_they_came_from(
    tmp_path: Path, argv: list[str], env: dict[str, str], text: str, message: str
) -> None:
    if text:
        argv = [*argv, "--config", str(write(tmp_path, text))]
    with pytest.raises(InvalidInput) as caught:
        parsed(argv, env)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_config_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["loadtest", "http://127.0.0.1:9/m.m3u8", "--config", str(tmp_path / "none.toml")]) == 1
    assert capsys.readouterr().err == f"surge: error: --config {tmp_path / 'none.toml'}: no such file\n"


def test_the_command_reads_its_environment_and_file(tmp_path: Path) -> None:
    """A real process: a configured value reaches the command (which then refuses it, so nothing runs)."""
    config = write(tmp_path, "[loadtest]\nplayers = 20001\n")
    by_file = subprocess.run(
        [*SURGE, "loadtest", "http://127.0.0.1:9/m.m3u8", "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert by_file.returncode == 1 and by_file.stderr == "surge: error: at most 20000 players" \
        " (players + background) in one run\n"  # fmt: skip
    by_env = subprocess.run(
        [*SURGE, "loadtest", "http://127.0.0.1:9/m.m3u8", "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
        env={"PATH": "/usr/bin:/bin", "SURGE_PLAYERS": "5", "SURGE_DURATION": "-1"},
    )  # fmt: skip
    assert by_env.returncode == 1 and "--duration must be in" in by_env.stderr  # players 5 passed


def test_a_bad_fleet_url_is_refused_before_the_origin_starts(tmp_path: Path) -> None:
    done = subprocess.run(
        [*SURGE, "origin", "--data", str(tmp_path / "data"), "--port", "0", "--fleet", "fleet.example"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == "surge: error: invalid --fleet URL 'fleet.example': expected http://host:port\n"


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    done = subprocess.run([*SURGE, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout == f"surge {version('surge')}\n"


def test_the_license_is_the_one_pyproject_names() -> None:
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_log_level_keeps_the_lifecycle_lines_and_drops_the_rest(tmp_path: Path) -> None:
    """A real origin at --log-level warning: it still says where it listens (so whoever started it can
    find it), but writes no request lines."""
    from tests.origin.conftest import OriginProcess

    origin = OriginProcess(tmp_path / "data", "--log-level", "warning").start()
    try:
        with urllib.request.urlopen(f"{origin.url}/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        assert origin.stop() == 0
    events = [line.get("event") for line in origin.log]
    assert "listening" in events and "stopped" in events
    assert "request" not in events and "admin token" not in events  # info lines of other loggers


def test_a_fleet_at_warning_level_still_starts_its_edges(tmp_path: Path) -> None:
    """The fleet passes its level to its edges and learns their URLs from their lifecycle lines."""
    from tests.fleet.test_fleet import edge_pids
    from tests.origin.conftest import SurgeProcess

    fleet = SurgeProcess("fleet", "--origin", "http://127.0.0.1:9", "--log-level", "warning").start()
    try:
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"{fleet.url}/fleet", timeout=10) as response:
                edges = json.loads(response.read())["edges"]
            if edges:
                break
            assert time.monotonic() < deadline, "no edge started"
            time.sleep(0.2)
        assert edges[0]["state"] == "active" and edges[0]["url"].startswith("http://127.0.0.1:")
        assert fleet.process is not None
        (pid,) = edge_pids(fleet.process.pid).values()
        assert b"\x00--log-level\x00warning\x00" in Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        assert fleet.stop() == 0
    assert not [line for line in fleet.log if line.get("level") == "info" and line.get("event") == "request"]
