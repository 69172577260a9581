"""pgvalet.orm.SessionProxy: the USAGE §9 matrix, sync and async, direct and through pgvalet.

Every database test runs four ways: a Session (psycopg2) or an AsyncSession
(asyncpg), on an engine connected straight to Postgres or through a pgvalet proxy.
The test bodies are written once, as coroutines, and pass every I/O call's return
value through `ctx.io()`, which checks the contract on the spot: in async mode the
call returned an awaitable (awaited there), in sync mode the plain value itself.
"""
import asyncio
import inspect

import pytest
import sqlalchemy
import sqlalchemy.exc
from sqlalchemy import Column, Integer, String, func, select, text
from sqlalchemy.engine import Connection, Result, ScalarResult
from sqlalchemy.ext.asyncio import (AsyncConnection, AsyncResult, AsyncSession,
                                    async_scoped_session, create_async_engine)
from sqlalchemy.orm import Query, Session, declarative_base, scoped_session, sessionmaker
from sqlalchemy.orm.exc import NoResultFound

import pgvalet.sqlalchemy
from pgvalet.orm import SessionProxy

from pgvtest import free_group

Base = declarative_base()


class Item(Base):
    __tablename__ = "sp_items"
    id = Column(Integer, primary_key=True)
    name = Column(String, nullable=False)
    qty = Column(Integer, nullable=False, default=0)


SEED = {1: ("one", 10), 2: ("two", 20), 3: ("three", 30)}


@pytest.fixture
def items(pg):
    """sp_items with rows 1..3, made afresh (directly) before the test's proxy starts."""
    pg.sql("DROP TABLE IF EXISTS sp_items; "
           "CREATE TABLE sp_items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL); "
           "INSERT INTO sp_items VALUES (1, 'one', 10), (2, 'two', 20), (3, 'three', 30)")
    return pg


@pytest.fixture(params=["sync", "async"])
def mode(request):
    return request.param


@pytest.fixture(params=["direct", "proxy"])
def route(request):
    return request.param


class Ctx:
    """What a test body gets besides the proxy: the engine and contract checks."""

    def __init__(self, pg, mode, route):
        self.pg, self.mode, self.route = pg, mode, route
        self.is_async = mode == "async"
        if route == "proxy":
            make = (pgvalet.sqlalchemy.create_async_engine if self.is_async
                    else pgvalet.sqlalchemy.create_engine)
            self.engine = make(pg.url(scheme="postgresql+asyncpg" if self.is_async
                                      else "postgresql"),
                               pgvalet_port=free_group(), pgvalet_silent=True)
            assert self.engine.url.port == self.engine.pgvalet.port != pg.port
        else:
            self.engine = (create_async_engine(pg.url(scheme="postgresql+asyncpg"))
                           if self.is_async else sqlalchemy.create_engine(pg.url()))
            assert self.engine.url.port == pg.port

    def session(self, **kwargs):
        return (AsyncSession if self.is_async else Session)(self.engine, **kwargs)

    async def io(self, value):
        """An I/O method's return value: awaited in async mode, the value in sync mode."""
        if self.is_async:
            assert inspect.isawaitable(value), f"async mode returned {value!r}, not awaitable"
            return await value
        assert not inspect.isawaitable(value), f"sync mode returned awaitable {value!r}"
        return value

    def plain(self, value):
        """A never-awaitable method's return value (both modes)."""
        assert not inspect.isawaitable(value), f"{value!r} is awaitable"
        return value

    async def write(self, sql, **params):
        """A committed write on another connection of the same engine (same route)."""
        if self.is_async:
            async with self.engine.begin() as conn:
                await conn.execute(text(sql), params)
        else:
            with self.engine.begin() as conn:
                conn.execute(text(sql), params)

    def db(self, sql, *args):
        """Read straight from Postgres (never through the proxy or the session)."""
        return self.pg.sql(sql, *args)

    async def dispose(self):
        result = self.engine.dispose()
        if inspect.isawaitable(result):
            await result


@pytest.fixture
def run(items, mode, route):
    """run(body): `await body(proxy, ctx)` on a fresh session of this mode and route."""
    def runner(body, **session_kwargs):
        ctx = Ctx(items, mode, route)

        async def main():
            try:
                session = ctx.session(**session_kwargs)
                proxy = SessionProxy(session)
                try:
                    return await body(proxy, ctx)
                finally:
                    await ctx.io(proxy.close())
            finally:
                await ctx.dispose()
        return asyncio.run(main())
    return runner


