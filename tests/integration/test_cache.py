"""The result cache's promises (DESIGN.md section 1), each against a real Postgres.

Until the replication stream lands, a write that bypasses the proxy is not seen:
the tests use exactly that to prove a read was served from the cache
(`wait_cached`), and every freshness test first proves its read *was* cached,
so it cannot pass merely because nothing is cached.
"""
import time

import psycopg
import psycopg2
import pytest


def one(conn, sql, params=None):
    cur = conn.cursor()
    cur.execute(sql, params)
    row = cur.fetchone()
    return row[0] if row and len(row) == 1 else row


def wait_cached_by(read, bump, what, timeout=10.0):
    """Call read() through the proxy until a direct (bypassing) change made by
    bump() stays invisible to it: the answer then comes from the cache.
    Returns the cached answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = read()
        read()
        bump()
        if read() == before:
            return before
        time.sleep(0.05)
    pytest.fail(f"never served from the cache: {what}")


def wait_cached(pconn, direct, sql, bump_sql, timeout=10.0):
    return wait_cached_by(lambda: one(pconn, sql), lambda: direct.cursor().execute(bump_sql),
                          sql, timeout)


def assert_not_cached(pconn, direct, sql, bump_sql, expected):
    """Run sql a few times (long enough for the proxy to learn its names),
    change its answer behind the proxy's back, and expect to see the change."""
    for _ in range(3):
        one(pconn, sql)
        time.sleep(0.1)
    direct.cursor().execute(bump_sql)
    assert one(pconn, sql) == expected


# These tests probe the cache with writes that bypass the proxy (a direct
# connection changes a row; an answer that stays the same came from the
# cache).  So the proxy must NOT see those writes: TTL mode with a long TTL.
# test_stream.py covers what the replication stream does with them.
BLIND = ["--invalidation", "ttl", "--cache-ttl", "1h"]


@pytest.fixture
def cproxy(proxy):
    return proxy(pool_mode="transaction", extra=BLIND)


