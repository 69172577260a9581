"""The shared result tier (`--cache-tier redis://...`): proxies of one
database share the results they fetched through Redis, behind each one's
in-process cache.  A tier entry is never served after a write that changed
it was acknowledged (writes through a proxy make it invalid before their
ack; writes that bypass the proxies when the WAL delivers them), and Redis
going away only costs the sharing (cache/tier.h).

Whether an answer reached Postgres is read off pg_stat_statements, as in
test_stream.py; whether the tier holds an entry is read off Redis itself.
"""
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_client

from conftest import free_port
from test_stream import STREAM_TIMEOUT, Upstream, eventually, one, point, run_proxy, wait_log

pytestmark = pytest.mark.proxy_only

# the box is shared: a lookup waits this long before it counts as a miss
TIMEOUT = ["--cache-tier-timeout", "500ms"]


class Redis:
    """A redis-server on a free loopback port that can snapshot (SAVE) and
    be killed and restarted from that snapshot."""

    def __init__(self, tmp):
        self.port = free_port()
        self.dir = tmp
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--dir", str(self.dir),
             "--dbfilename", "tier.rdb"],
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

    def client(self):
        return redis_client.Redis(host="127.0.0.1", port=self.port)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    yield r
    r.kill()


def tier_proxies(proxy, redis, pg, table, n=2, extra=()):
    """n proxies sharing the tier, each past its first sight of the table
    (the catalog learns a table on the first read, which is not cached)."""
    ps = [proxy(pool_mode="transaction", extra=["--cache-tier", redis.url, *TIMEOUT, *extra])
          for _ in range(n)]
    up = Upstream(pg, table)
    for p in ps:
        wait_log(p, r"stream \S+: up")
        wait_log(p, r"cache tier \S+ up")
        c = p.connect()
        up.wait_cached(lambda: one(c, f"SELECT id FROM {table} WHERE id = 1"), "warming up")
        up.wait_cached(lambda: one(c, f"SELECT sum(id) FROM {table} WHERE id < 0"), "warming up")
        c.close()
    return ps


def has_entry(redis, text):
    r = redis.client()
    return any(text.encode() in (r.hget(k, "k") or b"") for k in r.keys("pgv:*:e:*"))


def wait_entry(redis, text):
    deadline = time.monotonic() + STREAM_TIMEOUT
    while not has_entry(redis, text):
        assert time.monotonic() < deadline, f"the tier never held {text!r}"
        time.sleep(0.01)


def test_a_read_through_one_proxy_is_answered_by_the_tier_to_another(proxy, redis, pg, table):
    a, b = tier_proxies(proxy, redis, pg, table)
    up = Upstream(pg, table)
    ca, cb = a.connect(), b.connect()
    assert up.wait_cached(point(ca, table, 4), "row 4 on a") == 40
    wait_entry(redis, "WHERE id = 4")
    hit, value = up.served_from_cache(point(cb, table, 4))
    assert hit and value == 40, "b went to Postgres although the tier had the answer"
    total = lambda c: one(c, f"SELECT sum(v) FROM {table}")
    up.wait_cached(lambda: total(ca), "sum on a")
    wait_entry(redis, "sum(v)")
    hit, value = up.served_from_cache(lambda: total(cb))
    assert hit and value == 550
    b.stop()
    b.ready = False  # stopped on purpose: its shutdown line has the counters
    assert "cache tier: up, 2 hits" in b.stderr, b.stderr[-2000:]


def test_a_write_through_one_proxy_is_seen_at_once_through_another(proxy, redis, pg, table):
    a, b = tier_proxies(proxy, redis, pg, table)
    up = Upstream(pg, table)
    ca, cb = a.connect(), b.connect()
    for rnd in range(5):
        rid = 1 + rnd
        assert up.wait_cached(point(ca, table, rid), f"row {rid} on a") == rid * 10
        wait_entry(redis, f"SELECT v FROM {table} WHERE id = {rid}")
        # the tier holds the old row; b has never read it
        ca.cursor().execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", (rid,))
        # no waiting: a made the tier entry invalid before acknowledging
        assert point(cb, table, rid)() == rid * 10 + 1, f"b read row {rid} stale from the tier"
        assert point(ca, table, rid)() == rid * 10 + 1
    # and b's answer went back to the tier for a's next miss to find
    up.wait_cached(point(cb, table, 1), "row 1 on b")


