"""Split one postgresql:// URL into the two legs of a connection through pgvalet.

- The *upstream* leg is what the pgvalet binary connects to: ``postgresql://``
  (no ``+driver``), the user's host, port, credentials and TLS settings.  The
  binary's own URL parser (src/core/pgurl.c) accepts only addressing, credential
  and TLS parameters, so nothing else is put there.
- The *local* leg is what the application connects to: the same user, password
  and database on the proxy's loopback address, the ``+driver`` suffix kept, TLS
  and addressing parameters removed (the loopback hop is plain TCP), every other
  parameter (application_name, options, connect_timeout, ...) kept.

Everything works on the raw text, so percent-encoded parts (``p%40ss%2Fword``)
reach both legs byte for byte.  Pure functions, no I/O.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote_plus

# TLS / transport-encryption parameters: upstream leg only.
TLS_PARAMS = frozenset({
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl",
    "sslcrldir", "sslsni", "sslcompression", "sslcertmode", "requiressl",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "gssencmode",
    "direct_tls",  # asyncpg
})
# Where the server is: upstream leg only (the local leg points at the proxy).
ADDRESS_PARAMS = frozenset({"host", "hostaddr", "port"})
# Who logs in: both legs (the proxy authenticates clients as the upstream user).
CREDENTIAL_PARAMS = frozenset({"user", "password", "dbname"})
# asyncpg spells sslmode "ssl"; it becomes sslmode on the upstream leg.
ASYNCPG_SSL = "ssl"

_SCHEME = re.compile(r"^(postgres|postgresql)(?:\+([A-Za-z0-9_]+))?://", re.IGNORECASE)
_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}

# Keyword arguments SQLAlchemy's asyncpg dialect forwards to asyncpg.connect()
# (plus its own two); numeric ones are converted, since URL values are strings.
_ASYNCPG_KEEP = frozenset({"user", "password", "passfile", "prepared_statement_cache_size",
                           "async_fallback"})
_ASYNCPG_INT = frozenset({"statement_cache_size", "max_cacheable_statement_size"})
_ASYNCPG_FLOAT = frozenset({"timeout", "command_timeout", "max_cached_statement_lifetime"})
# pg8000.connect() keywords that make sense in a URL.
_PG8000_KEEP = frozenset({"user", "password", "application_name"})


@dataclass(frozen=True)
class PgUrl:
    """A postgresql:// URL cut into raw (still percent-encoded) pieces."""

    driver: Optional[str]          # "asyncpg" for postgresql+asyncpg://, else None
    userinfo: Optional[str]        # "user:p%40ss", None when there is no '@'
    hostport: str                  # "db.example.com:5432", "[::1]:5432" or ""
    database: Optional[str]        # the path after '/', None when absent
    params: Tuple[Tuple[str, str], ...] = ()  # (decoded name, raw "name=value")

    def param(self, name: str) -> Optional[str]:
        """The decoded value of the last query parameter called name, or None."""
        value = None
        for key, seg in self.params:
            if key == name:
                value = unquote_plus(seg.partition("=")[2])
        return value


@dataclass
class LocalLeg:
    """What SQLAlchemy gets: a URL, extra connect_args, and what had to be dropped."""

    url: str
    connect_args: Dict[str, Any] = field(default_factory=dict)
    dropped: List[str] = field(default_factory=list)


def parse(url: str) -> PgUrl:
    """Cut url into raw pieces; ValueError if it is not a postgresql:// URL.

    The user info ends at the last '@' before the first '/' or '?', as in libpq.
    Messages never echo the URL (it may hold a password).
    """
    if not isinstance(url, str):
        raise TypeError(f"expected a URL string, got {type(url).__name__}")
    m = _SCHEME.match(url)
    if m is None:
        raise ValueError("not a PostgreSQL URL: expected postgresql://, postgres:// "
                         "or postgresql+<driver>://")
    rest = url[m.end():]
    cut = len(rest)
    for sep in "/?":
        i = rest.find(sep)
        if 0 <= i < cut:
            cut = i
    netloc, tail = rest[:cut], rest[cut:]
    path, _, query = tail.partition("?")
    if "@" in path or ("@" in query and "@" not in netloc):
        raise ValueError("unexpected '@' after the host: percent-encode '@', '/' and '?' "
                         "in the user name or password (%40, %2F, %3F)")
    userinfo: Optional[str]
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
    else:
        userinfo, hostport = None, netloc
    params = tuple((unquote_plus(seg.partition("=")[0]), seg)
                   for seg in query.split("&") if seg)
    return PgUrl(driver=m.group(2).lower() if m.group(2) else None, userinfo=userinfo,
                 hostport=hostport, database=path[1:] if path else None, params=params)


def _join(scheme: str, userinfo: Optional[str], hostport: str, database: Optional[str],
          segments: List[str]) -> str:
    out = scheme + "://"
    if userinfo is not None:
        out += userinfo + "@"
    out += hostport
    if database is not None:
        out += "/" + database
    if segments:
        out += "?" + "&".join(segments)
    return out


