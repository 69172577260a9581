"""The in-process L1 cache (pgvalet.l1) under SQLAlchemy, sync (psycopg2; psycopg 3 on
SQLAlchemy 2.0) and async (asyncpg), against the real Postgres and the real proxy.

A hit is proven by the L1's own counters AND by Postgres not seeing the statement
(pg_stat_statements calls unchanged); freshness by writes through the engine, through
another connection of the proxy, and straight to Postgres (WAL -> push channel).
"""
import asyncio
import socket
import threading
import time

import pytest
from sqlalchemy import Column, Integer, Text, text
from sqlalchemy.orm import Session, declarative_base

import pgvalet
from pgvalet import l1
from pgvalet._compat import SA14
from pgvalet.sqlalchemy import create_async_engine, create_engine

pytestmark = pytest.mark.skipif(not l1.available(), reason="pgvalet._l1 not built (make)")

Base = declarative_base()


class Item(Base):
    __tablename__ = "l1_items"
    id = Column(Integer, primary_key=True)
    name = Column(Text, nullable=False)


READ = text("SELECT name FROM l1_items WHERE id = :id")
FRESH_WITHIN = 10.0     # seconds a bypassing write may take to reach the L1 (WAL + push)


@pytest.fixture
def items(pg):
    pg.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    pg.sql("DROP TABLE IF EXISTS l1_items")
    pg.sql("CREATE TABLE l1_items (id int PRIMARY KEY, name text NOT NULL)")
    pg.sql("INSERT INTO l1_items SELECT g, 'item ' || g FROM generate_series(1, 50) g")
    yield pg
    pg.sql("DROP TABLE IF EXISTS l1_items")


def calls(pg, needle="FROM l1_items WHERE id"):
    """How many times Postgres itself ran statements containing needle."""
    rows = pg.sql("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE %s",
                  f"%{needle}%")
    return int(rows[0][0])


def warm(read, attempts=40):
    """Read until the L1 answers (the proxy caches a table once it is published)."""
    for _ in range(attempts):
        before = read.l1.stats()["hits"]
        value = read()
        if read.l1.stats()["hits"] > before:
            return value
        time.sleep(0.05)
    raise AssertionError(f"no L1 hit after {attempts} reads: {read.l1.stats()}")


def eventually(fn, expected, within=FRESH_WITHIN):
    deadline = time.monotonic() + within
    while True:
        value = fn()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


class SyncReader:
    def __init__(self, engine, id_=1):
        self.engine, self.id, self.l1 = engine, id_, engine.pgvalet_l1

    def __call__(self):
        with self.engine.connect() as conn:
            return conn.execute(READ, {"id": self.id}).scalar()


class AsyncReader:
    """Runs each read in a loop of its own thread-safe runner."""

    def __init__(self, engine, runner, id_=1):
        self.engine, self.runner, self.id = engine, runner, id_
        self.l1 = engine.sync_engine.pgvalet_l1

    async def read(self):
        async with self.engine.connect() as conn:
            return (await conn.execute(READ, {"id": self.id})).scalar()

    def __call__(self):
        return self.runner.run(self.read())


@pytest.fixture(params=["psycopg2", "asyncpg",
                        pytest.param("psycopg", marks=pytest.mark.skipif(
                            SA14, reason="the psycopg 3 dialect needs SQLAlchemy 2.0"))])
def reader(request, items, port):
    if request.param in ("psycopg2", "psycopg"):
        engine = create_engine(items.url(scheme="postgresql+" + request.param),
                               pgvalet_port=port, pgvalet_silent=True)
        yield SyncReader(engine)
        engine.dispose()
    else:
        runner = asyncio.Runner()
        engine = create_async_engine(items.url(scheme="postgresql+asyncpg"),
                                     pgvalet_port=port, pgvalet_silent=True)
        yield AsyncReader(engine, runner)
        runner.run(engine.dispose())
        runner.close()


def write(reader, sql, **params):
    """A committed write through the reader's own engine."""
    if isinstance(reader, SyncReader):
        with reader.engine.begin() as conn:
            conn.execute(text(sql), params)
    else:
        async def go():
            async with reader.engine.begin() as conn:
                await conn.execute(text(sql), params)
        reader.runner.run(go())


