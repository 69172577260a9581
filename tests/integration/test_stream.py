"""Writes that bypass the proxy (psql, cron jobs, other services) reach the
cache through Postgres' logical replication stream (DESIGN.md 1.2).

Whether an answer came from the cache is read off pg_stat_statements: a
cached answer does not run the statement upstream, so its `calls` counter
does not move.  Aggregates are warmed first: the first sight of a function
name the catalog does not know yet floods the database once.  (The
bypass-write probe of test_cache.py cannot work here:
the stream is there precisely to see those writes.)
"""
import json
import re
import socket
import subprocess
import time

import psycopg2
import pytest

from conftest import BINARY, Cluster

pytestmark = pytest.mark.proxy_only

STREAM_TIMEOUT = 10.0


def one(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
        return row[0] if row and len(row) == 1 else row


def wait_log(p, pattern, timeout=STREAM_TIMEOUT, start=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, p.stderr[start:])
        if m:
            return start + m.end()
        time.sleep(0.02)
    pytest.fail(f"no /{pattern}/ in the proxy log:\n{p.stderr[-3000:]}")


class Upstream:
    """Counts how often Postgres itself ran statements on a table."""

    def __init__(self, pg, table):
        self.d = pg.connect()
        self.table = table
        self.d.cursor().execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def calls(self):
        return one(self.d, "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                           " WHERE query LIKE %s AND query NOT LIKE '%%pg_stat_statements%%'",
                   (f"%{self.table}%",))

    def served_from_cache(self, read):
        before = self.calls()
        value = read()
        return self.calls() == before, value

    def wait_cached(self, read, what, timeout=STREAM_TIMEOUT):
        """Read until an answer comes from the cache; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit, value = self.served_from_cache(read)
            if hit:
                return value
            time.sleep(0.02)
        pytest.fail(f"never served from the cache: {what}")

    def assert_cached(self, read, what):
        hit, value = self.served_from_cache(read)
        assert hit, f"not served from the cache: {what}"
        return value

    def write(self, sql, params=None):
        self.d.cursor().execute(sql, params)


def eventually(read, expected, what, timeout=STREAM_TIMEOUT):
    """The stream delivers a bypassing write within its lag: poll for it."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = read()
        if got == expected:
            return time.monotonic()
        time.sleep(0.005)
    pytest.fail(f"{what}: still {got!r}, expected {expected!r}")


@pytest.fixture
def sproxy(proxy):
    p = proxy(pool_mode="transaction")
    wait_log(p, r"stream \S+: up")
    return p


@pytest.fixture
def up(pg, table):
    return Upstream(pg, table)


def point(c, table, i):
    return lambda: one(c, f"SELECT v FROM {table} WHERE id = %s", (i,))


def test_bypass_update_evicts_that_row_and_table_wide_reads_only(sproxy, up, table):
    c = sproxy.connect()
    r5, r6 = point(c, table, 5), point(c, table, 6)
    total = lambda: one(c, f"SELECT sum(v) FROM {table}")
    up.wait_cached(total, "sum")  # first: an unknown function name floods once
    up.wait_cached(r5, "row 5")
    up.wait_cached(r6, "row 6")
    up.write(f"UPDATE {table} SET v = 555 WHERE id = 5")
    eventually(r5, 555, "row 5 after a bypassing UPDATE")
    eventually(total, 550 - 50 + 555, "sum after a bypassing UPDATE")
    assert up.assert_cached(r6, "row 6 after a write to row 5") == 60


def test_bypass_insert_delete_and_multi_row_writes(sproxy, up, table):
    c = sproxy.connect()
    r = {i: point(c, table, i) for i in (1, 2, 3, 11)}
    count = lambda: one(c, f"SELECT count(*) FROM {table}")
    up.wait_cached(count, "count")
    for i, read in r.items():
        up.wait_cached(read, f"row {i}")
    up.write(f"INSERT INTO {table} VALUES (11, 110, 'new')")
    eventually(r[11], 110, "a row inserted behind the proxy")
    eventually(count, 11, "count after INSERT")
    up.write(f"DELETE FROM {table} WHERE id IN (1, 2)")
    eventually(r[1], None, "row 1 deleted behind the proxy")
    eventually(r[2], None, "row 2 deleted behind the proxy")
    eventually(count, 9, "count after DELETE")
    assert up.assert_cached(r[3], "row 3 after writes to other rows") == 30


def test_bypass_update_that_moves_a_key_evicts_old_and_new(sproxy, up, table):
    c = sproxy.connect()
    r4, r100 = point(c, table, 4), point(c, table, 100)
    up.wait_cached(r4, "row 4")
    up.wait_cached(r100, "row 100 (absent)")
    up.write(f"UPDATE {table} SET id = 100 WHERE id = 4")
    eventually(r4, None, "the old key")
    eventually(r100, 40, "the new key")


def test_bypass_truncate_evicts_the_table(sproxy, up, table):
    c = sproxy.connect()
    r7 = point(c, table, 7)
    count = lambda: one(c, f"SELECT count(*) FROM {table}")
    up.wait_cached(count, "count")
    up.wait_cached(r7, "row 7")
    up.write(f"TRUNCATE {table}")
    eventually(count, 0, "count after TRUNCATE")
    eventually(r7, None, "row 7 after TRUNCATE")


def test_bypass_transactions_evict_at_commit_and_rollbacks_evict_nothing(sproxy, up, pg, table):
    c = sproxy.connect()
    r3, r8 = point(c, table, 3), point(c, table, 8)
    up.wait_cached(r3, "row 3")
    up.wait_cached(r8, "row 8")
    w = pg.connect()
    w.autocommit = False
    w.cursor().execute(f"UPDATE {table} SET v = -3 WHERE id = 3")
    w.rollback()
    w.cursor().execute(f"UPDATE {table} SET v = 88 WHERE id = 8")
    w.cursor().execute(f"INSERT INTO {table} VALUES (12, 120, 'tx')")
    assert r8() == 80, "a write not yet committed was visible"
    w.commit()
    eventually(r8, 88, "row 8 after COMMIT")
    assert up.assert_cached(r3, "row 3 after a rolled-back write") == 30
    assert one(c, f"SELECT v FROM {table} WHERE id = 12") == 120


def test_bypass_write_to_a_partition_evicts_reads_of_the_parent(sproxy, pg, uniq):
    d = pg.connect()
    d.cursor().execute(f"CREATE TABLE {uniq} (id int PRIMARY KEY, v int) PARTITION BY RANGE (id)")
    d.cursor().execute(f"CREATE TABLE {uniq}_a PARTITION OF {uniq} FOR VALUES FROM (0) TO (100)")
    d.cursor().execute(f"CREATE TABLE {uniq}_b PARTITION OF {uniq} FOR VALUES FROM (100) TO (200)")
    d.cursor().execute(f"INSERT INTO {uniq} SELECT g, g FROM generate_series(1, 150) g")
    up = Upstream(pg, uniq)
    c = sproxy.connect()
    total = lambda: one(c, f"SELECT sum(v) FROM {uniq}")
    leaf = lambda: one(c, f"SELECT count(*) FROM {uniq}_b")
    up.wait_cached(total, "sum over the parent")
    up.wait_cached(leaf, "count of a partition")
    up.wait_cached(total, "sum over the parent")
    up.write(f"UPDATE {uniq} SET v = v + 1 WHERE id = 120")
    eventually(total, sum(range(1, 151)) + 1, "the parent after a write to its partition")
    up.write(f"INSERT INTO {uniq} VALUES (199, 0)")
    eventually(leaf, 52, "the partition after an insert through the parent")
    d.cursor().execute(f"DROP TABLE {uniq}")


def test_table_without_a_key_is_not_cached_and_stays_writable(sproxy, pg, uniq):
    d = pg.connect()
    d.cursor().execute(f"CREATE TABLE {uniq} (a int, b text)")
    d.cursor().execute(f"INSERT INTO {uniq} VALUES (1, 'x')")
    up = Upstream(pg, uniq)
    c = sproxy.connect()
    read = lambda: one(c, f"SELECT b FROM {uniq} WHERE a = 1")
    for _ in range(5):
        hit, value = up.served_from_cache(read)
        assert not hit and value == "x"
        time.sleep(0.05)
    # pgvalet must not have put it in its publication: UPDATE/DELETE on a
    # published table without a replica identity would fail.
    d.cursor().execute(f"UPDATE {uniq} SET b = 'y' WHERE a = 1")
    d.cursor().execute(f"DELETE FROM {uniq}")
    assert "has no replica identity" in sproxy.stderr
    d.cursor().execute(f"DROP TABLE {uniq}")


def walsender_pids(pg):
    d = pg.connect()
    try:
        with d.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'"
                        " AND application_name = 'pgvalet-stream'")
            return [r[0] for r in cur.fetchall()]
    finally:
        d.close()


