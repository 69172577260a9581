"""Randomized consistency check of the result cache (DESIGN.md section 1).

tests/consistency.py runs readers and writers through the proxy (psycopg2
simple protocol, psycopg 3 named/unnamed/binary/auto, pipelines) and checks
every read against the writes acknowledged before it was sent, and that no
uncommitted write is ever seen.  The first test asserts there are no stale or
dirty reads and that the cache really served answers; the second proves the
checker catches stale reads when the proxy is told not to invalidate
(`--debug-skip-invalidation 1`); the third checks the checks on fabricated
answers, without a database.  Then the same for writers that bypass the proxy
(direct connections to Postgres, seen by the proxy through the replication
stream): a read may miss such a write for up to the bound after its
acknowledgement (a "lagged" read), never longer; with the stream off (TTL
mode) the checker must flag stale-bypass reads; and the bound on fabricated
answers.  The longer run is `make soak` (tests/soak/run-consistency.sh).

Seeds are random unless PGVALET_CONSISTENCY_SEED is set; a failure prints
the seed and the offending reads (query, protocol, mode, timing, the rows'
recent acknowledgements).
"""
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import consistency  # noqa: E402  (tests/consistency.py)


def seed():
    s = os.environ.get("PGVALET_CONSISTENCY_SEED")
    return int(s) if s else None


def report(res):
    lines = [res.summary(),
             f"reads by protocol {res.reads_by_protocol}, by mode {res.reads_by_mode}",
             f"writes by protocol {res.writes_by_protocol}",
             f"write statements by kind {res.write_statements_by_kind}"]
    lines += ["VIOLATION " + json.dumps(s, default=str) for s in res.samples[:8]]
    lines += ["ERROR " + json.dumps(e, default=str) for e in res.error_samples[:8]]
    lines += ["FINAL " + json.dumps(m, default=str) for m in res.final_mismatches[:8]]
    if res.hung_threads:
        lines.append(f"HUNG {res.hung_threads}")
    return "\n".join(lines)


def wait_stream_up(p, timeout=15.0):
    """The proxy sees bypassing writes only once its replication stream is up."""
    if not p.is_proxy:
        return
    deadline = time.monotonic() + timeout
    while not re.search(r"stream \S+: up", p.stderr):
        assert p.alive() and time.monotonic() < deadline, f"replication stream not up:\n{p.stderr[-3000:]}"
        time.sleep(0.05)


def cache_stats(p):
    """Stop the proxy (it logs its cache counters on SIGTERM) and return them.
    The test stops it on purpose, so the fixture must not report it as died."""
    assert p.alive(), f"pgvalet died during the run:\n{p.stderr[-4000:]}"
    p.stop()
    p.ready = False
    assert p.proc.returncode == 0, f"pgvalet exited with {p.proc.returncode}:\n{p.stderr[-4000:]}"
    # the shutdown line is the last (others come every --stats-period)
    m = re.findall(r"cache: (\d+) hits, (\d+) misses, (\d+) stores, (\d+) stale", p.stderr)
    assert m, f"no cache stats in the proxy log:\n{p.stderr[-4000:]}"
    return dict(zip(("hits", "misses", "stores", "stale_not_stored"), map(int, m[-1])))


def test_no_stale_reads_under_concurrent_readers_and_writers(proxy, pg, uniq):
    p = proxy(pool_mode="transaction")
    res = consistency.run(consistency.Config(
        dsn=p.dsn, direct_dsn=pg.dsn, table=uniq, seconds=15, readers=4, writers=3, rows=50, seed=seed()))
    text = report(res)
    print(text)
    assert res.stale_reads == 0, text
    assert res.violations == 0, text
    assert not res.hung_threads, text
    assert res.errors == 0, text
    assert not res.final_mismatches, text
    assert res.reads > 1000 and res.writes > 200, text
    assert res.commits > 20 and res.rollbacks > 5, text
    assert all(res.reads_by_protocol.get(k, 0) > 100 for k in consistency.PROTOCOLS), text
    assert all(res.reads_by_mode.get(k, 0) > 20 for k in ("autocommit", "read-committed", "repeatable-read",
                                                          "pipeline", "read-own-write", "own-tx",
                                                          "rc-before-write")), text
    if p.is_proxy:
        # No stale read means something only if the cache answered a good share.
        st = cache_stats(p)
        print("proxy cache:", st)
        assert st["hits"] > 1000 and st["hits"] > res.reads // 10, (st, text)


