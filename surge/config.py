"""Option values from the environment and a TOML file, under the command line's own flags.

One generic layer over argparse, with no code per option: every option ``--some-flag`` of the command
being run may also come from ``SURGE_SOME_FLAG`` or from the key ``some-flag`` (or ``some_flag``) of the
file given with ``--config FILE`` (or ``SURGE_CONFIG``). Flags win over the environment, which wins over
the file. The file's top-level keys apply to every command that has the option; a table named after a
command (``[edge]``, ``[loadtest]``) applies to that command only and wins over the top level::

    log-level = "info"
    [edge]
    upstream = ["http://127.0.0.1:8080"]
    cache-mem = "1GiB"

Values go through the option's own type and choices, so a bad one fails as the flag would, with a
one-line error naming where it came from. Positional arguments come from the command line only.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from media.errors import InvalidInput

ENV_PREFIX = "SURGE_"
CONFIG_ENV = "SURGE_CONFIG"
CONFIG_FLAG = "--config"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_LISTS = (argparse._AppendAction, argparse._ExtendAction)


@dataclass(frozen=True)
class Source:
    """Where one value came from, as an error names it: ``SURGE_PORT``, ``surge.toml [edge] port``."""

    label: str
    raw: object
    from_env: bool = False  # a string to read as the shell would give it (switches as 1/0, lists split)


def env_name(action: argparse.Action) -> str:
    return ENV_PREFIX + action.dest.upper()


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions  # argparse keeps no public list of a parser's options
        if a.option_strings
        and a.dest not in ("help", "config", "version")
        and not isinstance(a, argparse._HelpAction | argparse._VersionAction)
    ]


def _flag(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def _convert_one(action: argparse.Action, raw: object, source: str) -> Any:
    if isinstance(raw, bool | dict | list):
        raise InvalidInput(f"{source}: {_flag(action)} takes one value, not {raw!r}")
    text = str(raw)
    try:
        value = action.type(text) if callable(action.type) else text
    except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
        kind = getattr(action.type, "__name__", "value")
        detail = str(err) if isinstance(err, argparse.ArgumentTypeError) else f"not a valid {kind}"
        raise InvalidInput(f"{source}={text!r}: {_flag(action)}: {detail}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise InvalidInput(f"{source}={text!r}: {_flag(action)} must be one of {choices}")
    return value


def convert(action: argparse.Action, raw: object, source: str, *, from_env: bool) -> Any:
    """``raw`` (a string from the environment, a TOML value from a file) as the option would parse it."""
    if action.nargs == 0:  # store_true / store_false / store_const
        if isinstance(raw, bool):
            flag_given = raw
        elif from_env and isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            flag_given = raw.strip().lower() in _TRUE
        else:
            raise InvalidInput(f"{source}={raw!r}: {_flag(action)} is a switch: true or false")
        return action.const if flag_given else action.default
    if isinstance(action, _LISTS) or action.nargs in ("+", "*"):
        if from_env and isinstance(raw, str):
            items: Sequence[object] = [part for part in raw.replace(",", " ").split() if part]
        elif isinstance(raw, list):
            items = raw
        else:
            items = [raw]
        return [_convert_one(action, item, source) for item in items]
    return _convert_one(action, raw, source)


def read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise InvalidInput(f"{CONFIG_FLAG} {path}: no such file") from None
    except OSError as err:
        raise InvalidInput(f"{CONFIG_FLAG} {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise InvalidInput(f"{CONFIG_FLAG} {path}: not valid TOML: {err}") from None


def _key(name: str) -> str:
    return name.replace("_", "-")


def file_values(
    document: Mapping[str, Any],
    label: str,
    command: str,
    commands: Mapping[str, argparse.ArgumentParser],
) -> dict[str, Source]:
    """The file's values for ``command`` by option dest; unknown keys are errors (a typo would otherwise
    be silently ignored)."""
    known_anywhere = {_key(a.dest) for p in commands.values() for a in _options(p)}
    by_key = {_key(a.dest): a for a in _options(commands[command])}
    values: dict[str, Source] = {}
    for key, raw in document.items():
        if key in commands:
            if not isinstance(raw, dict):
                raise InvalidInput(f"{label}: {key} must be a table ([{key}])")
            continue
        if _key(key) not in known_anywhere:
            raise InvalidInput(f"{label}: unknown option {key!r}")
        if (action := by_key.get(_key(key))) is not None:
            values[action.dest] = Source(f"{label} {key}", raw)
    for key, raw in document.get(command, {}).items():
        action = by_key.get(_key(key))
        if action is None:
            raise InvalidInput(f"{label}: [{command}] has no option {key!r}")
        values[action.dest] = Source(f"{label} [{command}] {key}", raw)
    return values


def layered_values(
    command: str,
    commands: Mapping[str, argparse.ArgumentParser],
    environ: Mapping[str, str],
    document: Mapping[str, Any] | None,
    file_label: str = "",
) -> dict[str, Any]:
    """Every option of ``command`` that the environment or the file sets, converted, environment first."""
    parser = commands[command]
    sources = file_values(document, file_label, command, commands) if document is not None else {}
    for action in _options(parser):
        name = env_name(action)
        if name in environ:
            sources[action.dest] = Source(name, environ[name], from_env=True)
    by_dest = {a.dest: a for a in _options(parser)}
    return {
        dest: convert(by_dest[dest], source.raw, source.label, from_env=source.from_env)
        for dest, source in sources.items()
    }


def add_config_option(commands: Mapping[str, argparse.ArgumentParser]) -> None:
    for parser in commands.values():
        parser.add_argument(
            CONFIG_FLAG, metavar="FILE", help=f"TOML file of option values (default: ${CONFIG_ENV})"
        )


def _config_path(argv: Sequence[str], environ: Mapping[str, str]) -> Path | None:
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == CONFIG_FLAG and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith(CONFIG_FLAG + "="):
            return Path(arg.split("=", 1)[1])
    configured = environ.get(CONFIG_ENV)
    return Path(configured) if configured else None


def parse_args(
    parser: argparse.ArgumentParser,
    commands: Mapping[str, argparse.ArgumentParser],
    argv: Sequence[str],
    environ: Mapping[str, str],
) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with the command's options defaulting to the environment and the file."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command is None or command not in commands:
        return parser.parse_args(argv)  # usage errors, --help, --version: argparse's own
    path = _config_path(argv, environ)
    document = read_file(path) if path is not None else None
    values = layered_values(command, commands, environ, document, str(path))
    sub = commands[command]
    lists: dict[str, Any] = {}
    for action in _options(sub):
        if action.dest not in values:
            continue
        action.required = False
        if isinstance(action, _LISTS):
            lists[action.dest] = values.pop(action.dest)  # argparse would append flags to a default list
            action.default = None
    sub.set_defaults(**values)
    args = parser.parse_args(argv)
    for dest, value in lists.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    return args