# ---- what is wrapped, context managers ------------------------------------------------------


def test_wraps_session_and_reports_mode(mode):
    session = AsyncSession() if mode == "async" else Session()
    proxy = SessionProxy(session)
    assert proxy.session is session
    assert proxy.is_async is (mode == "async")
    assert proxy.sync_session is (session.sync_session if mode == "async" else session)
    assert repr(proxy).startswith(f"<SessionProxy {mode} ")
    assert proxy.info is session.info and proxy.identity_map is session.identity_map


def test_rejects_what_is_not_a_session(pg):
    engine = sqlalchemy.create_engine(pg.url())
    with pytest.raises(TypeError, match="wraps a sqlalchemy Session or AsyncSession.*not Engine"):
        SessionProxy(engine)
    with pytest.raises(TypeError, match="not SessionProxy"):
        SessionProxy(SessionProxy(Session()))


def test_context_managers_return_the_proxy_and_close(run, mode):
    async def body(p, ctx):
        one = await ctx.io(p.get(Item, 1))
        assert p.in_transaction() and one in p and len(p.identity_map) == 1
        if ctx.is_async:
            with pytest.raises(NotImplementedError, match="async with proxy"):
                with p:
                    pass
            async with p as entered:
                assert entered is p
        else:
            with p as entered:
                assert entered is p
        assert not p.in_transaction() and len(p.identity_map) == 0  # closed

        other = SessionProxy(ctx.session())  # `async with` works in sync mode too
        async with other as entered:
            assert entered is other
            two = await ctx.io(other.get(Item, 2))
            assert other.in_transaction() and two in other
        assert not other.in_transaction() and len(other.identity_map) == 0
    run(body)


# ---- never awaitable ------------------------------------------------------------------------


def test_never_awaitable_methods(run):
    async def body(p, ctx):
        one = await ctx.io(p.get(Item, 1))
        assert ctx.plain(p.in_transaction()) is True
        assert ctx.plain(p.in_nested_transaction()) is False
        assert ctx.plain(p.is_modified(one)) is False
        one.qty = 11
        assert ctx.plain(p.is_modified(one)) is True and one in p.dirty

        new = Item(id=40, name="forty", qty=0)
        assert ctx.plain(p.add(new)) is None
        more = [Item(id=41, name="forty-one", qty=0), Item(id=42, name="forty-two", qty=0)]
        assert ctx.plain(p.add_all(more)) is None
        assert set(p.new) == {new, *more} and new in p

        assert ctx.plain(p.expunge(more[1])) is None
        assert more[1] not in p and set(p.new) == {new, more[0]}

        await ctx.io(p.flush())
        assert not p.new and not p.dirty
        assert ctx.plain(p.expire(one)) is None
        assert "qty" not in one.__dict__                 # expired: reloaded on next access
        assert ctx.plain(p.expire_all()) is None
        assert "name" not in new.__dict__
        await ctx.io(p.refresh(one))                     # reload (flushed value) ...
        assert one.qty == 11
        assert ctx.plain(p.expunge_all()) is None
        assert len(p.identity_map) == 0 and one not in p
        assert ctx.plain(p.get_bind()) is (ctx.engine.sync_engine if ctx.is_async
                                          else ctx.engine)
        await ctx.io(p.rollback())
        assert ctx.plain(p.in_transaction()) is False
    run(body)


def test_rolled_back_flush_leaves_nothing(run, items):
    async def body(p, ctx):
        p.add(Item(id=50, name="fifty", qty=5))
        await ctx.io(p.flush())
        assert await ctx.io(p.scalar(select(func.count()).select_from(Item))) == 4
        assert ctx.db("SELECT count(*) FROM sp_items") == [(3,)]   # not committed yet
        await ctx.io(p.rollback())
    run(body)
    assert items.sql("SELECT count(*) FROM sp_items") == [(3,)]


# ---- awaitable in async mode ----------------------------------------------------------------


