"""Every SQLAlchemy version probe in one place (1.4 and 2.0 are supported)."""
from __future__ import annotations

import re
from typing import Any, Optional
from urllib.parse import quote, urlencode

import sqlalchemy
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession as _AsyncSession
from sqlalchemy.orm import Session as _Session

SA_VERSION = tuple(int(p) for p in re.findall(r"\d+", sqlalchemy.__version__)[:3])
SA14 = SA_VERSION < (2,)

# Dialects that exist only from SQLAlchemy 2.0 on.
_SA2_DRIVERS = frozenset({"psycopg", "psycopg_async"})


def check_driver(driver: Optional[str]) -> None:
    """Fail early, before a proxy starts, for a dialect this SQLAlchemy lacks."""
    if SA14 and driver in _SA2_DRIVERS:
        raise ValueError(f"postgresql+{driver} (psycopg 3) needs SQLAlchemy 2.0; this is "
                         f"SQLAlchemy {sqlalchemy.__version__}: use +psycopg2 or +asyncpg")


def pool_info(fairy: Any) -> Optional[dict]:
    """The pool record's info dict of a pooled connection, or None where there is none:
    a bare driver connection (psycopg2's has an .info of its own), or 2.0's
    first-connect connection (dialect.initialize), whose .info raises NotImplementedError."""
    try:
        info = fairy.info
    except (AttributeError, NotImplementedError):
        return None
    return info if isinstance(info, dict) else None


def url_text(url: Any) -> str:
    """A str or sqlalchemy URL as text, password included.

    Not URL.render_as_string(): 1.4 escapes only ':', '@' and '/' in the password.
    """
    if isinstance(url, str):
        return url
    if not isinstance(url, URL):
        raise TypeError(f"expected a URL string or sqlalchemy URL, got {type(url).__name__}")
    text = url.drivername + "://"
    if url.username is not None:
        text += quote(url.username, safe="")
        if url.password is not None:
            text += ":" + quote(str(url.password), safe="")
        text += "@"
    if url.host:
        text += f"[{url.host}]" if ":" in url.host else quote(url.host, safe="")
    if url.port is not None:
        text += f":{url.port}"
    if url.database is not None:
        text += "/" + quote(url.database, safe="")
    if url.query:
        text += "?" + urlencode(list(url.query.items()), doseq=True, quote_via=quote)
    return text


# ---- Session / AsyncSession methods newer than 1.4 (pgvalet.orm.SessionProxy) ------------
# Probed with hasattr, not by version number, so a backport or a patched build is honoured.
SESSION_HAS_GET_ONE = hasattr(_Session, "get_one")          # 2.0.22
SESSION_HAS_RESET = hasattr(_Session, "reset")              # 2.0.22
ASYNC_SESSION_HAS_GET_ONE = hasattr(_AsyncSession, "get_one")
ASYNC_SESSION_HAS_RESET = hasattr(_AsyncSession, "reset")
ASYNC_SESSION_HAS_ACLOSE = hasattr(_AsyncSession, "aclose")  # 2.0.20


# --- ORM cache (pgvalet.orm): private SQLAlchemy corners, probed in one place ---

def iter_mappers():
    """Every configured mapper of every registry (1.4 and 2.0 keep the same weak map)."""
    from sqlalchemy.orm import mapperlib
    for registry in list(mapperlib._mapper_registries):
        yield from list(registry.mappers)


def session_connections(session):
    """The Connections the session's current transaction holds, or None if unknown."""
    try:
        trans = session.get_transaction()
        found = []
        while trans is not None:
            for value in trans._connections.values():
                conn = value[0] if isinstance(value, tuple) else value
                if conn not in found:
                    found.append(conn)
            trans = trans._parent
        return found
    except AttributeError:
        return None


def dbapi_of(fairy):
    """The driver's connection under a pool fairy (dbapi_connection from 1.4.24 on)."""
    return getattr(fairy, "dbapi_connection", None) or getattr(fairy, "connection", None)


def populate_existing(state) -> bool:
    opts = state.load_options
    return bool(getattr(opts, "_populate_existing", False)
                or state.execution_options.get("populate_existing"))