def test_repeated_read_is_answered_in_process(reader, items):
    assert warm(reader) == "item 1"
    before_pg, before = calls(items), reader.l1.stats()["hits"]
    for _ in range(20):
        assert reader() == "item 1"
    assert reader.l1.stats()["hits"] == before + 20
    assert calls(items) == before_pg, "an L1 hit reached Postgres"


def test_own_write_is_read_at_once(reader):
    warm(reader)
    write(reader, "UPDATE l1_items SET name = 'renamed' WHERE id = 1")
    assert reader() == "renamed"          # no wait: the commit's notice evicted it


def test_write_through_another_proxy_connection_reaches_the_l1(reader, items):
    import psycopg2
    warm(reader)
    other = psycopg2.connect(reader_proxy_url(reader))
    other.autocommit = True
    with other.cursor() as cur:
        cur.execute("UPDATE l1_items SET name = 'by another client' WHERE id = 1")
    other.close()
    assert eventually(reader, "by another client") == "by another client"


def test_write_bypassing_the_proxy_reaches_the_l1(reader, items):
    warm(reader)
    items.sql("UPDATE l1_items SET name = 'by psql' WHERE id = 1")
    assert eventually(reader, "by psql") == "by psql"
    # Row precision: another row's entry survived the write.
    other = type(reader).__new__(type(reader))
    other.__dict__.update(reader.__dict__, id=2)
    warm(other)
    items.sql("UPDATE l1_items SET name = 'row 3 changed' WHERE id = 3")
    time.sleep(0.3)
    hits = reader.l1.stats()["hits"]
    assert other() == "item 2"
    assert reader.l1.stats()["hits"] == hits + 1


def reader_proxy_url(reader):
    engine = reader.engine if isinstance(reader, SyncReader) else reader.engine.sync_engine
    return engine.pgvalet.url


def test_channel_loss_flushes_and_bypasses_the_l1(reader, items):
    warm(reader)
    cache = reader.l1
    events = []
    sub = pgvalet._push.subscribe(cache.push_address, events.append)
    try:
        # The connection drops under the subscriber, as when the proxy goes away.
        pgvalet._push._readers[cache.push_address].sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 5
        while not any(e["type"] == "lost" for e in events) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert any(e["type"] == "lost" for e in events)
        assert cache.stats()["entries"] == 0       # flushed
        # A write straight to Postgres: the next read sees it (the L1 kept nothing).
        items.sql("UPDATE l1_items SET name = 'while down' WHERE id = 1")
        assert eventually(reader, "while down", within=5) == "while down"
        # The subscriber reconnects by itself and the L1 answers again.
        assert warm(reader) == "while down"
    finally:
        sub.close()


def test_transaction_that_wrote_reads_its_own_write(items, port):
    engine = create_engine(items.url(), pgvalet_port=port, pgvalet_silent=True)
    reader = SyncReader(engine)
    warm(reader)
    with engine.connect() as conn:
        tx = conn.begin()
        conn.execute(text("UPDATE l1_items SET name = 'uncommitted' WHERE id = 1"))
        assert conn.execute(READ, {"id": 1}).scalar() == "uncommitted"
        tx.rollback()
    assert reader() == "item 1"
    engine.dispose()


def test_repeatable_read_is_never_served_from_the_l1(items, port):
    engine = create_engine(items.url(), pgvalet_port=port, pgvalet_silent=True)
    warm(SyncReader(engine))
    rr = engine.execution_options(isolation_level="REPEATABLE READ")
    hits = engine.pgvalet_l1.stats()["hits"]
    for _ in range(5):
        with rr.connect() as conn:
            assert conn.execute(READ, {"id": 1}).scalar() == "item 1"
    assert engine.pgvalet_l1.stats()["hits"] == hits
    engine.dispose()


def test_orm_get_in_fresh_sessions_hits(items, port):
    engine = create_engine(items.url(), pgvalet_port=port, pgvalet_silent=True)

    def get():
        with Session(engine) as session:
            return session.get(Item, 7).name

    get.l1 = engine.pgvalet_l1
    assert warm(get) == "item 7"
    with Session(engine) as session:
        session.get(Item, 7).name = "orm write"
        session.commit()
    assert get() == "orm write"
    engine.dispose()