def test_repeated_read_is_served_from_cache(cproxy, pg, table):
    p, d = cproxy.connect(), pg.connect()
    cached = wait_cached(p, d, f"SELECT sum(v) FROM {table}", f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    assert one(d, f"SELECT sum(v) FROM {table}") != cached  # Postgres moved on; the cache did not


def test_fresh_read_after_autocommit_write_on_another_connection(cproxy, pg, table):
    reader, writer, d = cproxy.connect(), cproxy.connect(), pg.connect()
    sql = f"SELECT v FROM {table} WHERE id = 3"
    wait_cached(reader, d, sql, f"UPDATE {table} SET v = v + 1 WHERE id = 3")
    writer.cursor().execute(f"UPDATE {table} SET v = 777 WHERE id = 3")
    assert one(reader, sql) == 777


def test_fresh_read_after_committed_transaction_on_another_connection(cproxy, pg, table):
    reader, writer, d = cproxy.connect(), cproxy.connect(autocommit=False), pg.connect()
    sql = f"SELECT count(*) FROM {table}"
    wait_cached(reader, d, sql, f"INSERT INTO {table} VALUES ((SELECT max(id) + 1 FROM {table}), 0, 'x')")
    cur = writer.cursor()
    cur.execute(f"INSERT INTO {table} VALUES (1000, 1, 'w')")
    cached = one(reader, sql)
    assert cached != one(d, sql)  # still the cached answer: nothing committed yet
    writer.commit()
    assert one(reader, sql) == one(d, sql)


def test_rollback_changes_nothing_and_reads_stay_right(cproxy, pg, table):
    reader, writer, d = cproxy.connect(), cproxy.connect(autocommit=False), pg.connect()
    sql = f"SELECT v FROM {table} WHERE id = 2"
    wait_cached(reader, d, sql, f"UPDATE {table} SET v = v + 1 WHERE id = 2")
    writer.cursor().execute(f"UPDATE {table} SET v = -1 WHERE id = 2")
    writer.rollback()
    assert one(reader, sql) != -1


def test_transaction_sees_its_own_write(cproxy, pg, table):
    c, d = cproxy.connect(), pg.connect()
    sql = f"SELECT note FROM {table} WHERE id = 4"
    wait_cached(c, d, sql, f"UPDATE {table} SET note = note || '+' WHERE id = 4")
    c.autocommit = False
    cur = c.cursor()
    cur.execute(f"UPDATE {table} SET note = 'mine' WHERE id = 4")
    cur.execute(sql)
    assert cur.fetchone()[0] == "mine"
    c.commit()
    assert one(c, sql) == "mine"


def test_write_through_extended_protocol_invalidates(cproxy, pg, table):
    reader, d = cproxy.connect(), pg.connect()
    sql = f"SELECT v FROM {table} WHERE id = 5"
    wait_cached(reader, d, sql, f"UPDATE {table} SET v = v + 1 WHERE id = 5")
    with psycopg.connect(cproxy.dsn, autocommit=True, prepare_threshold=0) as w:
        w.execute(f"UPDATE {table} SET v = %s WHERE id = %s", (4242, 5))
        w.execute(f"UPDATE {table} SET v = %s WHERE id = %s", (4343, 5))
    assert one(reader, sql) == 4343


def test_repeatable_read_is_never_served_from_cache(cproxy, pg, table):
    c, d = cproxy.connect(), pg.connect()
    sql = f"SELECT v FROM {table} WHERE id = 6"
    cached = wait_cached(c, d, sql, f"UPDATE {table} SET v = v + 1 WHERE id = 6")
    c.autocommit = False
    c.set_session(isolation_level="REPEATABLE READ")
    cur = c.cursor()
    cur.execute(sql)
    assert cur.fetchone()[0] == one(d, sql) != cached
    c.rollback()


def test_volatile_functions_are_never_cached(cproxy, pg, uniq):
    c = cproxy.connect()
    randoms = {one(c, "SELECT random()") for _ in range(5)}
    assert len(randoms) == 5
    c.cursor().execute(f"CREATE SEQUENCE {uniq}")
    values = [one(c, f"SELECT nextval('{uniq}')") for _ in range(5)]
    assert values == [1, 2, 3, 4, 5]
    stamps = {one(c, "SELECT clock_timestamp()") for _ in range(3)}
    assert len(stamps) == 3
    times = set()
    for _ in range(3):
        times.add(one(c, "SELECT now()"))
        time.sleep(0.01)
    assert len(times) == 3


def test_user_volatile_function_is_not_cached(cproxy, pg, table):
    c, d = cproxy.connect(), pg.connect()
    d.cursor().execute(f"CREATE FUNCTION {table}_f() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT max(v) FROM {table}'")
    assert_not_cached(c, d, f"SELECT {table}_f()", f"UPDATE {table} SET v = 99999 WHERE id = 1", 99999)


def test_search_path_is_part_of_the_key(cproxy, pg, uniq):
    d = pg.connect()
    for schema, value in (("a", 1), ("b", 2)):
        d.cursor().execute(f"CREATE SCHEMA {uniq}_{schema}")
        d.cursor().execute(f"CREATE TABLE {uniq}_{schema}.t (v int)")
        d.cursor().execute(f"INSERT INTO {uniq}_{schema}.t VALUES ({value})")
    try:
        ca, cb = cproxy.connect(), cproxy.connect()
        ca.cursor().execute(f"SET search_path = {uniq}_a")
        cb.cursor().execute(f"SET search_path = {uniq}_b")
        for _ in range(5):
            assert one(ca, "SELECT v FROM t") == 1
            assert one(cb, "SELECT v FROM t") == 2
            time.sleep(0.05)
    finally:
        d.cursor().execute(f"DROP SCHEMA {uniq}_a, {uniq}_b CASCADE")


def test_row_level_security_users_never_see_each_others_rows(cproxy, pg, uniq):
    d = pg.connect()
    cur = d.cursor()
    cur.execute(f"CREATE TABLE {uniq} (owner int, secret text)")
    cur.execute(f"INSERT INTO {uniq} VALUES (1, 'one'), (2, 'two')")
    cur.execute(f"ALTER TABLE {uniq} ENABLE ROW LEVEL SECURITY")
    cur.execute(f"CREATE POLICY p ON {uniq} USING (owner = current_setting('app.user_id')::int)")
    cur.execute(f"GRANT SELECT ON {uniq} TO app")
    try:
        c1, c2 = cproxy.connect(), cproxy.connect()
        for c, uid in ((c1, 1), (c2, 2)):
            c.cursor().execute("SET ROLE app")
            c.cursor().execute(f"SET app.user_id = '{uid}'")
        sql = f"SELECT string_agg(secret, ',') FROM {uniq}"
        for _ in range(5):
            assert one(c1, sql) == "one"
            assert one(c2, sql) == "two"
            time.sleep(0.05)
        c1.cursor().execute("SET app.user_id = '2'")
        assert one(c1, sql) == "two"
    finally:
        cur.execute(f"DROP TABLE {uniq}")


def test_role_change_is_part_of_the_key(cproxy, pg, uniq):
    d = pg.connect()
    d.cursor().execute(f"CREATE TABLE {uniq} (v int)")
    d.cursor().execute(f"INSERT INTO {uniq} VALUES (1)")
    try:
        c = cproxy.connect()
        sql = f"SELECT count(*) FROM {uniq}"
        for _ in range(3):
            assert one(c, sql) == 1
            time.sleep(0.05)
        c.cursor().execute("SET ROLE app")  # app has no privilege on the table
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            one(c, sql)
    finally:
        d.cursor().execute(f"DROP TABLE {uniq}")


def test_view_read_is_invalidated_by_a_write_to_its_table(cproxy, pg, table):
    d, c = pg.connect(), cproxy.connect()
    d.cursor().execute(f"CREATE VIEW {table}_v AS SELECT sum(v) AS s FROM {table}")
    sql = f"SELECT s FROM {table}_v"
    wait_cached(c, d, sql, f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    c.cursor().execute(f"UPDATE {table} SET v = 0")
    assert one(c, sql) == 0


def test_trigger_side_effects_are_invalidated(cproxy, pg, table):
    d, c = pg.connect(), cproxy.connect()
    cur = d.cursor()
    cur.execute(f"CREATE TABLE {table}_log (n int)")
    cur.execute(f"""CREATE FUNCTION {table}_trg() RETURNS trigger LANGUAGE plpgsql AS
                    'BEGIN INSERT INTO {table}_log VALUES (NEW.id); RETURN NEW; END'""")
    cur.execute(f"CREATE TRIGGER t AFTER INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_trg()")
    sql = f"SELECT count(*) FROM {table}_log"
    wait_cached(c, d, sql, f"INSERT INTO {table}_log VALUES (0)")
    c.cursor().execute(f"INSERT INTO {table} VALUES (500, 1, 'via trigger')")
    assert one(c, sql) == one(d, sql)
    cur.execute(f"DROP TABLE {table}_log")


def test_cascading_delete_invalidates_the_child_table(cproxy, pg, table):
    d, c = pg.connect(), cproxy.connect()
    d.cursor().execute(f"CREATE TABLE {table}_child (id serial, parent int REFERENCES {table} ON DELETE CASCADE)")
    d.cursor().execute(f"INSERT INTO {table}_child (parent) SELECT id FROM {table}")
    sql = f"SELECT count(*) FROM {table}_child"
    wait_cached(c, d, sql, f"INSERT INTO {table}_child (parent) VALUES (1)")
    c.cursor().execute(f"DELETE FROM {table} WHERE id = 1")
    assert one(c, sql) == one(d, sql)


def test_ddl_through_the_proxy_invalidates(cproxy, pg, table):
    d, c = pg.connect(), cproxy.connect()
    sql = f"SELECT * FROM {table} WHERE id = 7"
    wait_cached(c, d, sql, f"UPDATE {table} SET v = v + 1 WHERE id = 7")
    c.cursor().execute(f"ALTER TABLE {table} ADD COLUMN extra int DEFAULT 5")
    assert one(c, sql)[-1] == 5


def test_results_over_max_entry_are_not_stored(proxy, pg, table):
    p = proxy(pool_mode="transaction", extra=BLIND + ["--cache-max-entry", "2kB"])
    c, d = p.connect(), pg.connect()
    wait_cached(c, d, f"SELECT v FROM {table} WHERE id = 8", f"UPDATE {table} SET v = v + 1 WHERE id = 8")
    big = f"SELECT repeat(note, 2000) FROM {table} WHERE id = 9"  # 4 kB
    for _ in range(3):
        one(c, big)
        time.sleep(0.1)
    d.cursor().execute(f"UPDATE {table} SET note = 'changed' WHERE id = 9")
    assert one(c, big).startswith("changed")


def test_skip_hint_bypasses_the_cache(cproxy, pg, table):
    c, d = cproxy.connect(), pg.connect()
    assert_not_cached(c, d, f"SELECT /* pgvalet:skip */ v FROM {table} WHERE id = 10",
                      f"UPDATE {table} SET v = 31337 WHERE id = 10", 31337)


def test_errors_are_not_cached(cproxy, pg, uniq):
    c, d = cproxy.connect(), pg.connect()
    d.cursor().execute(f"CREATE TABLE {uniq} (v int)")
    d.cursor().execute(f"INSERT INTO {uniq} VALUES (0)")
    sql = f"SELECT 1 / v FROM {uniq}"
    for _ in range(3):
        with pytest.raises(psycopg2.errors.DivisionByZero):
            one(c, sql)
        time.sleep(0.1)
    d.cursor().execute(f"UPDATE {uniq} SET v = 1")
    assert one(c, sql) == 1
    d.cursor().execute(f"DROP TABLE {uniq}")


def test_cache_off_with_size_zero(proxy, pg, table):
    p = proxy(pool_mode="transaction", extra=BLIND + ["--cache-size", "0"])
    c, d = p.connect(), pg.connect()
    assert_not_cached(c, d, f"SELECT v FROM {table} WHERE id = 1",
                      f"UPDATE {table} SET v = 5150 WHERE id = 1", 5150)
    assert "result cache off" in p.stderr


# ---- extended protocol ------------------------------------------------------

import asyncio
import struct

import asyncpg

import pgwire


def raw_exchange(w, data):
    """Send data, return every byte the server answered up to ReadyForQuery."""
    w.send(data)
    out = []
    while True:
        t, payload = w.read_msg()
        out.append(t + struct.pack("!i", len(payload) + 4) + payload)
        if t == b"Z":
            return b"".join(out)


def bind_binary(params, stmt="", portal=""):
    """Bind with text parameters and binary results."""
    body = pgwire.cstr(portal) + pgwire.cstr(stmt) + struct.pack("!hh", 0, len(params))
    for p in params:
        b = str(p).encode()
        body += struct.pack("!i", len(b)) + b
    return pgwire.msg(b"B", body + struct.pack("!hh", 1, 1))


def until_served_from_cache(exchange, direct, like, timeout=20.0):
    """Repeat exchange() until Postgres did not run the statement (pg_stat_statements
    query LIKE like) for one of them: the cache answered.  Every answer, in order."""
    direct.cursor().execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def server_calls():
        return one(direct, "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                           "WHERE query LIKE %s", (like,))

    answers = []
    deadline = time.monotonic() + timeout
    while True:
        before = server_calls()
        answers.append(exchange())
        if server_calls() == before:
            return answers
        assert time.monotonic() < deadline, "never served from the cache"
        time.sleep(0.05)


def test_extended_replay_is_byte_identical_to_the_server(cproxy, pg, table):
    sql = f"SELECT id, v, note, v::float8 / 3 AS third FROM {table} WHERE id <= $1 ORDER BY id"
    group = (pgwire.parse("", sql, (23,)) + bind_binary([4]) + pgwire.describe(b"P")
             + pgwire.execute() + pgwire.sync())
    direct = pgwire.connect(pg.port)
    expected = raw_exchange(direct, group)
    w = pgwire.connect(cproxy.port)
    d = pg.connect()
    answers = until_served_from_cache(lambda: raw_exchange(w, group), d,
                                      f"%FROM {table} WHERE id <= $1%")
    d.cursor().execute(f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    hit = raw_exchange(w, group)
    assert hit == expected  # the change bypassed the proxy: this came from the cache
    assert all(a == expected for a in answers)
    assert raw_exchange(direct, group) != expected


def test_row_limited_execute_is_replayed_with_its_portal_suspended(cproxy, pg, table):
    """asyncpg's fetchrow is Bind + Execute(max_rows=1) + Sync: the answer ends in
    PortalSuspended, and the Sync closes the portal, so it is cacheable whole, under
    its row limit (the same query without a limit is another answer)."""
    sql = f"SELECT id, v FROM {table} WHERE id <= $1 ORDER BY id"

    def group(limit):
        return (pgwire.parse("", sql, (23,)) + bind_binary([4]) + pgwire.execute(max_rows=limit)
                + pgwire.sync())

    direct = pgwire.connect(pg.port)
    limited, full = raw_exchange(direct, group(1)), raw_exchange(direct, group(0))
    assert b"s\x00\x00\x00\x04" in limited and b"s\x00\x00\x00\x04" not in full
    w = pgwire.connect(cproxy.port)
    answers = until_served_from_cache(lambda: raw_exchange(w, group(1)), pg.connect(),
                                      f"%FROM {table} WHERE id <= $1%")
    cached = answers[-1]
    assert all(a == limited for a in answers)     # byte for byte, PortalSuspended included
    assert raw_exchange(w, group(0)) != cached    # the unlimited one is not that answer
    assert raw_exchange(w, group(2)).count(b"D\x00") == 2


def test_unnamed_statement_answered_from_cache_can_be_bound_again(cproxy, pg, table):
    sql = f"SELECT v FROM {table} WHERE id = $1"
    w = pgwire.connect(cproxy.port)
    group = pgwire.parse("", sql, (23,)) + pgwire.bind("", [2]) + pgwire.execute() + pgwire.sync()
    for _ in range(4):
        w.send(group)
        res = w.read_result()
        assert res.rows == [("20",)], res.errors
        time.sleep(0.1)
    # Bind the unnamed statement without a new Parse: a backend must get it.
    res = w.extended(pgwire.bind("", [3]), pgwire.execute())
    assert res.error is None and res.rows == [("30",)]


def test_prepared_statement_reads_are_cached_and_invalidated(cproxy, pg, table):
    d = pg.connect()
    with psycopg.connect(cproxy.dsn, autocommit=True, prepare_threshold=0) as c:
        sql = f"SELECT v FROM {table} WHERE id = %s"

        def read():
            return c.execute(sql, (6,)).fetchone()[0]

        wait_cached_by(read, lambda: d.cursor().execute(f"UPDATE {table} SET v = v + 1 WHERE id = 6"),
                       "a prepared read")
        with psycopg.connect(cproxy.dsn, autocommit=True) as w:
            w.execute(f"UPDATE {table} SET v = %s WHERE id = 6", (-6,))
        assert read() == -6


def test_asyncpg_statement_cache_reads_stay_fresh(cproxy, pg, table):
    async def run():
        conn = await asyncpg.connect(cproxy.dsn)
        try:
            sql = f"SELECT v FROM {table} WHERE id = $1"
            for _ in range(5):
                assert await conn.fetchval(sql, 7) == 70
                await asyncio.sleep(0.05)
            await conn.execute(f"UPDATE {table} SET v = 71 WHERE id = 7")
            assert await conn.fetchval(sql, 7) == 71
            async with conn.transaction():
                await conn.execute(f"UPDATE {table} SET v = 72 WHERE id = 7")
            assert await conn.fetchval(sql, 7) == 72
        finally:
            await conn.close()
    asyncio.run(run())


# ---- transaction blocks (lazy BEGIN) ----------------------------------------

def test_read_committed_block_reads_are_served_from_cache(cproxy, pg, table):
    c, d = cproxy.connect(autocommit=False), pg.connect()
    sql = f"SELECT v FROM {table} WHERE id = 8"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        before = one(c, sql)
        c.rollback()
        one(c, sql)
        c.commit()
        d.cursor().execute(f"UPDATE {table} SET v = v + 1 WHERE id = 8")
        after = one(c, sql)
        c.rollback()
        if after == before:
            return
    pytest.fail("reads inside BEGIN ... ROLLBACK never served from the cache")


def test_lazy_begin_reaches_the_server_before_the_first_write(cproxy, pg, table):
    c = cproxy.connect(autocommit=False)
    cur = c.cursor()
    cur.execute(f"SELECT v FROM {table} WHERE id = 9")   # BEGIN answered by the proxy
    cur.execute(f"UPDATE {table} SET v = -9 WHERE id = 9")  # the block must be real now
    cur.execute(f"SELECT v FROM {table} WHERE id = 9")
    assert cur.fetchone()[0] == -9
    c.rollback()
    assert one(pg.connect(), f"SELECT v FROM {table} WHERE id = 9") == 90
    assert one(c, f"SELECT v FROM {table} WHERE id = 9") == 90
    c.rollback()


def test_pgbench_style_begin_select_rollback_in_every_protocol(cproxy, pg, table, tmp_path):
    import os
    import subprocess
    script = tmp_path / "s.sql"
    script.write_text(f"BEGIN;\nSELECT v FROM {table} WHERE id = 1;\nROLLBACK;\n")
    env = dict(os.environ, PGPASSWORD="pgvalet-pass")
    for proto in ("simple", "extended", "prepared"):
        out = subprocess.run(["pgbench", "-n", "-t", "200", "-c", "2", "-M", proto, "-f", str(script),
                              "-h", "127.0.0.1", "-p", str(cproxy.port), "-U", "pgvalet", "appdb"],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "number of failed transactions: 0" in out.stdout or "failed" not in out.stdout
    c = cproxy.connect()
    assert one(c, "SELECT 1") == 1


# ---- row-level precision ----------------------------------------------------

def test_write_to_one_row_keeps_other_rows_point_lookups(cproxy, pg, table):
    c, w, d = cproxy.connect(), cproxy.connect(), pg.connect()
    row5, row6 = f"SELECT v FROM {table} WHERE id = 5", f"SELECT v FROM {table} WHERE id = 6"
    total = f"SELECT sum(v) FROM {table}"
    wait_cached(c, d, row6, f"UPDATE {table} SET note = note || '.' WHERE id = 1")
    wait_cached(c, d, total, f"UPDATE {table} SET note = note || '.' WHERE id = 1")
    cached6 = wait_cached(c, d, row6, f"UPDATE {table} SET v = v + 1000 WHERE id = 6")
    one(c, row5)
    w.cursor().execute(f"UPDATE {table} SET v = 555 WHERE id = 5")
    assert one(c, row5) == 555                       # the written row: fresh
    assert one(c, row6) == cached6 != one(d, row6)   # another row: still cached
    assert one(c, total) == one(d, total)            # table-wide: evicted


def test_row_precision_with_bound_parameters(cproxy, pg, table):
    d = pg.connect()
    with psycopg.connect(cproxy.dsn, autocommit=True) as c:
        def read(k):
            return c.execute(f"SELECT v FROM {table} WHERE id = %s", (k,)).fetchone()[0]

        cached3 = wait_cached_by(lambda: read(3),
                                 lambda: d.cursor().execute(f"UPDATE {table} SET v = v + 1 WHERE id = 3"),
                                 "a read with bound parameters")
        read(4)
        c.execute(f"UPDATE {table} SET v = %s WHERE id = %s", (-4, 4))
        assert read(4) == -4
        assert read(3) == cached3 != one(d, f"SELECT v FROM {table} WHERE id = 3")


def test_key_change_insert_and_delete_reach_the_lookups_of_their_keys(cproxy, pg, table):
    c, w, d = cproxy.connect(), cproxy.connect(), pg.connect()
    missing = f"SELECT v FROM {table} WHERE id = 60"
    wait_cached(c, d, f"SELECT v FROM {table} WHERE id = 1", f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    for _ in range(3):
        assert one(c, missing) is None
    w.cursor().execute(f"UPDATE {table} SET id = 60 WHERE id = 6")   # key moves 6 -> 60
    assert one(c, missing) == 60
    assert one(c, f"SELECT v FROM {table} WHERE id = 6") is None
    for _ in range(3):
        assert one(c, f"SELECT v FROM {table} WHERE id = 70") is None
    w.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (70, 7)")
    assert one(c, f"SELECT v FROM {table} WHERE id = 70") == 7
    w.cursor().execute(f"DELETE FROM {table} WHERE id IN (70, 60)")
    assert one(c, missing) is None
    assert one(c, f"SELECT v FROM {table} WHERE id = 70") is None


def test_insert_with_generated_key_reaches_lookups_of_unknown_keys(cproxy, pg, uniq):
    d = pg.connect()
    d.cursor().execute(f"CREATE TABLE {uniq} (id serial PRIMARY KEY, v int)")
    try:
        c, w = cproxy.connect(), cproxy.connect()
        for _ in range(3):
            assert one(c, f"SELECT v FROM {uniq} WHERE id = 1") is None
            time.sleep(0.1)
        w.cursor().execute(f"INSERT INTO {uniq} (v) VALUES (11)")
        assert one(c, f"SELECT v FROM {uniq} WHERE id = 1") == 11
    finally:
        d.cursor().execute(f"DROP TABLE {uniq}")


def test_write_by_another_column_reaches_every_point_lookup(cproxy, pg, table):
    c, w, d = cproxy.connect(), cproxy.connect(), pg.connect()
    row2 = f"SELECT note FROM {table} WHERE id = 2"
    wait_cached(c, d, row2, f"UPDATE {table} SET v = v + 1 WHERE id = 2")
    w.cursor().execute(f"UPDATE {table} SET note = 'by-v' WHERE v >= 0")
    assert one(c, row2) == "by-v"


# ---- memory -----------------------------------------------------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_memory_cap_holds_under_distinct_queries(proxy, pg, table):
    import conftest
    if "/asan/" in (conftest.BINARY or ""):
        pytest.skip("ASan's quarantine keeps freed memory resident: RSS says nothing here")
    cap_mib = 16
    p = proxy(pool_mode="transaction", extra=BLIND + ["--cache-size", f"{cap_mib}MB"])
    c = p.connect()
    one(c, f"SELECT v FROM {table} WHERE id = 1")
    time.sleep(0.3)
    for i in range(200):  # warm the process up: pools, buffers, catalog
        one(c, f"SELECT repeat('w', 1000) || {i} FROM {table} WHERE id = 1")
    base = rss_kib(p.proc.pid)
    n = 25000  # ~1.1 kB per result: about 1.7x the budget
    cur = c.cursor()
    for i in range(n):
        cur.execute(f"SELECT repeat('x', 1000) || {i} FROM {table} WHERE id = 1")
        cur.fetchone()
    grown = rss_kib(p.proc.pid) - base
    print(f"RSS grew {grown} KiB over {n} distinct results, cap {cap_mib} MiB")
    # the budget, plus what malloc keeps around freed chunks
    assert grown < (cap_mib + 8) * 1024, f"RSS grew {grown} KiB for a {cap_mib} MiB cache"
    # and it really was used: recent results are served from it
    d = pg.connect()
    last = f"SELECT repeat('x', 1000) || {n - 1} FROM {table} WHERE id = 1"
    d.cursor().execute(f"DELETE FROM {table} WHERE id = 1")
    assert one(c, last) is not None


# ---- coalescing -------------------------------------------------------------

def seq_scans(d, table):
    return one(d, f"SELECT seq_scan FROM pg_stat_user_tables WHERE relname = '{table}'")


def test_identical_concurrent_misses_run_once_upstream(cproxy, pg, uniq):
    import threading
    d = pg.connect()
    d.cursor().execute(f"CREATE TABLE {uniq} (v int)")  # no index: every read is a seq scan
    d.cursor().execute(f"INSERT INTO {uniq} SELECT g FROM generate_series(1, 10) g")
    try:
        warm = cproxy.connect()
        one(warm, f"SELECT count(*) FROM {uniq}, generate_series(1, 2) g")  # catalog learns the names
        time.sleep(1.5)
        before = seq_scans(d, uniq)
        slow = f"SELECT count(*) FROM {uniq}, generate_series(1, 3000000) g"
        conns = [cproxy.connect() for _ in range(8)]
        results, start = [], threading.Barrier(len(conns))

        def run(c):
            start.wait()
            results.append(one(c, slow))

        threads = [threading.Thread(target=run, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [30000000] * len(conns)
        time.sleep(1.5)  # table statistics reach pg_stat_user_tables within a second
        ran = seq_scans(d, uniq) - before
        assert 1 <= ran <= 2, f"{ran} upstream executions for {len(conns)} identical queries"
    finally:
        d.cursor().execute(f"DROP TABLE {uniq}")


@pytest.mark.parametrize("set_default", [
    "SET default_transaction_isolation = 'repeatable read'",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
], ids=["default_transaction_isolation", "session_characteristics"])
def test_session_default_repeatable_read_is_never_served(cproxy, pg, table, set_default):
    c, d = cproxy.connect(), pg.connect()
    sql = f"SELECT v FROM {table} WHERE id = 9"
    wait_cached(c, d, sql, f"UPDATE {table} SET v = v + 1 WHERE id = 9")
    c.cursor().execute(set_default)
    c.autocommit = False
    cur = c.cursor()
    cur.execute(sql)
    assert cur.fetchone()[0] == one(d, sql)
    cur.execute("SHOW transaction_isolation")
    assert cur.fetchone()[0] == "repeatable read"
    c.rollback()


def test_pool_timeout_inside_a_lazy_block_fails_the_block(proxy, pg, table):
    p = proxy(pool_mode="transaction", pool_size=1, extra=BLIND + ["--pool-timeout", "1s"])
    c = p.connect(autocommit=False)
    cur = c.cursor()
    cur.execute("SELECT 1")  # the proxy learns BEGIN is READ COMMITTED here
    c.rollback()
    time.sleep(0.3)
    holder = p.connect(autocommit=False)
    holder.cursor().execute("SELECT pg_backend_pid()")  # holds the only backend
    with pytest.raises(psycopg2.Error):
        cur.execute("SELECT pg_backend_pid()")  # BEGIN answered here; this one waits, then fails
    assert c.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR
    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
        cur.execute("SELECT 1")
    c.rollback()
    holder.rollback()
    assert one(c, "SELECT 2") == 2
    c.rollback()


def test_clients_holding_backends_never_wait_behind_a_miss_that_waits_for_one(proxy, pg, table):
    """Two READ COMMITTED blocks hold the only two backends; a third client
    misses on a key and waits for a backend.  When the two blocks read that
    key they must not park behind the third client's miss (it waits for a
    backend they hold, until the pool timeout): they read on their own
    backends, commit, and the third client is served.  (Extended protocol:
    that is where blocks holding a backend are served from the cache.)"""
    import threading
    p = proxy(pool_mode="transaction", pool_size=2, extra=BLIND + ["--pool-timeout", "5s"])
    warm = psycopg.connect(p.dsn, autocommit=True)
    for _ in range(3):  # the catalog learns the table
        warm.execute(f"SELECT v FROM {table} WHERE id = %s", (1,)).fetchone()
        time.sleep(0.1)
    blocks = [psycopg.connect(p.dsn) for _ in range(2)]
    for i, b in enumerate(blocks):  # a miss (each its own) opens each block on a backend
        b.execute(f"SELECT note FROM {table} WHERE id = %s", (3 + i,)).fetchone()
    key = f"SELECT v FROM {table} WHERE id = %s"
    third, errors = {}, []

    def third_client():
        try:
            third["v"] = warm.execute(key, (2,)).fetchone()[0]
        except psycopg.Error as e:
            errors.append(e)

    t = threading.Thread(target=third_client)
    t.start()
    time.sleep(0.5)  # the third client leads the key and waits for a backend
    for b in blocks:
        assert b.execute(key, (2,)).fetchone()[0] == 20
        b.commit()
    t.join(10)
    assert not errors, errors
    assert third.get("v") == 20


def test_database_default_repeatable_read_disables_lazy_begin(cproxy, pg, uniq):
    d = pg.connect()
    d.cursor().execute(f"CREATE DATABASE {uniq}")
    d.cursor().execute(f"ALTER DATABASE {uniq} SET default_transaction_isolation = 'repeatable read'")
    try:
        dx = psycopg2.connect(pg.url(db=uniq))
        dx.autocommit = True
        dx.cursor().execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        dx.cursor().execute("INSERT INTO t VALUES (1, 1)")
        c = psycopg2.connect(cproxy.url(db=uniq))
        c.autocommit = True
        sql = "SELECT v FROM t WHERE id = 1"
        wait_cached(c, dx, sql, "UPDATE t SET v = v + 1 WHERE id = 1")
        c.autocommit = False
        cur = c.cursor()
        cur.execute(sql)
        assert cur.fetchone()[0] == one(dx, sql)  # a real REPEATABLE READ transaction
        cur.execute("SHOW transaction_isolation")
        assert cur.fetchone()[0] == "repeatable read"
        c.rollback()
        c.close()
        dx.close()
    finally:
        d.cursor().execute(f"DROP DATABASE {uniq} WITH (FORCE)")


def test_waiters_behind_a_failed_leader_are_released(proxy, pg, table):
    import threading
    p = proxy(pool_mode="transaction", pool_size=1, extra=BLIND + ["--pool-timeout", "1s"])
    sql = f"SELECT v, %s FROM {table} WHERE id = 1"
    with psycopg.connect(p.dsn, autocommit=True) as warm:  # catalog learns the table
        warm.execute(sql, (0,)).fetchone()
    time.sleep(0.3)
    holder = p.connect(autocommit=False)
    holder.cursor().execute("SELECT pg_backend_pid()")  # holds the only backend
    outcome = {}

    def run(name):
        t0 = time.monotonic()
        with psycopg.connect(p.dsn, autocommit=True) as c:
            try:
                c.execute(sql, (7,)).fetchone()  # identical keys: one leads, one waits
                outcome[name] = ("ok", time.monotonic() - t0)
            except psycopg.Error as e:
                outcome[name] = (type(e).__name__, time.monotonic() - t0)
            time.sleep(8)  # the failed leader stays connected: its claim must end anyway

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    holder.rollback()
    assert set(outcome) == {"a", "b"}
    for name, (result, took) in outcome.items():
        assert result != "ok" and took < 6, outcome  # both time out in the pool; none waits for the leader to leave


def test_clean_read_committed_block_keeps_being_served_after_a_miss(cproxy, pg, table):
    c, d = cproxy.connect(), pg.connect()
    x = f"SELECT v FROM {table} WHERE id = 2"
    cached = wait_cached(c, d, x, f"UPDATE {table} SET v = v + 1 WHERE id = 2")
    c.autocommit = False
    cur = c.cursor()
    try:
        cur.execute(f"SELECT note FROM {table} WHERE id = 3")  # a miss: the block goes to the server
        cur.execute(x)
        assert cur.fetchone()[0] == cached != one(d, x)  # still served: the block has only read
        cur.execute(f"UPDATE {table} SET note = 'w' WHERE id = 4")
        cur.execute(x)
        assert cur.fetchone()[0] == one(d, x)  # after a write: the server's answer
    finally:
        c.rollback()