def test_walsender_killed_means_no_stale_read_then_recovery(sproxy, up, pg, table):
    c = sproxy.connect()
    r5 = point(c, table, 5)
    up.wait_cached(r5, "row 5")
    mark = len(sproxy.stderr)
    pids = walsender_pids(pg)
    assert pids
    for pid in pids:
        up.write("SELECT pg_terminate_backend(%s)", (pid,))
    wait_log(sproxy, r"stream \S+: down", start=mark)
    # The stream is down: the cache is flushed and bypassed, so a write no
    # stream reports is still seen at once.
    up.write(f"UPDATE {table} SET v = 5005 WHERE id = 5")
    assert r5() == 5005
    wait_log(sproxy, r"stream \S+: up", start=mark)
    assert up.wait_cached(r5, "row 5 after the stream came back") == 5005
    up.write(f"UPDATE {table} SET v = 5006 WHERE id = 5")
    eventually(r5, 5006, "a write after the stream came back")


def test_push_channel_streams_evictions(sproxy, up, pg, table):
    s = socket.create_connection(("127.0.0.1", sproxy.port + 2), timeout=STREAM_TIMEOUT)
    f = s.makefile("r", encoding="utf-8")

    def next_event(kind, pred=lambda e: True):
        deadline = time.monotonic() + STREAM_TIMEOUT
        while time.monotonic() < deadline:
            e = json.loads(f.readline())
            if e["type"] == kind and pred(e):
                return e
        pytest.fail(f"no {kind} event")

    hello = json.loads(f.readline())
    assert hello["type"] == "hello" and hello["version"] == 1
    c = sproxy.connect()
    up.wait_cached(point(c, table, 5), "row 5")
    up.write(f"UPDATE {table} SET v = 1 WHERE id = 5")
    e = next_event("invalidate", lambda e: e.get("table") == table)
    assert e["source"] == "wal" and e["rows"] == [5] and e["schema"] == "public"
    assert e["db"] == "appdb" and e["oid"] > 0 and e["tags"]
    c.cursor().execute(f"UPDATE {table} SET v = 2 WHERE id = 6")
    e = next_event("invalidate", lambda e: e["source"] == "proxy")
    assert e["db"] == "appdb" and e["tags"]
    for pid in walsender_pids(pg):
        up.write("SELECT pg_terminate_backend(%s)", (pid,))
    e = next_event("state")
    assert e == {**e, "db": "appdb", "stream": "down"}
    e = next_event("state")
    assert e["stream"] == "up"
    s.close()