def test_commit_rollback_flush(run, items):
    async def body(p, ctx):
        p.add(Item(id=60, name="sixty", qty=6))
        assert await ctx.io(p.flush()) is None
        item = await ctx.io(p.get(Item, 60))
        assert item.name == "sixty"
        assert await ctx.io(p.rollback()) is None
        assert await ctx.io(p.get(Item, 60)) is None

        p.add(Item(id=61, name="sixty-one", qty=6))
        assert await ctx.io(p.commit()) is None
        assert not p.in_transaction()
        assert ctx.db("SELECT name FROM sp_items WHERE id = 61") == [("sixty-one",)]
        # a second session sees it (through the same route)
        async with SessionProxy(ctx.session()) as q:
            assert (await ctx.io(q.get(Item, 61))).name == "sixty-one"
    run(body)
    assert items.sql("SELECT id FROM sp_items ORDER BY id") == [(1,), (2,), (3,), (61,)]


def test_get_and_get_one(run):
    async def body(p, ctx):
        two = await ctx.io(p.get(Item, 2))
        assert (two.id, two.name, two.qty) == (2, "two", 20)
        assert await ctx.io(p.get(Item, 999)) is None
        assert await ctx.io(p.get_one(Item, 2)) is two          # identity map
        assert (await ctx.io(p.get_one(Item, 3))).name == "three"
        assert p.in_transaction()
    run(body)


def test_get_one_missing_row_raises_no_result_found(run, mode):
    """As 2.0.22's get_one: NoResultFound, at the call (sync) or at the await (async)."""
    async def body(p, ctx):
        if ctx.is_async:
            pending = p.get_one(Item, 999)           # nothing has run yet
            with pytest.raises(NoResultFound, match="No row was found when one was required"):
                await pending
        else:
            with pytest.raises(NoResultFound, match="No row was found when one was required"):
                p.get_one(Item, 999)
        return (await ctx.io(p.get_one(Item, 1))).name  # the session is still usable
    assert run(body) == "one"
    assert NoResultFound is sqlalchemy.exc.NoResultFound  # the class 2.0's get_one raises


def test_get_options_pass_through(run):
    async def body(p, ctx):
        one = await ctx.io(p.get(Item, 1))
        await ctx.write("UPDATE sp_items SET qty = 111 WHERE id = 1")
        assert (await ctx.io(p.get(Item, 1))).qty == 10        # identity map, not reloaded
        again = await ctx.io(p.get(Item, 1, populate_existing=True))
        assert again is one and one.qty == 111
    run(body)


def test_execute_scalars_scalar(run):
    async def body(p, ctx):
        result = await ctx.io(p.execute(select(Item.name, Item.qty).where(Item.qty >= 20)
                                        .order_by(Item.id)))
        assert isinstance(result, Result)
        assert [tuple(r) for r in result] == [("two", 20), ("three", 30)]

        result = await ctx.io(p.execute(text("SELECT name FROM sp_items WHERE id = :id"),
                                        {"id": 3}))
        assert result.scalar_one() == "three"

        scalars = await ctx.io(p.scalars(select(Item).order_by(Item.id)))
        assert isinstance(scalars, ScalarResult)
        objs = scalars.all()
        assert [i.name for i in objs] == ["one", "two", "three"]
        assert all(isinstance(i, Item) and i in p for i in objs)

        assert await ctx.io(p.scalar(select(func.sum(Item.qty)))) == 60
        assert await ctx.io(p.scalar(text("SELECT qty FROM sp_items WHERE id = :id"),
                                     {"id": 2})) == 20
        assert await ctx.io(p.scalar(select(Item.id).where(Item.id == 999))) is None
        # execution_options reach the session
        result = await ctx.io(p.execute(select(Item.id), execution_options={"foo": "bar"}))
        assert sorted(result.scalars()) == [1, 2, 3]
    run(body)


def test_merge(run, items):
    async def body(p, ctx):
        detached = Item(id=2, name="two-merged", qty=22)
        merged = await ctx.io(p.merge(detached))
        assert merged is not detached and merged in p and detached not in p
        assert (merged.name, merged.qty) == ("two-merged", 22) and p.is_modified(merged)
        fresh = await ctx.io(p.merge(Item(id=70, name="seventy", qty=7)))
        assert fresh in p.new
        async with SessionProxy(ctx.session()) as q:
            detached = await ctx.io(q.get(Item, 3))
        unloaded = await ctx.io(p.merge(detached, load=False))   # copied, no SELECT
        assert unloaded is not detached and unloaded.name == "three"
        assert not p.is_modified(unloaded) and unloaded not in p.dirty
        await ctx.io(p.commit())
    run(body)
    assert items.sql("SELECT id, name, qty FROM sp_items ORDER BY id") == [
        (1, "one", 10), (2, "two-merged", 22), (3, "three", 30), (70, "seventy", 7)]