def test_a_write_through_one_proxy_reaches_the_others_local_copy(proxy, redis, pg, table):
    """b's in-process copy (taken from the tier) goes when the bus or b's
    own stream tells b; the tier never hands the old row back meanwhile."""
    a, b = tier_proxies(proxy, redis, pg, table, extra=["--bus", redis.url])
    for p in (a, b):
        wait_log(p, r"bus: connected")
    up = Upstream(pg, table)
    ca, cb = a.connect(), b.connect()
    up.wait_cached(point(ca, table, 7), "row 7 on a")
    wait_entry(redis, "WHERE id = 7")
    assert up.assert_cached(point(cb, table, 7), "row 7 on b, from the tier") == 70
    ca.cursor().execute(f"UPDATE {table} SET v = 77 WHERE id = 7")
    eventually(point(cb, table, 7), 77, "b after a write through a")
    assert point(ca, table, 7)() == 77


def test_writes_that_bypass_both_proxies_reach_both(proxy, redis, pg, table):
    a, b = tier_proxies(proxy, redis, pg, table)
    up = Upstream(pg, table)
    ca, cb = a.connect(), b.connect()
    total = lambda c: lambda: one(c, f"SELECT sum(v) FROM {table}")
    up.wait_cached(total(ca), "sum on a")
    up.wait_cached(point(ca, table, 2), "row 2 on a")
    wait_entry(redis, "WHERE id = 2")
    wait_entry(redis, "sum(v)")
    assert up.assert_cached(point(cb, table, 2), "row 2 on b, from the tier") == 20
    up.write(f"UPDATE {table} SET v = 222 WHERE id = 2")
    for c, name in ((ca, "a"), (cb, "b")):
        eventually(point(c, table, 2), 222, f"row 2 on {name} after a bypassing UPDATE")
        eventually(total(c), 550 - 20 + 222, f"sum on {name} after a bypassing UPDATE")
    up.write(f"DELETE FROM {table} WHERE id = 2")
    for c, name in ((ca, "a"), (cb, "b")):
        eventually(point(c, table, 2), None, f"row 2 on {name} after a bypassing DELETE")


def test_redis_lost_and_back_the_proxies_stay_correct(proxy, redis, pg, table):
    a, b = tier_proxies(proxy, redis, pg, table)
    up = Upstream(pg, table)
    ca, cb = a.connect(), b.connect()
    # the tier holds row 3 = 30, and Redis snapshots it
    up.wait_cached(point(ca, table, 3), "row 3 on a")
    wait_entry(redis, "WHERE id = 3")
    redis.client().save()
    # a write through a makes it invalid, in Redis only after the snapshot
    ca.cursor().execute(f"UPDATE {table} SET v = 31 WHERE id = 3")
    assert point(ca, table, 3)() == 31
    mark_a, mark_b = len(a.stderr), len(b.stderr)
    redis.kill()
    # their next lookups find Redis gone (b never reads row 3 until the end)
    for i in (1, 2, 4, 5, 6):
        assert point(ca, table, i)() == 10 * i
        assert point(cb, table, i)() == 10 * i
    for p, mark in ((a, mark_a), (b, mark_b)):
        wait_log(p, r"cache tier \S+ down: .*; serving from the local cache only", start=mark)
    # both keep answering, correctly, with Redis down
    ca.cursor().execute(f"UPDATE {table} SET v = 32 WHERE id = 3")
    assert point(ca, table, 3)() == 32
    up.wait_cached(point(cb, table, 5), "row 5 on b from its own cache, Redis down")
    ca.cursor().execute(f"UPDATE {table} SET v = 55 WHERE id = 5")
    assert point(ca, table, 5)() == 55
    eventually(point(cb, table, 5), 55, "b after a write through a, Redis down")
    # Redis comes back from the snapshot: the entry row 3 = 30 with the
    # versions it was stored under.  Only the epoch bump each proxy makes
    # when it reconnects keeps it from being served.
    redis.start()
    assert has_entry(redis, "WHERE id = 3")
    for p, mark in ((a, mark_a), (b, mark_b)):
        wait_log(p, r"cache tier \S+ up \(1 node; epoch bumped for 1 database", start=mark, timeout=15)
    assert point(cb, table, 3)() == 32, "b served an entry stored before the outage"
    # and the tier is in use again
    up.wait_cached(point(ca, table, 9), "row 9 on a")
    wait_entry(redis, "WHERE id = 9")
    assert up.assert_cached(point(cb, table, 9), "row 9 on b, from the tier") == 90
    for p in (a, b):
        assert p.alive()