def test_fill_that_raced_a_write_is_refused(items, port):
    """Reader paused after the proxy answered; a write commits and reaches the L1; the
    paused reader's answer (older than the write) must not be stored."""
    engine = create_engine(items.url(), pgvalet_port=port, pgvalet_silent=True)
    reader = SyncReader(engine, id_=5)
    warm(SyncReader(engine, id_=4))       # the table is cached by the proxy now
    cache = engine.pgvalet_l1
    paused, release = threading.Event(), threading.Event()

    class PausingStore:
        """The real store; put() from the paused reader waits until the write landed."""

        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def put(self, *args):
            if threading.current_thread().name == "paused-reader":
                paused.set()
                release.wait(10)
            return self.real.put(*args)

    cache.store = PausingStore(cache.store)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("v", reader()), name="paused-reader")
    t.start()
    assert paused.wait(10)
    invalidations = cache.stats()["invalidations"]
    items.sql("UPDATE l1_items SET name = 'raced' WHERE id = 5")
    deadline = time.monotonic() + FRESH_WITHIN
    while cache.stats()["invalidations"] == invalidations and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = cache.stats()["fills_refused"]
    release.set()
    t.join(10)
    assert result["v"] == "item 5"         # what it read before the write: fine to return
    assert cache.stats()["fills_refused"] == refused + 1
    cache.store = cache.store.real
    assert reader() == "raced"
    engine.dispose()


def test_byte_cap_holds(items, port):
    cap = 2 << 20
    engine = create_engine(items.url(), pgvalet_port=port, pgvalet_silent=True,
                           pgvalet_l1={"max_bytes": cap})
    warm(SyncReader(engine))
    stmt = text("SELECT id, repeat(name, 200) FROM l1_items WHERE id >= :lo")
    for lo in range(1, 51):
        for _ in range(3):
            with engine.connect() as conn:
                conn.execute(stmt, {"lo": lo}).all()
    stats = engine.pgvalet_l1.stats()
    assert stats["fills"] > 10
    assert stats["evicted_capacity"] > 0, stats   # the cap was reached
    assert stats["bytes"] <= cap, stats
    engine.dispose()


def test_l1_can_be_turned_off(items, port):
    engine = create_engine(items.url(), pgvalet_port=port, pgvalet_silent=True, pgvalet_l1=False)
    assert not hasattr(engine, "pgvalet_l1")
    with pytest.raises(TypeError, match="pgvalet_l1"):
        create_engine(items.url(), pgvalet_port=port, pgvalet_l1={"size": 1})
    engine.dispose()


def test_plain_psycopg2_cursor_hits_and_stays_fresh(items, port):
    with pgvalet.start(items.url(), port=port, silent=True) as proxy:
        cache = l1.for_address(proxy.push_address)
        conn = l1.psycopg2_connect(proxy.url, cache)
        conn.autocommit = True

        def read():
            with conn.cursor() as cur:
                cur.execute("SELECT id, name FROM l1_items WHERE id = %s", (9,))
                assert [d[0] for d in cur.description] == ["id", "name"]
                assert cur.rowcount == 1
                return cur.fetchone()[1]

        read.l1 = cache
        assert warm(read) == "item 9"
        before = calls(items)
        for _ in range(10):
            assert read() == "item 9"
        assert calls(items) == before
        with conn.cursor() as cur:      # own write: evicted by the commit's notice
            cur.execute("UPDATE l1_items SET name = 'nine' WHERE id = 9")
        assert read() == "nine"
        items.sql("UPDATE l1_items SET name = 'IX' WHERE id = 9")
        assert eventually(read, "IX") == "IX"
        with conn.cursor() as cur:      # a non-cacheable statement still works as usual
            cur.execute("SELECT now() > '2000-01-01'")
            assert cur.fetchall() == [(True,)]
        conn.close()
        cache.close()


def test_forked_child_starts_empty_and_stays_fresh(items, port):
    import os
    engine = create_engine(items.url(), pgvalet_port=port, pgvalet_silent=True)
    reader = SyncReader(engine, id_=11)
    assert warm(reader) == "item 11"
    engine.dispose()                     # the child must not share the parent's sockets
    pid = os.fork()
    if pid == 0:                         # child: exit status says what it saw
        status = 1
        try:
            assert engine.pgvalet_l1.stats()["entries"] == 0
            assert warm(reader) == "item 11"
            items.sql("UPDATE l1_items SET name = 'forked' WHERE id = 11")
            status = 0 if eventually(reader, "forked") == "forked" else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert eventually(reader, "forked") == "forked"
    engine.dispose()