def test_delete(run, items):
    async def body(p, ctx):
        three = await ctx.io(p.get(Item, 3))
        assert await ctx.io(p.delete(three)) is None
        assert three in p.deleted
        await ctx.io(p.flush())
        assert await ctx.io(p.get(Item, 3)) is None
        await ctx.io(p.commit())
        async with SessionProxy(ctx.session()) as q:   # another session, same route
            assert await ctx.io(q.get(Item, 3)) is None
    run(body)
    assert items.sql("SELECT id FROM sp_items ORDER BY id") == [(1,), (2,)]


def test_refresh(run):
    async def body(p, ctx):
        one = await ctx.io(p.get(Item, 1))
        await ctx.write("UPDATE sp_items SET name = 'uno', qty = 100 WHERE id = 1")
        assert (one.name, one.qty) == ("one", 10)   # the session still has what it loaded
        assert await ctx.io(p.refresh(one)) is None
        assert (one.name, one.qty) == ("uno", 100)
        await ctx.write("UPDATE sp_items SET name = 'eins', qty = 1000 WHERE id = 1")
        await ctx.io(p.refresh(one, ["qty"]))        # only the named attributes
        assert (one.name, one.qty) == ("uno", 1000)
    run(body)


def test_nested_transactions(run, items):
    async def body(p, ctx):
        p.add(Item(id=80, name="outer", qty=0))
        assert not p.in_nested_transaction()

        savepoint = await ctx.io(p.begin_nested())   # AsyncSessionTransaction is awaited
        assert p.in_nested_transaction() and p.get_nested_transaction() is not None
        p.add(Item(id=81, name="rolled-back", qty=0))
        await ctx.io(p.flush())
        assert await ctx.io(p.get(Item, 81)) is not None
        await ctx.io(savepoint.rollback())
        assert not p.in_nested_transaction() and p.in_transaction()
        assert await ctx.io(p.get(Item, 81)) is None

        # the context-manager spelling of each mode: released at the end
        if ctx.is_async:
            async with p.begin_nested():
                assert p.in_nested_transaction()
                p.add(Item(id=82, name="released", qty=0))
        else:
            with p.begin_nested():
                assert p.in_nested_transaction()
                p.add(Item(id=82, name="released", qty=0))
        assert not p.in_nested_transaction()
        assert ctx.db("SELECT count(*) FROM sp_items WHERE id >= 80") == [(0,)]  # uncommitted
        await ctx.io(p.commit())
    run(body)
    assert items.sql("SELECT id, name FROM sp_items WHERE id >= 80 ORDER BY id") == [
        (80, "outer"), (82, "released")]


def test_begin_and_connection(run, items):
    async def body(p, ctx):
        tx = await ctx.io(p.begin())
        assert p.in_transaction() and p.get_transaction() is not None
        conn = await ctx.io(p.connection())
        assert isinstance(conn, AsyncConnection if ctx.is_async else Connection)
        result = await ctx.io(conn.execute(text("UPDATE sp_items SET qty = qty + 1")))
        assert result.rowcount == 3
        assert await ctx.io(p.scalar(select(func.sum(Item.qty)))) == 63  # same transaction
        await ctx.io(tx.commit())
        assert not p.in_transaction()
    run(body)
    assert items.sql("SELECT sum(qty) FROM sp_items") == [(63,)]


def test_reset_and_invalidate(run):
    async def body(p, ctx):
        await ctx.io(p.get(Item, 1))
        assert await ctx.io(p.reset()) is None
        assert not p.in_transaction() and len(p.identity_map) == 0
        assert (await ctx.io(p.get(Item, 1))).name == "one"   # usable after reset
        assert await ctx.io(p.invalidate()) is None
        assert not p.in_transaction()
        assert (await ctx.io(p.get(Item, 2))).name == "two"   # a new connection
        if ctx.is_async:
            assert await p.aclose() is None
            assert len(p.identity_map) == 0
        else:
            with pytest.raises(NotImplementedError, match=r"aclose\(\) needs an AsyncSession"):
                p.aclose()
    run(body)