def test_permanent_slot_is_created_resumed_and_never_holds_wal(proxy, pg, up, table, uniq):
    slot = f"pgv_{uniq}"
    c_args = ["--replication-slot", slot]
    p = proxy(pool_mode="transaction", extra=c_args)
    wait_log(p, r"stream \S+: up")
    assert f"created replication slot {slot}" in p.stderr
    p.stop()
    p.ready = False
    up.write(f"UPDATE {table} SET v = 77 WHERE id = 7")
    p = proxy(pool_mode="transaction", extra=c_args)
    wait_log(p, r"stream \S+: up")
    assert "created replication slot" not in p.stderr
    c = p.connect()
    assert up.wait_cached(point(c, table, 7), "row 7") == 77
    # The confirmed position follows the server's WAL even when idle.
    up.write(f"UPDATE {table} SET v = 78 WHERE id = 7")
    lsn = one(up.d, "SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + STREAM_TIMEOUT
    while one(up.d, "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots"
                    " WHERE slot_name = %s", (lsn, slot)) is not True:
        assert time.monotonic() < deadline, "the slot's confirmed position did not advance"
        time.sleep(0.1)
    p.stop()
    p.ready = False
    up.write("SELECT pg_drop_replication_slot(%s)", (slot,))


def run_proxy(args, timeout=20):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=timeout)