def host_port(host: str, port: int) -> str:
    """host:port, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _sslmode_from_asyncpg(value: str) -> str:
    v = value.lower()
    if v in _TRUE:
        return "require"
    if v in _FALSE:
        return "disable"
    return value


def upstream(u: PgUrl) -> str:
    """The URL the pgvalet binary connects to (no driver suffix, no client knobs)."""
    segments = []
    for name, seg in u.params:
        if name == ASYNCPG_SSL:
            segments.append("sslmode=" + _sslmode_from_asyncpg(seg.partition("=")[2]))
        elif name in TLS_PARAMS or name in ADDRESS_PARAMS or name in CREDENTIAL_PARAMS:
            segments.append(seg)
    return _join("postgresql", u.userinfo, u.hostport, u.database, segments)


def _local_segments(u: PgUrl) -> List[Tuple[str, str]]:
    return [(name, seg) for name, seg in u.params
            if name not in TLS_PARAMS and name not in ADDRESS_PARAMS and name != ASYNCPG_SSL]


def local(u: PgUrl, host: str, port: int, *, keep_driver: bool = True) -> str:
    """The URL of the proxy for this upstream, in libpq form (any driver or tool)."""
    scheme = "postgresql" + (f"+{u.driver}" if keep_driver and u.driver else "")
    return _join(scheme, u.userinfo, host_port(host, port), u.database,
                 [seg for _, seg in _local_segments(u)])


def display(u: PgUrl) -> str:
    """postgresql://user@host/db without password or query: safe for logs."""
    user = u.userinfo.partition(":")[0] + "@" if u.userinfo else ""
    db = "/" + u.database if u.database is not None else ""
    return f"postgresql://{user}{u.hostport}{db}"


def parse_libpq_options(options: str) -> Dict[str, str]:
    """'-c search_path=app -c statement_timeout=5s' (or --name=value) -> settings."""
    settings: Dict[str, str] = {}
    tokens = shlex.split(options)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "-c" and i + 1 < len(tokens):
            tok, i = tokens[i + 1], i + 1
        elif tok.startswith("-c"):
            tok = tok[2:]
        elif tok.startswith("--"):
            tok = tok[2:]
        else:
            tok = ""
        name, eq, value = tok.partition("=")
        if not eq or not name:
            raise ValueError(f"cannot translate options={options!r} into settings: "
                             "only '-c name=value' and '--name=value' are understood")
        settings[name.replace("-", "_")] = value
        i += 1
    return settings


def _asyncpg_leg(u: PgUrl, host: str, port: int) -> LocalLeg:
    leg = LocalLeg(url="")
    server_settings: Dict[str, str] = {}
    kept = []
    for name, seg in _local_segments(u):
        value = unquote_plus(seg.partition("=")[2])
        if name in _ASYNCPG_KEEP:
            kept.append(seg)
        elif name in _ASYNCPG_INT:
            leg.connect_args[name] = int(value)
        elif name in _ASYNCPG_FLOAT:
            leg.connect_args[name] = float(value)
        elif name == "connect_timeout":
            leg.connect_args["timeout"] = float(value)
        elif name == "dbname":
            leg.connect_args["database"] = value
        elif name == "application_name":
            server_settings["application_name"] = value
        elif name == "options":
            server_settings.update(parse_libpq_options(value))
        else:
            leg.dropped.append(name)
    if server_settings:
        leg.connect_args["server_settings"] = server_settings
    leg.url = _join(f"postgresql+{u.driver}", u.userinfo, host_port(host, port), u.database,
                    kept)
    return leg


def _pg8000_leg(u: PgUrl, host: str, port: int) -> LocalLeg:
    leg = LocalLeg(url="")
    kept = []
    for name, seg in _local_segments(u):
        value = unquote_plus(seg.partition("=")[2])
        if name in _PG8000_KEEP:
            kept.append(seg)
        elif name in ("connect_timeout", "timeout"):
            leg.connect_args["timeout"] = float(value)
        elif name == "dbname":
            leg.connect_args["database"] = value
        else:
            leg.dropped.append(name)
    leg.url = _join(f"postgresql+{u.driver}", u.userinfo, host_port(host, port), u.database,
                    kept)
    return leg


def sqlalchemy_leg(u: PgUrl, host: str, port: int) -> LocalLeg:
    """The local leg for SQLAlchemy, adapted to the driver named by the suffix.

    libpq drivers (psycopg2, psycopg, none) take every libpq parameter as is.
    SQLAlchemy's asyncpg and pg8000 dialects pass query parameters straight to
    the driver's connect() as keywords, so libpq spellings are translated into
    connect_args (application_name and ``options='-c k=v'`` -> asyncpg
    server_settings, connect_timeout -> timeout, dbname -> database) and the
    rest is dropped (listed in ``dropped``) instead of failing at connect time.
    """
    if u.driver == "asyncpg":
        return _asyncpg_leg(u, host, port)
    if u.driver == "pg8000":
        return _pg8000_leg(u, host, port)
    return LocalLeg(url=local(u, host, port, keep_driver=True))