@pytest.mark.proxy_only
def test_checker_catches_stale_reads_when_invalidation_is_disabled(proxy, pg, uniq):
    # TTL mode: the replication stream would otherwise repair what the
    # disabled invalidation leaves stale, a few milliseconds later.
    p = proxy(pool_mode="transaction", extra=["--debug-skip-invalidation", "1",
                                              "--invalidation", "ttl", "--cache-ttl", "1h"])
    # Few hot rows, read over and over: the cache is warm within a second or
    # so (the catalog must learn the new table first); then every write makes
    # the cached answers stale.  Stop early once the checker has proven itself.
    res = consistency.run(consistency.Config(
        dsn=p.dsn, direct_dsn=pg.dsn, table=uniq, seconds=12, readers=4, writers=3, rows=50,
        hot_rows=3, hot_share=0.8, seed=seed(), stop_after_violations=200))
    text = report(res)
    print(text)
    assert not res.hung_threads and res.errors == 0, text
    assert not res.final_mismatches, text  # the writes themselves still went through
    assert res.stale_reads > 0, text
    kinds = set(res.violation_kinds)
    assert "stale-point" in kinds, text


def test_no_stale_reads_with_writers_that_bypass_the_proxy(proxy, pg, uniq):
    # Default invalidation (wal): bypassing writes reach the cache through the
    # replication stream a few milliseconds after their commit; the checker
    # allows reads to miss them for bypass_bound_ms, never longer, while
    # writes through the proxy stay strict (also on the rows both kinds write).
    p = proxy(pool_mode="transaction")
    wait_stream_up(p)
    res = consistency.run(consistency.Config(
        dsn=p.dsn, direct_dsn=pg.dsn, table=uniq, seconds=15, readers=4, writers=2, bypass_writers=2,
        rows=50, bypass_bound_ms=1000.0, seed=seed()))
    text = report(res)
    print(text)
    print(f"bypass lag: {res.lagged_reads} lagged reads, max {res.max_bypass_lag_ms} ms, "
          f"p99 {res.p99_bypass_lag_ms} ms (bound {res.bypass_bound_ms:g} ms)")
    assert res.stale_reads == 0, text
    assert res.violations == 0, text
    assert not res.hung_threads, text
    assert res.errors == 0, text
    assert not res.final_mismatches, text
    assert res.reads > 5000 and res.writes > 200 and res.bypass_writes > 300, text
    kinds = res.write_statements_by_kind
    assert all(kinds.get("bypass:" + k, 0) > 5 for k in ("upd", "upd_doom", "ins", "del")), text
    assert kinds.get("bypass:upd_grp", 0) + kinds.get("bypass:upd_grp_ord", 0) > 5, text
    assert kinds.get("bypass:upd_in", 0) + kinds.get("bypass:upd_in_ord", 0) > 5, text
    assert res.max_bypass_lag_ms < res.bypass_bound_ms, text
    if p.is_proxy:
        # The proxy answered some reads from entries a bypass write had just
        # made stale: the stream's lag, measured.
        assert res.lagged_reads > 0, text
        st = cache_stats(p)
        print("proxy cache:", st)
        assert st["hits"] > res.reads // 10, (st, text)
    else:
        assert res.lagged_reads == 0, text


