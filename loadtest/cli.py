"""``surge loadtest``: flags → ``LoadTestConfig`` → a run on uvloop → summary, JSON report, plot."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Light imports only: ``surge`` builds every subparser, also for ``surge transcode``.
from loadtest.cmcd import MODES
from loadtest.player import ABR_PROFILES
from loadtest.scenario import MAX_PLAYERS, PROFILES
from media.errors import InvalidInput, SurgeError

if TYPE_CHECKING:
    from loadtest.config import LoadTestConfig
    from loadtest.metrics import Second

NON_TTY_EVERY = 10  # seconds between progress lines when stderr is not a terminal
EXIT_INTERRUPTED = 130
EXIT_THRESHOLDS = 99  # as k6 exits when a threshold is crossed


def add_loadtest_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``surge loadtest`` on the command line's subparsers."""
    parser = commands.add_parser(
        "loadtest",
        help="simulate HLS players (ABR, buffer, stalls, CMCD) against a master playlist URL",
        description="Virtual HLS viewers against any master playlist URL; loopback hosts only unless "
        "--allow-remote. Stops by itself after --duration.",
    )
    parser.add_argument("url", help="master playlist URL (the flash crowd's title with --profile flash)")
    parser.add_argument(
        "--players", type=int, default=10, help=f"viewers, at most {MAX_PLAYERS} (default 10)"
    )
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds from 0 to --players (default 0)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds the run lasts (default 30)")
    parser.add_argument("--speed", type=float, default=1.0, help="playback speed, e.g. 10 (default 1)")
    parser.add_argument(
        "--profile", choices=PROFILES, default="steady", help="arrival profile (default steady)"
    )
    parser.add_argument(
        "--titles",
        nargs="+",
        default=[],
        metavar="URL",
        help="other master URLs: shared round-robin (steady) or watched by the background viewers (flash)",
    )
    parser.add_argument("--background", type=int, help="flash: viewers of --titles (default players // 10)")
    parser.add_argument("--cmcd", choices=MODES, default="query", help="how CMCD is sent (default query)")
    parser.add_argument(
        "--on-end",
        choices=("replay", "leave"),
        default="replay",
        help="a viewer at the end of the title starts again (default) or leaves",
    )
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per request (default 20)")
    parser.add_argument("--max-buffer", type=float, default=30.0, help="buffer goal, media s (default 30)")
    parser.add_argument(
        "--start-buffer", type=float, default=2.0, help="buffer to start, media s (default 2)"
    )
    parser.add_argument(
        "--start-bandwidth", type=float, default=500_000, help="bit/s assumed before measuring (default 500k)"
    )
    parser.add_argument(
        "--abr-profile",
        choices=tuple(ABR_PROFILES),
        default="hls.js",
        help="player model: hls.js's defaults (default), or a named change to them (see the README)",
    )
    parser.add_argument(
        "--abr-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an hls.js setting by its name, e.g. abrBandWidthUpFactor=0.8 (repeatable; applied last)",
    )
    parser.add_argument("--fleet", help="surge fleet /fleet URL for the edge count (default: URL's host)")
    parser.add_argument("--allow-remote", action="store_true", help="allow hosts other than loopback")
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--plot", type=Path, help="write a PNG of the time series (needs surge[plot])")
    parser.add_argument("--quiet", action="store_true", help="no live progress line")
    parser.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="spread the players over the machines of this Ray cluster that offer surge_loadgen units "
        "('auto': the cluster this machine belongs to)",
    )
    parser.add_argument(
        "--generators",
        type=int,
        metavar="N",
        help="with --ray-address: how many surge_loadgen units to use (default all)",
    )
    parser.add_argument(
        "--ray-namespace",
        default="surge-loadtest",
        metavar="NS",
        help="Ray namespace of the generators (default surge-loadtest)",
    )
    parser.add_argument(
        "--fail-on",
        metavar="EXPRS",
        help="exit 99 when any holds after the run, e.g. 'rebuffer_ratio>0.01,startup_p95>3s,p99_ms>800'",
    )
    parser.set_defaults(handler=cmd_loadtest)


def _config(args: argparse.Namespace) -> LoadTestConfig:
    from loadtest.config import LoadTestConfig

    return LoadTestConfig(
        url=args.url,
        players=args.players,
        ramp=args.ramp,
        duration=args.duration,
        speed=args.speed,
        profile=args.profile,
        titles=tuple(args.titles),
        background=args.background,
        cmcd=args.cmcd,
        on_end=args.on_end,
        timeout=args.timeout,
        connect_timeout=min(5.0, args.timeout),
        max_buffer=args.max_buffer,
        start_buffer=args.start_buffer,
        start_bandwidth=args.start_bandwidth,
        allow_remote=args.allow_remote,
        fleet_url=args.fleet,
        abr_profile=args.abr_profile,
        abr_settings=tuple(_setting(text) for text in args.abr_set),
    )


def _setting(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise InvalidInput(
            f"--abr-set wants NAME=NUMBER, e.g. abrBandWidthUpFactor=0.8, not {text!r}"
        ) from None


def _check_writable(path: Path | None, flag: str) -> None:
    if path is not None and not path.parent.is_dir():
        raise InvalidInput(f"{flag} {path}: {path.parent} is not a directory")


async def _run(
    args: argparse.Namespace, config: LoadTestConfig, progress: Callable[[Second, int], None]
) -> dict[str, Any]:
    """On this machine, or over the generators of a Ray cluster (``--ray-address``)."""
    if not args.ray_address:
        from loadtest.driver import run_loadtest

        return await run_loadtest(config, progress)
    try:
        from loadtest.ray_generators import run_on_cluster
    except ImportError:
        raise SurgeError("--ray-address needs the ray package: pip install 'surge[ray]'") from None
    address = None if args.ray_address == "auto" else args.ray_address
    return await run_on_cluster(config, address, args.ray_namespace, args.generators, progress)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from loadtest import report, thresholds
    from service.loop import run

    config = _config(args)
    if args.generators is not None and not args.ray_address:
        raise InvalidInput("--generators needs --ray-address (the cluster whose machines run them)")
    limits = thresholds.parse(args.fail_on) if args.fail_on else ()
    _check_writable(args.report, "--report")
    _check_writable(args.plot, "--plot")
    if args.plot is not None:
        report.check_plot_available()
    tty = sys.stderr.isatty()

    def progress(second: Second, errors: int) -> None:
        if args.quiet:
            return
        line = report.progress_line(second, errors)
        if tty:
            print(f"\r\x1b[K{line}", end="", file=sys.stderr, flush=True)
        elif round(second.t) % NON_TTY_EVERY == 0:
            print(line, file=sys.stderr, flush=True)

    try:
        result = run(_run(args, config, progress))
    finally:
        if tty and not args.quiet:
            print(file=sys.stderr)
    verdicts = thresholds.evaluate(limits, result)
    result["thresholds"] = [thresholds.verdict_json(v) for v in verdicts]
    print(report.summary_text(result))
    if verdicts:
        print("thresholds", *(thresholds.verdict_line(v) for v in verdicts), sep="\n")
    if args.report is not None:
        report.write_json(result, args.report)
        print(f"report: {args.report}")
    if args.plot is not None:
        report.plot(result, args.plot)
        print(f"plot: {args.plot}")
    if result["interrupted"]:
        print(
            f"surge: interrupted after {result['wall_s']:.0f} s; the report covers that much", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    if count := thresholds.broken(verdicts):
        print(f"surge: {count} threshold(s) broken", file=sys.stderr)
        return EXIT_THRESHOLDS
    return 0
