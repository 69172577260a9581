"""Several proxies on one database share their evictions over Redis
(`--bus`), so a write through one is evicted by the others at once rather
than when their own replication stream delivers it; Redis going away costs
only that speed."""
import json
import socket
import subprocess
import time

import pytest

from conftest import free_port
from test_stream import STREAM_TIMEOUT, Upstream, eventually, point, wait_log

pytestmark = pytest.mark.proxy_only


class Redis:
    def __init__(self):
        self.port = free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"


@pytest.fixture
def redis():
    r = Redis()
    yield r
    r.kill()


def bus_proxies(proxy, redis, n=3):
    ps = [proxy(pool_mode="transaction", extra=["--bus", redis.url]) for _ in range(n)]
    for p in ps:
        wait_log(p, r"stream \S+: up")
        wait_log(p, r"bus: connected")
    return ps


def push_events(p):
    s = socket.create_connection(("127.0.0.1", p.port + 2), timeout=STREAM_TIMEOUT)
    f = s.makefile("r", encoding="utf-8")
    assert json.loads(f.readline())["type"] == "hello"
    return s, f


def next_invalidate(f, source):
    deadline = time.monotonic() + STREAM_TIMEOUT
    while time.monotonic() < deadline:
        e = json.loads(f.readline())
        if e["type"] == "invalidate" and e["source"] == source:
            return e
    pytest.fail(f"no invalidate event from {source}")


def test_three_proxies_with_a_bus_stay_coherent(proxy, redis, pg, table):
    ps = bus_proxies(proxy, redis)
    up = Upstream(pg, table)
    conns = [p.connect() for p in ps]
    subs = [push_events(p) for p in ps]
    for rnd in range(6):
        writer = rnd % 3
        for c in conns:
            up.wait_cached(point(c, table, 5), f"row 5 on every proxy (round {rnd})")
        conns[writer].cursor().execute(f"UPDATE {table} SET v = %s WHERE id = 5", (1000 + rnd,))
        # the writer itself: evicted before its UPDATE was acknowledged
        assert point(conns[writer], table, 5)() == 1000 + rnd
        for i, c in enumerate(conns):
            if i != writer:
                eventually(point(c, table, 5), 1000 + rnd, f"proxy {i} after a write through {writer}")
        # the others heard it on the bus (as well as, later, from the WAL)
        for i, (_, f) in enumerate(subs):
            if i != writer:
                e = next_invalidate(f, "bus")
                assert e["db"] == "appdb" and e["tags"]
    for s, _ in subs:
        s.close()
    for p in ps:
        assert "bus: lost" not in p.stderr


def test_redis_killed_mid_run_the_proxies_keep_working(proxy, redis, pg, table):
    a, b = bus_proxies(proxy, redis, n=2)
    up = Upstream(pg, table)
    ca, cb = a.connect(), b.connect()
    up.wait_cached(point(cb, table, 3), "row 3 on b")
    mark_a, mark_b = len(a.stderr), len(b.stderr)
    redis.kill()
    wait_log(a, r"bus: lost", start=mark_a)
    wait_log(b, r"bus: lost", start=mark_b)
    # b still learns of a's write, from its own replication stream
    ca.cursor().execute(f"UPDATE {table} SET v = 333 WHERE id = 3")
    eventually(point(cb, table, 3), 333, "b after a write through a, Redis down")
    assert point(ca, table, 3)() == 333
    redis.start()
    wait_log(a, r"bus: connected", start=mark_a, timeout=15)
    wait_log(b, r"bus: connected", start=mark_b, timeout=15)
    up.wait_cached(point(cb, table, 3), "row 3 on b again")
    _, fb = push_events(b)
    ca.cursor().execute(f"UPDATE {table} SET v = 334 WHERE id = 3")
    assert next_invalidate(fb, "bus")["tags"]
    eventually(point(cb, table, 3), 334, "b after the bus came back")


def test_bad_bus_url_names_the_key(pg):
    from test_stream import run_proxy
    out = run_proxy(["--upstream", pg.url(), "--bus", "http://nope"])
    assert out.returncode == 2
    assert "invalid value for bus: 'http://nope'" in out.stderr