def test_wal_level_replica_is_refused_with_the_choices(proxy):
    cluster = Cluster(wal_level="replica")
    try:
        out = run_proxy(["--upstream", cluster.url(), "--port", "1"])
        assert out.returncode == 2, out.stderr
        assert "wal_level is 'replica'" in out.stderr
        assert "--invalidation ttl" in out.stderr
        p = proxy(pool_mode="transaction", cluster=cluster,
                  extra=["--invalidation", "ttl", "--cache-ttl", "30s"])
        assert "are NOT seen" in p.stderr
        assert one(p.connect(), "SELECT 41 + 1") == 42
    finally:
        cluster.stop()


def test_role_without_replication_is_refused_naming_the_fix(pg, uniq):
    d = pg.connect()
    d.cursor().execute(f"CREATE ROLE {uniq} LOGIN PASSWORD 'pw'")
    try:
        out = run_proxy(["--upstream", pg.url(user=uniq, password="pw"), "--port", "1"])
        assert out.returncode == 2, out.stderr
        assert f'ALTER ROLE "{uniq}" REPLICATION' in out.stderr
    finally:
        d.cursor().execute(f"DROP ROLE {uniq}")


def test_ttl_mode_needs_a_ttl(pg):
    out = run_proxy(["--upstream", pg.url(), "--invalidation", "ttl"])
    assert out.returncode == 2
    assert "invalidation" in out.stderr and "cache-ttl" in out.stderr


@pytest.fixture(scope="module")
def replica_pg():
    cluster = Cluster(wal_level="replica")
    yield cluster
    cluster.stop()


