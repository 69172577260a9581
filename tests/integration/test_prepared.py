"""Named prepared statements over the raw extended protocol, across transaction pooling."""
import pytest

import pgwire
from pgwire import bind, close, describe, execute, flush, parse, sync


def clients(p, n):
    return [pgwire.connect(p.port) for _ in range(n)]


def test_named_statements_follow_clients_across_backends(proxy, mode):
    p = proxy(pool_mode=mode, pool_size=2 if mode == "transaction" else 20)
    cs = clients(p, 6)
    for i, c in enumerate(cs):
        r = c.extended(parse("stmt", f"SELECT $1::int + {i * 100}"), bind("stmt", [1]), execute())
        assert r.rows == [(str(1 + i * 100),)], r.errors
    for rnd in range(5):
        for i, c in enumerate(cs):
            r = c.extended(bind("stmt", [rnd]), execute())
            assert r.rows == [(str(rnd + i * 100),)], r.errors
    for c in cs:
        c.close()


def test_duplicate_statement_name_is_42p05(proxy, mode):
    p = proxy(pool_mode=mode)
    c = pgwire.connect(p.port)
    assert c.extended(parse("dup", "SELECT 1")).errors == []
    r = c.extended(parse("dup", "SELECT 2"))
    assert r.error is not None and r.error.sqlstate == "42P05"
    r = c.extended(bind("dup"), execute())
    assert r.rows == [("1",)]
    c.close()


def test_close_statement_then_reuse_name(proxy, mode):
    p = proxy(pool_mode=mode, pool_size=2 if mode == "transaction" else 20)
    c, other = clients(p, 2)
    assert c.extended(parse("s", "SELECT 'first'")).errors == []
    other.simple("SELECT 1")
    r = c.extended(close(b"S", "s"))
    assert r.errors == [] and b"3" in r.types  # CloseComplete
    r = c.extended(bind("s"), execute())
    assert r.error is not None and r.error.sqlstate == "26000"
    r = c.extended(parse("s", "SELECT 'second'"), bind("s"), execute())
    assert r.rows == [("second",)], r.errors
    c.close()
    other.close()


def test_deallocate_all_forgets_statements(proxy, mode):
    p = proxy(pool_mode=mode, pool_size=2 if mode == "transaction" else 20)
    c, other = clients(p, 2)
    assert c.extended(parse("a", "SELECT 'A'"), parse("b", "SELECT 'B'")).errors == []
    assert c.simple("DEALLOCATE ALL").tags == ["DEALLOCATE ALL"]
    other.simple("SELECT 1")
    r = c.extended(bind("a"), execute())
    assert r.error is not None and r.error.sqlstate == "26000"
    r = c.extended(parse("a", "SELECT 'A2'"), bind("a"), execute())
    assert r.rows == [("A2",)], r.errors
    assert c.simple("DEALLOCATE a").tags == ["DEALLOCATE"]
    r = c.extended(bind("a"), execute())
    assert r.error is not None and r.error.sqlstate == "26000"
    c.close()
    other.close()


def test_describe_statement_returns_parameter_and_row_description(proxy, mode):
    p = proxy(pool_mode=mode, pool_size=2 if mode == "transaction" else 20)
    c, other = clients(p, 2)
    assert c.extended(parse("d", "SELECT $1::int AS x, $2::text AS y")).errors == []
    other.simple("SELECT 1")
    r = c.extended(describe(b"S", "d"))
    assert r.types[:2] == [b"t", b"T"], r.types
    c.close()
    other.close()


def test_parse_describe_flush_without_sync_keeps_backend(proxy, mode):
    """asyncpg style: Parse/Describe/Flush, read the answer, then Bind/Execute/Sync."""
    p = proxy(pool_mode=mode, pool_size=1 if mode == "transaction" else 20)
    c, other = clients(p, 2)
    c.send(parse("f", "SELECT $1::int * 3") + describe(b"S", "f") + flush())
    seen = []
    while len(seen) < 3:
        t, _ = c.read_msg()
        seen.append(t)
    assert seen == [b"1", b"t", b"T"]
    r = c.extended(bind("f", [14]), execute())
    assert r.rows == [("42",)], r.errors
    r = other.simple("SELECT 'other'")
    assert r.rows == [("other",)]
    r = c.extended(bind("f", [2]), execute())
    assert r.rows == [("6",)], r.errors
    c.close()
    other.close()


def test_unnamed_statement_and_portal_row_limits(proxy, mode):
    p = proxy(pool_mode=mode)
    c = pgwire.connect(p.port)
    assert c.simple("BEGIN").tags == ["BEGIN"]
    r = c.extended(parse("", "SELECT g FROM generate_series(1, 10) g"), bind("", portal="p1"),
                   execute("p1", 4), execute("p1", 4), execute("p1", 4))
    assert [row[0] for row in r.rows] == [str(i) for i in range(1, 11)]
    assert r.types.count(b"s") == 2  # PortalSuspended twice, then CommandComplete
    assert r.status == b"T"
    assert c.simple("COMMIT").tags == ["COMMIT"]
    c.close()


def test_error_in_extended_batch_skips_to_sync(proxy, mode):
    p = proxy(pool_mode=mode)
    c = pgwire.connect(p.port)
    r = c.extended(parse("", "SELECT 1/0"), bind(""), execute(), parse("", "SELECT 'skipped'"), bind(""), execute())
    assert r.error is not None and r.error.sqlstate == "22012"
    assert r.rows == []
    assert r.status == b"I"
    r = c.extended(parse("", "SELECT 'after'"), bind(""), execute())
    assert r.rows == [("after",)]
    c.close()


@pytest.mark.proxy_only
def test_server_statements_are_capped_and_reprepared(proxy):
    """--max-server-statements bounds what piles up on a backend; statements
    cleared from it are re-Parsed transparently on their next use."""
    cap = 5
    p = proxy(pool_mode="transaction", pool_size=1,
              extra=["--max-server-statements", str(cap)])
    c = pgwire.connect(p.port)
    for i in range(4 * cap):
        r = c.extended(parse(f"s{i}", f"SELECT {i} + $1::int"), bind(f"s{i}", [1]), execute())
        assert r.rows == [(str(i + 1),)], r.errors
    observer = p.connect()          # same backend: the pool has one
    cur = observer.cursor()
    cur.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '_pgv_%'")
    assert cur.fetchone()[0] <= cap
    for i in range(4 * cap):        # every statement still works
        r = c.extended(bind(f"s{i}", [2]), execute())
        assert r.rows == [(str(i + 2),)], r.errors
    observer.close()
    c.close()