@pytest.mark.proxy_only
def test_checker_catches_stale_reads_when_bypassing_writes_are_not_seen(proxy, pg, uniq):
    # TTL mode: the proxy does not follow the replication stream, and cached
    # answers live for an hour, so every write that bypasses it leaves them
    # stale: lagged reads first, then (past the bound) stale-bypass violations.
    p = proxy(pool_mode="transaction", extra=["--invalidation", "ttl", "--cache-ttl", "1h"])
    res = consistency.run(consistency.Config(
        dsn=p.dsn, direct_dsn=pg.dsn, table=uniq, seconds=10, readers=4, writers=0, bypass_writers=3,
        rows=50, hot_rows=3, hot_share=0.8, seed=seed(), stop_after_violations=100))
    text = report(res)
    print(text)
    assert not res.hung_threads and res.errors == 0, text
    assert not res.final_mismatches, text
    assert res.stale_reads > 0 and res.violation_kinds.get("stale-bypass", 0) == res.violations, text
    assert res.lagged_reads > 0 and res.max_bypass_lag_ms < res.bypass_bound_ms, text
    samples = {s["read_kind"] for s in res.samples}
    assert samples & {"point", "in3", "grp", "sum", "count_ge"}, text


def test_checker_flags_fabricated_anomalies():
    """The checks themselves, without a database: answers that miss an
    acknowledged write, show uncommitted data or lose an acked insert are
    flagged; answers that are merely newer than the snapshot are not."""
    ch = consistency.Checker(consistency.Config(dsn="", direct_dsn="", rows=10, groups=5, seed=1))

    class FakeConn:
        proto = "simple"

    st, c, sql = ch.state, FakeConn(), ch.sql
    st.ack_versions([(3, 5)], "w")
    extra = st.new_extra_id()
    st.ack_inserts([extra], "w")
    snap = st.snapshot()
    ok = [("point", (3,), [(5,)]), ("point", (3,), [(6,)]), ("sum", None, [(5,)]),
          ("grp", (3,), [(3, 5), (8, 0)]), ("extras", (-1,), [(extra, 0)]), ("count", None, [(11,)]),
          ("count_ge", (5,), [(1,)])]
    for kind, params, rows in ok:
        ch.check(kind, "t", c, "autocommit", sql.get(kind, kind), params, rows, snap, 0.0)
    assert ch.res.violations == 0, ch.res.samples
    bad = [("point", (3,), [(4,)], "stale-point"),
           ("sum", None, [(4,)], "stale-sum"),
           ("grp", (3,), [(3, 4), (8, 0)], "stale-grp"),
           ("grp", (3,), [(3, 5)], "wrong-rows"),
           ("extras", (-1,), [], "stale-extras-missing-insert"),
           ("count", None, [(10,)], "stale-count-low"),
           ("count", None, [(12,)], "stale-count-high"),
           ("count_ge", (5,), [(0,)], "stale-count-ge"),
           ("point", (3,), [(consistency.DOOM + 5,)], "dirty-read"),
           ("extras", (-1,), [(extra, 0), (extra + 1, consistency.DOOM)], "dirty-read")]
    for kind, params, rows, want in bad:
        before = dict(ch.res.violation_kinds)
        ch.check(kind, "t", c, "autocommit", sql.get(kind, kind), params, rows, snap, 0.0)
        assert ch.res.violation_kinds.get(want, 0) == before.get(want, 0) + 1, (kind, rows, ch.res.violation_kinds)
    # a delete acknowledged before the read: the row must be gone
    st.pick_delete(consistency.random.Random(0))
    st.ack_deletes([extra], "w")
    snap = st.snapshot()
    ch.check("extras", "t", c, "autocommit", sql["grp"], (-1,), [(extra, 0)], snap, 0.0)
    assert ch.res.violation_kinds.get("stale-extras-deleted-present") == 1


