"""Real drivers through the proxy: psycopg2, psycopg 3 (server-side prepared), asyncpg."""
import asyncio
import threading

import asyncpg
import psycopg
import psycopg2
import psycopg2.extras
import pytest


# ---------------------------------------------------------------- psycopg2

def test_psycopg2_commit_visible_rollback_not(proxy, mode, uniq):
    p = proxy(pool_mode=mode)
    w = p.connect(autocommit=False)
    r = p.connect()
    cur = w.cursor()
    cur.execute(f"CREATE TABLE {uniq} (id int PRIMARY KEY, v text)")
    w.commit()
    cur.execute(f"INSERT INTO {uniq} VALUES (1, 'kept')")
    w.commit()
    cur.execute(f"INSERT INTO {uniq} VALUES (2, 'dropped')")
    w.rollback()
    rc = r.cursor()
    rc.execute(f"SELECT id, v FROM {uniq} ORDER BY id")
    assert rc.fetchall() == [(1, "kept")]
    # uncommitted work is invisible to the other client until commit
    cur.execute(f"INSERT INTO {uniq} VALUES (3, 'late')")
    rc.execute(f"SELECT count(*) FROM {uniq}")
    assert rc.fetchone() == (1,)
    w.commit()
    rc.execute(f"SELECT count(*) FROM {uniq}")
    assert rc.fetchone() == (2,)
    rc.execute(f"DROP TABLE {uniq}")
    w.close()
    r.close()


