"""SQLAlchemy event wiring of the ORM cache: reads through do_orm_execute, writes
recorded per DBAPI connection and applied right after the real COMMIT.

Writes are seen at three levels and recorded as *pending* invalidations on the
pool connection (``fairy.info``), in a stack with one level per open savepoint:

  - mapper after_insert/update/delete (every mapper): row-level tags from the
    instance and its attribute history (old and new values);
  - after_cursor_execute: everything else that reaches the driver - 2.0-style
    bulk update()/delete(), Core DML, text(), exec_driver_sql, bulk_* - at table
    level, from the compiled statement's table or a keyword scan of the SQL;
    DDL, DO, CALL and other unknown statements flush the whole cache.  ORM
    flush statements (between a mapper's before_* and after_* events) are
    left to the mapper events;
  - SAVEPOINT pushes a level, RELEASE merges it into its parent, ROLLBACK TO
    drops it (SQLAlchemy's ORM after_commit/after_rollback also fire for
    those, which is why they are not used).

dialect.do_commit is wrapped: after the driver's commit returns, the pending
set is applied to the backend synchronously, before commit() returns to the
application (read-your-writes).  dialect.do_rollback (also used by the pool's
reset) drops it.  Under driver autocommit a write is applied at once.
"""
from __future__ import annotations

import re
import threading
from typing import Any, Dict, List, Optional, Set, Tuple

from greenlet import getcurrent
from sqlalchemy import event
from sqlalchemy.orm import Mapper, Session

from .._compat import dbapi_of, pool_info
from . import tags as tagmod

PENDING = "pgvalet_orm_pending"     # fairy.info: [(savepoint name or None, Pending)]
TX_ISOLATION = "pgvalet_orm_tx_iso"  # fairy.info: isolation set by SQL in this transaction
SESSION_STATE = "pgvalet_orm_state"  # fairy.info: session-level SETs, in order


class Pending:
    """Invalidations a transaction owes the cache."""

    __slots__ = ("tables", "tags", "everything")

    def __init__(self) -> None:
        self.tables: Set[str] = set()
        self.tags: Set[str] = set()
        self.everything = False

    def merge(self, other: "Pending") -> None:
        self.tables |= other.tables
        self.tags |= other.tags
        self.everything = self.everything or other.everything

    def table_level(self, table: str) -> None:
        self.tables.add(table)
        self.tags.add(f"T|{table}")

    def __bool__(self) -> bool:
        return bool(self.tables or self.tags or self.everything)


def engine_cache(engine: Any):
    """The OrmCache bound to engine (or to the Engine an execution_options() copy wraps)."""
    cache = getattr(engine, "_pgvalet_orm", None)
    if cache is None:
        proxied = getattr(engine, "_proxied", None)
        cache = getattr(proxied, "_pgvalet_orm", None) if proxied is not None else None
    return cache


def _stack(fairy: Any, create: bool = True) -> Optional[List[Tuple[Optional[str], Pending]]]:
    info = pool_info(fairy)
    if info is None:
        return None
    stack = info.get(PENDING)
    if stack is None and create:
        stack = info[PENDING] = [(None, Pending())]
    return stack


def current_pending(fairy: Any) -> Optional[Pending]:
    stack = _stack(fairy)
    return stack[-1][1] if stack else None


def connection_wrote(fairy: Any) -> bool:
    stack = _stack(fairy, create=False)
    return bool(stack) and any(p for _, p in stack)


def take_all(fairy: Any) -> Pending:
    info = pool_info(fairy)
    merged = Pending()
    if info is None:
        return merged
    for _, p in info.pop(PENDING, None) or ():
        merged.merge(p)
    info.pop(TX_ISOLATION, None)
    return merged


def _autocommit(fairy: Any) -> bool:
    return bool(getattr(dbapi_of(fairy), "autocommit", False))


# --- ORM flush: mapper events -------------------------------------------------------

_in_flush: Dict[Any, int] = {}
_in_flush_lock = threading.Lock()


def _flush_enter(mapper, connection, target) -> None:
    with _in_flush_lock:
        g = getcurrent()
        _in_flush[g] = _in_flush.get(g, 0) + 1


def _flush_leave(kind: str):
    def leave(mapper, connection, target) -> None:
        with _in_flush_lock:
            g = getcurrent()
            n = _in_flush.get(g, 0) - 1
            if n <= 0:
                _in_flush.pop(g, None)
            else:
                _in_flush[g] = n
        cache = engine_cache(connection.engine)
        if cache is None:
            return
        from sqlalchemy import inspect
        state = inspect(target)
        per_table, known = tagmod.row_write_tags(mapper, state, kind)
        pending = current_pending(connection.connection)
        if pending is None:
            return
        for table, tset in per_table.items():
            pending.tables.add(table)
            pending.tags |= tset
            if not known:
                pending.tags.add(f"Q|{table}")
        if _autocommit(connection.connection):
            cache._apply(take_all(connection.connection))
    return leave


def _flush_abandoned(session, *args) -> None:
    with _in_flush_lock:
        _in_flush.pop(getcurrent(), None)


# --- everything that reaches the driver ---------------------------------------------

_COMMENT = re.compile(r"^\s*(?:(?:--[^\n]*\n)|(?:/\*.*?\*/)|\s)*", re.S)
_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
_WRITE_TARGET = re.compile(
    r"\b(?:insert\s+into|update|delete\s+from|truncate(?:\s+table)?|merge\s+into|copy)"
    r"\s+(?:only\s+)?(" + _NAME + r"(?:\s*\.\s*" + _NAME + r")?(?:\s*,\s*" + _NAME +
    r"(?:\s*\.\s*" + _NAME + r")?)*)", re.I)
