"""SessionProxy: one API over a SQLAlchemy ``Session`` and an ``AsyncSession``.

    from pgvalet.orm import SessionProxy

    proxy = SessionProxy(session)             # Session or AsyncSession
    proxy.add(obj)                            # never awaited
    await proxy.commit()                      # awaited when proxy.is_async, plain call otherwise
    user = await proxy.get(User, 42)
    await proxy.run_sync(legacy_fn, "x")      # AsyncSession only

The rule (shared/USAGE.md section 9):

* Never awaitable, same in both modes: add, add_all, expire, expire_all, expunge,
  expunge_all, is_modified, in_transaction, in_nested_transaction (and get_bind,
  get_transaction, get_nested_transaction and the new/dirty/deleted/identity_map/info/
  no_autoflush attributes).
* The I/O methods -- commit, rollback, close, flush, merge, delete, get, get_one,
  execute, scalars, scalar, refresh (and connection, invalidate, reset) -- return
  exactly what the wrapped session returns: **a coroutine to await with an
  AsyncSession; the plain value, already computed, with a Session**.
* ``query()`` is sync only; ``stream()``, ``stream_scalars()``, ``run_sync()`` and
  ``aclose()`` are async only.  Called in the other mode they raise
  NotImplementedError saying why and what to use instead.
* ``with proxy:`` (Session) and ``async with proxy:`` (either) return the proxy and
  close the session at the end.

Why sync mode is not "awaitable as well": a sync-mode result that could also be
awaited would have to be a different object from what Session returns.  That is
possible for ``None`` (commit, flush, ...) but not for what get/merge/scalar return
(your mapped instance, an int, ``None`` for a missing row) without changing its
type, and a Result wrapped to be awaitable would no longer be a Result.  Making
only some methods awaitable in sync mode would let ``await proxy.commit()`` pass and
then ``await proxy.get(...)`` fail a line later -- a worse surprise than one clear
rule.  So code shared by both modes branches once on ``proxy.is_async`` (or is
written async and given an AsyncSession); a forgotten ``await`` in async mode is
the usual "coroutine was never awaited" warning, and an ``await`` in sync mode is
a TypeError right at that line (the call itself has already run).

Version guards (SQLAlchemy 1.4.46 and 2.0 both supported, probes in pgvalet._compat):
``get_one`` exists from 2.0.22; before that it is emulated exactly as 2.0 defines it
(``get()``, then ``NoResultFound`` when there is no row).  ``reset`` (2.0.22) falls
back to ``close()``, which is what reset means where it is missing (close leaves
the session usable); ``aclose`` (2.0.20) falls back to ``AsyncSession.close()``.
"""
from __future__ import annotations

from typing import (Any, Awaitable, Callable, Dict, Generic, Iterable, Iterator, Optional, Sequence,
                    Type, TypeVar, Union, overload)

from sqlalchemy.engine import Connection, Result, ScalarResult
from sqlalchemy.ext.asyncio import (AsyncConnection, AsyncResult, AsyncScalarResult, AsyncSession,
                                    AsyncSessionTransaction, async_scoped_session)
from sqlalchemy.orm import Query, Session, SessionTransaction, scoped_session
from sqlalchemy.orm.exc import NoResultFound
from sqlalchemy.sql.expression import Executable

from .. import _compat

__all__ = ["SessionProxy"]

S = TypeVar("S", Session, AsyncSession)
T = TypeVar("T")
O = TypeVar("O")  # a mapped instance

# What execute()/scalars()/scalar()/stream() accept as parameters.
Params = Union[Dict[str, Any], Sequence[Dict[str, Any]], None]

NO_ROW = "No row was found when one was required"  # SQLAlchemy 2.0's get_one() message