def test_checker_bounds_bypass_lag_on_fabricated_answers():
    """The bypass rule, without a database: a read may miss a bypass write
    acknowledged less than the bound before it was sent (a lagged read: counted,
    its lag recorded), never one older (stale-bypass); proxy-acknowledged
    writes stay strict, also on rows bypass writers write too."""
    ch = consistency.Checker(consistency.Config(dsn="", direct_dsn="", rows=10, groups=5, seed=1,
                                                bypass_bound_ms=1000.0))

    class FakeConn:
        proto = "simple"

    st, c, sql = ch.state, FakeConn(), ch.sql

    def check(kind, params, rows, snap):
        before = (dict(ch.res.violation_kinds), ch.res.lagged_reads, ch.res.stale_reads)
        ch.check(kind, "t", c, "autocommit", sql.get(kind, sql["grp"]), params, rows, snap, snap.t)
        kinds = {k: n - before[0].get(k, 0) for k, n in ch.res.violation_kinds.items() if n != before[0].get(k, 0)}
        return kinds, ch.res.lagged_reads - before[1], ch.res.stale_reads - before[2]

    ok, lagged = ({}, 0, 0), ({}, 1, 0)
    st.ack_versions([(3, 5)], "w", t=0.1)                  # through the proxy
    st.ack_versions([(3, 6), (8, 1)], "b", bypass=True, t=1.0)
    st.ack_versions([(3, 7)], "b", bypass=True, t=1.2)
    extra = st.new_extra_id()
    st.ack_inserts([extra], "b", bypass=True, t=1.3)
    snap = st.snapshot(t=1.5)
    assert check("point", (3,), [(7,)], snap) == ok
    assert check("point", (3,), [(6,)], snap) == lagged       # missed the write acked 300 ms ago
    assert ch.lags[-1] == pytest.approx(300.0)
    assert check("point", (3,), [(5,)], snap) == lagged       # missed two: the oldest, 500 ms ago, counts
    assert ch.lags[-1] == pytest.approx(500.0)
    assert check("point", (3,), [(4,)], snap) == ({"stale-point": 1}, 0, 1)   # the proxy write: no lag
    assert check("grp", (3,), [(3, 5), (8, 0)], snap) == lagged
    assert check("in3", (2, 3, 8), [(2, 0), (3, 7), (8, 0)], snap) == lagged
    assert check("sum", None, [(5,)], snap) == lagged
    assert check("sum", None, [(4,)], snap) == ({"stale-sum": 1}, 0, 1)
    assert check("count_ge", (6,), [(0,)], snap) == lagged
    assert check("extras", (-1,), [], snap) == lagged         # the bypass insert, 200 ms ago
    assert check("count", None, [(10,)], snap) == lagged
    assert check("count", None, [(11,)], snap) == ok
    assert ch.res.violations == 2 and ch.res.lagged_reads == 8, ch.res.samples
    # over a second after every one of them: all are due
    snap = st.snapshot(t=2.35)
    assert check("point", (3,), [(7,)], snap) == ok
    assert check("point", (3,), [(6,)], snap) == ({"stale-bypass": 1}, 0, 1)
    assert check("point", (8,), [(0,)], snap) == ({"stale-bypass": 1}, 0, 1)
    assert check("grp", (3,), [(3, 7), (8, 0)], snap) == ({"stale-bypass": 1}, 0, 1)
    assert check("sum", None, [(7,)], snap) == ({"stale-bypass": 1}, 0, 1)
    assert check("extras", (-1,), [], snap) == ({"stale-bypass": 1}, 0, 1)
    assert check("count", None, [(10,)], snap) == ({"stale-bypass": 1}, 0, 1)
    rec = ch.res.samples[-1]
    assert rec["kind"] == "stale-bypass" and rec["read_kind"] == "count", rec
    # a row written both ways: the proxy write is strict, the newer bypass write may lag
    st.ack_versions([(3, 8)], "w", t=2.4)
    st.ack_versions([(3, 9)], "b", bypass=True, t=2.5)
    snap = st.snapshot(t=2.55)
    assert check("point", (3,), [(8,)], snap) == lagged
    assert ch.lags[-1] == pytest.approx(50.0)
    assert check("point", (3,), [(7,)], snap) == ({"stale-point": 1}, 0, 1)
    assert check("point", (3,), [(consistency.DOOM + 9,)], snap) == ({"dirty-read": 1}, 0, 0)
    # a bypass delete: the row may linger within the bound, not after it
    st.pick_delete(consistency.random.Random(0))
    st.ack_deletes([extra], "b", bypass=True, t=2.6)
    snap = st.snapshot(t=2.7)
    assert check("extras", (-1,), [(extra, 0)], snap) == lagged
    assert check("count", None, [(11,)], snap) == lagged
    assert check("extras", (-1,), [], snap) == ok
    snap = st.snapshot(t=3.7)
    assert check("extras", (-1,), [(extra, 0)], snap) == ({"stale-bypass": 1}, 0, 1)
    assert check("count", None, [(11,)], snap) == ({"stale-bypass": 1}, 0, 1)
    assert check("point", (3,), [(8,)], snap) == ({"stale-bypass": 1}, 0, 1)
    ch.lag_stats()
    assert ch.res.lagged_reads == 11 and ch.res.max_bypass_lag_ms == pytest.approx(500.0)
    assert "lagged reads" in ch.res.summary() and ch.res.to_dict()["lagged_reads"] == 11