_ISOLATION = re.compile(r"isolation\s+level\s+(repeatable\s+read|serializable|read\s+committed"
                        r"|read\s+uncommitted)", re.I)
READ_ONLY_WORDS = {"select", "values", "show", "fetch", "move", "close", "declare", "listen",
                   "unlisten", "notify", "explain", "table", "load", "checkpoint", "prepare",
                   "deallocate", "execute"}
TX_WORDS = {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"}


def _unquote(name: str) -> str:
    name = re.sub(r"\s+", "", name).split(".")[-1]
    if name.startswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


def classify_sql(sql: str) -> Tuple[str, List[str]]:
    """('read'|'tx'|'state'|'write'|'unknown', tables written) of raw SQL text."""
    body = sql[_COMMENT.match(sql).end():]
    word = re.match(r"[A-Za-z]*", body).group(0).lower()
    if word in TX_WORDS:
        return "tx", []
    if word in ("set", "reset", "discard"):
        return "state", []
    if word == "explain" and re.search(r"\banalyze\b", body[:200], re.I):
        word = "with"       # EXPLAIN ANALYZE runs the statement
    if word == "select":     # SELECT ... INTO creates a table
        return ("unknown", []) if re.search(r"\binto\b", body, re.I) else ("read", [])
    if word in READ_ONLY_WORDS:
        return "read", []
    if word in ("with", "insert", "update", "delete", "truncate", "merge", "copy"):
        targets = []
        for m in _WRITE_TARGET.finditer(body):
            for part in m.group(1).split(","):
                t = _unquote(part)
                if t not in targets:
                    targets.append(t)
        if word == "with" and not targets:
            return "read", []
        if word == "copy" and re.search(r"\bto\b", body, re.I) and \
                not re.search(r"\bfrom\b", body, re.I):
            return "read", []
        return ("write", targets) if targets else ("unknown", [])
    return "unknown", []


def _after_cursor_execute(conn, cursor, statement, parameters, context, executemany) -> None:
    cache = engine_cache(conn.engine)
    if cache is None:
        return
    fairy = conn.connection
    info = pool_info(fairy)
    if info is None:
        return
    iso = _ISOLATION.search(statement) if "isolation" in statement.lower() else None
    if iso is not None:
        info[TX_ISOLATION] = iso.group(1).upper()
    if _in_flush.get(getcurrent()):
        return                      # an ORM flush statement: the mapper events record it
    compiled = getattr(context, "compiled", None) if context is not None else None
    if compiled is not None and (context.isinsert or context.isupdate or context.isdelete):
        table = getattr(getattr(compiled, "statement", None), "table", None)
        name = getattr(table, "name", None)
        kind, targets = ("write", [name]) if name else ("unknown", [])
    else:
        kind, targets = classify_sql(statement)
    if kind == "read" or kind == "tx":
        return
    if kind == "state":
        low = statement.lower()
        if re.match(r"\s*set\s+(local|transaction|session\s+characteristics)", low):
            return
        info.setdefault(SESSION_STATE, []).append(statement)
        cache._state_changed(fairy)
        return
    pending = current_pending(fairy)
    if pending is None:
        return
    if kind == "write":
        for t in targets:
            pending.table_level(t)
    else:
        pending.everything = True
    if _autocommit(fairy):
        cache._apply(take_all(fairy))


def _savepoint(conn, name) -> None:
    if engine_cache(conn.engine) is None:
        return
    stack = _stack(conn.connection)
    if stack is not None:
        stack.append((name, Pending()))


def _release_savepoint(conn, name, context) -> None:
    stack = _stack(conn.connection, create=False)
    if not stack:
        return
    while len(stack) > 1:
        top_name, top = stack.pop()
        stack[-1][1].merge(top)
        if top_name == name:
            break


def _rollback_savepoint(conn, name, context) -> None:
    stack = _stack(conn.connection, create=False)
    if not stack:
        return
    while len(stack) > 1:
        top_name, _ = stack.pop()
        if top_name == name:
            break


def wrap_dialect(engine: Any) -> None:
    dialect = engine.dialect
    if getattr(dialect, "_pgvalet_orm_wrapped", False):
        return
    real_commit = dialect.do_commit
    real_rollback = dialect.do_rollback

    def do_commit(dbapi_connection):
        real_commit(dbapi_connection)
        pending = take_all(dbapi_connection)
        cache = engine_cache(engine)
        if pending and cache is not None:
            cache._apply(pending)

    def do_rollback(dbapi_connection):
        try:
            real_rollback(dbapi_connection)
        finally:
            take_all(dbapi_connection)

    dialect.do_commit = do_commit
    dialect.do_rollback = do_rollback
    dialect._pgvalet_orm_wrapped = True


def listen_engine(engine: Any) -> None:
    if getattr(engine, "_pgvalet_orm_listening", False):
        return
    event.listen(engine, "after_cursor_execute", _after_cursor_execute)
    event.listen(engine, "savepoint", _savepoint)
    event.listen(engine, "release_savepoint", _release_savepoint)
    event.listen(engine, "rollback_savepoint", _rollback_savepoint)
    wrap_dialect(engine)
    engine._pgvalet_orm_listening = True


_global_lock = threading.Lock()
_global_done = False


def listen_global(on_execute) -> None:
    global _global_done
    with _global_lock:
        if _global_done:
            return
        event.listen(Session, "do_orm_execute", on_execute)
        for kind in ("insert", "update", "delete"):
            event.listen(Mapper, f"before_{kind}", _flush_enter)
            event.listen(Mapper, f"after_{kind}", _flush_leave(kind))
        event.listen(Session, "after_rollback", _flush_abandoned)
        event.listen(Session, "after_soft_rollback", _flush_abandoned)
        _global_done = True