def test_psycopg2_named_cursor_inside_transaction(proxy, mode):
    p = proxy(pool_mode=mode)
    conn = p.connect(autocommit=False)
    cur = conn.cursor(name="big_cursor")
    cur.itersize = 500
    cur.execute("SELECT g, g * 2 FROM generate_series(1, 10000) g")
    total, count = 0, 0
    for a, b in cur:
        assert b == 2 * a
        total += a
        count += 1
    assert (count, total) == (10000, 10000 * 10001 // 2)
    cur.close()
    # fetchmany on a second named cursor in the same transaction
    cur2 = conn.cursor(name="second")
    cur2.execute("SELECT g FROM generate_series(1, 100) g")
    assert [r[0] for r in cur2.fetchmany(10)] == list(range(1, 11))
    assert [r[0] for r in cur2.fetchmany(5)] == list(range(11, 16))
    cur2.close()
    conn.commit()
    conn.close()


def test_psycopg2_withhold_cursor_survives_commit_in_session_mode(proxy):
    p = proxy(pool_mode="session")
    conn = p.connect(autocommit=False)
    cur = conn.cursor(name="held", withhold=True)
    cur.execute("SELECT g FROM generate_series(1, 1000) g")
    first = cur.fetchmany(100)
    conn.commit()
    rest = cur.fetchall()
    assert [r[0] for r in first + rest] == list(range(1, 1001))
    cur.close()
    conn.close()


def test_psycopg2_executemany_and_execute_values(proxy, mode, uniq):
    p = proxy(pool_mode=mode)
    conn = p.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {uniq} (id int PRIMARY KEY, v text)")
    cur.executemany(f"INSERT INTO {uniq} VALUES (%s, %s)", [(i, f"v{i}") for i in range(1000)])
    psycopg2.extras.execute_values(cur, f"INSERT INTO {uniq} VALUES %s",
                                   [(i, f"w{i}") for i in range(1000, 3000)], page_size=500)
    conn.commit()
    cur.execute(f"SELECT count(*), sum(id), count(*) FILTER (WHERE v LIKE 'w%%') FROM {uniq}")
    assert cur.fetchone() == (3000, 3000 * 2999 // 2, 2000)
    cur.execute(f"DROP TABLE {uniq}")
    conn.commit()
    conn.close()


def test_psycopg2_threads_share_pool(proxy, mode):
    p = proxy(pool_mode=mode, pool_size=4 if mode == "transaction" else 20)
    errors, results = [], {}

    def worker(n):
        try:
            conn = p.connect()
            cur = conn.cursor()
            acc = 0
            for i in range(50):
                cur.execute("SELECT %s::int + %s::int", (n, i))
                acc += cur.fetchone()[0]
            results[n] = acc
            conn.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert results == {n: 50 * n + sum(range(50)) for n in range(12)}


# ---------------------------------------------------------------- psycopg 3

def test_psycopg3_prepared_statements_mix_backends(proxy, mode):
    """10 clients, pool_size 2: named statements must work whichever backend runs them."""
    p = proxy(pool_mode=mode, pool_size=2 if mode == "transaction" else 20)
    conns = [psycopg.connect(p.dsn, autocommit=True, prepare_threshold=0) for _ in range(10)]
    try:
        for rnd in range(3):
            for k in range(40):
                for ci, c in enumerate(conns):
                    row = c.execute(f"SELECT %s::int + {k}, %s::text", (ci, f"r{rnd}")).fetchone()
                    assert row == (ci + k, f"r{rnd}")
        if mode == "session" or not p.is_proxy:
            # Same backend for the whole session: the statements really are server-side.
            n = conns[0].execute("SELECT count(*) FROM pg_prepared_statements "
                                 "WHERE name LIKE '_pg3_%%'").fetchone()[0]
            assert n >= 40
    finally:
        for c in conns:
            c.close()


def test_psycopg3_statement_cache_rotation_deallocates(proxy, mode):
    """psycopg keeps 100 prepared statements and DEALLOCATEs older ones as it goes."""
    p = proxy(pool_mode=mode, pool_size=2 if mode == "transaction" else 20)
    conns = [psycopg.connect(p.dsn, autocommit=True, prepare_threshold=0) for _ in range(3)]
    try:
        for k in range(150):
            for ci, c in enumerate(conns):
                assert c.execute(f"SELECT {k} + %s::int", (ci,)).fetchone() == (k + ci,)
        for k in range(150):  # older ones were evicted: prepared again under new names
            for ci, c in enumerate(conns):
                assert c.execute(f"SELECT {k} + %s::int", (ci,)).fetchone() == (k + ci,)
    finally:
        for c in conns:
            c.close()


def test_psycopg3_pipeline_batch(proxy, mode, uniq):
    p = proxy(pool_mode=mode)
    with psycopg.connect(p.dsn, autocommit=True, prepare_threshold=0) as conn:
        conn.execute(f"CREATE TABLE {uniq} (id int PRIMARY KEY, v text)")
        with conn.pipeline():
            with conn.transaction():
                for i in range(200):
                    conn.execute(f"INSERT INTO {uniq} VALUES (%s, %s)", (i, f"v{i}"))
            cur = conn.execute(f"SELECT count(*), sum(id) FROM {uniq}")
        assert cur.fetchone() == (200, 199 * 200 // 2)
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int * 10", (i,)) for i in range(50)]
        assert [c.fetchone()[0] for c in curs] == [i * 10 for i in range(50)]
        conn.execute(f"DROP TABLE {uniq}")


def test_psycopg3_pipeline_error_aborts_batch_then_recovers(proxy, mode, uniq):
    p = proxy(pool_mode=mode)
    with psycopg.connect(p.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {uniq} (id int PRIMARY KEY)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            with conn.pipeline():
                with conn.transaction():
                    conn.execute(f"INSERT INTO {uniq} VALUES (%s)", (1,))
                    conn.execute(f"INSERT INTO {uniq} VALUES (%s)", (1,))
                    conn.execute(f"INSERT INTO {uniq} VALUES (%s)", (2,))
        assert conn.execute(f"SELECT count(*) FROM {uniq}").fetchone() == (0,)
        conn.execute(f"DROP TABLE {uniq}")


def test_psycopg3_rollback_triggers_deallocate_all_and_reprepare(proxy, mode, uniq):
    """After a ROLLBACK psycopg sends DEALLOCATE ALL and prepares again under new names."""
    p = proxy(pool_mode=mode, pool_size=2 if mode == "transaction" else 20)
    a = psycopg.connect(p.dsn, prepare_threshold=0)
    b = psycopg.connect(p.dsn, autocommit=True, prepare_threshold=0)
    try:
        b.execute(f"CREATE TABLE {uniq} (id int)")
        for i in range(5):
            a.execute(f"INSERT INTO {uniq} VALUES (%s)", (i,))
            assert a.execute(f"SELECT count(*) FROM {uniq} WHERE id <= %s", (i,)).fetchone() == (i + 1,)
        a.rollback()  # -> DEALLOCATE ALL on the next command
        assert b.execute(f"SELECT count(*) FROM {uniq}").fetchone() == (0,)
        for i in range(5):
            a.execute(f"INSERT INTO {uniq} VALUES (%s)", (i,))
            assert a.execute(f"SELECT count(*) FROM {uniq} WHERE id <= %s", (i,)).fetchone() == (i + 1,)
            b.execute("SELECT %s::int", (i,))
        a.commit()
        assert b.execute(f"SELECT count(*), sum(id) FROM {uniq}").fetchone() == (5, 10)
        a.execute("DEALLOCATE ALL")
        a.commit()
        # psycopg still believes its statements exist; new statements prepare fine.
        assert a.execute("SELECT 'fresh' || %s::text", ("x",)).fetchone() == ("freshx",)
        a.commit()
        b.execute(f"DROP TABLE {uniq}")
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------- asyncpg

def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 100))


def test_asyncpg_pool_with_statement_cache(proxy, mode):
    """20 asyncpg connections (default statement cache) on 3 backends in transaction mode."""
    p = proxy(pool_mode=mode, pool_size=3 if mode == "transaction" else 25)

    async def main():
        pool = await asyncpg.create_pool(p.dsn, min_size=20, max_size=20)
        try:
            async def one(i):
                a = await pool.fetchval(f"SELECT $1::int + {i % 25}", i)
                row = await pool.fetchrow("SELECT $1::text AS t, $2::int * 2 AS d", f"s{i}", i)
                return a, row["t"], row["d"]
            res = await asyncio.gather(*(one(i) for i in range(600)))
            assert res == [(i + i % 25, f"s{i}", 2 * i) for i in range(600)]
        finally:
            await pool.close()

    run(main())


def test_asyncpg_prepare_executemany_transactions(proxy, mode, uniq):
    p = proxy(pool_mode=mode, pool_size=3 if mode == "transaction" else 25)

    async def main():
        conns = [await asyncpg.connect(p.dsn) for _ in range(6)]
        try:
            c0 = conns[0]
            await c0.execute(f"CREATE TABLE {uniq} (id int PRIMARY KEY, v text)")
            await c0.executemany(f"INSERT INTO {uniq} VALUES ($1, $2)", [(i, f"v{i}") for i in range(1000)])
            # conn.prepare() sends Parse/Describe/Flush and no Sync: the backend stays with
            # that client until its first Bind/Execute/Sync, so use each statement at once
            # (6 clients on 3 backends), then reuse it after the others moved the backends.
            async def reader(ci):
                stmt = await conns[ci].prepare(f"SELECT v FROM {uniq} WHERE id = $1")
                out = []
                for i in range(ci, 1000, 37):
                    out.append(await stmt.fetchval(i))
                    await asyncio.sleep(0)
                return out
            res = await asyncio.gather(*(reader(ci) for ci in range(6)))
            for ci, out in enumerate(res):
                assert out == [f"v{i}" for i in range(ci, 1000, 37)]

            # rolled-back transaction leaves nothing; committed one stays
            with pytest.raises(RuntimeError):
                async with conns[1].transaction():
                    await conns[1].execute(f"INSERT INTO {uniq} VALUES (5000, 'x')")
                    raise RuntimeError("abort")
            async with conns[2].transaction():
                await conns[2].execute(f"INSERT INTO {uniq} VALUES (6000, 'y')")
                assert await conns[2].fetchval(f"SELECT count(*) FROM {uniq}") == 1001
            assert await conns[3].fetchval(f"SELECT count(*) FROM {uniq} WHERE id >= 5000") == 1
            # a statement error inside a transaction
            with pytest.raises(asyncpg.UniqueViolationError):
                async with conns[4].transaction():
                    await conns[4].execute(f"INSERT INTO {uniq} VALUES (1, 'dup')")
            assert await conns[4].fetchval("SELECT 41 + 1") == 42
            await c0.execute(f"DROP TABLE {uniq}")
        finally:
            for c in conns:
                await c.close()

    run(main())


def test_asyncpg_cursor_in_transaction(proxy, mode):
    p = proxy(pool_mode=mode)

    async def main():
        conn = await asyncpg.connect(p.dsn)
        try:
            async with conn.transaction():
                total = 0
                async for rec in conn.cursor("SELECT g FROM generate_series(1, 5000) g", prefetch=300):
                    total += rec[0]
            assert total == 5000 * 5001 // 2
        finally:
            await conn.close()

    run(main())