def test_bad_tier_url_names_the_key(pg):
    out = run_proxy(["--upstream", pg.url(), "--cache-tier", "http://nope"])
    assert out.returncode == 2
    assert "invalid value for cache-tier: 'http://nope'" in out.stderr
    out = run_proxy(["--upstream", pg.url(), "--cache-tier", "redis://app:s3cret@h:99999"])
    assert out.returncode == 2
    assert "invalid value for cache-tier: 'redis://***@h:99999'" in out.stderr
    assert "s3cret" not in out.stderr


def tier_hits(p):
    """Stop the proxy (it logs its counters on SIGTERM): its tier hits."""
    assert p.alive(), p.stderr[-3000:]
    p.stop()
    p.ready = False  # stopped on purpose
    m = re.findall(r"cache tier: \w+, (\d+) hits", p.stderr)
    assert m, p.stderr[-3000:]
    return int(m[-1])


def test_randomized_two_proxies_sharing_a_tier_serve_no_stale_reads(proxy, redis, pg, uniq):
    """tests/consistency.py checks the reads through a against the writes
    through a (at once) and through b (within the bound: b's writes reach
    a's own cache by a's stream, the tier at once); b's feeders run the
    same reads, so a finds in the tier entries b stored."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import consistency
    a, b = (proxy(pool_mode="transaction", extra=["--cache-tier", redis.url, *TIMEOUT])
            for _ in range(2))
    for p in (a, b):
        wait_log(p, r"stream \S+: up")
        wait_log(p, r"cache tier \S+ up")
    seed = os.environ.get("PGVALET_CONSISTENCY_SEED")
    res = consistency.run(consistency.Config(
        dsn=a.dsn, direct_dsn=pg.dsn, table=uniq, seconds=10, readers=4, writers=2,
        bypass_writers=2, bypass_dsn=b.dsn, bypass_bound_ms=1000.0,
        feeders=3, feeder_dsn=b.dsn, rows=50, seed=int(seed) if seed else None))
    print(res.summary())
    for s in res.samples[:8]:
        print("VIOLATION", s)
    for e in res.error_samples[:8]:
        print("ERROR", e)
    assert res.stale_reads == 0 and res.ok, res.summary()
    assert res.feeder_reads > 0 and res.bypass_writes > 0
    hits = tier_hits(a)
    print(f"a: {hits} tier hits")
    assert hits > 0, "a never found an entry in the tier"


def cluster_port():
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        p = free_port()
        if p + 10000 > 65535:
            continue
        try:
            s = socket.socket()
            s.bind(("127.0.0.1", p + 10000))
            s.close()
            return p
        except OSError:
            pass


class RedisCluster:
    """Three masters (no replicas) of a real Redis Cluster on loopback."""

    def __init__(self, tmp):
        self.ports = [cluster_port() for _ in range(3)]
        self.procs = []
        for p in self.ports:
            d = tmp / str(p)
            d.mkdir()
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--protected-mode", "no", "--dir", str(d),
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in self.ports:
            self._wait_port(p)
        subprocess.run(["redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{p}" for p in self.ports],
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 20
        while not all(self.node(p).execute_command("CLUSTER INFO").get("cluster_state") == "ok"
                      for p in self.ports):
            assert time.monotonic() < deadline, "the cluster never came up"
            time.sleep(0.1)

    @staticmethod
    def _wait_port(p):
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", p), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def node(self, port):
        return redis_client.Redis(host="127.0.0.1", port=port)

    def owners(self):
        """Ports of the nodes holding tier keys."""
        return [p for p in self.ports if self.node(p).keys("pgv:*")]

    def kill(self):
        for proc in self.procs:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_cluster(tmp_path):
    c = RedisCluster(tmp_path)
    yield c
    c.kill()


def test_a_tier_on_a_redis_cluster_routes_by_slot(proxy, redis_cluster, pg, table):
    """All of a database's keys share one hash tag, so one slot: the proxy
    maps slots to masters (CLUSTER SLOTS) and sends each script there,
    whichever node its URL names."""
    rc = redis_cluster
    url = lambda port: f"redis://127.0.0.1:{port}"
    ps = [proxy(pool_mode="transaction", extra=["--cache-tier", url(rc.ports[0]), *TIMEOUT])
          for _ in range(2)]
    up = Upstream(pg, table)
    for p in ps:
        wait_log(p, r"stream \S+: up")
        wait_log(p, r"cache tier \S+ up \(3 nodes")
        c = p.connect()
        up.wait_cached(lambda: one(c, f"SELECT id FROM {table} WHERE id = 1"), "warming up")
    a, b = ps
    ca, cb = a.connect(), b.connect()
    up.wait_cached(point(ca, table, 4), "row 4 on a")
    deadline = time.monotonic() + STREAM_TIMEOUT
    while not rc.owners():
        assert time.monotonic() < deadline, "no tier key on any node"
        time.sleep(0.01)
    owners = rc.owners()
    assert len(owners) == 1, "a database's keys span several slots"
    assert up.assert_cached(point(cb, table, 4), "row 4 on b, from the tier") == 40
    # a write through a: invalid at once for b (its first read of row 6)
    up.wait_cached(point(ca, table, 6), "row 6 on a")
    ca.cursor().execute(f"UPDATE {table} SET v = 66 WHERE id = 6")
    assert point(cb, table, 6)() == 66
    # a third proxy whose URL names a node that does not own the slot
    other = next(p for p in rc.ports if p != owners[0])
    c3 = proxy(pool_mode="transaction", extra=["--cache-tier", url(other), *TIMEOUT])
    wait_log(c3, r"stream \S+: up")
    wait_log(c3, r"cache tier \S+ up \(3 nodes")
    cc = c3.connect()
    up.wait_cached(lambda: one(cc, f"SELECT id FROM {table} WHERE id = 1"), "warming up")
    up.wait_cached(point(ca, table, 8), "row 8 on a")
    deadline = time.monotonic() + STREAM_TIMEOUT
    while not any(b"id = 8" in (rc.node(owners[0]).hget(k, "k") or b"")
                  for k in rc.node(owners[0]).keys("pgv:*:e:*")):
        assert time.monotonic() < deadline, "row 8 never reached the tier"
        time.sleep(0.01)
    assert up.assert_cached(point(cc, table, 8), "row 8 through a non-owner node's URL") == 80
    assert rc.owners() == owners


def test_cache_ttl_bounds_the_age_of_an_answer_across_the_tier(proxy, redis, pg, table):
    """--cache-ttl is the age of the answer, not of each copy: b's copy of
    a's tier entry expires when a's does."""
    a, b = tier_proxies(proxy, redis, pg, table, extra=["--cache-ttl", "3s"])
    up = Upstream(pg, table)
    ca, cb = a.connect(), b.connect()
    up.wait_cached(point(ca, table, 4), "row 4 on a")
    stored = time.monotonic()
    wait_entry(redis, "WHERE id = 4")
    time.sleep(max(0.0, stored + 1.5 - time.monotonic()))
    assert up.assert_cached(point(cb, table, 4), "row 4 on b, from the tier") == 40
    time.sleep(max(0.0, stored + 3.3 - time.monotonic()))
    hit, value = up.served_from_cache(point(cb, table, 4))
    assert not hit and value == 40, "b served its copy past the answer's --cache-ttl"