def test_notify_fallback_on_a_replica_level_server_then_clean(proxy, replica_pg, uniq):
    pg = replica_pg
    d = pg.connect()
    d.cursor().execute(f"CREATE TABLE {uniq} (id int PRIMARY KEY, v int NOT NULL)")
    d.cursor().execute(f"INSERT INTO {uniq} SELECT g, g * 10 FROM generate_series(1, 10) g")
    d.cursor().execute(f"CREATE TABLE {uniq}_nokey (a int)")
    before = one(d, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal")
    p = proxy(pool_mode="transaction", cluster=pg, extra=["--invalidation", "notify"])
    wait_log(p, r"stream \S+: up \(LISTEN")
    up = Upstream(pg, uniq)
    c = p.connect()
    r5, r6 = point(c, uniq, 5), point(c, uniq, 6)
    count = lambda: one(c, f"SELECT count(*) FROM {uniq}")
    up.wait_cached(count, "count")
    up.wait_cached(r5, "row 5")
    up.wait_cached(r6, "row 6")
    assert "NOTIFY triggers installed" in p.stderr
    up.write(f"UPDATE {uniq} SET v = 555 WHERE id = 5")
    eventually(r5, 555, "row 5 after a bypassing UPDATE (notify)")
    eventually(count, 10, "count")
    assert up.assert_cached(r6, "row 6 after a write to row 5 (notify)") == 60
    w = pg.connect()
    w.autocommit = False
    w.cursor().execute(f"UPDATE {uniq} SET v = -6 WHERE id = 6")
    w.rollback()
    assert up.assert_cached(r6, "row 6 after a rolled-back write") == 60
    up.write(f"INSERT INTO {uniq} VALUES (11, 110)")
    eventually(count, 11, "count after INSERT (notify)")
    up.write(f"TRUNCATE {uniq}")
    eventually(r6, None, "row 6 after TRUNCATE (notify)")
    # proxied writes still invalidate at once, and do not flood: the
    # triggers pgvalet installed are not "user triggers"
    up.write(f"INSERT INTO {uniq} SELECT g, g FROM generate_series(1, 3) g")
    eventually(r5, None, "row 5")
    up.wait_cached(point(c, uniq, 1), "row 1")
    c.cursor().execute(f"UPDATE {uniq} SET v = 9 WHERE id = 2")
    assert point(c, uniq, 2)() == 9
    assert up.assert_cached(point(c, uniq, 1), "row 1 after a proxied write to row 2") == 1
    p.stop()
    p.ready = False
    out = run_proxy(["clean", "--upstream", pg.url()])
    assert out.returncode == 0, out.stderr
    assert "DROP TRIGGER" in out.stdout and "DROP SCHEMA _pgvalet CASCADE" in out.stdout
    assert one(d, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == before
    assert one(d, "SELECT count(*) FROM pg_namespace WHERE nspname = '_pgvalet'") == 0
    again = run_proxy(["clean", "--upstream", pg.url()])
    assert again.returncode == 0 and again.stdout == ""
    d.cursor().execute(f"DROP TABLE {uniq}, {uniq}_nokey")


def test_clean_drops_the_publication_pgvalet_created(sproxy, pg, table):
    c = sproxy.connect()
    one(c, f"SELECT v FROM {table} WHERE id = 1")
    sproxy.stop()
    sproxy.ready = False
    out = run_proxy(["clean", "--upstream", pg.url()])
    assert out.returncode == 0, out.stderr
    assert "DROP PUBLICATION pgvalet" in out.stdout
    assert one(pg.connect(), "SELECT count(*) FROM pg_publication WHERE pubname = 'pgvalet'") == 0


def test_each_database_gets_its_own_stream(sproxy, pg, uniq):
    d = pg.connect()
    d.cursor().execute(f"CREATE DATABASE {uniq}")
    try:
        d2 = psycopg2.connect(pg.url(db=uniq))
        d2.autocommit = True
        d2.cursor().execute("CREATE TABLE items (id int PRIMARY KEY, v int)")
        d2.cursor().execute("INSERT INTO items SELECT g, g FROM generate_series(1, 5) g")
        c = psycopg2.connect(sproxy.url(db=uniq))
        c.autocommit = True
        wait_log(sproxy, rf"stream {uniq}: up")
        up = Upstream(pg, "items")
        up.d.close()
        up.d = d2  # pg_stat_statements is cluster-wide; count on the new database's connection
        d2.cursor().execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        r3, r4 = point(c, "items", 3), point(c, "items", 4)
        up.wait_cached(r3, "row 3 in the second database")
        up.wait_cached(r4, "row 4 in the second database")
        d2.cursor().execute("UPDATE items SET v = 33 WHERE id = 3")
        eventually(r3, 33, "row 3 after a bypassing write in the second database")
        assert up.assert_cached(r4, "row 4 in the second database") == 4
        c.close()
        d2.close()
    finally:
        sproxy.stop()  # its consumer holds a connection to the database
        sproxy.ready = False
        d.cursor().execute(f"DROP DATABASE {uniq} WITH (FORCE)")


def test_ddl_outside_the_proxy_evicts_what_it_changed(sproxy, pg, table):
    """A view redefined, or a row-level-security policy changed, straight on
    Postgres: no row changes, so only pgvalet's DDL event trigger (a
    logical message in the WAL) tells the proxy."""
    d = pg.connect()
    d.cursor().execute(f"CREATE VIEW {table}_v AS SELECT id FROM {table} WHERE id < 5")
    up = Upstream(pg, table)
    c = sproxy.connect()
    count = lambda: one(c, f"SELECT count(*) FROM {table}_v")
    up.wait_cached(count, "count over the view")
    assert count() == 4
    d.cursor().execute(f"CREATE OR REPLACE VIEW {table}_v AS SELECT id FROM {table} WHERE id < 3")
    eventually(count, 2, "the view redefined behind the proxy")
    # temp objects are not DDL anyone else can see: no flush
    up.wait_cached(count, "count over the view, again")
    t = pg.connect()
    t.cursor().execute("CREATE TEMP TABLE scratch (a int)")
    time.sleep(0.3)
    assert up.assert_cached(count, "the view after another session's CREATE TEMP TABLE") == 2
    d.cursor().execute(f"DROP VIEW {table}_v")