class SessionProxy(Generic[S]):
    """Wraps a Session (sync mode) or an AsyncSession (async mode); see the module doc.

    ``scoped_session`` / ``async_scoped_session`` registries are accepted too.
    """

    __slots__ = ("_session", "_is_async")

    @overload
    def __init__(self: SessionProxy[Session], session: Union[Session, scoped_session]
                 ) -> None: ...
    @overload
    def __init__(self: SessionProxy[AsyncSession],
                 session: Union[AsyncSession, async_scoped_session]) -> None: ...

    def __init__(self, session: Any) -> None:
        if isinstance(session, (AsyncSession, async_scoped_session)):
            is_async = True
        elif isinstance(session, (Session, scoped_session)):
            is_async = False
        else:
            raise TypeError("SessionProxy wraps a sqlalchemy Session or AsyncSession (or a "
                            f"scoped_session of one), not {type(session).__name__}")
        self._session: Any = session
        self._is_async = is_async

    def __repr__(self) -> str:
        return f"<SessionProxy {'async' if self._is_async else 'sync'} {self._session!r}>"

    # ---- what is wrapped -----------------------------------------------------------------

    @property
    def session(self) -> S:
        """The wrapped Session or AsyncSession."""
        return self._session  # type: ignore[no-any-return]

    @property
    def is_async(self) -> bool:
        """True for an AsyncSession: the I/O methods then return coroutines."""
        return self._is_async

    @property
    def sync_session(self) -> Session:
        """The Session doing the work: the session itself, or AsyncSession.sync_session."""
        return self._session.sync_session if self._is_async else self._session  # type: ignore

    def _needs_sync(self, method: str, instead: str) -> None:
        if self._is_async:
            raise NotImplementedError(f"SessionProxy.{method}() needs a sync Session; this "
                                      f"proxy wraps an AsyncSession: {instead}")

    def _needs_async(self, method: str, instead: str) -> None:
        if not self._is_async:
            raise NotImplementedError(f"SessionProxy.{method}() needs an AsyncSession; this "
                                      f"proxy wraps a sync Session: {instead}")

    # ---- context managers ----------------------------------------------------------------

    def __enter__(self) -> SessionProxy[S]:
        self._needs_sync("__enter__", "an AsyncSession closes asynchronously, use "
                                      "`async with proxy:`")
        return self

    def __exit__(self, type_: Any, value: Any, traceback: Any) -> None:
        self._session.close()

    async def __aenter__(self) -> SessionProxy[S]:
        return self

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        if self._is_async:
            await self._session.__aexit__(type_, value, traceback)
        else:
            self._session.close()

    # ---- never awaitable -----------------------------------------------------------------

    def add(self, instance: object) -> None:
        self._session.add(instance)

    def add_all(self, instances: Iterable[object]) -> None:
        self._session.add_all(instances)

    def expire(self, instance: object, attribute_names: Optional[Iterable[str]] = None) -> None:
        self._session.expire(instance, attribute_names)

    def expire_all(self) -> None:
        self._session.expire_all()

    def expunge(self, instance: object) -> None:
        self._session.expunge(instance)

    def expunge_all(self) -> None:
        self._session.expunge_all()

    def is_modified(self, instance: object, include_collections: bool = True) -> bool:
        return bool(self._session.is_modified(instance, include_collections))

    def in_transaction(self) -> bool:
        return bool(self._session.in_transaction())

    def in_nested_transaction(self) -> bool:
        return bool(self._session.in_nested_transaction())

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        """The Engine or Connection the sync session uses (same in both modes)."""
        return self._session.get_bind(*args, **kwargs)

    @overload
    def get_transaction(self: SessionProxy[Session]) -> Optional[SessionTransaction]: ...
    @overload
    def get_transaction(self: SessionProxy[AsyncSession]
                        ) -> Optional[AsyncSessionTransaction]: ...

    def get_transaction(self) -> Union[SessionTransaction, AsyncSessionTransaction, None]:
        return self._session.get_transaction()  # type: ignore[no-any-return]

    @overload
    def get_nested_transaction(self: SessionProxy[Session]) -> Optional[SessionTransaction]: ...
    @overload
    def get_nested_transaction(self: SessionProxy[AsyncSession]
                               ) -> Optional[AsyncSessionTransaction]: ...

    def get_nested_transaction(self) -> Union[SessionTransaction, AsyncSessionTransaction,
                                              None]:
        return self._session.get_nested_transaction()  # type: ignore[no-any-return]

    @overload
    def begin(self: SessionProxy[Session]) -> SessionTransaction: ...
    @overload
    def begin(self: SessionProxy[AsyncSession]) -> AsyncSessionTransaction: ...

    def begin(self) -> Union[SessionTransaction, AsyncSessionTransaction]:
        """The session's own transaction object: ``with`` it (sync) or ``async with`` it."""
        return self._session.begin()  # type: ignore[no-any-return]

    @overload
    def begin_nested(self: SessionProxy[Session]) -> SessionTransaction: ...
    @overload
    def begin_nested(self: SessionProxy[AsyncSession]) -> AsyncSessionTransaction: ...

    def begin_nested(self) -> Union[SessionTransaction, AsyncSessionTransaction]:
        """A SAVEPOINT: ``with proxy.begin_nested():`` (sync) or ``async with`` (async)."""
        return self._session.begin_nested()  # type: ignore[no-any-return]

    @property
    def new(self) -> Any:
        return self._session.new

    @property
    def dirty(self) -> Any:
        return self._session.dirty

    @property
    def deleted(self) -> Any:
        return self._session.deleted

    @property
    def identity_map(self) -> Any:
        return self._session.identity_map

    @property
    def info(self) -> Dict[Any, Any]:
        return self._session.info  # type: ignore[no-any-return]

    @property
    def no_autoflush(self) -> Any:
        """``with proxy.no_autoflush:`` in both modes."""
        return self._session.no_autoflush

    def __contains__(self, instance: object) -> bool:
        return instance in self._session

    def __iter__(self) -> Iterator[object]:
        return iter(self._session)

    # ---- awaitable in async mode, plain in sync mode ---------------------------------------

    @overload
    def commit(self: SessionProxy[Session]) -> None: ...
    @overload
    def commit(self: SessionProxy[AsyncSession]) -> Awaitable[None]: ...

    def commit(self) -> Optional[Awaitable[None]]:
        return self._session.commit()  # type: ignore[no-any-return]

    @overload
    def rollback(self: SessionProxy[Session]) -> None: ...
    @overload
    def rollback(self: SessionProxy[AsyncSession]) -> Awaitable[None]: ...

    def rollback(self) -> Optional[Awaitable[None]]:
        return self._session.rollback()  # type: ignore[no-any-return]

    @overload
    def close(self: SessionProxy[Session]) -> None: ...
    @overload
    def close(self: SessionProxy[AsyncSession]) -> Awaitable[None]: ...

    def close(self) -> Optional[Awaitable[None]]:
        return self._session.close()  # type: ignore[no-any-return]

    @overload
    def reset(self: SessionProxy[Session]) -> None: ...
    @overload
    def reset(self: SessionProxy[AsyncSession]) -> Awaitable[None]: ...

    def reset(self) -> Optional[Awaitable[None]]:
        """Session.reset() (2.0.22); close() where it is missing, which is what it means there."""
        has_reset = _compat.ASYNC_SESSION_HAS_RESET if self._is_async else _compat.SESSION_HAS_RESET
        if has_reset:
            return self._session.reset()  # type: ignore[no-any-return]
        return self._session.close()  # type: ignore[no-any-return]

    def aclose(self) -> Awaitable[None]:
        """AsyncSession.aclose() (2.0.20; for contextlib.aclosing): close() before that."""
        self._needs_async("aclose", "use close()")
        if _compat.ASYNC_SESSION_HAS_ACLOSE:
            return self._session.aclose()  # type: ignore[no-any-return]
        return self._session.close()  # type: ignore[no-any-return]

    @overload
    def flush(self: SessionProxy[Session], objects: Optional[Sequence[object]] = None) -> None: ...
    @overload
    def flush(self: SessionProxy[AsyncSession], objects: Optional[Sequence[object]] = None
              ) -> Awaitable[None]: ...

    def flush(self, objects: Optional[Sequence[object]] = None) -> Optional[Awaitable[None]]:
        return self._session.flush(objects)  # type: ignore[no-any-return]

    @overload
    def merge(self: SessionProxy[Session], instance: O, *, load: bool = True,
              options: Optional[Sequence[Any]] = None) -> O: ...
    @overload
    def merge(self: SessionProxy[AsyncSession], instance: O, *, load: bool = True,
              options: Optional[Sequence[Any]] = None) -> Awaitable[O]: ...

    def merge(self, instance: O, *, load: bool = True,
              options: Optional[Sequence[Any]] = None) -> Union[O, Awaitable[O]]:
        return self._session.merge(instance, load=load,  # type: ignore[no-any-return]
                                   options=options)

    @overload
    def delete(self: SessionProxy[Session], instance: object) -> None: ...
    @overload
    def delete(self: SessionProxy[AsyncSession], instance: object) -> Awaitable[None]: ...

    def delete(self, instance: object) -> Optional[Awaitable[None]]:
        return self._session.delete(instance)  # type: ignore[no-any-return]

    @overload
    def get(self: SessionProxy[Session], entity: Type[O], ident: Any,
            **kwargs: Any) -> Optional[O]: ...
    @overload
    def get(self: SessionProxy[AsyncSession], entity: Type[O], ident: Any,
            **kwargs: Any) -> Awaitable[Optional[O]]: ...

    def get(self, entity: Type[O], ident: Any,
            **kwargs: Any) -> Union[Optional[O], Awaitable[Optional[O]]]:
        """Session.get(entity, ident, options=..., populate_existing=..., ...)."""
        return self._session.get(entity, ident, **kwargs)  # type: ignore[no-any-return]

    @overload
    def get_one(self: SessionProxy[Session], entity: Type[O], ident: Any,
                **kwargs: Any) -> O: ...
    @overload
    def get_one(self: SessionProxy[AsyncSession], entity: Type[O], ident: Any,
                **kwargs: Any) -> Awaitable[O]: ...

    def get_one(self, entity: Type[O], ident: Any, **kwargs: Any) -> Union[O, Awaitable[O]]:
        """get(), but a missing row raises sqlalchemy.orm.exc.NoResultFound (as in 2.0.22+)."""
        if self._is_async:
            if _compat.ASYNC_SESSION_HAS_GET_ONE:
                return self._session.get_one(entity, ident, **kwargs)  # type: ignore
            return self._async_get_one(entity, ident, kwargs)
        if _compat.SESSION_HAS_GET_ONE:
            return self._session.get_one(entity, ident, **kwargs)  # type: ignore[no-any-return]
        found = self._session.get(entity, ident, **kwargs)
        if found is None:
            raise NoResultFound(NO_ROW)
        return found  # type: ignore[no-any-return]

    async def _async_get_one(self, entity: Type[O], ident: Any, kwargs: Dict[str, Any]) -> O:
        found = await self._session.get(entity, ident, **kwargs)
        if found is None:
            raise NoResultFound(NO_ROW)
        return found  # type: ignore[no-any-return]

    @overload
    def execute(self: SessionProxy[Session], statement: Executable, params: Params = None,
                **kwargs: Any) -> Result: ...
    @overload
    def execute(self: SessionProxy[AsyncSession], statement: Executable, params: Params = None,
                **kwargs: Any) -> Awaitable[Result]: ...

    def execute(self, statement: Executable, params: Params = None,
                **kwargs: Any) -> Union[Result, Awaitable[Result]]:
        """Session.execute(statement, params, execution_options=..., bind_arguments=...)."""
        return self._session.execute(statement, params, **kwargs)  # type: ignore

    @overload
    def scalars(self: SessionProxy[Session], statement: Executable, params: Params = None,
                **kwargs: Any) -> ScalarResult: ...
    @overload
    def scalars(self: SessionProxy[AsyncSession], statement: Executable, params: Params = None,
                **kwargs: Any) -> Awaitable[ScalarResult]: ...

    def scalars(self, statement: Executable, params: Params = None,
                **kwargs: Any) -> Union[ScalarResult, Awaitable[ScalarResult]]:
        return self._session.scalars(statement, params, **kwargs)  # type: ignore

    @overload
    def scalar(self: SessionProxy[Session], statement: Executable, params: Params = None,
               **kwargs: Any) -> Any: ...
    @overload
    def scalar(self: SessionProxy[AsyncSession], statement: Executable, params: Params = None,
               **kwargs: Any) -> Awaitable[Any]: ...

    def scalar(self, statement: Executable, params: Params = None, **kwargs: Any) -> Any:
        return self._session.scalar(statement, params, **kwargs)

    @overload
    def refresh(self: SessionProxy[Session], instance: object,
                attribute_names: Optional[Iterable[str]] = None,
                with_for_update: Any = None) -> None: ...
    @overload
    def refresh(self: SessionProxy[AsyncSession], instance: object,
                attribute_names: Optional[Iterable[str]] = None,
                with_for_update: Any = None) -> Awaitable[None]: ...

    def refresh(self, instance: object, attribute_names: Optional[Iterable[str]] = None,
                with_for_update: Any = None) -> Optional[Awaitable[None]]:
        return self._session.refresh(instance, attribute_names,  # type: ignore[no-any-return]
                                     with_for_update=with_for_update)

    @overload
    def connection(self: SessionProxy[Session], **kwargs: Any) -> Connection: ...
    @overload
    def connection(self: SessionProxy[AsyncSession], **kwargs: Any
                   ) -> Awaitable[AsyncConnection]: ...

    def connection(self, **kwargs: Any) -> Union[Connection, Awaitable[AsyncConnection]]:
        """The session's Connection (sync) / AsyncConnection (async), in its transaction."""
        return self._session.connection(**kwargs)  # type: ignore[no-any-return]

    @overload
    def invalidate(self: SessionProxy[Session]) -> None: ...
    @overload
    def invalidate(self: SessionProxy[AsyncSession]) -> Awaitable[None]: ...

    def invalidate(self) -> Optional[Awaitable[None]]:
        return self._session.invalidate()  # type: ignore[no-any-return]

    # ---- one mode only ---------------------------------------------------------------------

    def query(self, *entities: Any, **kwargs: Any) -> Query:
        """The legacy Query API; a Session has it, an AsyncSession does not."""
        self._needs_sync("query", "the legacy Query API does not exist on AsyncSession; use "
                                  "`await proxy.execute(select(...))` or proxy.scalars()")
        return self._session.query(*entities, **kwargs)  # type: ignore[no-any-return]

    def stream(self, statement: Executable, params: Params = None,
               **kwargs: Any) -> Awaitable[AsyncResult]:
        """AsyncSession.stream(): rows from a server-side cursor, as an AsyncResult."""
        self._needs_async("stream", "a Session streams with proxy.execute(stmt, execution_"
                                    "options={'yield_per': N}) and iterates the Result")
        return self._session.stream(statement, params, **kwargs)  # type: ignore[no-any-return]

    def stream_scalars(self, statement: Executable, params: Params = None,
                       **kwargs: Any) -> Awaitable[AsyncScalarResult]:
        self._needs_async("stream_scalars", "a Session streams with proxy.scalars(stmt, "
                                            "execution_options={'yield_per': N})")
        return self._session.stream_scalars(  # type: ignore[no-any-return]
            statement, params, **kwargs)

    def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Awaitable[T]:
        """Run fn(sync_session, *args, **kwargs) in the AsyncSession's greenlet."""
        self._needs_async("run_sync", "run_sync() exists to run sync code inside an "
                                      "AsyncSession; with a Session call "
                                      "fn(proxy.session, ...) directly")
        return self._session.run_sync(fn, *args, **kwargs)  # type: ignore[no-any-return]
