"""shared/USAGE.md §8 as written (1.4 model spelling: tests/python/ormmodels.py), with
engines through a real pgvalet proxy, on the three backends; and WAL-driven invalidation:
a write that bypasses SQLAlchemy (psql-style, straight to Postgres) reaches the ORM cache
through the proxy's push channel."""
import asyncio
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from ormmodels import User
from ormtest import (Counter, backend_url, memcached_server, orm_schema,  # noqa: F401
                     redis_server, seeded)

def settle(cache, pushed, quiet=0.3, timeout=10.0):
    """Wait for the proxy's push echo of our own write (the proxy evicts, and pushes that,
    after it forwards the commit): at least one event since `pushed`, then `quiet` s of
    silence.  Until then a re-filled entry may still be dropped by the echo."""
    deadline = time.monotonic() + timeout
    while cache.stats["push_events"] == pushed:
        assert time.monotonic() < deadline, "no push event after a write through the proxy"
        time.sleep(0.01)
    last, since = cache.stats["push_events"], time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.02)
        if cache.stats["push_events"] != last:
            last, since = cache.stats["push_events"], time.monotonic()


def warm(cache, fn, tries=50):
    """Run fn until it is answered from the cache (the first fill can be refused by a flush
    the proxy pushes for the engine's first connection)."""
    for _ in range(tries):
        hits = cache.stats["hits"]
        out = fn()
        if cache.stats["hits"] > hits:
            return out
        time.sleep(0.02)
    raise AssertionError("never served from the cache")


MODELS = {
    "ormmodels.User": {"ops": {"get", "fetch"}, "timeout": 900},
    "ormmodels.Product": {"ops": "all", "timeout": 3600},
    "*": {"timeout": 3600},
}


def test_usage_8_async_as_written(seeded, backend_url, port):
    from pgvalet.sqlalchemy import create_async_engine
    from sqlalchemy.ext.asyncio import AsyncSession

    async def example():
        from pgvalet.orm import configure

        engine = create_async_engine(seeded.url(scheme="postgresql+asyncpg"), pgvalet_port=port)
        counter = Counter()
        counter.attach(engine.sync_engine)
        cache = configure(
            backend=backend_url,          # or "mem://", or "memcached://localhost:11211"
            models=MODELS,
            prefix="u8" + uuid.uuid4().hex[:8],
        )
        await cache.bind(engine)        # async engine; cache.bind(engine) for a sync one
        assert cache.wait_ready(10)     # the proxy's push channel is up

        async with AsyncSession(engine) as session:
            user = await session.get(User, 42)     # miss: from the database, stored, tagged
            user = await session.get(User, 42)     # hit (here: the session's identity map)
            user.name = "Alice"
            pushed = cache.stats["push_events"]
            await session.commit()                  # evicts everything that read users:42

        settle(cache, pushed)   # the proxy's own eviction of that write, pushed to us too
        async with AsyncSession(engine) as session:
            before = counter.selects
            assert (await session.get(User, 42)).name == "Alice"   # fresh after the commit
            assert counter.selects == before + 1
        async with AsyncSession(engine) as session:
            before = counter.selects
            assert (await session.get(User, 42)).name == "Alice"   # a cache hit
            assert counter.selects == before

        async with AsyncSession(engine) as session:
            result = await cache.execute(session, select(User).where(User.active == True),  # noqa
                                         timeout=300)
            assert len(result.scalars().all()) == 25
            before = counter.selects
            result = await cache.execute(session, select(User).where(User.active == True),  # noqa
                                         timeout=300)
            assert len(result.scalars().all()) == 25 and counter.selects == before
        await cache.invalidate(User, pks=[42, 99])
        await cache.invalidate(User)
        await cache.invalidate_all()
        stats = cache.stats
        await cache.disconnect()
        await engine.dispose()
        return stats

    stats = asyncio.run(example())
    assert stats["hits"] >= 2 and stats["errors"] == 0