def test_tag_functions_match_the_proxy(items, port):
    """_l1.table_tag/row_tag compute what the proxy bumps (its evict notice says)."""
    import psycopg2
    from pgvalet import _l1
    with pgvalet.start(items.url(), port=port, silent=True) as proxy:
        conn = psycopg2.connect(proxy.url, options="-c pgvalet.l1=on")
        conn.autocommit = True
        db = conn.info.dbname
        with conn.cursor() as cur:
            for _ in range(40):        # until the proxy knows the table (its catalog)
                del conn.notices[:]
                cur.execute("UPDATE l1_items SET name = name WHERE id = 12")
                notes = [n for n in conn.notices if "pgvalet-l1 evict " in n]
                if notes:
                    break
                time.sleep(0.05)
        conn.close()
    assert notes, "no evict notice"
    tags = {int(t, 16) for t in notes[-1].split()[3].split(",")}
    table = _l1.table_tag(db, "l1_items")
    assert tags == {table, _l1.row_tag(table, 12)}
    assert _l1.rows_tag(table) not in tags


def test_plain_asyncpg_connection_hits_and_stays_fresh(items, port):
    import asyncpg

    async def main(proxy, cache):
        conn = await l1.asyncpg_connect(proxy.url, cache)
        assert isinstance(conn, asyncpg.Connection)
        sql = "SELECT id, name FROM l1_items WHERE id = $1"

        async def warm_async(fn):
            for _ in range(40):
                before = cache.stats()["hits"]
                value = await fn()
                if cache.stats()["hits"] > before:
                    return value
                await asyncio.sleep(0.05)
            raise AssertionError(f"no L1 hit: {cache.stats()}")

        async def fresh(fn, expected):
            deadline = time.monotonic() + FRESH_WITHIN
            while (value := await fn()) != expected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return value

        row = await warm_async(lambda: conn.fetchrow(sql, 9))
        assert isinstance(row, asyncpg.Record)          # a real Record, as on a miss
        assert (row["id"], row["name"], row[1], list(row.keys())) == \
            (9, "item 9", "item 9", ["id", "name"])
        before = calls(items)
        for _ in range(10):
            assert (await conn.fetchrow(sql, 9))["name"] == "item 9"
            assert await conn.fetchval(sql, 9, column=1) == "item 9"
        assert await warm_async(lambda: conn.fetch(sql, 9)) == [row]
        assert await warm_async(lambda: conn.fetch(sql, 999)) == []    # empty answers too
        assert await conn.fetchrow(sql, 999) is None
        assert calls(items) - before <= 3         # fetch(9), fetch(999), fetchrow(999) once

        # own write: evicted by the commit's notice before execute() returns
        await conn.execute("UPDATE l1_items SET name = 'nine' WHERE id = 9")
        assert await conn.fetchval(sql, 9, column=1) == "nine"
        # a write that bypasses the proxy: WAL -> push channel (in WAL order, so once
        # it is seen, the other schema's insert has reached the L1 too)
        items.sql("CREATE SCHEMA l1_other")
        items.sql("CREATE TABLE l1_other.l1_items (id int PRIMARY KEY, name text)")
        items.sql("INSERT INTO l1_other.l1_items VALUES (3, 'other 3')")
        items.sql("UPDATE l1_items SET name = 'IX' WHERE id = 9")
        assert await fresh(lambda: conn.fetchval(sql, 9, column=1), "IX") == "IX"

        # session state changed by a statement the L1 does not see: never answered
        # under the old state
        await warm_async(lambda: conn.fetchval("SELECT name FROM l1_items WHERE id = 3"))
        try:
            await conn.execute("SET search_path = l1_other, public")
            assert await conn.fetchval("SELECT name FROM l1_items WHERE id = 3") == "other 3"
            await conn.execute("RESET search_path")
            assert await conn.fetchval("SELECT name FROM l1_items WHERE id = 3") == "item 3"

            # inside a transaction: no hits, and the transaction reads its own write
            three = "SELECT name FROM l1_items WHERE id = 3"
            await warm_async(lambda: conn.fetchval(three))
            hits = cache.stats()["hits"]
            async with conn.transaction():
                assert await conn.fetchval(three) == "item 3"
                await conn.execute("UPDATE l1_items SET name = 'written' WHERE id = 3")
                assert await conn.fetchval(three) == "written"
                assert await conn.fetchval(three) == "written"
            assert cache.stats()["hits"] == hits
            assert await conn.fetchval(three) == "written"
            # record_class bypasses the L1 and still works
            class MyRecord(asyncpg.Record):
                pass
            got = await conn.fetchrow("SELECT name FROM l1_items WHERE id = 3",
                                      record_class=MyRecord)
            assert isinstance(got, MyRecord) and got["name"] == "written"
            # duplicate column names: served correctly, just not kept
            dup = await conn.fetchrow("SELECT id, id FROM l1_items WHERE id = 3")
            assert tuple(dup) == (3, 3)
        finally:
            await conn.close()
            items.sql("DROP SCHEMA IF EXISTS l1_other CASCADE")

    with pgvalet.start(items.url(), port=port, silent=True) as proxy:
        cache = l1.for_address(proxy.push_address)
        try:
            asyncio.run(main(proxy, cache))
        finally:
            cache.close()


