"""CancelRequest through the proxy reaches the right backend."""
import asyncio
import threading
import time

import asyncpg
import psycopg2
import psycopg2.errors
import pytest


def sleepers(pg, pattern="pg_sleep(30)"):
    conn = pg.connect()
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                "AND pid <> pg_backend_pid()", (f"%{pattern}%",))
    n = cur.fetchone()[0]
    conn.close()
    return n


def wait_no_sleepers(pg, pattern="pg_sleep(30)", timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sleepers(pg, pattern) == 0:
            return True
        time.sleep(0.05)
    return False


def cancel_later(conn, delay=0.5, pg=None, query="pg_sleep(30)"):
    """Cancel conn's query after `delay`; with `pg`, only once Postgres shows
    the query running (a loaded box can take longer than `delay` to get it there)."""
    def fire():
        if pg is not None:
            d = pg.connect()
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    cur = d.cursor()
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                "AND query LIKE %s AND pid <> pg_backend_pid()", (f"%{query}%",))
                    if cur.fetchone()[0]:
                        break
                    time.sleep(0.02)
            finally:
                d.close()
        conn.cancel()
    t = threading.Timer(delay, fire)
    t.start()
    return t


def test_psycopg2_cancel_long_query(proxy, mode, pg):
    p = proxy(pool_mode=mode)
    conn = p.connect()
    other = p.connect()  # another client, must be unaffected
    cur = conn.cursor()
    t0 = time.monotonic()
    t = cancel_later(conn, pg=pg)
    with pytest.raises(psycopg2.errors.QueryCanceled) as ei:
        cur.execute("SELECT pg_sleep(30)")
    t.join()
    assert ei.value.pgcode == "57014"
    assert time.monotonic() - t0 < 5
    assert wait_no_sleepers(pg)
    cur.execute("SELECT 'after cancel'")
    assert cur.fetchone() == ("after cancel",)
    ocur = other.cursor()
    ocur.execute("SELECT 5")
    assert ocur.fetchone() == (5,)
    conn.close()
    other.close()


def test_psycopg2_cancel_inside_transaction(proxy, mode, pg):
    p = proxy(pool_mode=mode)
    conn = p.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("SELECT 1")
    t = cancel_later(conn, pg=pg)
    with pytest.raises(psycopg2.errors.QueryCanceled):
        cur.execute("SELECT pg_sleep(30)")
    t.join()
    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
        cur.execute("SELECT 2")
    conn.rollback()
    cur.execute("SELECT 3")
    assert cur.fetchone() == (3,)
    conn.commit()
    conn.close()


def test_cancel_hits_only_its_own_query(proxy, mode, pg):
    """Two clients sleep; cancelling one leaves the other's query running to completion."""
    p = proxy(pool_mode=mode)
    a, b = p.connect(), p.connect()
    result = {}

    def run_b():
        c = b.cursor()
        c.execute("SELECT pg_sleep(1.5), 'b done'")
        result["b"] = c.fetchone()[1]

    tb = threading.Thread(target=run_b)
    tb.start()
    t = cancel_later(a, 0.4, pg=pg)
    with pytest.raises(psycopg2.errors.QueryCanceled):
        a.cursor().execute("SELECT pg_sleep(30)")
    t.join()
    tb.join(10)
    assert result.get("b") == "b done"
    a.close()
    b.close()


def test_asyncpg_timeout_cancels_query(proxy, mode, pg):
    p = proxy(pool_mode=mode)

    async def main():
        conn = await asyncpg.connect(p.dsn)
        try:
            t0 = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await conn.fetchval("SELECT pg_sleep(30)", timeout=0.7)
            assert time.monotonic() - t0 < 5
            assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
            # statement_timeout-style cancel from the server side also surfaces cleanly
            with pytest.raises(asyncpg.QueryCanceledError):
                async with conn.transaction():
                    await conn.execute("SET LOCAL statement_timeout = '200ms'")
                    await conn.execute("SELECT pg_sleep(30)")
            assert await conn.fetchval("SELECT 'ok'") == "ok"
        finally:
            await conn.close()

    asyncio.run(main())
    assert wait_no_sleepers(pg)