# ---- one mode only --------------------------------------------------------------------------


def test_query_is_sync_only(run):
    async def body(p, ctx):
        if ctx.is_async:
            with pytest.raises(NotImplementedError,
                               match=r"query\(\) needs a sync Session.*does not exist on "
                                     r"AsyncSession.*proxy.execute\(select"):
                p.query(Item)
            return
        q = p.query(Item).filter(Item.qty > 15).order_by(Item.id)
        assert isinstance(q, Query)
        assert [i.name for i in q.all()] == ["two", "three"]
        assert p.query(func.count(Item.id)).scalar() == 3
    run(body)


def test_stream_and_stream_scalars_are_async_only(run):
    async def body(p, ctx):
        stmt = select(Item).order_by(Item.id)
        if not ctx.is_async:
            for method in (p.stream, p.stream_scalars):
                with pytest.raises(NotImplementedError,
                                   match=r"needs an AsyncSession; this proxy wraps a sync "
                                         r"Session: a Session streams with proxy\.\w+\(stmt, "
                                         r"execution_options=\{'yield_per'"):
                    method(stmt)
            return
        result = await p.stream(select(Item.id, Item.name).order_by(Item.id))
        assert isinstance(result, AsyncResult)
        assert [tuple(r) async for r in result] == [(1, "one"), (2, "two"), (3, "three")]
        scalars = await p.stream_scalars(stmt)
        got = [i async for i in scalars]
        assert [i.name for i in got] == ["one", "two", "three"] and all(i in p for i in got)
        partitions = await p.stream_scalars(select(Item.qty).order_by(Item.id))
        assert [list(part) async for part in partitions.partitions(2)] == [[10, 20], [30]]
    run(body)


def legacy_fn(session, suffix, *, qty):
    """Sync ORM code, run inside an AsyncSession by run_sync()."""
    assert isinstance(session, Session)
    item = session.get(Item, 1)
    item.name += suffix
    item.qty = qty
    session.flush()
    return session.query(Item.name).filter(Item.id == 1).scalar()


def test_run_sync_is_async_only(run, items, mode):
    async def body(p, ctx):
        if not ctx.is_async:
            with pytest.raises(NotImplementedError,
                               match=r"run_sync\(\) needs an AsyncSession.*with a Session call "
                                     r"fn\(proxy\.session, \.\.\.\) directly"):
                p.run_sync(legacy_fn, "x", qty=5)
            return
        assert await p.run_sync(legacy_fn, "-x", qty=5) == "one-x"
        await p.commit()
    run(body)
    expected = ("one-x", 5) if mode == "async" else ("one", 10)
    assert items.sql("SELECT name, qty FROM sp_items WHERE id = 1") == [expected]


def test_scoped_sessions(items, mode):
    ctx = Ctx(items, mode, "proxy")

    async def main():
        if ctx.is_async:
            registry = async_scoped_session(sessionmaker(ctx.engine, class_=AsyncSession),
                                            scopefunc=asyncio.current_task)
        else:
            registry = scoped_session(sessionmaker(ctx.engine))
        p = SessionProxy(registry)
        assert p.is_async is ctx.is_async
        assert (await ctx.io(p.get(Item, 2))).name == "two"
        p.add(Item(id=90, name="scoped", qty=9))
        await ctx.io(p.commit())
        await ctx.io(p.close())
        await ctx.io(registry.remove())
        await ctx.dispose()
    asyncio.run(main())
    assert items.sql("SELECT name FROM sp_items WHERE id = 90") == [("scoped",)]


def test_annotations_name_real_types():
    hints = {name: inspect.signature(getattr(SessionProxy, name)).return_annotation
             for name in ("add", "commit", "get", "execute", "query", "stream", "run_sync")}
    assert all(h is not inspect.Signature.empty for h in hints.values()), hints
    assert SessionProxy[Session] is not SessionProxy[AsyncSession]  # Generic over the session
    assert isinstance(SessionProxy.session, property)
