"""pgvalet.orm.configure() and OrmCache: the ORM cache API (README "Python: ORM cache").

    cache = configure(backend="redis://localhost:6379/1",
                      models={"app.models.User": {"ops": {"get", "fetch"}, "timeout": 900},
                              "*": {"timeout": 3600}})
    cache.bind(engine)            # or: await cache.bind(async_engine)

Reads are served inside SQLAlchemy's do_orm_execute (sync Session, and
AsyncSession, which runs a sync Session underneath); writes are recorded by
hooks.py and applied right after the real COMMIT.  Every fill takes the gen
snapshot of its tables before its DB read (backends/__init__.py).
"""
from __future__ import annotations

import asyncio
import logging
import pickle
import threading
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from greenlet import getcurrent
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import merge_frozen_result

from .._compat import populate_existing, session_connections
from . import hooks, keys
from . import tags as tagmod
from .backends import Backend, open_backend

log = logging.getLogger("pgvalet.orm")

OPS = frozenset({"get", "fetch", "count", "exists"})
RR_LEVELS = ("REPEATABLE READ", "SERIALIZABLE")
PLAN_CACHE_SIZE = 2000
DECODED_MEMO_SIZE = 1024  # decoded entries kept per cache (backends with stable payloads)
_NO_PLAN = object()
FLIGHT_WAIT = 5.0       # seconds a coalesced miss waits at most for the leader's read