@pytest.mark.proxy_only
def test_no_stale_reads_through_the_python_l1(proxy, pg, uniq):
    # Every reader and writer is psycopg2 with the in-process L1 under it (one L1 for the
    # whole checker, as in one application process): writes on those connections evict
    # the L1 before their commit returns, so reads stay strict; writers that bypass the
    # proxy reach the L1 through the WAL and the push channel within the bound.
    p = proxy(pool_mode="transaction")
    wait_stream_up(p)
    res = consistency.run(consistency.Config(
        dsn=p.dsn, direct_dsn=pg.dsn, table=uniq, seconds=12, readers=4, writers=2,
        bypass_writers=1, rows=50, bypass_bound_ms=1000.0, seed=seed(),
        protocols=(consistency.L1_PROTOCOL,), l1_push=f"unix:/tmp/.s.PGVALET.{p.port + 2}"))
    from pgvalet import l1
    stats = l1.for_address(f"unix:/tmp/.s.PGVALET.{p.port + 2}").stats()
    text = report(res) + f"\nL1: {stats}"
    print(text)
    assert res.stale_reads == 0, text
    assert res.violations == 0, text
    assert not res.hung_threads and res.errors == 0, text
    assert not res.final_mismatches, text
    assert res.reads > 1000 and res.writes > 100, text
    # It means something only if the L1 answered a good share of the reads.
    assert stats["hits"] > res.reads // 10, text


@pytest.mark.proxy_only
def test_checker_catches_an_l1_that_ignores_invalidations(proxy, pg, uniq):
    # The same run with the L1's store deaf to invalidations (its own commits' notices and
    # the push channel alike): the checker must see stale reads.
    from pgvalet import l1
    p = proxy(pool_mode="transaction")
    wait_stream_up(p)
    address = f"unix:/tmp/.s.PGVALET.{p.port + 2}"
    cache = l1.for_address(address)

    class Deaf:
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def invalidate(self, tags):
            pass

        def invalidate_db(self, db):
            pass

    cache.store = Deaf(cache.store)
    res = consistency.run(consistency.Config(
        dsn=p.dsn, direct_dsn=pg.dsn, table=uniq, seconds=10, readers=4, writers=2, rows=50,
        hot_rows=3, hot_share=0.8, seed=seed(), stop_after_violations=100,
        protocols=(consistency.L1_PROTOCOL,), l1_push=address))
    text = report(res)
    print(text)
    assert not res.hung_threads and res.errors == 0, text
    assert res.stale_reads > 0, text
