"""Resilience: upstream restarts, 1,000 clients, pool timeout, malformed client bytes."""
import asyncio
import os
import random
import socket
import struct
import threading
import time

import asyncpg
import psycopg2
import pytest

import pgwire
from conftest import Cluster

ADMIN_OR_CONN = ("08", "57P0")  # connection exceptions / admin shutdown, crash shutdown, cannot connect now


@pytest.fixture(scope="module")
def own_cluster():
    """A cluster this module may stop and restart without disturbing the others."""
    c = Cluster()
    yield c
    c.stop()


def query_until_ok(p, deadline_s=15.0, sql="SELECT 'back'"):
    """Retry (reconnecting) until a query succeeds; returns (value, attempts, errors)."""
    deadline = time.monotonic() + deadline_s
    errors = []
    while time.monotonic() < deadline:
        try:
            conn = psycopg2.connect(p.dsn, connect_timeout=5)
            try:
                cur = conn.cursor()
                cur.execute(sql)
                return cur.fetchone()[0], errors
            finally:
                conn.close()
        except psycopg2.Error as e:
            errors.append(e)
            time.sleep(0.2)
    raise AssertionError(f"no success within {deadline_s}s; errors: {errors[-3:]}")


# ------------------------------------------------------------------ upstream restarts

@pytest.mark.proxy_only
def test_inflight_query_gets_error_on_restart_then_recovers(proxy, mode, own_cluster):
    p = proxy(pool_mode=mode, cluster=own_cluster)
    conn = p.connect()
    cur = conn.cursor()
    cur.execute("SELECT 1")
    box = {}

    def sleeper():
        t0 = time.monotonic()
        try:
            cur.execute("SELECT pg_sleep(20)")
            box["result"] = "no error"
        except psycopg2.Error as e:
            box["error"] = e
        box["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=sleeper)
    t.start()
    time.sleep(0.5)
    own_cluster.restart()
    t.join(15)
    assert not t.is_alive(), "client hung across the upstream restart"
    assert "error" in box, box
    assert box["elapsed"] < 10
    code = getattr(box["error"], "pgcode", None)
    assert code is None or code.startswith(ADMIN_OR_CONN), code
    conn.close()
    value, _ = query_until_ok(p, 10)
    assert value == "back"
    assert p.alive()


@pytest.mark.proxy_only
def test_upstream_down_gives_error_not_hang_then_recovers(proxy, mode, own_cluster):
    p = proxy(pool_mode=mode, cluster=own_cluster)
    value, _ = query_until_ok(p, 10)
    assert value == "back"
    own_cluster.stop_server()
    try:
        # raw protocol: the failure must be an ErrorResponse with a connection-class SQLSTATE
        t0 = time.monotonic()
        c = pgwire.PgWire("127.0.0.1", p.port, timeout=15)
        try:
            try:
                c.login("pgvalet", "pgvalet-pass", "appdb")
                res = c.simple("SELECT 1")
                err = res.error
                if err is None:
                    err = c.read_until_error_or_close(10)
            except pgwire.PgError as e:
                err = e
            except pgwire.Closed:
                err = None
        finally:
            c.close()
        assert time.monotonic() - t0 < 12, "client waited too long for a dead upstream"
        assert err is not None, "connection closed without an ErrorResponse"
        assert err.sqlstate.startswith(ADMIN_OR_CONN), err.fields
        # psycopg2 too
        t0 = time.monotonic()
        with pytest.raises(psycopg2.Error):
            conn = psycopg2.connect(p.dsn, connect_timeout=15)
            conn.cursor().execute("SELECT 1")
        assert time.monotonic() - t0 < 12
    finally:
        own_cluster.start_server()
    value, _ = query_until_ok(p, 10)
    assert value == "back"
    assert p.alive()


@pytest.mark.proxy_only
def test_idle_client_survives_upstream_restart_in_transaction_mode(proxy, own_cluster):
    p = proxy(pool_mode="transaction", cluster=own_cluster)
    conn = p.connect()
    cur = conn.cursor()
    cur.execute("SELECT 1")
    own_cluster.restart()
    deadline = time.monotonic() + 10
    while True:
        try:
            cur.execute("SELECT 'same connection'")
            assert cur.fetchone() == ("same connection",)
            break
        except psycopg2.Error as e:
            # at most a transient error; the client connection itself must stay open
            assert not conn.closed, f"proxy closed an idle transaction-mode client: {e}"
            assert time.monotonic() < deadline, e
            time.sleep(0.2)
    conn.close()


# ------------------------------------------------------------------ many clients

class BackendCounter(threading.Thread):
    """Samples the number of `pgvalet` client backends on the cluster; keeps the peak."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.conn = cluster.connect()
        self.stop_evt = threading.Event()
        self.baseline = self.count()
        self.peak = self.baseline

    def count(self):
        cur = self.conn.cursor()
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'pgvalet' "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
        return cur.fetchone()[0]

    def run(self):
        while not self.stop_evt.wait(0.05):
            self.peak = max(self.peak, self.count())

    def finish(self):
        self.stop_evt.set()
        self.join(5)
        self.conn.close()
        return self.peak - self.baseline


@pytest.mark.proxy_only
def test_thousand_concurrent_clients_on_pool_of_20(proxy, pg):
    counter = BackendCounter(pg)
    p = proxy(pool_mode="transaction", pool_size=20)
    counter.start()

    async def main():
        sem = asyncio.Semaphore(200)  # bound concurrent handshakes, not concurrent clients

        async def open_one(i):
            async with sem:
                return await asyncpg.connect(p.dsn, timeout=60)
        conns = await asyncio.gather(*(open_one(i) for i in range(1000)))
        try:
            async def q(i, c):
                return await c.fetchval("SELECT $1::int * 2 FROM pg_sleep(0.001)", i)
            res = await asyncio.gather(*(q(i, c) for i, c in enumerate(conns)))
            assert res == [2 * i for i in range(1000)]
            res = await asyncio.gather(*(c.fetchval("SELECT 1") for c in conns))
            assert res == [1] * 1000
        finally:
            await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    try:
        asyncio.run(asyncio.wait_for(main(), 100))
    finally:
        extra = counter.finish()
    # the pool cap held (+2 for a replication/catalog helper connection)
    assert extra <= 20 + 2, f"{extra} upstream backends for pool_size=20"
    assert p.alive()


@pytest.mark.proxy_only
@pytest.mark.proxy_only
def test_two_workers_share_a_small_pool(proxy, pg):
    """Clients spread over two workers by SO_REUSEPORT still share one
    pool-size cap: idle backends move to the worker whose clients wait."""
    counter = BackendCounter(pg)
    p = proxy(pool_mode="transaction", pool_size=2,
              extra=["--workers", "2", "--pool-timeout", "20s"])
    counter.start()

    async def main():
        conns = [await asyncpg.connect(p.dsn, timeout=30) for _ in range(24)]
        try:
            async def work(i, c):
                total = 0
                for j in range(20):
                    async with c.transaction():
                        total += await c.fetchval("SELECT $1::int + $2::int", i, j)
                return total
            res = await asyncio.gather(*(work(i, c) for i, c in enumerate(conns)))
            assert res == [20 * i + 190 for i in range(24)]
        finally:
            await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        extra = counter.finish()
    assert extra <= 2 + 2, f"{extra} upstream backends for pool_size=2"
    assert p.alive()


def test_thousand_clients_session_mode_queue_for_20_backends(proxy):
    p = proxy(pool_mode="session", pool_size=20)

    async def main():
        async def one(i):
            c = await asyncpg.connect(p.dsn, timeout=60)
            try:
                return await c.fetchval("SELECT $1::int + 1", i)
            finally:
                await c.close()
        sem = asyncio.Semaphore(300)

        async def bounded(i):
            async with sem:
                return await one(i)
        res = await asyncio.gather(*(bounded(i) for i in range(1000)))
        assert res == [i + 1 for i in range(1000)]

    asyncio.run(asyncio.wait_for(main(), 100))
    assert p.alive()


# ------------------------------------------------------------------ pool timeout

@pytest.mark.proxy_only
@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_pool_timeout_fails_waiting_client(proxy, pool_mode):
    p = proxy(pool_mode=pool_mode, pool_size=1, extra=["--pool-timeout", "2s"])
    holder = p.connect(autocommit=False)
    holder.cursor().execute("SELECT pg_backend_pid()")  # not cacheable: holds the only backend (open transaction / session)
    t0 = time.monotonic()
    with pytest.raises(psycopg2.Error) as ei:
        waiter = psycopg2.connect(p.dsn, connect_timeout=20)
        waiter.autocommit = True
        waiter.cursor().execute("SELECT 1")
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed <= 8, (elapsed, ei.value)
    holder.rollback()
    holder.close()
    value, _ = query_until_ok(p, 5, sql="SELECT 'free again'")
    assert value == "free again"


# ------------------------------------------------------------------ malformed input
# These also run against raw Postgres: the proxy must be at least as strict.

def bystander_works(p, bystander, n=3):
    cur = bystander.cursor()
    for i in range(n):
        cur.execute("SELECT %s::int * 10", (i,))
        assert cur.fetchone() == (i * 10,)
    assert p.alive()


def expect_error_or_close(c, timeout=5.0):
    err = c.read_until_error_or_close(timeout)
    if err is not None:
        assert err.sqlstate == "08P01", err.fields
    return err


@pytest.fixture
def setup_malformed(proxy, mode):
    p = proxy(pool_mode=mode, pool_size=2)
    bystander = p.connect()
    bystander_works(p, bystander)
    yield p, bystander
    bystander_works(p, bystander)
    # new clients still welcome
    c = pgwire.connect(p.port)
    assert c.simple("SELECT 'fresh client'").rows == [("fresh client",)]
    c.close()
    bystander.close()


def logged_in(p):
    return pgwire.connect(p.port)


def test_message_length_below_four_is_rejected(setup_malformed):
    p, bystander = setup_malformed
    c = logged_in(p)
    c.send(b"Q" + struct.pack("!i", 2) + b"x\0")
    expect_error_or_close(c)
    c.close()


def test_truncated_message_then_close(setup_malformed):
    p, bystander = setup_malformed
    c = logged_in(p)
    c.send(b"Q" + struct.pack("!i", 100) + b"SELECT 1")
    c.close()
    bystander_works(p, bystander)
    # truncated in the middle of a transaction that holds a backend
    c = logged_in(p)
    assert c.simple("BEGIN").tags == ["BEGIN"]
    c.send(b"Q" + struct.pack("!i", 1000) + b"SELECT")
    c.close()
    bystander_works(p, bystander)


def test_two_gigabyte_declared_length_is_rejected(setup_malformed):
    p, bystander = setup_malformed
    c = logged_in(p)
    c.send(b"Q" + struct.pack("!I", 0x7FFFFFFF) + b"SELECT 1")
    expect_error_or_close(c)
    c.close()
    c = logged_in(p)
    c.send(b"Q" + struct.pack("!I", 0xFFFFFFF0) + b"SELECT 1")  # negative as int32
    expect_error_or_close(c)
    c.close()


def test_unknown_message_type_is_rejected(setup_malformed):
    p, bystander = setup_malformed
    c = logged_in(p)
    c.send(b"@" + struct.pack("!i", 8) + b"abcd")
    err = expect_error_or_close(c)
    assert err is not None, "expected an ErrorResponse for an unknown message type"
    c.close()


def test_random_bytes_instead_of_startup(setup_malformed):
    p, bystander = setup_malformed
    rnd = random.Random(1234)
    for n in (1, 7, 16, 64, 300):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        c = pgwire.PgWire.__new__(pgwire.PgWire)
        c.sock, c.buf, c.params = s, b"", {}
        c.send(bytes(rnd.randrange(256) for _ in range(n)))
        s.shutdown(socket.SHUT_WR)
        try:
            err = c.read_until_error_or_close(5)
        except TimeoutError:
            pytest.fail(f"no reply and no close after {n} random bytes + EOF")
        if err is not None:
            assert err.sqlstate in ("08P01", "0A000", "28000", "3D000", "28P01"), err.fields
        c.close()
    # a startup packet that declares an absurd length
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(struct.pack("!ii", 100_000_000, pgwire.PROTOCOL_V3))
    s.settimeout(5)
    data = s.recv(1000)
    assert data == b"" or data[:1] == b"E"
    s.close()


def test_unsupported_protocol_version(setup_malformed):
    p, bystander = setup_malformed
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    body = struct.pack("!i", 4 << 16) + b"user\0pgvalet\0\0"
    s.sendall(struct.pack("!i", len(body) + 4) + body)
    c = pgwire.PgWire.__new__(pgwire.PgWire)
    c.sock, c.buf, c.params = s, b"", {}
    err = c.read_until_error_or_close(5)
    assert err is None or err.sqlstate in ("0A000", "08P01"), err.fields
    c.close()


def test_random_bytes_after_login(setup_malformed):
    p, bystander = setup_malformed
    rnd = random.Random(99)
    for n in (3, 17, 200, 5000):
        c = logged_in(p)
        c.send(bytes(rnd.randrange(256) for _ in range(n)))
        c.sock.shutdown(socket.SHUT_WR)
        try:
            err = c.read_until_error_or_close(5)
        except TimeoutError:
            pytest.fail(f"no reply and no close after {n} random bytes + EOF")
        if err is not None:
            assert err.sqlstate.startswith(("08", "42", "22", "26", "34", "0A")), err.fields
        c.close()
        bystander_works(p, bystander, 1)


def test_malformed_bind_body(setup_malformed):
    """A Bind whose parameter count promises data that is not there."""
    p, bystander = setup_malformed
    c = logged_in(p)
    r = c.extended(pgwire.parse("s1", "SELECT $1::int"), pgwire.bind("s1", [5]), pgwire.execute())
    assert r.rows == [("5",)]
    body = b"\0" + b"s1\0" + struct.pack("!hh", 0, 5)  # 5 params, no lengths follow
    c.send(pgwire.msg(b"B", body) + pgwire.execute() + pgwire.sync())
    err = expect_error_or_close(c)
    assert err is not None
    c.close()


def test_garbage_in_the_middle_of_a_pipeline(setup_malformed):
    p, bystander = setup_malformed
    c = logged_in(p)
    c.send(pgwire.parse("", "SELECT 1") + pgwire.bind("") + b"\xff" + struct.pack("!i", 4) + pgwire.sync())
    expect_error_or_close(c)
    c.close()


def test_many_bad_clients_concurrently(setup_malformed):
    p, bystander = setup_malformed
    errors = []

    def bad(i):
        try:
            c = logged_in(p)
            c.send(b"Q" + struct.pack("!i", 2 + (i % 2)) + os.urandom(8))
            c.read_until_error_or_close(5)
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=bad, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    bystander_works(p, bystander, 20)
    for t in threads:
        t.join(20)
    assert not errors, errors[:3]