class Done:
    """The result of work already done: usable plain or awaited (``await cache.bind(e)``
    and ``cache.bind(e)`` both work, and a forgotten await skips nothing)."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None):
        self.value = value

    def __await__(self):
        return self.value
        yield  # noqa  (makes __await__ a generator)

    def __repr__(self) -> str:
        return f"Done({self.value!r})"


class _Flight:
    __slots__ = ("event", "is_async", "owner", "waiters")

    def __init__(self, is_async: bool):
        self.is_async = is_async
        self.event = asyncio.Event() if is_async else threading.Event()
        self.owner = getcurrent()
        self.waiters = 0


class _Serializer:
    def __init__(self, spec: Any):
        if spec == "pickle":
            self.dumps = lambda obj: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
            self.loads = pickle.loads
        elif hasattr(spec, "dumps") and hasattr(spec, "loads"):
            self.dumps, self.loads = spec.dumps, spec.loads
        else:
            raise ValueError(f"serializer={spec!r}: expected 'pickle' or an object with "
                             "dumps() and loads()")


def _positive_int(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}={value!r}: expected a positive integer (seconds)")
    return value


def _parse_models(models: Any, default_timeout: int
                  ) -> Dict[str, Optional[Tuple[frozenset, int]]]:
    if not isinstance(models, Mapping):
        raise ValueError(f"models={models!r}: expected a mapping of dotted class paths "
                         "(or '*') to {'ops': ..., 'timeout': ...} or None")
    out: Dict[str, Optional[Tuple[frozenset, int]]] = {}
    for name, spec in models.items():
        if not isinstance(name, str) or not name or (name != "*" and "." not in name):
            raise ValueError(f"models key {name!r}: expected a dotted class path such as "
                             "'app.models.User', or '*'")
        if spec is None:
            out[name] = None
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"models[{name!r}]={spec!r}: expected a dict or None")
        unknown = set(spec) - {"ops", "timeout"}
        if unknown:
            raise ValueError(f"models[{name!r}]: unknown key(s) {', '.join(map(repr, unknown))};"
                             " valid: 'ops', 'timeout'")
        ops = spec.get("ops", "all")
        if ops == "all":
            opset = OPS
        elif isinstance(ops, str) or not isinstance(ops, Iterable):
            raise ValueError(f"models[{name!r}]['ops']={ops!r}: expected 'all' or a set of "
                             "'get', 'fetch', 'count', 'exists'")
        else:
            opset = frozenset(ops)
            bad = opset - OPS
            if bad or not opset:
                raise ValueError(f"models[{name!r}]['ops']={ops!r}: unknown op(s) "
                                 f"{', '.join(sorted(map(repr, bad))) or '(empty)'}; valid: "
                                 "'get', 'fetch', 'count', 'exists', 'all'")
        timeout = _positive_int(f"models[{name!r}]['timeout']",
                                spec.get("timeout", default_timeout))
        out[name] = (opset, timeout)
    return out


def configure(*, backend: str = "mem://", models: Mapping[str, Any],
              prefix: str = "pgvalet", default_timeout: int = 3600,
              serializer: Any = "pickle", follow_proxy: bool = True,
              push_wait: float = 2.0) -> "OrmCache":
    """A new OrmCache.  Bad configuration raises ValueError naming the key and value.

    follow_proxy: when a bound engine runs through pgvalet (pgvalet.sqlalchemy
    engines), also apply the proxy's push-channel invalidations (text() writes,
    other processes, psql), and bypass the cache while that channel is down;
    bind() waits up to push_wait seconds for the channel to come up.
    """
    _positive_int("default_timeout", default_timeout)
    if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
        raise ValueError(f"prefix={prefix!r}: expected a non-empty string without spaces")
    parsed = _parse_models(models, default_timeout)
    ser = _Serializer(serializer)
    if isinstance(push_wait, bool) or not isinstance(push_wait, (int, float)) or push_wait < 0:
        raise ValueError(f"push_wait={push_wait!r}: expected seconds >= 0")
    cache = OrmCache(open_backend(backend), backend, parsed, prefix, default_timeout, ser,
                     follow_proxy)
    cache.push_wait = float(push_wait)
    return cache


def _model_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class OrmCache:
    def __init__(self, backend: Backend, url: str, models, prefix: str, default_timeout: int,
                 serializer: _Serializer, follow_proxy: bool):
        self.backend = backend
        self.backend_url = url
        self.models = models
        self.prefix = prefix
        self.default_timeout = default_timeout
        self.serializer = serializer
        self.follow_proxy = follow_proxy
        self._registry = tagmod.Registry()
        self._tag_names: Dict[int, str] = {}     # the proxy's table tag ids -> table names
        self._tag_names_key: Optional[Tuple[str, int]] = None
        self._plans: Dict[Any, Optional[tagmod.Plan]] = {}   # cache key -> Plan
        # mapper -> (Plan, bind keys, statement shape) of its plain Session.get()
        self._get_plans: Dict[Any, Tuple[tagmod.Plan, List[str], str]] = {}
        self._flights: Dict[Tuple[str, Any], _Flight] = {}   # misses being read now
        self._flights_lock = threading.Lock()
        self._engines: List[Any] = []
        self._subscriptions: List[Any] = []
        self._stats_lock = threading.Lock()
        self._stats = dict(hits=0, misses=0, sets=0, sets_rejected=0, bypassed=0,
                           invalidations=0, errors=0, flushes=0, push_events=0,
                           coalesced=0)
        self._healthy = True          # the backend took every invalidation we owed it
        self._push: Dict[int, Dict[str, Any]] = {}   # id(engine) -> push channel state
        self._stateful = False        # some connection ran a session-level SET
        self._closed = False
        self._decoded: Dict[str, Tuple[bytes, Any]] = {}    # key -> (payload, decoded)
        self._memo_decoded = bool(getattr(backend, "stable_payloads", False))
        self._urls: Dict[int, str] = {}     # id(engine) -> URL without its password
        self.push_wait = 2.0
        self._e_tag = keys.tag_key(prefix, "E")
        self._all_gen = keys.gen_key(prefix, "*")

    # --- public API ---------------------------------------------------------------

    @property
    def stats(self) -> Dict[str, int]:
        with self._stats_lock:
            out = dict(self._stats)
        local = getattr(self.backend, "local", None)
        if local is not None:
            out["local_hits"] = local.hits
        return out

    def bind(self, engine: Any) -> Done:
        """Cache ORM reads made through engine (Engine or AsyncEngine)."""
        sync = getattr(engine, "sync_engine", engine)
        owner = hooks.engine_cache(sync)
        if owner is not None and owner is not self:
            raise ValueError("bind(): this engine is already bound to another OrmCache; "
                             "disconnect() that one first")
        hooks.listen_global(_on_do_orm_execute)
        hooks.listen_engine(sync)
        sync._pgvalet_orm = self
        if sync not in self._engines:
            self._engines.append(sync)
        wait_bus = getattr(self.backend, "wait_bus", None)
        if wait_bus is not None:
            wait_bus(self.push_wait)
        proxy = getattr(sync, "pgvalet", None)
        address = getattr(proxy, "push_address", None) if proxy is not None else None
        if self.follow_proxy and address:
            from .. import _push
            state = {"up": False, "db": sync.url.database}
            self._push[id(sync)] = state
            self._subscriptions.append(
                _push.subscribe(address, lambda ev, st=state: self._on_push_event(ev, st)))
            self.wait_ready(self.push_wait)
        return Done(self)

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Wait until the push channel of every followed proxy says the database is up
        (until then the cache is bypassed).  bind() already waits push_wait seconds."""
        deadline = time.monotonic() + timeout
        while not all(st["up"] for st in self._push.values()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def execute(self, session: Any, stmt: Any, params: Optional[Mapping[str, Any]] = None,
                *, timeout: Optional[int] = None):
        """session.execute(stmt) served from / stored in the cache whatever the model's
        ops (a model configured as None is still never cached); the Result, or for an
        AsyncSession the coroutine to await."""
        if timeout is not None:
            _positive_int("timeout", timeout)
        return session.execute(stmt, params,
                               execution_options={"pgvalet_cache": {"timeout": timeout}})

    def invalidate(self, model: type, pks: Optional[Iterable[Any]] = None) -> Done:
        """Drop what read these rows of model (pks) or anything of its tables (no pks)."""
        try:
            mapper = sa_inspect(model)
            tables = [t.name for t in mapper.tables]
        except Exception:
            raise ValueError(f"invalidate(): {model!r} is not a mapped class") from None
        pending = hooks.Pending()
        if pks is None:
            for t in tables:
                pending.table_level(t)
        else:
            base = tagmod.base_table(mapper)
            for pk in pks:
                ident = pk if isinstance(pk, tuple) else (pk,)
                pending.tags.add(f"R|{base}|{tagmod.row_text(ident)}")
            for t in tables:
                pending.tables.add(t)
                pending.tags.update({f"A|{t}", f"Q|{t}"})
        self._apply(pending)
        return Done(None)

    def invalidate_all(self) -> Done:
        """Drop every entry of this prefix (other prefixes on the same backend stay)."""
        pending = hooks.Pending()
        pending.everything = True
        self._apply(pending)
        try:
            self.backend.drop_prefix(f"{self.prefix}:e:")
        except Exception as e:  # the epoch bump above already killed them
            log.warning("pgvalet.orm: could not free entries of %s: %s", self.prefix, e)
        return Done(None)

    def disconnect(self) -> Done:
        """Unbind every engine, stop following proxies, close the backend."""
        for sub in self._subscriptions:
            sub.close()
        self._subscriptions.clear()
        for engine in self._engines:
            if hooks.engine_cache(engine) is self:
                engine._pgvalet_orm = None
        self._engines.clear()
        self._closed = True
        self.backend.close()
        return Done(None)

    # --- internals ----------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[name] += n

    def _state_changed(self, fairy: Any) -> None:
        self._stateful = True

    def _apply(self, pending: "hooks.Pending") -> None:
        gens = [keys.gen_key(self.prefix, t) for t in sorted(pending.tables)]
        tags = [keys.tag_key(self.prefix, t) for t in sorted(pending.tags)]
        if pending.everything:
            gens.append(self._all_gen)
            tags.append(self._e_tag)
            self._count("flushes")
        if not gens and not tags:
            return
        try:
            self.backend.bump(gens, tags)
            self._count("invalidations")
        except Exception as e:
            self._healthy = False       # owed an invalidation: serve nothing until flushed
            self._count("errors")
            log.error("pgvalet.orm: invalidation failed (%s); cache bypassed until the "
                      "backend is back and flushed", e)

    def _recover(self) -> bool:
        try:
            self.backend.bump([self._all_gen], [self._e_tag])
        except Exception:
            return False
        self._healthy = True
        return True

    def _on_push_event(self, event: Mapping[str, Any], state: Dict[str, Any]) -> None:
        """Apply one push-channel event of the proxy an engine runs through."""
        kind = event.get("type")
        db = state.get("db")
        if kind in ("lost", "flush", "invalidate") and event.get("db") in (None, db):
            self._count("push_events")
        if kind == "lost":
            state["up"] = False
            self._flush()
        elif kind == "hello":
            state["up"] = False         # until its state line says up
        elif kind == "state":
            if event.get("db") == db:
                up = event.get("stream") == "up"
                if not up:
                    self._flush()
                state["up"] = up
        elif kind == "flush":
            if event.get("db") in (None, db):
                self._flush()
        elif kind == "invalidate":
            if event.get("db") not in (None, db):
                return
            table = event.get("table")
            pending = hooks.Pending()
            if not table:
                # A write the proxy saw names only the tags it bumped: map them back
                # to the tables this cache knows (the WAL names the rows just after).
                tables = self._tables_of_tags(db, event.get("tags", ()))
                if tables is None:
                    pending.everything = True
                for name in tables or ():
                    pending.table_level(name)
                if not pending:
                    return
            elif event.get("rows") is None:
                pending.table_level(table)
            else:
                pending.tables.add(table)
                pending.tags.update({f"A|{table}", f"Q|{table}"})
                for row in event["rows"]:
                    pending.tags.add(f"R|{table}|{row}")
            self._apply(pending)

    def _tables_of_tags(self, db: Optional[str], tags: Iterable[str]) -> Optional[Set[str]]:
        """Which known tables (of the mapped classes' metadata) the proxy's tag ids name;
        None when they cannot be read (no pgvalet._l1, or no database name)."""
        try:
            from .. import _l1
        except ImportError:
            return None
        if not db:
            return None
        self._registry.refresh()
        key = (db, self._registry.count)
        if self._tag_names_key != key:
            names: Set[str] = set()
            for mappers in self._registry.by_table.values():
                for m in mappers:
                    for table in m.tables:
                        meta = getattr(table, "metadata", None)
                        if meta is None:
                            names.add(table.name)
                        else:
                            names.update(t.name for t in meta.tables.values())
            self._tag_names = {_l1.table_tag(db, n): n for n in names}
            self._tag_names_key = key
        try:
            ids = [int(t, 16) for t in tags]
        except (TypeError, ValueError):
            return None
        return {self._tag_names[i] for i in ids if i in self._tag_names}

    def _flush(self) -> None:
        pending = hooks.Pending()
        pending.everything = True
        self._apply(pending)

    def _serving(self, engine: Any) -> bool:
        if self._closed:
            return False
        push = self._push.get(id(engine))
        if push is not None and not push["up"]:
            return False
        return self._healthy or self._recover()

    def _config_for(self, an: "tagmod.Plan", explicit: Optional[Mapping[str, Any]]
                    ) -> Optional[int]:
        """The entry's timeout, or None if the models config says not to cache."""
        timeout = None
        for table in an.tables:
            mappers = self._registry.mappers_of(table)
            spec: Any = "missing"
            for m in mappers:
                path = _model_path(m.class_)
                if path in self.models:
                    spec = self.models[path]
                    break
            if spec == "missing":
                spec = self.models.get("*", "missing")
            if spec is None:
                return None
            if spec == "missing":
                if explicit is None:
                    return None
                t = self.default_timeout
            else:
                ops, t = spec
                if explicit is None and an.kind not in ops:
                    return None
            timeout = t if timeout is None else min(timeout, t)
        if explicit is not None and explicit.get("timeout"):
            timeout = explicit["timeout"]
        return timeout

    def _bypass(self) -> None:
        self._count("bypassed")
        return None

    def _execute(self, state: Any, engine: Any):
        opts = state.execution_options.get("pgvalet_cache", True)
        if opts is False:
            return None
        explicit = opts if isinstance(opts, Mapping) else None
        if state.is_column_load or state.is_relationship_load:
            return None
        if not self._serving(engine) or populate_existing(state):
            return self._bypass()
        session = state.session
        if session.new or session.dirty or session.deleted:
            return self._bypass()
        conns = session_connections(session)
        if conns is None:
            return self._bypass()
        state_token: List[str] = []
        levels = [state.execution_options.get("isolation_level"),
                  engine.get_execution_options().get("isolation_level"),
                  getattr(engine.dialect, "isolation_level", None),
                  getattr(engine.dialect, "default_isolation_level", None)]
        schema_maps = [state.execution_options.get("schema_translate_map"),
                       engine.get_execution_options().get("schema_translate_map")]
        for conn in conns:
            fairy = conn.connection
            if hooks.connection_wrote(fairy):
                return self._bypass()
            schema_maps.append(conn.get_execution_options().get("schema_translate_map"))
            levels.append(conn.get_execution_options().get("isolation_level"))
            levels.append(fairy.info.get(hooks.TX_ISOLATION))
            state_token.extend(fairy.info.get(hooks.SESSION_STATE, ()))
        if not conns and self._stateful:
            return self._bypass()
        if any(isinstance(lv, str) and lv.upper().replace("_", " ") in RR_LEVELS
               for lv in levels):
            return self._bypass()
        params = state.parameters or {}
        if not isinstance(params, Mapping):
            return self._bypass()
        statement = state.statement
        try:
            mapper = _plain_get(state, statement)
            known = None
            if mapper is not None:
                known = self._get_plans.get(mapper) or self._learn_get(mapper, statement)
            if known is not None:
                # Session.get(): its statement is always the same for a mapper, so the
                # plan and the key come from the primary key values alone.
                an, bind_keys, shape = known
                values = [params.get(k) for k in bind_keys]
                text = f"{shape}\0{values!r}"
            else:
                cache_key = statement._generate_cache_key()
                if cache_key is None:
                    return self._bypass()
                an = self._plan(statement, cache_key)
                values = [params.get(b.key, b.effective_value) for b in cache_key.bindparams]
                text = keys.statement_text(statement, cache_key, params)
            if an is None:
                return self._bypass()
            ttl = self._config_for(an, explicit)
            if ttl is None:
                return self._bypass()
            statement_tags = an.tags(values)
        except Exception as e:  # an unusual construct: never cached
            log.debug("pgvalet.orm: not analysable (%s)", e)
            return self._bypass()
        maps = [sorted(m.items(), key=repr) for m in schema_maps if m]
        url = self._urls.get(id(engine))
        if url is None:
            url = self._urls[id(engine)] = engine.url.render_as_string(hide_password=True)
        key = keys.entry_key(self.prefix, url, text, repr(state_token), repr(maps))
        hit = self._lookup(session, statement, key)
        if hit is not None:
            return hit
        flight, leader = self._join_flight(key, engine)
        if not leader:
            # another session is reading this key right now: wait for its fill
            if self._wait_flight(flight, engine):
                self._count("coalesced")
                hit = self._lookup(session, statement, key)
                if hit is not None:
                    return hit
        try:
            self._count("misses")
            gens = [self._all_gen] + [keys.gen_key(self.prefix, t) for t in an.snapshot_tables]
            try:
                snapshot = self.backend.snapshot(gens)
            except Exception as e:
                self._count("errors")
                log.warning("pgvalet.orm: backend read failed: %s", e)
                return None
            result = state.invoke_statement()
            frozen = result.freeze()
            self._fill(key, frozen, an, statement_tags, ttl, gens, snapshot, conns)
            return frozen()
        finally:
            if leader:
                self._land_flight(key, engine, flight)

    def _plan(self, statement: Any, cache_key: Any) -> Optional["tagmod.Plan"]:
        """The statement's Plan, cached per SQLAlchemy cache key (None: not cacheable)."""
        an = self._plans.get(cache_key.key, _NO_PLAN)
        if an is _NO_PLAN:
            an = tagmod.plan(statement, cache_key.bindparams, self._registry)
            if len(self._plans) >= PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[cache_key.key] = an
        return an

    def _learn_get(self, mapper: Any, statement: Any
                   ) -> Optional[Tuple["tagmod.Plan", List[str], str]]:
        """(Plan, bind keys, shape) of the mapper's plain Session.get() statement, kept for
        the next ones; None when it is not cacheable."""
        cache_key = statement._generate_cache_key()
        an = self._plan(statement, cache_key) if cache_key is not None else None
        if an is None:
            return None
        bind_keys = [b.key for b in cache_key.bindparams]
        # the statement's SQL with no values: a changed model changes the key
        shape = "get\0" + keys.statement_text(statement, cache_key, dict.fromkeys(bind_keys))
        known = self._get_plans[mapper] = (an, bind_keys, shape)
        return known

    def _lookup(self, session: Any, statement: Any, key: str):
        try:
            payload = self.backend.fetch(key)
        except Exception as e:
            self._count("errors")
            log.warning("pgvalet.orm: backend read failed: %s", e)
            return None
        if payload is None:
            return None
        # Decoded once per stored payload where the backend hands back the very bytes
        # object it holds (mem://, Redis's local tier): a FrozenResult is only read by
        # merge_frozen_result(load=False), which copies it into the session.
        memo = self._decoded.get(key)
        if memo is not None and memo[0] is payload:
            frozen = memo[1]
        else:
            try:
                frozen = self.serializer.loads(payload)
            except Exception as e:
                log.warning("pgvalet.orm: undecodable entry dropped: %s", e)
                return None
            if self._memo_decoded:
                if len(self._decoded) >= DECODED_MEMO_SIZE:
                    self._decoded.clear()
                self._decoded[key] = (payload, frozen)
        self._count("hits")
        return merge_frozen_result(session, statement, frozen, load=False)()

    # Coalescing: concurrent misses on one key in this process make one database read.
    # Sync sessions wait on a threading.Event (other threads); async sessions, whose
    # sync code runs in greenlets on the event loop, on an asyncio.Event via await_only.

    def _flight_key(self, key: str, engine: Any) -> Tuple[str, Any]:
        if getattr(engine.dialect, "is_async", False):
            try:
                return key, id(asyncio.get_running_loop())
            except RuntimeError:
                return key, None
        return key, None

    def _join_flight(self, key: str, engine: Any) -> Tuple[Optional["_Flight"], bool]:
        fkey = self._flight_key(key, engine)
        with self._flights_lock:
            flight = self._flights.get(fkey)
            if flight is None:
                flight = self._flights[fkey] = _Flight(fkey[1] is not None)
                return flight, True
            if flight.owner is getcurrent():
                return None, False          # re-entered from inside the leader's own read
            flight.waiters += 1
            return flight, False

    def _wait_flight(self, flight: Optional["_Flight"], engine: Any) -> bool:
        if flight is None:
            return False
        try:
            if flight.is_async:
                from sqlalchemy.util import await_only
                await_only(asyncio.wait_for(flight.event.wait(), FLIGHT_WAIT))
                return True
            return flight.event.wait(FLIGHT_WAIT)
        except Exception:
            return False
        finally:
            with self._flights_lock:
                flight.waiters -= 1

    def _land_flight(self, key: str, engine: Any, flight: "_Flight") -> None:
        with self._flights_lock:
            self._flights.pop(self._flight_key(key, engine), None)
        flight.event.set()

    def waiting(self) -> int:
        """Sessions now waiting for another one's read of the same key (coalesced)."""
        with self._flights_lock:
            return sum(f.waiters for f in self._flights.values())

    def _fill(self, key, frozen, an, statement_tags, ttl, gens, snapshot, conns) -> None:
        try:
            rtags, rtables = tagmod.result_tags(frozen.data)
        except Exception as e:
            log.debug("pgvalet.orm: result not taggable (%s)", e)
            return
        if rtables - set(an.snapshot_tables):
            self._count("sets_rejected")     # read tables the snapshot did not cover
            return
        if any(hooks.connection_wrote(c.connection) for c in conns):
            self._count("sets_rejected")
            return
        if not self._healthy:
            return
        all_tags = sorted(statement_tags | rtags | {"E"})
        try:
            payload = self.serializer.dumps(frozen)
            ok = self.backend.store(key, payload, ttl,
                                    [keys.tag_key(self.prefix, t) for t in all_tags],
                                    gens, snapshot)
        except Exception as e:
            self._count("errors")
            log.warning("pgvalet.orm: could not store an entry: %s", e)
            return
        self._count("sets" if ok else "sets_rejected")


_BIND_KEYS = ("mapper", "clause", "bind")


def _default_load_options() -> Any:
    try:
        from sqlalchemy.orm.context import QueryContext
        return QueryContext.default_load_options
    except (ImportError, AttributeError):
        return None


_DEFAULT_LOAD_OPTIONS = _default_load_options()


def _plain_get(state: Any, statement: Any) -> Any:
    """The mapper of a plain Session.get() (default load options, no loader options, no
    locking), else None.  Recognised by its WHERE clause: the mapper's own get clause,
    annotated, as Session.get builds it (a None in the key builds another clause)."""
    if _DEFAULT_LOAD_OPTIONS is None or \
            state.execution_options.get("_sa_orm_load_options") is not _DEFAULT_LOAD_OPTIONS:
        return None
    mapper = state.bind_arguments.get("mapper")
    crit = getattr(statement, "_where_criteria", ())
    if mapper is None or len(crit) != 1 or getattr(statement, "_with_options", True) or \
            getattr(statement, "_for_update_arg", True) is not None:
        return None
    get_clause = getattr(mapper, "_get_clause", None)
    if not get_clause or getattr(crit[0], "_Annotated__element", None) is not get_clause[0]:
        return None
    return mapper


def _on_do_orm_execute(state: Any):
    """The one do_orm_execute listener (on Session): routes to the bound engine's cache."""
    if not state.is_select:
        return None
    session = state.session
    try:
        bind = session.get_bind(**{k: v for k, v in state.bind_arguments.items()
                                   if k in _BIND_KEYS})
    except Exception:
        return None
    engine = getattr(bind, "engine", bind)
    cache = hooks.engine_cache(engine)
    if cache is None:
        return None
    return cache._execute(state, engine)
