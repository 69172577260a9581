"""The pgvalet binary's own options, read from its --help, and config -> argv.

The valid config keys are whatever the binary in use lists, so the Python side
never drifts from the C side: a newer binary's options work without a release.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

# Options start() sets itself, with the argument to use instead.
RESERVED = {
    "upstream": "pass the URL as start()'s first argument",
    "port": "use start(port=...)",
    "config": "use extra_args=['--config', PATH] or PGVALET_CONFIG",
    "help": "not a setting",
    "version": "not a setting",
}

# log_level names -> --verbose N (the binary always logs errors, warnings and info).
LOG_LEVELS = {"info": 0, "debug": 1, "trace": 2}

_OPTION_LINE = re.compile(
    r"^\s*(?:-([A-Za-z0-9]),\s+)?--([a-z0-9][a-z0-9-]*)(?:[ =]\s*(\S.*?))?\s*$")
_BOOL_SPELLINGS = (("1", "0"), ("on", "off"), ("true", "false"), ("yes", "no"))

_cache: Dict[Tuple[str, int], Dict[str, "Option"]] = {}


@dataclass(frozen=True)
class Option:
    """One option from --help: --name [METAVAR]."""

    name: str                 # "pool-size"
    short: Optional[str]      # "v" for -v, --verbose
    metavar: Optional[str]    # "N", "session|transaction"; None for a switch

    @property
    def choices(self) -> Tuple[str, ...]:
        """The alternatives of a metavar like 'wal|ttl|notify' (empty otherwise)."""
        if self.metavar and "|" in self.metavar and " " not in self.metavar:
            return tuple(self.metavar.split("|"))
        return ()


def parse_help(text: str) -> Dict[str, Option]:
    """Options listed in --help output: lines '--name ...' or '-x, --name ...'."""
    options: Dict[str, Option] = {}
    for line in text.splitlines():
        m = _OPTION_LINE.match(line)
        if m:
            options[m.group(2)] = Option(m.group(2), m.group(1), m.group(3))
    return options


def binary_options(binary: str) -> Dict[str, Option]:
    """The options of the binary at this path (cached per path and mtime)."""
    key = (binary, os.stat(binary).st_mtime_ns)
    if key not in _cache:
        out = subprocess.run([binary, "--help"], stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=30)
        options = parse_help(out.stdout)
        if out.returncode != 0 or not options:
            raise RuntimeError(f"{binary} --help failed (exit status {out.returncode}): "
                               f"{(out.stderr or out.stdout).strip()[:500]}")
        _cache[key] = options
    return _cache[key]


def normalize_key(key: str) -> str:
    """pool_size, pool-size, --pool-size -> pool-size."""
    return key.strip().lstrip("-").replace("_", "-").lower()


def settable(options: Mapping[str, Option]) -> List[str]:
    """Option names a config dict may use (snake_case spelling), sorted."""
    return sorted(n.replace("-", "_") for n in options if n not in RESERVED)


def _missing(binary: str, name: str, options: Mapping[str, Option], why: str = "") -> ValueError:
    return ValueError(f"this pgvalet binary ({binary}) has no --{name} option{why}; "
                      f"its settings are: {', '.join(settable(options))}")


def format_value(opt: Option, key: str, value: Any) -> Optional[str]:
    """The command-line spelling of value for opt; None leaves a switch off."""
    if isinstance(value, bool):
        if opt.metavar is None:
            return "" if value else None
        choices = set(opt.choices)
        for yes, no in _BOOL_SPELLINGS:
            if {yes, no} <= choices:
                return yes if value else no
        return "1" if value else "0"
    if opt.metavar is None:
        raise TypeError(f"config[{key!r}]: --{opt.name} is a switch: use True or False")
    if isinstance(value, timedelta):
        return f"{round(value.total_seconds() * 1000)}ms"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"config[{key!r}]: cannot pass a {type(value).__name__} to --{opt.name}")


def build_args(binary: str, options: Mapping[str, Option], config: Optional[Mapping[str, Any]],
               *, mode: Optional[str] = None, log_level: Union[int, str, None] = None,
               dashboard_port: Optional[int] = None) -> List[str]:
    """Flags for config + mode/log_level/dashboard_port, checked against options.

    {"pool_size": 50} -> ["--pool-size", "50"]; None values are skipped.
    Unknown keys raise ValueError listing the valid ones.
    """
    settings: Dict[str, Tuple[str, Any]] = {}
    for key, value in (config or {}).items():
        name = normalize_key(str(key))
        if name in RESERVED:
            raise ValueError(f"config[{key!r}] is not allowed: {RESERVED[name]}")
        if name not in options:
            raise ValueError(f"unknown pgvalet setting {key!r}: this pgvalet binary "
                             f"({binary}) has no --{name} option; valid settings "
                             f"(snake_case or kebab-case): {', '.join(settable(options))}")
        if name in settings:
            raise ValueError(f"config sets {name!r} twice ({settings[name][0]!r} and {key!r})")
        settings[name] = (str(key), value)

    def add(name: str, label: str, value: Any, why: str = "") -> None:
        if name not in options:
            raise _missing(binary, name, options, why)
        if name in settings:
            raise ValueError(f"{label}= and config[{settings[name][0]!r}] both set --{name}")
        settings[name] = (label, value)

    if mode is not None:
        add("mode", "mode", mode, " (it may predate the optimizer)")
    if log_level is not None:
        add("verbose", "log_level", verbosity(log_level))
    if dashboard_port is not None:
        add("dashboard-port", "dashboard_port", int(dashboard_port),
            " (it predates the dashboard)")

    args: List[str] = []
    for name, (key, value) in settings.items():
        if value is None:
            continue
        text = format_value(options[name], key, value)
        if text is None:
            continue
        args.append(f"--{name}")
        if text != "" or options[name].metavar is not None:
            args.append(text)
    return args


def verbosity(level: Union[int, str]) -> int:
    """log_level -> --verbose N: an int 0..5 or 'info', 'debug', 'trace'."""
    if isinstance(level, bool):
        raise TypeError("log_level: expected an int 0..5 or 'info', 'debug', 'trace'")
    if isinstance(level, int):
        return level
    name = str(level).strip().lower()
    if name.isdigit():
        return int(name)
    if name in LOG_LEVELS:
        return LOG_LEVELS[name]
    raise ValueError(f"log_level {level!r}: expected 0..5 or one of {', '.join(LOG_LEVELS)} "
                     "(pgvalet always logs errors, warnings and info)")