def test_usage_8_sync(seeded, backend_url, port):
    from pgvalet.orm import configure
    from pgvalet.sqlalchemy import create_engine

    engine = create_engine(seeded.url(), pgvalet_port=port)
    counter = Counter()
    counter.attach(engine)
    cache = configure(backend=backend_url, models=MODELS, prefix="s8" + uuid.uuid4().hex[:8])
    cache.bind(engine)
    assert cache.wait_ready(10)
    try:
        def get42():
            with Session(engine) as session:
                return session.get(User, 42).name
        warm(cache, get42)
        with Session(engine) as session:
            before = counter.selects
            user = session.get(User, 42)
            assert counter.selects == before            # hit
            user.name = "Alice"
            pushed = cache.stats["push_events"]
            session.commit()
            assert session.get(User, 42).name == "Alice"
        settle(cache, pushed)
        assert warm(cache, get42) == "Alice"
        with Session(engine) as session:
            assert session.get(User, 42).name == "Alice"
        result = cache.execute(Session(engine), select(User).where(User.active == True))  # noqa
        assert len(result.scalars().all()) == 25
        cache.invalidate(User, pks=[42, 99])
        cache.invalidate(User)
        cache.invalidate_all()
    finally:
        cache.disconnect()
        engine.dispose()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_outside_writes_reach_the_cache_through_the_proxy(seeded, backend_url, port, mode):
    """psql-style UPDATE/INSERT straight to Postgres: the proxy's WAL stream pushes the
    eviction, the cache drops what read those rows (and the lists of the table)."""
    from pgvalet.orm import configure
    from pgvalet.sqlalchemy import create_async_engine, create_engine
    from sqlalchemy.ext.asyncio import AsyncSession

    cache = configure(backend=backend_url, models={"*": {"timeout": 600}},
                      prefix="w" + uuid.uuid4().hex[:8])
    loop = asyncio.new_event_loop()
    if mode == "sync":
        engine = create_engine(seeded.url(), pgvalet_port=port)

        def run(fn):
            with Session(engine) as session:
                return fn(session)
    else:
        engine = create_async_engine(seeded.url(scheme="postgresql+asyncpg"), pgvalet_port=port)

        def run(fn):
            async def go():
                async with AsyncSession(engine) as session:
                    return await session.run_sync(fn)
            return loop.run_until_complete(go())
    cache.bind(engine)
    assert cache.wait_ready(10)

    def name5(session):
        return session.get(User, 5).name

    def count(session):
        return session.execute(select(sa.func.count()).select_from(User)).scalar()
    try:
        assert warm(cache, lambda: run(name5)) == "user5"
        assert warm(cache, lambda: run(count)) == 50
        seeded.sql("UPDATE orm_users SET name = 'from psql' WHERE id = 5")
        seeded.sql("INSERT INTO orm_users (id, email) VALUES (777, 'psql@example.com')")
        deadline = time.monotonic() + 10
        while (run(name5), run(count)) != ("from psql", 51):
            assert time.monotonic() < deadline, "the WAL eviction never reached the cache"
            time.sleep(0.02)
    finally:
        cache.disconnect()
        if mode == "sync":
            engine.dispose()
        else:
            loop.run_until_complete(engine.dispose())
        loop.close()


def test_a_proxy_event_naming_only_tags_evicts_only_its_table(seeded, backend_url):
    """A write the proxy forwarded is pushed as the tag ids it bumped, without a table
    name: the cache maps them back (pgvalet._l1.table_tag, checked against the proxy's
    own ids in test_l1) to its tables and drops those entries, not everything."""
    import sqlalchemy

    from pgvalet import _l1
    from pgvalet.orm import configure

    from ormmodels import Product

    cache = configure(backend=backend_url, models={"*": {"timeout": 600}},
                      prefix="p" + uuid.uuid4().hex[:8])
    engine = sqlalchemy.create_engine(seeded.url())
    cache.bind(engine)

    def get(model, pk, attr):
        with Session(engine) as session:
            return getattr(session.get(model, pk), attr)
    try:
        assert warm(cache, lambda: get(User, 6, "name")) == "user6"
        assert warm(cache, lambda: get(Product, 1, "name")) == "pen"
        db = engine.url.database
        tags = [f"{_l1.table_tag(db, 'orm_users'):016x}", f"{_l1.db_tag('other'):016x}"]
        cache._on_push_event({"type": "invalidate", "seq": 1, "db": db, "source": "proxy",
                              "tags": tags}, {"up": True, "db": db})
        hits = cache.stats["hits"]
        assert get(Product, 1, "name") == "pen"
        assert cache.stats["hits"] == hits + 1, "an unrelated table's entry was dropped"
        assert get(User, 6, "name") == "user6"
        assert cache.stats["hits"] == hits + 1, "the named table's entry survived"
        assert cache.stats["flushes"] == 0
    finally:
        cache.disconnect()
        engine.dispose()
