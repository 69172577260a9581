"""SQLAlchemy engines that connect through a pgvalet proxy.

    from pgvalet.sqlalchemy import create_engine        # instead of sqlalchemy's
    engine = create_engine("postgresql://user:pass@host:5432/mydb")

The proxy for that upstream is started (or reused) and the engine, an ordinary
SQLAlchemy Engine / AsyncEngine, connects to it on loopback.  ``engine.pgvalet`` is
the proxy handle; ``engine.dispose()`` leaves a shared proxy running.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import sqlalchemy
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as _sa_create_async_engine

from . import _process, _url, l1
from . import l1 as _l1  # init()'s l1= argument shadows the module name there
from ._compat import check_driver, url_text
from ._process import Proxy

__all__ = ["create_engine", "create_async_engine", "init"]

# start() keyword arguments, accepted here as pgvalet_<name>.
START_OPTIONS = ("port", "dashboard_port", "config", "extra_args", "mode", "log_level",
                 "silent", "timeout")
# Engine options of ours that are not start() options.
ENGINE_OPTIONS = ("l1",)


class _AsyncEngine(AsyncEngine):
    """An AsyncEngine with ``.pgvalet``.  AsyncEngine has __slots__, so the handle
    is kept on its sync_engine (where the L1 cache will hook in too)."""

    __slots__ = ()

    @property
    def pgvalet(self) -> Proxy:
        return self.sync_engine.pgvalet  # type: ignore[attr-defined]


def _start_options(kwargs: Dict[str, Any], **given: Any) -> Dict[str, Any]:
    """Pop pgvalet_<name> keywords out of kwargs; the rest is for SQLAlchemy."""
    options = {k: v for k, v in given.items() if v is not None}
    for key in [k for k in kwargs if k.startswith("pgvalet_")]:
        name = key[len("pgvalet_"):]
        if name in ENGINE_OPTIONS:
            continue
        if name not in START_OPTIONS:
            raise TypeError(f"unknown option {key!r}; pgvalet options are: "
                            + ", ".join("pgvalet_" + n for n in START_OPTIONS + ENGINE_OPTIONS))
        options[name] = kwargs.pop(key)
    return options


def _l1_cache(handle: Proxy, setting: Any, stacklevel: int) -> Optional[l1.L1]:
    """The L1 for the proxy handle per setting: True (default), False, or {"max_bytes": N};
    None when there is to be none."""
    if setting is False:
        return None
    if setting is not True and not isinstance(setting, Mapping):
        raise TypeError(f"pgvalet_l1 must be True, False or a dict, not {setting!r}")
    options = dict(setting) if isinstance(setting, Mapping) else {}
    unknown = set(options) - {"max_bytes"}
    if unknown:
        raise TypeError(f"pgvalet_l1: unknown key(s) {sorted(unknown)}; valid: max_bytes")
    if not l1.available():
        warnings.warn("pgvalet: the in-process L1 cache is not built (run make); "
                      "reads go to the proxy", stacklevel=stacklevel)
        return None
    address = handle.push_address
    if address is None:
        return None  # no push channel (cache off in the proxy): nothing keeps an L1 fresh
    return l1.for_address(address, int(options.get("max_bytes", l1.DEFAULT_MAX_BYTES)))


def _attach_l1(engine: Any, handle: Proxy, setting: Any) -> None:
    l1.attach(engine, _l1_cache(handle, setting, stacklevel=4))


def _start(url: Any, options: Mapping[str, Any]) -> Tuple[Proxy, _url.LocalLeg]:
    text = url_text(url)
    parsed = _url.parse(text)
    check_driver(parsed.driver)
    handle = _process.start(text, **options)
    try:
        leg = _url.sqlalchemy_leg(parsed, handle.host, handle.port)
    except BaseException:
        handle.stop()
        raise
    if leg.dropped:
        warnings.warn(f"pgvalet: the {parsed.driver} driver does not understand the URL "
                      f"parameter(s) {', '.join(leg.dropped)}; they are not passed to it",
                      stacklevel=3)
    return handle, leg


def _merge_connect_args(ours: Mapping[str, Any], theirs: Optional[Mapping[str, Any]]
                        ) -> Dict[str, Any]:
    merged = dict(ours)
    for key, value in (theirs or {}).items():
        if key == "server_settings" and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _engine_kwargs(leg: _url.LocalLeg, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    if leg.connect_args:
        kwargs["connect_args"] = _merge_connect_args(leg.connect_args, kwargs.get("connect_args"))
    return kwargs


def create_engine(url: Any, *, pgvalet_port: Optional[int] = None,
                  pgvalet_config: Optional[Mapping[str, Any]] = None,
                  pgvalet_extra_args: Optional[Sequence[str]] = None, **kwargs: Any) -> Engine:
    """sqlalchemy.create_engine(url, **kwargs), connected through pgvalet.

    Every pgvalet.start() option is accepted as pgvalet_<name> (pgvalet_port,
    pgvalet_config, pgvalet_extra_args, pgvalet_mode, pgvalet_log_level,
    pgvalet_silent, pgvalet_timeout, pgvalet_dashboard_port); the rest goes to
    SQLAlchemy.  pgvalet_port defaults to $PGVALET_PORT or 7932.  The proxy
    handle is ``engine.pgvalet``; engine.dispose() does not stop a shared proxy.
    """
    options = _start_options(kwargs, port=pgvalet_port, config=pgvalet_config,
                             extra_args=pgvalet_extra_args)
    l1_setting = kwargs.pop("pgvalet_l1", True)
    handle, leg = _start(url, options)
    try:
        engine = sqlalchemy.create_engine(leg.url, **_engine_kwargs(leg, kwargs))
        _attach_l1(engine, handle, l1_setting)
    except BaseException:
        handle.stop()
        raise
    engine.pgvalet = handle  # type: ignore[attr-defined]
    return engine


def create_async_engine(url: Any, *, pgvalet_port: Optional[int] = None,
                        pgvalet_config: Optional[Mapping[str, Any]] = None,
                        pgvalet_extra_args: Optional[Sequence[str]] = None,
                        **kwargs: Any) -> AsyncEngine:
    """sqlalchemy.ext.asyncio.create_async_engine(url, **kwargs) through pgvalet.

    Same pgvalet_<name> options as create_engine().  For +asyncpg, libpq URL
    parameters are translated (application_name and options -> server_settings,
    connect_timeout -> timeout) and unknown ones dropped with a warning.
    """
    options = _start_options(kwargs, port=pgvalet_port, config=pgvalet_config,
                             extra_args=pgvalet_extra_args)
    l1_setting = kwargs.pop("pgvalet_l1", True)
    handle, leg = _start(url, options)
    try:
        engine = _sa_create_async_engine(leg.url, **_engine_kwargs(leg, kwargs))
        _attach_l1(engine.sync_engine, handle, l1_setting)
    except BaseException:
        handle.stop()
        raise
    # Same object, same layout (the subclass adds no slots), one property more;
    # a second AsyncEngine around sync_engine would upset SQLAlchemy's proxy registry.
    engine.__class__ = _AsyncEngine
    engine.sync_engine.pgvalet = handle  # type: ignore[attr-defined]
    return engine


# DATABASE_URL values written by init() -> their proxy, so a second init() is a no-op.
_rewritten: Dict[str, Proxy] = {}


def init(url: Optional[str] = None, *, port: Optional[int] = None,
         config: Optional[Mapping[str, Any]] = None,
         extra_args: Optional[Sequence[str]] = None, l1: Any = True,
         **options: Any) -> Proxy:
    """Start a proxy for url (default: $DATABASE_URL) and point DATABASE_URL at it.

    The application's own ``create_engine(os.environ["DATABASE_URL"])`` then
    connects through pgvalet with no import change, and gets the in-process L1
    cache too (``l1=False`` turns that off, ``l1={"max_bytes": N}`` sizes it): every
    SQLAlchemy engine of this process that connects to the proxy uses it.  Other
    start() options are accepted by name (mode=, log_level=, silent=, ...).  Returns
    the proxy handle; calling init() again with the rewritten DATABASE_URL returns
    the same one.
    """
    source = url if url is not None else os.environ.get("DATABASE_URL")
    if not source:
        raise RuntimeError("pgvalet.sqlalchemy.init(): DATABASE_URL is not set (or pass url=)")
    existing = _rewritten.get(source)
    if existing is not None and not existing.stopped and existing.alive:
        return existing
    unknown = set(options) - set(START_OPTIONS)
    if unknown:
        raise TypeError(f"init() got unknown option(s) {', '.join(sorted(unknown))}; "
                        f"valid: url, l1, {', '.join(START_OPTIONS)}")
    opts = {k: v for k, v in dict(options, port=port, config=config,
                                  extra_args=extra_args).items() if v is not None}
    handle, leg = _start(source, opts)
    try:
        cache = _l1_cache(handle, l1, stacklevel=3)
    except BaseException:
        handle.stop()
        raise
    if cache is not None:
        _l1.attach_address(handle.host, handle.port, cache, handle)
    if leg.connect_args:
        warnings.warn(f"pgvalet: DATABASE_URL cannot carry {', '.join(sorted(leg.connect_args))} "
                      f"for the {_url.parse(source).driver} driver; pass them as connect_args",
                      stacklevel=2)
    os.environ["DATABASE_URL"] = leg.url
    _rewritten[leg.url] = handle
    return handle
