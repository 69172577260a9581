"""Randomized consistency check of the result cache (DESIGN.md section 1).

tests/consistency.py runs readers and writers through the proxy (psycopg2
simple protocol, psycopg 3 named/unnamed/binary/auto, pipelines) and checks
every read against the writes acknowledged before it was sent, and that no
uncommitted write is ever seen.  The first test asserts there are no stale or
dirty reads and that the cache really served answers; the second proves the
checker catches stale reads when the proxy is told not to invalidate
(`--debug-skip-invalidation 1`); the third checks the checks on fabricated
answers, without a database.  The longer run is `make soak`
(tests/soak/run-consistency.sh).

Seeds are random unless PGVALET_CONSISTENCY_SEED is set; a failure prints
the seed and the offending reads (query, protocol, mode, timing, the rows'
recent acknowledgements).
"""
import json
import os
import re
import sys
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


def cache_stats(p):
    """Stop the proxy (it logs its cache counters on SIGTERM) and return them.
    The test stops it on purpose, so the fixture must not report it as died."""
    assert p.alive(), f"pgvalet died during the run:\n{p.stderr[-4000:]}"
    p.stop()
    p.ready = False
    assert p.proc.returncode == 0, f"pgvalet exited with {p.proc.returncode}:\n{p.stderr[-4000:]}"
    m = re.search(r"cache: (\d+) hits, (\d+) misses, (\d+) stores, (\d+) stale", p.stderr)
    assert m, f"no cache stats in the proxy log:\n{p.stderr[-4000:]}"
    return dict(zip(("hits", "misses", "stores", "stale_not_stored"), map(int, m.groups())))


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
    p = proxy(pool_mode="transaction", extra=["--debug-skip-invalidation", "1"])
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
