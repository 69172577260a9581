"""The in-process L1 cache: repeated reads answered inside the application process.

Engines made by pgvalet.sqlalchemy.create_engine() / create_async_engine() get it
(``pgvalet_l1=False`` turns it off, ``pgvalet_l1={"max_bytes": ...}`` sizes it).  It sits
under SQLAlchemy at the DBAPI boundary, so Core, ORM, sync (psycopg2, psycopg 3) and async
(asyncpg) engines all use it, and a hit sends nothing to the proxy: no BEGIN, no query.

How it stays correct (the proxy decides, the L1 only remembers):

- Its connections start with ``pgvalet.l1=on``.  For each answer the proxy itself cached or
  served from its cache, the proxy adds a notice ``pgvalet-l1 fill <token> <tags> <db>``
  (src/pool/session.h): the session-state token and the tags (database, tables, rows) of
  that answer.  Only such answers are kept, under (token, SQL, parameters), tagged alike.
  Statements the proxy would not cache (writes, FOR UPDATE, volatile functions, ...) never
  get a notice, so they are never kept.
- Invalidation: the proxy's push channel (pgvalet._push) names every tag it bumps, for writes
  through any proxy client and for writes that bypass it (WAL); the L1 drops what carries
  them.  A write committed on one of the L1's own connections also gets a notice
  ``pgvalet-l1 evict ...`` with its commit, applied before commit() returns: a process reads
  its own writes.  Other processes' writes reach it at push-channel speed (README).
- No stale fill: a snapshot of the invalidation counter is taken before a query is sent;
  the answer is refused if one of its tags was invalidated after that (the C store's check).
- While the push channel is down, or a database's replication stream is down, the L1 is
  flushed and bypassed (neither served nor filled) until it is back.
- Transactions: a hit is served outside transactions and inside READ COMMITTED ones that have
  only read (the proxy's rule); a connection whose transaction wrote, or that runs REPEATABLE
  READ / SERIALIZABLE, or whose session state changed (SET ...) since its last notice, goes
  to the proxy.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import weakref
from typing import Any, Dict, List, Optional, Tuple

from . import _push

log = logging.getLogger("pgvalet.l1")

DEFAULT_MAX_BYTES = 64 << 20
NOTICE = "pgvalet-l1 "
INFO_KEY = "pgvalet_l1"

try:
    from . import _l1
except ImportError as e:  # not built: `make` builds it next to this file
    _l1 = None
    _IMPORT_ERROR: Optional[ImportError] = e
else:
    _IMPORT_ERROR = None


def available() -> bool:
    """True when the C extension is built (make)."""
    return _l1 is not None


class FakeCursor:
    """A DBAPI cursor over rows already in hand: what SQLAlchemy reads a hit (or a fill) from."""

    __slots__ = ("description", "rowcount", "_rows", "_pos", "arraysize", "connection")

    def __init__(self, description: Any, rows: List[Any], rowcount: int, connection: Any):
        self.connection = connection    # the real DBAPI connection (dialects read notices)
        self.description = description
        self.rowcount = rowcount
        self._rows = rows
        self._pos = 0
        self.arraysize = 1

    def fetchone(self) -> Any:
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def fetchmany(self, size: Optional[int] = None) -> List[Any]:
        n = self.arraysize if size is None else size
        rows = self._rows[self._pos:self._pos + n]
        self._pos += len(rows)
        return rows

    def fetchall(self) -> List[Any]:
        rows = self._rows[self._pos:]
        self._pos = len(self._rows)
        return rows

    def close(self) -> None:
        self._rows = []

    def __iter__(self) -> Any:
        return iter(self.fetchall())


class _Conn:
    """What the L1 knows of one DBAPI connection (kept in its pool record's info)."""

    __slots__ = ("cache", "token", "fill", "dirty", "driver", "raw")

    def __init__(self, cache: "L1", driver: str, raw: Any):
        self.cache = cache
        self.token = 0                  # session-state token of the last fill notice; 0 unknown
        self.fill: Optional[Tuple[int, List[int], str]] = None   # notice of the last statement
        self.dirty = False              # the open transaction sent something not cacheable
        self.driver = driver
        self.raw = raw

    # -- notices --------------------------------------------------------------------------
    def notice(self, text: str) -> bool:
        """Handle one notice text; True if it was ours."""
        i = text.find(NOTICE)
        if i < 0:
            return False
        words = text[i + len(NOTICE):].rstrip("\n").split(" ", 3)
        cache = self.cache
        try:
            if words[0] == "fill" and len(words) == 4:
                self.fill = (int(words[1], 16), [int(t, 16) for t in words[2].split(",")],
                             words[3])
            elif words[0] == "evict" and len(words) >= 3:
                cache.invalidate([int(t, 16) for t in words[1].split(",")])
            elif words[0] == "evict-db" and len(words) >= 2:
                cache.invalidate_db(" ".join(words[1:]))
            else:
                raise ValueError(words[0])
        except (ValueError, IndexError):
            log.warning("pgvalet L1: unreadable notice %r: flushing", text)
            cache.clear()
        return True

    # -- one statement ----------------------------------------------------------------------
    def lookup(self, statement: str, parameters: Any) -> Tuple[Any, Optional[int]]:
        """Before a statement goes out: (cached value, None) on a hit, else (None, snapshot)
        when its answer may be kept, else (None, None)."""
        self.fill = None
        cache = self.cache
        if not cache.up or not self.read_committed():
            return None, None
        if self.dirty:
            if self.in_transaction():
                return None, None
            self.dirty = False
        store = cache.store
        if self.token:
            value = store.get(self.token, statement, parameters)
            if value is not None:
                return (_descriptions[value[0]], value[1], value[2]), None
        return None, store.snapshot()

    def settle(self, snap: Optional[int], statement: str, parameters: Any,
               description: Any, fetch_rows: Any, rowcount: int) -> Optional[List[Any]]:
        """After a statement went to the proxy: keep its answer if the proxy said so.
        Returns the rows when it had to fetch them (the caller serves those), else None."""
        fill, self.fill = self.fill, None
        if fill is None:
            # Not cacheable: it may have written or changed the session state.
            self.token = 0
            self.dirty = True
            return None
        token, tags, db = fill
        self.token = token
        if snap is None or description is None or db not in self.cache.up:
            return None
        rows = fetch_rows()
        try:
            shape = _description_id(description)
            if shape is None:
                return rows
            value = (shape, [tuple(r) for r in rows], rowcount)
            self.cache.store.put(token, statement, parameters, value, tags, snap)
        except Exception as e:  # a value neither marshal nor pickle takes: not cached
            log.debug("pgvalet L1: not cached: %s", e)
        return rows

    # -- transaction state ----------------------------------------------------------------
    def in_transaction(self) -> bool:
        raw = self.raw
        if self.driver == "psycopg2":
            return raw.status != 1          # STATUS_READY: no transaction open
        if self.driver == "asyncpg":
            return bool(raw._started)
        return raw.info.transaction_status != 0   # psycopg 3: IDLE

    def read_committed(self) -> bool:
        raw = self.raw
        if self.driver == "psycopg2":
            return raw.isolation_level in _RC
        if self.driver == "asyncpg":
            # None: the server's default (SQLAlchemy 2.0 leaves it unset)
            return raw.isolation_level in (None, "read_committed", "autocommit")
        level = raw.isolation_level
        return level is None or int(level) == 1  # psycopg 3 IsolationLevel.READ_COMMITTED


# Result descriptions, interned: an entry stores the index of its description, so a hit
# decodes only its rows (a description is most of the decoding work of a small result).
MAX_DESCRIPTIONS = 65536
_RC = (None, 0, 1)      # psycopg2 isolation_level: default, autocommit, READ COMMITTED
_descriptions: List[Tuple[Tuple[Any, ...], ...]] = []
_description_ids: Dict[Tuple[Tuple[Any, ...], ...], int] = {}
_descriptions_lock = threading.Lock()


def _description_id(description: Any) -> Optional[int]:
    desc = tuple(tuple(d[:7]) for d in description)
    found = _description_ids.get(desc)
    if found is not None:
        return found
    with _descriptions_lock:
        found = _description_ids.get(desc)
        if found is None:
            if len(_descriptions) >= MAX_DESCRIPTIONS:
                return None     # that many result shapes: keep no new ones
            found = _description_ids[desc] = len(_descriptions)
            _descriptions.append(desc)
        return found


class _Psycopg2Notices(list):
    """psycopg2 appends each notice to conn.notices: ours are handled, the rest kept."""

    def __init__(self, conn: _Conn):
        super().__init__()
        self.conn = conn

    def append(self, text: str) -> None:  # type: ignore[override]
        if not self.conn.notice(text):
            super().append(text)
            if len(self) > 50:          # psycopg2's own cap
                del self[0]


class L1:
    """One in-process cache per proxy (push channel address), shared by its engines."""

    def __init__(self, push_address: str, max_bytes: int = DEFAULT_MAX_BYTES):
        if _l1 is None:
            raise RuntimeError(f"pgvalet L1 cache not built ({_IMPORT_ERROR}); run make")
        self.push_address = push_address
        self.store = _l1.Cache(max_bytes)
        self.up: set = set()            # databases whose stream is up (channel connected)
        self.sub = _push.subscribe(push_address, self._on_event)

    # -- push channel (its thread) ----------------------------------------------------------
    def _on_event(self, event: Dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "invalidate":
            self.store.invalidate([int(t, 16) for t in event.get("tags", ())])
        elif kind == "flush":
            db = event.get("db")
            if db is None:
                self.store.clear()
            else:
                self.store.invalidate_db(db)
        elif kind == "state":
            db = event.get("db")
            if event.get("stream") == "up":
                self.up.add(db)
            else:
                self.up.discard(db)
                self.store.invalidate_db(db)
        elif kind in ("hello", "lost"):
            self.up.clear()
            self.store.clear()

    # -- for _Conn ------------------------------------------------------------------------------
    def invalidate(self, tags: List[int]) -> None:
        self.store.invalidate(tags)

    def invalidate_db(self, db: str) -> None:
        self.store.invalidate_db(db)

    def clear(self) -> None:
        self.store.clear()

    def stats(self) -> Dict[str, int]:
        return self.store.stats()

    def close(self) -> None:
        self.sub.close()
        self.up.clear()
        self.store.clear()


# One L1 per push address, kept while an engine uses it.
_caches: "weakref.WeakValueDictionary[str, L1]" = weakref.WeakValueDictionary()
_caches_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # The parent's subscriber threads did not survive the fork: start empty and subscribe
    # again, or a child would serve from a cache nothing invalidates any more.
    _push._forget_after_fork()
    for cache in list(_caches.values()):
        cache.up.clear()
        cache.store.clear()
        cache.sub = _push.subscribe(cache.push_address, cache._on_event)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def for_address(push_address: str, max_bytes: int = DEFAULT_MAX_BYTES) -> L1:
    with _caches_lock:
        cache = _caches.get(push_address)
        if cache is None:
            cache = _caches[push_address] = L1(push_address, max_bytes)
        return cache


def merge_options(existing: Optional[str]) -> str:
    flag = "-c pgvalet.l1=on"
    return f"{existing} {flag}" if existing else flag


# ---- SQLAlchemy hooks ---------------------------------------------------------------------
#
# One set of listeners for the whole process, at class level (every Dialect, every Pool,
# every Engine), installed on first use.  Which connections get an L1 is decided when one
# is made (do_connect): its engine's dialect names its cache (attach(), the engines
# pgvalet.sqlalchemy makes), or it connects to a proxy registered by address
# (attach_address(), what init() uses for the engines the application makes itself).
# Every other connection has no _Conn in its pool record and is left alone.

L1_DRIVERS = ("psycopg2", "asyncpg", "psycopg")
PENDING_KEY = "pgvalet_l1_pending"
_by_address: Dict[Tuple[str, int], Tuple[L1, Any]] = {}   # -> (cache, proxy handle)
_hooks_lock = threading.Lock()
_hooks_installed = False


def attach(engine: Any, cache: Optional[L1]) -> None:
    """Put cache under a (sync) SQLAlchemy Engine; for an AsyncEngine pass .sync_engine.
    None keeps the engine off any L1, even one registered for its address."""
    if cache is not None and engine.dialect.driver not in L1_DRIVERS:
        log.info("pgvalet L1: no in-process cache for the %s driver", engine.dialect.driver)
        cache = None
    engine.dialect._pgvalet_l1 = cache if cache is not None else False
    if cache is not None:
        engine.pgvalet_l1 = cache
        _install_hooks()


def attach_address(host: str, port: int, cache: L1, proxy: Any = None) -> None:
    """Put cache under every engine, made by anyone, whose connections go to host:port
    (a pgvalet proxy), unless attach() said otherwise for that engine.  With the proxy's
    handle given, the registration ends when that proxy stops."""
    _by_address[(host, int(port))] = (cache, proxy)
    _install_hooks()


def _registered(host: Any, port: Any) -> Optional[L1]:
    try:
        key = (str(host), int(port or 0))
    except (TypeError, ValueError):
        return None
    found = _by_address.get(key)
    if found is None:
        return None
    cache, proxy = found
    if proxy is not None and (proxy.stopped or not proxy.alive):
        _by_address.pop(key, None)      # another proxy may take that port later
        return None
    return cache


def _cache_for(dialect: Any, cparams: Dict[str, Any]) -> Optional[L1]:
    cache = getattr(dialect, "_pgvalet_l1", None)
    if cache is False or dialect.driver not in L1_DRIVERS:
        return None
    if cache is None and _by_address:
        cache = _registered(cparams.get("host"), cparams.get("port"))
    return cache


def _on_do_connect(dialect: Any, record: Any, cargs: Any, cparams: Dict[str, Any]) -> None:
    cache = _cache_for(dialect, cparams)
    if cache is None:
        return
    if dialect.driver == "asyncpg":
        cparams["server_settings"] = {**(cparams.get("server_settings") or {}),
                                      "pgvalet.l1": "on"}
    else:
        cparams["options"] = merge_options(cparams.get("options"))
    record.info[PENDING_KEY] = (cache, dialect.driver)


def _on_connect(dbapi_conn: Any, record: Any) -> None:
    pending = record.info.pop(PENDING_KEY, None)
    if pending is None:
        return
    cache, driver = pending
    conn = _Conn(cache, driver, dbapi_conn)
    if driver == "asyncpg":           # dbapi_conn is SQLAlchemy's adapter
        dbapi_conn._connection.add_log_listener(lambda _c, msg: conn.notice(msg.message or ""))
    elif driver == "psycopg2":
        dbapi_conn.notices = _Psycopg2Notices(conn)
    else:
        dbapi_conn.add_notice_handler(lambda d: conn.notice(d.message_primary or ""))
    record.info[INFO_KEY] = conn


def _state_of(context: Any) -> Optional[_Conn]:
    root = getattr(context, "root_connection", None)
    info = _pool_info(root.connection) if root is not None else None
    return info.get(INFO_KEY) if info is not None else None


# context._pgvalet_l1 after do_execute: (conn, snapshot) for _after_execute to settle, or
# _SETTLED (a hit, or not an L1 connection: nothing to do), or None (look again).
_SETTLED = ("settled",)


def _lookup(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    """The do_execute listener: answer from the L1 (True) or let the statement go (False)."""
    conn = _state_of(context)
    if conn is None:
        context._pgvalet_l1 = _SETTLED
        return False
    context._pgvalet_l1 = None
    if context.executemany:
        conn.fill = None
        return False
    value, snap = conn.lookup(statement, parameters)
    if value is not None:
        description, rows, rowcount = value
        context.cursor = FakeCursor(description, rows, rowcount,
                                    getattr(cursor, "connection", None))
        if conn.driver == "asyncpg":
            # AsyncConnection.execute insists that something was awaited.
            _await_only(_nothing())
        context._pgvalet_l1 = _SETTLED
        return True
    context._pgvalet_l1 = (conn, snap)
    return False


def _on_execute_no_params(cursor: Any, statement: str, context: Any) -> bool:
    return _lookup(cursor, statement, None, context)


def _after_execute(conn_: Any, cursor: Any, statement: str, parameters: Any,
                   context: Any, executemany: bool) -> None:
    mark = getattr(context, "_pgvalet_l1", None)
    if mark is _SETTLED:
        return
    if mark is None:
        conn = _state_of(context)
        if conn is None or isinstance(context.cursor, FakeCursor):
            return                  # not ours, or a hit
        snap = None
    else:
        context._pgvalet_l1 = None
        conn, snap = mark
    real = context.cursor
    rows = conn.settle(snap, statement, parameters, real.description, real.fetchall,
                       real.rowcount)
    if rows is not None:            # fetched to keep them: serve the same rows
        context.cursor = FakeCursor(real.description, rows, real.rowcount,
                                    getattr(real, "connection", None))


def _install_hooks() -> None:
    global _hooks_installed, _pool_info, _await_only
    with _hooks_lock:
        if _hooks_installed:
            return
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.pool import Pool
        from sqlalchemy.util import await_only

        from ._compat import pool_info

        _pool_info, _await_only = pool_info, await_only
        event.listen(Engine, "do_connect", _on_do_connect)
        event.listen(Pool, "connect", _on_connect)
        event.listen(Engine, "do_execute", _lookup)
        event.listen(Engine, "do_execute_no_params", _on_execute_no_params)
        event.listen(Engine, "after_cursor_execute", _after_execute)
        _hooks_installed = True


_pool_info: Any = None
_await_only: Any = None


async def _nothing() -> None:
    """Completes without suspending: one greenlet round trip, no event-loop turn."""


# ---- psycopg2 without SQLAlchemy -------------------------------------------------------------

def psycopg2_connect(dsn: str, cache: L1, **kwargs: Any) -> Any:
    """psycopg2.connect(dsn, **kwargs) to a pgvalet proxy, with the L1 under its cursors.

        proxy = pgvalet.start(upstream)
        cache = pgvalet.l1.for_address(proxy.push_address)
        conn = pgvalet.l1.psycopg2_connect(proxy.url, cache)
        cur = conn.cursor(); cur.execute("SELECT ... WHERE id = %s", (42,)); cur.fetchone()

    Same rules as under SQLAlchemy.  execute() on a hit answers from memory; the cursor
    then behaves as after a real execute (fetch*, description, rowcount, iteration)."""
    import psycopg2

    kwargs["options"] = merge_options(kwargs.get("options"))
    kwargs.setdefault("cursor_factory", L1Cursor())
    raw = psycopg2.connect(dsn, **kwargs)
    state = _Conn(cache, "psycopg2", raw)
    raw.notices = _Psycopg2Notices(state)
    return raw


def L1Cursor() -> Any:
    """The psycopg2 cursor class psycopg2_connect() uses (made once, on first use)."""
    global _L1Cursor
    if _L1Cursor is None:
        _L1Cursor = _make_psycopg2_cursor()
    return _L1Cursor


_L1Cursor: Any = None


def _make_psycopg2_cursor() -> Any:
    import psycopg2.extensions

    base = psycopg2.extensions.cursor

    class Cursor(base):  # type: ignore[misc, valid-type]
        # The hit (or fill) being read: (description, rows, rowcount) and an iterator.
        _l1: Optional[Tuple[Any, List[Any], int]] = None
        _l1_rows: Any = None

        def execute(self, query: str, vars: Any = None) -> None:
            raw = self.connection
            conn = raw.notices.conn
            token = conn.token
            # The hit path, inlined (conn.lookup() is the general one).
            if token and not conn.dirty and conn.cache.up and raw.isolation_level in _RC:
                value = conn.cache.store.get(token, query, vars)
                if value is not None:
                    self._l1 = value
                    self._l1_rows = iter(value[1])
                    return
            value, snap = conn.lookup(query, vars)
            if value is not None:
                self._l1 = (_description_id(value[0]), value[1], value[2])
                self._l1_rows = iter(value[1])
                return
            self._l1 = self._l1_rows = None
            base.execute(self, query, vars)
            description = base.description.__get__(self)
            rowcount = base.rowcount.__get__(self)
            rows = conn.settle(snap, query, vars, description, lambda: base.fetchall(self),
                               rowcount)
            if rows is not None:
                shape = _description_id(description)
                if shape is not None:
                    self._l1 = (shape, rows, rowcount)
                    self._l1_rows = iter(rows)

        def fetchone(self) -> Any:
            rows = self._l1_rows
            return next(rows, None) if rows is not None else base.fetchone(self)

        def fetchmany(self, size: Optional[int] = None) -> Any:
            rows = self._l1_rows
            if rows is not None:
                return list(itertools.islice(rows, self.arraysize if size is None else size))
            return base.fetchmany(self) if size is None else base.fetchmany(self, size)

        def fetchall(self) -> Any:
            rows = self._l1_rows
            return list(rows) if rows is not None else base.fetchall(self)

        def __iter__(self) -> Any:
            rows = self._l1_rows
            return rows if rows is not None else base.__iter__(self)

        @property
        def description(self) -> Any:  # type: ignore[override]
            hit = self._l1
            if hit is None:
                return base.description.__get__(self)
            return _descriptions[hit[0]]

        @property
        def rowcount(self) -> int:  # type: ignore[override]
            hit = self._l1
            return hit[2] if hit is not None else base.rowcount.__get__(self)

    return Cursor


# ---- asyncpg without SQLAlchemy ----------------------------------------------------------------

async def asyncpg_connect(dsn: str, cache: L1, **kwargs: Any) -> Any:
    """asyncpg.connect(dsn, **kwargs) to a pgvalet proxy, with the L1 under fetch(),
    fetchrow() and fetchval().

        proxy = pgvalet.start(upstream)
        cache = pgvalet.l1.for_address(proxy.push_address)
        conn = await pgvalet.l1.asyncpg_connect(proxy.url, cache)
        row = await conn.fetchrow("SELECT ... WHERE id = $1", 42)   # a real asyncpg.Record

    The connection is a real asyncpg.Connection (of a subclass of ``connection_class``
    when one is given).  A bare connection's transactions and SETs are not followed the
    way SQLAlchemy's are, so the L1 is stricter here: it serves and fills only outside
    transactions, and serves only when nothing else (execute(), a prepared statement, a
    cursor, COPY, ...) ran on the connection since its last fill, as that may have
    changed the session state the cached answer depends on.  A ``record_class`` argument
    bypasses the L1.  With an asyncpg that cannot build Records (no
    ``asyncpg.protocol.protocol._create_record``), it is a plain connection."""
    import asyncpg

    kwargs["server_settings"] = {**(kwargs.get("server_settings") or {}), "pgvalet.l1": "on"}
    base = kwargs.pop("connection_class", asyncpg.Connection)
    if _asyncpg_make_record() is None:
        log.warning("pgvalet L1: this asyncpg (%s) cannot build Records; no L1 under "
                    "asyncpg_connect()", asyncpg.__version__)
        return await asyncpg.connect(dsn, connection_class=base, **kwargs)
    conn = await asyncpg.connect(dsn, connection_class=_asyncpg_class(base), **kwargs)
    state = _Conn(cache, "asyncpg", conn)
    conn._pgvalet_l1 = state
    conn._pgvalet_l1_seen = -1
    conn.add_log_listener(lambda _c, msg: state.notice(msg.message or ""))
    return conn


def _asyncpg_make_record() -> Any:
    try:
        from asyncpg.protocol import protocol
    except ImportError:
        return None
    return getattr(protocol, "_create_record", None)


_asyncpg_classes: Dict[type, type] = {}
_record_maps: Dict[int, Dict[str, int]] = {}   # description id -> Record mapping


def _record_map(shape: int) -> Optional[Dict[str, int]]:
    """The Record mapping (column name -> index) of an interned description."""
    found = _record_maps.get(shape)
    if found is None:
        description = _descriptions[shape]
        if not _unique_names(description):
            return None
        found = _record_maps[shape] = {d[0]: i for i, d in enumerate(description)}
    return found


def _asyncpg_class(base: type) -> type:
    """The asyncpg.Connection subclass of base that asyncpg_connect() makes (one per base)."""
    cls = _asyncpg_classes.get(base)
    if cls is not None:
        return cls
    make_record = _asyncpg_make_record()

    class Connection(base):  # type: ignore[misc, valid-type]
        _pgvalet_l1: Optional[_Conn] = None
        _pgvalet_l1_seen = -1      # the protocol's query count after our last statement

        def _l1_hit(self, params: Tuple[int, Tuple[Any, ...]], query: str) -> Any:
            """(Record mapping, rows) cached for query and params (limit, args), or None.
            Plain code, no await: a hit costs no coroutine beyond the caller's."""
            state = self._pgvalet_l1
            if state is None or not state.token or not state.cache.up:
                return None
            proto = self._protocol
            if self._pgvalet_l1_seen != proto.queries_count or proto.is_in_transaction():
                return None
            value = state.cache.store.get(state.token, query, params)
            if value is None:
                return None
            mapping = _record_map(value[0])
            return None if mapping is None else (mapping, value[1])

        async def _l1_fill(self, query: str, args: Tuple[Any, ...], limit: int,
                           timeout: Any) -> List[Any]:
            """After a miss: the Records of fetch() (limit 0) or fetchrow() (limit 1) from
            the proxy, kept in the L1 when it says they may be."""
            state = self._pgvalet_l1
            proto = self._protocol
            if state is None or not state.cache.up or proto.is_in_transaction():
                return await self._l1_plain(query, args, limit, timeout)
            params = (limit, args)
            store = state.cache.store
            snap = store.snapshot()
            state.fill = None
            records = await self._l1_plain(query, args, limit, timeout)
            self._pgvalet_l1_seen = proto.queries_count
            description = tuple((k,) for k in records[0].keys()) if records else ()
            if not _unique_names(description):
                snap = None     # Records with duplicate names cannot be rebuilt: not kept
            state.settle(snap, query, params, description, lambda: records, len(records))
            return records

        async def _l1_plain(self, query: str, args: Tuple[Any, ...], limit: int,
                            timeout: Any) -> List[Any]:
            if limit:
                row = await base.fetchrow(self, query, *args, timeout=timeout)
                return [row] if row is not None else []
            return await base.fetch(self, query, *args, timeout=timeout)

        async def fetch(self, query: str, *args: Any, timeout: Any = None,
                        record_class: Any = None) -> List[Any]:
            if record_class is not None:
                return await base.fetch(self, query, *args, timeout=timeout,
                                        record_class=record_class)
            hit = self._l1_hit((0, args), query)
            if hit is not None:
                mapping, rows = hit
                return [make_record(mapping, row) for row in rows]
            return await self._l1_fill(query, args, 0, timeout)

        async def fetchrow(self, query: str, *args: Any, timeout: Any = None,
                           record_class: Any = None) -> Any:
            if record_class is not None:
                return await base.fetchrow(self, query, *args, timeout=timeout,
                                           record_class=record_class)
            hit = self._l1_hit((1, args), query)
            if hit is not None:
                mapping, rows = hit
                return make_record(mapping, rows[0]) if rows else None
            rows = await self._l1_fill(query, args, 1, timeout)
            return rows[0] if rows else None

        async def fetchval(self, query: str, *args: Any, column: Any = 0,
                           timeout: Any = None) -> Any:
            hit = self._l1_hit((1, args), query)
            if hit is not None:
                rows = hit[1]
                return make_record(hit[0], rows[0])[column] if rows else None
            rows = await self._l1_fill(query, args, 1, timeout)
            return rows[0][column] if rows else None

    Connection.__name__ = Connection.__qualname__ = f"L1{base.__name__}"
    _asyncpg_classes[base] = Connection
    return Connection


def _unique_names(description: Any) -> bool:
    """Records can be rebuilt for these columns (no duplicate names)."""
    names = [d[0] for d in description]
    return len(set(names)) == len(names)