# ---- init(): the application's own engines ------------------------------------------------


def _plain_reader(engine, cache, id_=1):
    def read():
        with engine.connect() as conn:
            return conn.execute(READ, {"id": id_}).scalar()
    read.l1 = cache
    return read


def test_init_puts_the_l1_under_the_applications_own_engines(items, port, monkeypatch):
    import os

    import sqlalchemy
    from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine

    monkeypatch.setenv("DATABASE_URL", items.url())
    handle = pgvalet.sqlalchemy.init(port=port, silent=True)
    cache = l1.for_address(handle.push_address)
    engine = sqlalchemy.create_engine(os.environ["DATABASE_URL"])    # plain SQLAlchemy
    direct = sqlalchemy.create_engine(items.url())                    # not through the proxy
    read = _plain_reader(engine, cache)
    assert warm(read) == "item 1"
    before = calls(items)
    hits = cache.stats()["hits"]
    for _ in range(5):
        assert read() == "item 1"
    assert cache.stats()["hits"] == hits + 5
    assert calls(items) == before
    # a write that bypasses the proxy reaches this L1 too
    items.sql("UPDATE l1_items SET name = 'via init' WHERE id = 1")
    assert eventually(read, "via init") == "via init"
    # an engine to another server is left alone
    stats = cache.stats()
    with direct.connect() as conn:
        for _ in range(3):
            assert conn.execute(READ, {"id": 2}).scalar() == "item 2"
        assert l1.INFO_KEY not in conn.connection.info
    assert (cache.stats()["hits"], cache.stats()["fills"]) == (stats["hits"], stats["fills"])

    async def async_reads():
        url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://", 1)
        aengine = sa_create_async_engine(url)
        try:
            values = []
            for _ in range(40):
                h = cache.stats()["hits"]
                async with aengine.connect() as conn:
                    values.append((await conn.execute(READ, {"id": 3})).scalar())
                if cache.stats()["hits"] > h:
                    return values
                await asyncio.sleep(0.05)
            raise AssertionError(f"no async L1 hit: {cache.stats()}")
        finally:
            await aengine.dispose()

    assert set(asyncio.run(async_reads())) == {"item 3"}
    engine.dispose()
    direct.dispose()


def test_init_l1_false_and_a_stopped_proxy_leave_engines_alone(items, port, monkeypatch):
    import os

    import sqlalchemy

    monkeypatch.setenv("DATABASE_URL", items.url())
    handle = pgvalet.sqlalchemy.init(port=port, silent=True, l1=False)
    engine = sqlalchemy.create_engine(os.environ["DATABASE_URL"])
    with engine.connect() as conn:
        assert conn.execute(READ, {"id": 1}).scalar() == "item 1"
        assert l1.INFO_KEY not in conn.connection.info
    engine.dispose()
    handle.stop()
    with pytest.raises(TypeError, match="pgvalet_l1: unknown key"):
        pgvalet.sqlalchemy.init(items.url(), port=port, silent=True, l1={"size": 1})

    # registered by an earlier init(), then stopped: no L1 for a new proxy on that port
    monkeypatch.setenv("DATABASE_URL", items.url())
    first = pgvalet.sqlalchemy.init(port=port, silent=True)
    url = os.environ["DATABASE_URL"]
    first.stop()
    with pgvalet.start(items.url(), port=first.port, silent=True) as other:
        assert other.port == first.port
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(READ, {"id": 1}).scalar() == "item 1"
            assert l1.INFO_KEY not in conn.connection.info
        engine.dispose()
