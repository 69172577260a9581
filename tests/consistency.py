#!/usr/bin/python3
"""Randomized consistency checker for pgvalet's result cache (DESIGN.md section 1).

Writers and readers hammer one table through the proxy, mixing drivers and
protocols; every read is checked against what writers had been told was
committed before the read was sent:

    a read that starts after a write was acknowledged must see it,
    and no read outside a transaction sees what that transaction wrote
    before it commits (or ever, if it rolls back).

Optionally (--bypass-writers) more writers write on direct connections to
Postgres, bypassing the proxy.  The proxy learns of their writes from
Postgres' logical replication stream and evicts what they changed a few
milliseconds after the commit, so for those the rule has a bound
(--bypass-bound-ms, 1000 by default):

    a read sent at least the bound after a bypass write was acknowledged
    must see it; one sent earlier may miss it (a "lagged" read: counted, not
    a violation); writes through the proxy stay strict, also on rows that
    bypass writers write too.

The table (created and dropped through a *direct* connection), with a view,
a STABLE reader function, a VOLATILE writer function and a procedure on it:

    id int PRIMARY KEY, ver bigint NOT NULL DEFAULT 0, grp int

K base rows (id 1..K, grp = id % GROUPS) only ever have `ver` incremented.
Extra rows (id > K, grp = -1, ver = 0) are inserted and deleted by writers;
an extra id is never reused, so each goes absent -> present -> absent once.

Writers.  Each acknowledged COMMIT or autocommit statement is recorded, under
a lock, as acked[id] = max(acked[id], returned ver); ROLLBACKs record nothing.
  - `UPDATE t SET ver = ver + 1 WHERE id = %s RETURNING ver` (most of them)
  - multi-row: `... WHERE grp = %s`, `... WHERE id IN (%s, %s)` (and the
    same with row locks taken in id order, to keep deadlocks rare)
  - writes that do not look like UPDATEs: a data-modifying CTE, SELECT of a
    VOLATILE function that updates, CALL of a procedure (INOUT result), DO
    (version reported by a NOTICE), INSERT ... ON CONFLICT DO UPDATE, MERGE
    (in transactions; version read back FOR UPDATE), `SELECT 1; UPDATE ...`
    in one simple Query, optionally SQL PREPARE/EXECUTE (--pinning-writes)
  - INSERT / DELETE of extra rows
  - transactions: BEGIN; optionally reads first (a lazily opened block may
    answer them from the cache); point writes in ascending id order or one
    multi-row write; SAVEPOINTs released or rolled back; reads of the row just
    written, which must return exactly this transaction's version; COMMIT
    (75%) or ROLLBACK.  The fate is decided up front, and writes that will be
    rolled back (whole transaction or savepoint) add DOOM = 10**9 instead of
    1 and insert extras with ver = DOOM: a reader seeing such a value read
    uncommitted data.
  - psycopg 3 pipeline mode: an UPDATE and a read of the same row in one batch
  - right after an acknowledgement, a read of the written row on any of the
    writer's connections: the sharpest "read your own write" race.
Writers work in bursts (--write-duty of every --write-cycle-ms) so the cache
is warm when each burst starts invalidating it.

Bypass writers are the same writer code on direct connections (psycopg2 and
psycopg 3, one connection per protocol, as above), with plain statements
only: point and multi-row UPDATEs (by grp, by id IN), INSERT/DELETE of extra
rows, and transactions of those (savepoints, COMMIT or ROLLBACK decided up
front, DOOM values in what will be rolled back).  They do not read: a read on
a direct connection would not test the proxy.  Their acknowledgements are
kept apart, with their time: `acked` holds every acknowledgement (what
Postgres holds), `packed` only the proxy's, and `base` the proxy's plus bypass
ones older than the bound (folded in as they age); younger bypass ones are
kept as a list of (time, what, row, version).

Readers snapshot the acknowledged state they will check BEFORE sending a
read, then check the answer against it (the rules below with acked = every
acknowledgement in the snapshot; bypass writers: see "Lag" below):
  - `SELECT ver FROM t WHERE id = %s` (also through the view, the STABLE
    function and `public."t"`)              ver >= acked[id]
  - `SELECT id, ver FROM t WHERE id IN (%s, %s, %s) ORDER BY id`
                                             each ver >= acked[id]
  - `SELECT id, ver FROM t WHERE grp = %s ORDER BY id`
        exact id set of the group, each ver >= acked[id]; grp -1 lists the
        extra rows: every extra whose insert was acked (and whose delete was
        not yet sent) must be there, none whose delete was acked may be
  - `SELECT sum(ver) FROM t`                  >= sum(acked)
  - `SELECT count(*) FROM t`                  within [lower, upper] bounds
  - `SELECT count(*) FROM t WHERE ver >= %s`  >= rows acked at >= that
  - any value >= DOOM/2: dirty read
Reads run in autocommit, in psycopg 3 pipelines, inside READ COMMITTED blocks
(BEGIN variants; reads; ROLLBACK/COMMIT/END/ABORT: each read checked against
a snapshot taken just before it) and inside REPEATABLE READ / SERIALIZABLE
blocks (every read checked against the snapshot taken before the block's
first read, and the first read repeated at the end must return the same
answer: a cached answer there would not).

Lag.  A read missing nothing acked before its snapshot passes.  Otherwise its
answer is checked again, with the same rules, against less: the proxy's
acknowledgements only (still missing something: the usual stale-* kind, no
lag allowed), then those plus bypass acknowledgements at least the bound old
at the snapshot (missing one of those: "stale-bypass").  Passing both, it is
a lagged read, and its lag is the age, at the snapshot, of the oldest bypass
acknowledgement it cannot reflect: the earliest cutoff c such that the answer
fails the rules with every bypass ack up to c (every rule only tightens as
acknowledgements are added, so a binary search over the young acks' times
finds it).  For a point read that is the oldest bypass write of the row it
missed; for sum and counts, the oldest it provably missed.  So the lags of
lagged reads (--json: lagged_reads, max_bypass_lag_ms, p99_bypass_lag_ms) are
how stale the proxy's answers actually were, always below the bound.

Connections ("protocols"), each reader and writer holds one of each:
  simple   psycopg2: simple Query protocol, parameters inlined
  named    psycopg 3, prepare_threshold=0: named prepared statements
  unnamed  psycopg 3, prepare_threshold=None: extended protocol, unnamed
  binary   psycopg 3, unnamed statements, binary results
  auto     psycopg 3 defaults (unnamed, named after 5 executions)

Any violation is recorded with the query, parameters, protocol, mode,
timing (seconds since the start: when sent, when answered) and the recent
acknowledgement history of the rows involved (when, which version, by which
writer and protocol: bypass-N are the bypass writers); a stale-bypass one
also with the kind of read, the cutoff and the bypass acks younger than it.
At the end, Postgres itself (direct connection) must hold exactly the acked
versions when every write's outcome is known.

Usable as a module (`run(Config(...))` -> Result) and as a CLI:

    /usr/bin/python3 tests/consistency.py --dsn PROXY_URL --direct-dsn PG_URL \\
        --seconds 30 --readers 4 --writers 3 --rows 50 --seed 1 [--json out.json] [-v] \\
        [--bypass-writers 2 --bypass-bound-ms 1000]

The seed fixes every client's choices (which statements, rows, protocols,
modes); thread timing is not reproducible.  Exit status: 0 clean, 1 stale
reads or other violations, 2 the run itself failed (errors, hung threads, or
the final table disagrees with what was acked).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import pathlib
import random
import sys
import threading
import time
import traceback
import uuid
from decimal import Decimal

import psycopg
import psycopg2
import psycopg2.extensions
import psycopg2.extras

PROTOCOLS = ("simple", "named", "unnamed", "binary", "auto")
# Not in the default set: psycopg2 with the Python package's in-process L1 under it
# (pgvalet.l1.psycopg2_connect; Config.l1_push names the proxy's push channel).  Every
# connection of a run must then be "l1": a write on a connection without the L1 reaches
# the L1 only at push-channel speed, which the checker would rightly call stale.
L1_PROTOCOL = "l1"
# Writes that will be rolled back add DOOM instead of 1 (and doomed inserts carry
# ver = DOOM): a version that large can never be committed, so any read outside
# the writing transaction that sees one read uncommitted or rolled-back data.
DOOM = 10 ** 9
DIRTY = DOOM // 2
# psycopg2 blocking waits ignore signals; the Python-level wait callback does not.
psycopg2.extensions.set_wait_callback(psycopg2.extras.wait_select)

# SQLSTATEs that are a normal outcome of the workload, not a failure.
EXPECTED_SQLSTATES = {
    "40P01",  # deadlock_detected (writers in transactions)
    "40001",  # serialization_failure
}


@dataclasses.dataclass
class Config:
    dsn: str                      # through the proxy
    direct_dsn: str               # straight to Postgres (setup, teardown, final check)
    seconds: float = 15.0
    readers: int = 4
    writers: int = 3
    # Writers that bypass the proxy (direct connections to Postgres): the proxy
    # learns of their writes from the replication stream, so a read may miss
    # one for up to bypass_bound_ms after its acknowledgement ("lagged"), never
    # longer ("stale-bypass").
    bypass_writers: int = 0
    bypass_bound_ms: float = 1000.0
    # Where bypass writers connect (default direct_dsn): another proxy on the
    # same database is also "bypassing" for the readers of this one.
    bypass_dsn: str | None = None
    # Feeders: unchecked readers running the same reads through feeder_dsn
    # (another proxy), so the caches it shares with this one (--cache-tier)
    # hold entries this proxy did not store.
    feeders: int = 0
    feeder_dsn: str | None = None
    rows: int = 50
    seed: int | None = None
    table: str | None = None
    groups: int = 5               # grp = id % groups for base rows
    hot_rows: int = 4             # reads and writes favour rows 1..hot_rows
    hot_share: float = 0.6        # share of point reads/writes on the hot rows
    write_pause_ms: float = 2.0   # mean pause between a writer's operations
    # Writers work in bursts: active `write_duty` of every `write_cycle_ms`, quiet
    # otherwise, so the cache warms up between bursts and every burst has warm
    # entries to invalidate (constant writes would leave little cached at all).
    write_cycle_ms: float = 300.0
    write_duty: float = 0.5
    max_extra: int = 12           # live extra rows kept at most
    protocols: tuple = PROTOCOLS
    l1_push: str | None = None    # push channel address, for the "l1" protocol
    rr_blocks: float = 0.08       # share of reader units run in REPEATABLE READ blocks
    rc_blocks: float = 0.30       # share run in READ COMMITTED blocks
    pipelines: float = 0.08       # share of psycopg 3 reads/writes sent in pipeline mode
    tricky_writes: bool = True    # CTE writes, writing functions, CALL, DO, upsert, MERGE, multi-statement
    # SQL-level PREPARE/EXECUTE/DEALLOCATE inside writer transactions.  pgvalet
    # pins a client that sends PREPARE to its backend for the rest of its
    # session (even when it deallocates in the same transaction), so with more
    # writer connections than --pool-size the pool starves.  Off by default.
    pinning_writes: bool = False
    keep_table: bool = False
    max_violations_kept: int = 50
    grace: float = 30.0           # how long past `seconds` threads may take to stop
    stop_after_violations: int = 0  # end the run early once this many were seen (0 = never)
    verbose: bool = False


@dataclasses.dataclass
class Result:
    table: str
    seed: int
    seconds: float
    reads: int = 0
    writes: int = 0               # acknowledged writing units through the proxy (autocommit statements + commits)
    bypass_writes: int = 0        # the same, on direct connections (bypassing the proxy)
    feeder_reads: int = 0         # unchecked reads through feeder_dsn
    commits: int = 0
    rollbacks: int = 0
    aborted: int = 0              # deadlocks/serialization failures (expected)
    errors: int = 0               # anything else
    stale_reads: int = 0          # reads that missed an acknowledged write (bypass: older than the bound)
    lagged_reads: int = 0         # reads that missed bypass writes younger than the bound (allowed)
    max_bypass_lag_ms: float = 0.0  # lagged reads: how long the oldest bypass write they missed had been acked
    p99_bypass_lag_ms: float = 0.0
    bypass_bound_ms: float = 0.0  # the bound those lags must stay under (0: no bypass writers)
    violations: int = 0           # all violations (stale reads included)
    violation_kinds: dict = dataclasses.field(default_factory=dict)
    reads_by_protocol: dict = dataclasses.field(default_factory=dict)
    reads_by_mode: dict = dataclasses.field(default_factory=dict)
    writes_by_protocol: dict = dataclasses.field(default_factory=dict)
    write_statements_by_kind: dict = dataclasses.field(default_factory=dict)  # sent and answered
    hung_threads: list = dataclasses.field(default_factory=list)
    final_mismatches: list = dataclasses.field(default_factory=list)
    unknown_outcomes: int = 0     # writes whose commit outcome is unknown (errors)
    samples: list = dataclasses.field(default_factory=list)   # first violations, in detail
    error_samples: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return (self.violations == 0 and self.errors == 0 and not self.hung_threads
                and not self.final_mismatches)

    def summary(self):
        return (f"table {self.table} seed {self.seed}: {self.reads} reads, {self.writes} writes "
                f"({self.commits} commits, {self.rollbacks} rollbacks, {self.aborted} aborted) in "
                f"{self.seconds:.1f}s; {self.bypass_text()}stale reads {self.stale_reads}, "
                f"violations {self.violations} {self.violation_kinds or ''}; errors {self.errors}; "
                f"hung {len(self.hung_threads)}; final mismatches {len(self.final_mismatches)}")

    def bypass_text(self):
        if not (self.bypass_writes or self.lagged_reads or self.bypass_bound_ms):
            return ""
        return (f"{self.bypass_writes} bypass writes, {self.lagged_reads} lagged reads (lag max "
                f"{self.max_bypass_lag_ms:.1f} ms, p99 {self.p99_bypass_lag_ms:.1f} ms, bound "
                f"{self.bypass_bound_ms:g} ms); ")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["ok"] = self.ok
        return d


class WriteSet:
    """What one writing unit (statement or transaction) reported."""

    def __init__(self, bypass=False):
        self.pairs = []   # (id, ver) from RETURNING
        self.ins = []     # extra ids inserted
        self.dele = []    # extra ids deleted
        self.phase = "start"
        self.bypass = bypass  # on a direct connection


# ---------------------------------------------------------------------------
# Shared acknowledged state
# ---------------------------------------------------------------------------

class State:
    """What writers have been told is committed, guarded by one lock.

    Three views of the base rows' versions are kept: `acked` (every
    acknowledgement: what Postgres holds), `packed` (acknowledgements of
    writes made through the proxy only) and `base` (proxy acknowledgements
    plus bypass acknowledgements older than the bound, folded in as they age).
    Bypass acknowledgements younger than the bound stay in `bev`, in ack
    order, until they are folded."""

    def __init__(self, rows, t0, bound=1.0):
        self.lock = threading.Lock()
        self.t0 = t0
        self.rows = rows
        self.bound = bound                            # seconds a bypass write may take to show
        self.acked = [0] * (rows + 1)                 # by id; [0] unused
        self.packed = [0] * (rows + 1)
        self.base = [0] * (rows + 1)
        self.history = [collections.deque(maxlen=8) for _ in range(rows + 1)]
        self.seq = 0                                  # one tick per acknowledgement
        self.bev = []                                 # bypass acks (t, seq, what, id, ver); what: ver/ins/del
        self.folded = 0                               # bev[:folded] are in base / n_del_base
        # extra rows
        self.next_extra = rows + 1
        self.ins_possible = 0          # inserts sent, minus those known rolled back
        self.ins_ack = {}              # id -> (seq, t, bypass) of its acknowledged insert
        self.del_ack = {}              # id -> (seq, t, bypass) of its acknowledged delete
        self.n_del_acked = 0           # deletes acked (all / through the proxy / in base)
        self.n_del_proxy = 0
        self.n_del_base = 0
        self.live = set()              # insert acked, no delete sent yet
        self.del_started = set()       # delete sent, not acked (or outcome unknown)
        self.extra_history = {}        # id -> list of events

    def clock(self):
        return time.monotonic() - self.t0

    def now(self):
        return round(self.clock(), 4)

    # -- writers ------------------------------------------------------------
    def _ack(self, t):
        """Under the lock: the next acknowledgement's (seq, time)."""
        self.seq += 1
        return self.seq, (self.clock() if t is None else t)

    def ack_versions(self, pairs, who, bypass=False, t=None):
        """pairs: [(id, ver)] acknowledged as committed (bypass: on a direct
        connection; t: the acknowledgement's time, for tests)."""
        with self.lock:
            seq, t = self._ack(t)
            for rid, ver in pairs:
                if ver > self.acked[rid]:
                    self.acked[rid] = ver
                if bypass:
                    self.bev.append((t, seq, "ver", rid, ver))
                else:
                    self.packed[rid] = max(self.packed[rid], ver)
                    self.base[rid] = max(self.base[rid], ver)
                self.history[rid].append((round(t, 4), ver, who))

    def new_extra_id(self):
        with self.lock:
            rid = self.next_extra
            self.next_extra += 1
            self.ins_possible += 1
            self.extra_history[rid] = [(self.now(), "insert sent")]
            return rid

    def ack_inserts(self, ids, who, bypass=False, t=None):
        with self.lock:
            seq, t = self._ack(t)
            for rid in ids:
                self.ins_ack[rid] = (seq, t, bypass)
                self.live.add(rid)
                if bypass:
                    self.bev.append((t, seq, "ins", rid, 0))
                self.extra_history[rid].append((round(t, 4), f"insert acked by {who}"))

    def insert_rolled_back(self, ids):
        with self.lock:
            for rid in ids:
                self.ins_possible -= 1
                self.extra_history[rid].append((self.now(), "insert rolled back"))

    def pick_delete(self, rnd):
        with self.lock:
            if not self.live:
                return None
            rid = rnd.choice(sorted(self.live))
            self.live.discard(rid)
            self.del_started.add(rid)
            self.extra_history[rid].append((self.now(), "delete sent"))
            return rid

    def ack_deletes(self, ids, who, bypass=False, t=None):
        with self.lock:
            seq, t = self._ack(t)
            for rid in ids:
                self.del_started.discard(rid)
                self.del_ack[rid] = (seq, t, bypass)
                self.n_del_acked += 1
                if bypass:
                    self.bev.append((t, seq, "del", rid, 0))
                else:
                    self.n_del_proxy += 1
                    self.n_del_base += 1
                self.extra_history[rid].append((round(t, 4), f"delete acked by {who}"))

    def delete_rolled_back(self, ids):
        with self.lock:
            for rid in ids:
                self.del_started.discard(rid)
                self.live.add(rid)
                self.extra_history[rid].append((self.now(), "delete rolled back"))

    def n_live(self):
        with self.lock:
            return len(self.live) + len(self.del_started)

    # -- readers ------------------------------------------------------------
    def _fold(self, t):
        """Under the lock: bypass acks older than the bound at time t are due
        for every read sent from t on: fold them into base."""
        horizon = t - self.bound
        bev = self.bev
        while self.folded < len(bev) and bev[self.folded][0] <= horizon:
            _t, _seq, what, rid, ver = bev[self.folded]
            if what == "ver":
                if ver > self.base[rid]:
                    self.base[rid] = ver
            elif what == "del":
                self.n_del_base += 1
            self.folded += 1
        if self.folded > 4096:
            del bev[:self.folded]
            self.folded = 0

    def snapshot(self, t=None):
        """Before a read: what it must see (t: the snapshot's time, for tests)."""
        with self.lock:
            t = self.clock() if t is None else t
            self._fold(t)
            return Snapshot(list(self.acked), self.seq, self.n_del_acked, t=t, bound=self.bound,
                            packed=list(self.packed), base=list(self.base), recent=self.bev[self.folded:],
                            n_del_proxy=self.n_del_proxy, n_del_base=self.n_del_base)

    def snapshot_rows(self, ids, t=None):
        with self.lock:
            t = self.clock() if t is None else t
            self._fold(t)
            return Snapshot({i: self.acked[i] for i in ids}, self.seq, self.n_del_acked, t=t, bound=self.bound,
                            packed={i: self.packed[i] for i in ids}, base={i: self.base[i] for i in ids},
                            recent=self.bev[self.folded:], n_del_proxy=self.n_del_proxy,
                            n_del_base=self.n_del_base)

    def extras_now(self):
        """After a read: the extra rows' state to check it against, taken once
        so that every view of one check sees the same (live, ins_possible,
        next_extra)."""
        with self.lock:
            return frozenset(self.live), self.ins_possible, self.next_extra

    def extra_bounds(self, view, seen=None, now=None):
        """After a read: (must_present, bad_present, upper) for the extra rows,
        given what the read must reflect (a View, or a Snapshot: all of it) and
        now (extras_now(), taken after the read; by default, taken here).
        must_present: extras whose insert is in the view and whose delete was
        not sent by now; bad_present: seen extras whose delete is in the view
        (or that were never inserted); upper: how many extras may be visible."""
        if isinstance(view, Snapshot):
            view = view.view()
        live, ins_possible, next_extra = now or self.extras_now()
        with self.lock:     # ins_ack / del_ack entries are written once, under it
            must = {i for i in live if i in self.ins_ack and view.includes(self.ins_ack[i])}
            bad = set()
            for i in seen or ():
                if (i in self.del_ack and view.includes(self.del_ack[i])) or i >= next_extra:
                    bad.add(i)
            return must, bad, ins_possible - view.n_del

    def rows_history(self, ids):
        with self.lock:
            out = {}
            for i in ids:
                if 1 <= i <= self.rows:
                    out[i] = list(self.history[i])
                elif i in self.extra_history:
                    out[i] = list(self.extra_history[i])
            return out


@dataclasses.dataclass
class Snapshot:
    """The acknowledged state just before a read was sent (at time t)."""
    acked: object      # every acknowledgement: list by id, or {id: ver}
    seq: int
    n_del_acked: int
    t: float = 0.0
    bound: float = 0.0
    packed: object = None   # proxy acknowledgements only
    base: object = None     # proxy + bypass acknowledgements older than the bound at t
    recent: list = dataclasses.field(default_factory=list)  # bypass acks not in base: (t, seq, what, id, ver)
    n_del_proxy: int = 0
    n_del_base: int = 0

    def ver(self, rid):
        return self.acked[rid]

    def view(self, which="all"):
        """What a read must reflect: "all" (every acknowledgement: no lag),
        "proxy" (proxy acknowledgements only), or a float cutoff c (proxy
        acknowledgements and bypass acknowledgements made at or before c)."""
        if which == "all":
            return View(self.acked, self.seq, self.n_del_acked, None)
        if which == "proxy":
            return View(self.packed if self.packed is not None else self.acked, self.seq,
                        self.n_del_proxy if self.packed is not None else self.n_del_acked, float("-inf"))
        base = self.base if self.base is not None else self.acked
        acked = list(base) if isinstance(base, list) else dict(base)
        n_del = self.n_del_base if self.base is not None else self.n_del_acked
        for t, _seq, what, rid, ver in self.recent:
            if t > which:
                continue
            if what == "ver":
                if isinstance(acked, list) or rid in acked:
                    acked[rid] = max(acked[rid], ver)
            elif what == "del":
                n_del += 1
        return View(acked, self.seq, n_del, which)


class View:
    """A set of acknowledgements a read must reflect."""

    def __init__(self, acked, seq, n_del, cutoff):
        self.acked = acked     # list by id, or {id: ver}
        self.seq = seq
        self.n_del = n_del
        self.cutoff = cutoff   # bypass acks at or before it are in (None: all of them)

    def ver(self, rid):
        return self.acked[rid]

    def total(self):
        return sum(self.acked) if isinstance(self.acked, list) else sum(self.acked.values())

    def includes(self, rec):
        """rec: (seq, t, bypass) of an extra row's insert or delete."""
        seq, t, bypass = rec
        return seq <= self.seq and (not bypass or self.cutoff is None or t <= self.cutoff)


# ---------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------

class Conn:
    """One client connection through the proxy, in one protocol."""

    def __init__(self, proto, dsn, l1_cache=None):
        self.proto = proto
        self.psycopg2 = proto in ("simple", L1_PROTOCOL)
        self.dsn = dsn
        self.l1_cache = l1_cache
        self.c = None
        self.notices = []
        self.open()

    def open(self):
        if self.proto == L1_PROTOCOL:
            from pgvalet import l1
            self.c = l1.psycopg2_connect(self.dsn, self.l1_cache, connect_timeout=10)
            self.c.autocommit = True
        elif self.psycopg2:
            self.c = psycopg2.connect(self.dsn, connect_timeout=10)
            self.c.autocommit = True
        else:
            kw = {"autocommit": True, "connect_timeout": 10}
            if self.proto == "named":
                kw["prepare_threshold"] = 0
            elif self.proto in ("unnamed", "binary"):
                kw["prepare_threshold"] = None
            self.c = psycopg.connect(self.dsn, **kw)
            self.c.add_notice_handler(lambda d: self.notices.append(d.message_primary or ""))

    def reopen(self):
        try:
            self.c.close()
        except Exception:
            pass
        self.open()

    def q(self, sql, params=None):
        """Run one statement; rows (as tuples of ints/None) if it returns any."""
        if self.psycopg2:
            cur = self.c.cursor()
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
            cur.close()
        else:
            cur = self.c.cursor(binary=(self.proto == "binary"))
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
            cur.close()
        return [tuple(int(v) if isinstance(v, (int, Decimal)) else v for v in r) for r in rows]

    def notice_values(self, prefix):
        """Integers announced by NOTICEs 'prefix<int>' since the last call."""
        if self.psycopg2:
            msgs, self.c.notices[:] = list(self.c.notices), []
        else:
            msgs, self.notices[:] = list(self.notices), []
        out = []
        for m in msgs:
            i = m.find(prefix)
            if i >= 0:
                out.append(int(m[i + len(prefix):].split()[0]))
        return out

    def pipeline(self, stmts):
        """psycopg 3 pipeline mode: send every statement, then collect the rows."""
        curs = []
        with self.c.pipeline():
            for sql, params in stmts:
                cur = self.c.cursor(binary=(self.proto == "binary"))
                cur.execute(sql, params)
                curs.append(cur)
        out = []
        for cur in curs:
            rows = cur.fetchall() if cur.description else []
            cur.close()
            out.append([tuple(int(v) if isinstance(v, (int, Decimal)) else v for v in r) for r in rows])
        return out

    def in_error(self):
        if self.psycopg2:
            return self.c.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR
        return self.c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR

    def in_transaction(self):
        if self.psycopg2:
            return self.c.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE
        return self.c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def close(self):
        try:
            self.c.close()
        except Exception:
            pass


def sqlstate(exc):
    return getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

RC_BEGINS = ("BEGIN", "BEGIN ISOLATION LEVEL READ COMMITTED", "START TRANSACTION", "BEGIN READ ONLY",
             "begin transaction")
RR_BEGINS = (("BEGIN ISOLATION LEVEL REPEATABLE READ",),
             ("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",),
             ("BEGIN ISOLATION LEVEL SERIALIZABLE",),
             ("BEGIN", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
ENDS = ("ROLLBACK", "COMMIT", "END", "ABORT")


class Checker:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.seed = cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(1 << 31)
        self.table = cfg.table or "cc_" + uuid.uuid4().hex[:10]
        self.t0 = time.monotonic()
        self.state = State(cfg.rows, self.t0, cfg.bypass_bound_ms / 1000.0)
        self.lags = []                      # ms, one per lagged read
        self.stop = threading.Event()
        self.lock = threading.Lock()        # counters and records below
        self.res = Result(table=self.table, seed=self.seed, seconds=0.0,
                          bypass_bound_ms=cfg.bypass_bound_ms if cfg.bypass_writers else 0.0)
        self.l1_cache = None
        if L1_PROTOCOL in cfg.protocols:
            sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
            from pgvalet import l1
            self.l1_cache = l1.for_address(cfg.l1_push)
        t = self.table
        cfg.groups = max(1, min(cfg.groups, cfg.rows))
        self.group_of = {i: i % cfg.groups for i in range(1, cfg.rows + 1)}
        self.members = collections.defaultdict(list)
        for i, g in self.group_of.items():
            self.members[g].append(i)
        self.sql = {
            "point": f"SELECT ver FROM {t} WHERE id = %s",
            "in3": f"SELECT id, ver FROM {t} WHERE id IN (%s, %s, %s) ORDER BY id",
            "grp": f"SELECT id, ver FROM {t} WHERE grp = %s ORDER BY id",
            "sum": f"SELECT sum(ver) FROM {t}",
            "count": f"SELECT count(*) FROM {t}",
            "count_ge": f"SELECT count(*) FROM {t} WHERE ver >= %s",
            "upd": f"UPDATE {t} SET ver = ver + 1 WHERE id = %s RETURNING ver",
            "upd_grp": f"UPDATE {t} SET ver = ver + 1 WHERE grp = %s RETURNING id, ver",
            "upd_in": f"UPDATE {t} SET ver = ver + 1 WHERE id IN (%s, %s) RETURNING id, ver",
            # the same write sets, row locks taken in id order (no deadlock with
            # transactions that lock ascending ids)
            "upd_grp_ord": f"UPDATE {t} SET ver = ver + 1 WHERE id IN "
                           f"(SELECT id FROM {t} WHERE grp = %s ORDER BY id FOR UPDATE) RETURNING id, ver",
            "upd_in_ord": f"UPDATE {t} SET ver = ver + 1 WHERE id IN "
                          f"(SELECT id FROM {t} WHERE id IN (%s, %s) ORDER BY id FOR UPDATE) RETURNING id, ver",
            "upd_cte": f"WITH u AS (UPDATE {t} SET ver = ver + 1 WHERE id = %s RETURNING id, ver) "
                       f"SELECT id, ver FROM u",
            "upd_fn": f"SELECT {t}_bump(%s)",
            "upsert": f"INSERT INTO {t} AS t (id, ver, grp) VALUES (%s, 1, %s) "
                      f"ON CONFLICT (id) DO UPDATE SET ver = t.ver + 1 RETURNING ver",
            "do": f"DO $$DECLARE v bigint; BEGIN UPDATE {t} SET ver = ver + 1 WHERE id = {{id}} "
                  f"RETURNING ver INTO v; RAISE NOTICE 'pgvalet-cc ver=%', v; END$$",
            "call": f"CALL {t}_proc(%s, NULL)",
            "multi": f"SELECT 1; UPDATE {t} SET ver = ver + 1 WHERE id = %s RETURNING ver",
            "merge": f"MERGE INTO {t} AS t USING (VALUES (%s)) AS v(id) ON t.id = v.id "
                     f"WHEN MATCHED THEN UPDATE SET ver = t.ver + 1",
            "lock_read": f"SELECT ver FROM {t} WHERE id = %s FOR UPDATE",
            "prep": f"PREPARE {{name}}(int) AS UPDATE {t} SET ver = ver + 1 WHERE id = $1 RETURNING ver",
            "view": f"SELECT ver FROM {t}_v WHERE id = %s",
            "fnread": f"SELECT {t}_get(%s)",
            "qual": f'SELECT ver FROM public."{t}" WHERE id = %s',
            "ins": f"INSERT INTO {t} (id, ver, grp) VALUES (%s, 0, -1)",
            "upd_doom": f"UPDATE {t} SET ver = ver + {DOOM} WHERE id = %s RETURNING ver",
            "ins_doom": f"INSERT INTO {t} (id, ver, grp) VALUES (%s, {DOOM}, -1)",
            "del": f"DELETE FROM {t} WHERE id = %s RETURNING id",
        }

    # -- bookkeeping ----------------------------------------------------------
    def count(self, field, n=1, proto=None, mode=None, by=None):
        with self.lock:
            setattr(self.res, field, getattr(self.res, field) + n)
            if by is not None and proto is not None:
                d = getattr(self.res, by)
                d[proto] = d.get(proto, 0) + n
            if mode is not None:
                self.res.reads_by_mode[mode] = self.res.reads_by_mode.get(mode, 0) + n

    def violation(self, kind, who, conn, mode, query, params, expected, got, t_start, rows=(), stale=True,
                  extra=None):
        t_end = self.state.now()
        rec = {"kind": kind, "thread": who, "protocol": conn.proto, "mode": mode, "query": query,
               "params": list(params) if params else None, "expected": expected, "got": got,
               "t_sent": t_start, "t_answered": t_end, "row_history": self.state.rows_history(rows)}
        if extra:
            rec.update(extra)
        with self.lock:
            self.res.violations += 1
            if stale:
                self.res.stale_reads += 1
            self.res.violation_kinds[kind] = self.res.violation_kinds.get(kind, 0) + 1
            if len(self.res.samples) < self.cfg.max_violations_kept:
                self.res.samples.append(rec)
            if self.cfg.stop_after_violations and self.res.violations >= self.cfg.stop_after_violations:
                self.stop.set()
        if self.cfg.verbose:
            print("VIOLATION", json.dumps(rec, default=str), file=sys.stderr, flush=True)

    def error(self, who, conn, exc, what):
        code = sqlstate(exc)
        expected = code in EXPECTED_SQLSTATES
        with self.lock:
            if expected:
                self.res.aborted += 1
            else:
                self.res.errors += 1
                if len(self.res.error_samples) < 20:
                    self.res.error_samples.append({
                        "thread": who, "protocol": conn.proto if conn else None, "what": what,
                        "sqlstate": code, "error": f"{type(exc).__name__}: {exc}".strip(),
                        "t": self.state.now()})
        if self.cfg.verbose and not expected:
            print(f"ERROR {who} {conn.proto if conn else ''} {what}: {exc!r}", file=sys.stderr, flush=True)
        return expected

    # -- setup / teardown -----------------------------------------------------
    def setup(self):
        c = psycopg2.connect(self.cfg.direct_dsn, connect_timeout=10)
        c.autocommit = True
        cur = c.cursor()
        t = self.table
        self.drop(cur)
        cur.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, ver bigint NOT NULL DEFAULT 0, grp int)")
        cur.execute(f"INSERT INTO {t} (id, ver, grp) SELECT g, 0, g %% %s FROM generate_series(1, %s) g",
                    (self.cfg.groups, self.cfg.rows))
        cur.execute(f"CREATE INDEX ON {t} (grp)")
        cur.execute(f"CREATE OR REPLACE FUNCTION {t}_bump(int) RETURNS bigint VOLATILE LANGUAGE sql AS "
                    f"'UPDATE {t} SET ver = ver + 1 WHERE id = $1 RETURNING ver'")
        cur.execute(f"CREATE OR REPLACE FUNCTION {t}_get(int) RETURNS bigint STABLE LANGUAGE sql AS "
                    f"'SELECT ver FROM {t} WHERE id = $1'")
        cur.execute(f"CREATE OR REPLACE PROCEDURE {t}_proc(i int, INOUT v bigint) LANGUAGE plpgsql AS "
                    f"'BEGIN UPDATE {t} SET ver = ver + 1 WHERE id = i RETURNING ver INTO v; END'")
        cur.execute(f"CREATE VIEW {t}_v AS SELECT id, ver, grp FROM {t}")
        cur.execute(f"ANALYZE {t}")
        c.close()

    def drop(self, cur):
        t = self.table
        cur.execute(f"DROP TABLE IF EXISTS {t} CASCADE")
        cur.execute(f"DROP FUNCTION IF EXISTS {t}_bump(int)")
        cur.execute(f"DROP FUNCTION IF EXISTS {t}_get(int)")
        cur.execute(f"DROP PROCEDURE IF EXISTS {t}_proc(int, bigint)")

    def teardown(self):
        if self.cfg.keep_table:
            return
        try:
            c = psycopg2.connect(self.cfg.direct_dsn, connect_timeout=10)
            c.autocommit = True
            self.drop(c.cursor())
            c.close()
        except psycopg2.Error as e:
            print(f"consistency: teardown failed: {e}", file=sys.stderr)

    def final_check(self):
        """After the run: Postgres itself must hold at least what was acked, and
        exactly that when every write's outcome is known."""
        c = psycopg2.connect(self.cfg.direct_dsn, connect_timeout=10)
        c.autocommit = True
        cur = c.cursor()
        cur.execute(f"SELECT id, ver FROM {self.table} WHERE id <= %s ORDER BY id", (self.cfg.rows,))
        actual = dict(cur.fetchall())
        cur.execute(f"SELECT id FROM {self.table} WHERE id > %s", (self.cfg.rows,))
        extras = {r[0] for r in cur.fetchall()}
        c.close()
        st = self.state
        exact = self.res.unknown_outcomes == 0
        bad = []
        for i in range(1, self.cfg.rows + 1):
            a, k = actual.get(i), st.acked[i]
            if a is None or a < k or (exact and a != k):
                bad.append({"id": i, "acked": k, "in_postgres": a})
        for i in st.live:
            if i not in extras:
                bad.append({"id": i, "extra": "acked insert missing"})
        for i in st.del_ack:
            if i in extras:
                bad.append({"id": i, "extra": "acked delete still present"})
        self.res.final_mismatches = bad[:50]

    # -- thread helpers -------------------------------------------------------
    def conns(self, who, direct=False):
        dsn = (self.cfg.bypass_dsn or self.cfg.direct_dsn) if direct else self.cfg.dsn
        return {p: Conn(p, dsn, self.l1_cache) for p in self.cfg.protocols}

    def hot_or_any(self, rnd):
        if rnd.random() < self.cfg.hot_share:
            return rnd.randint(1, min(self.cfg.hot_rows, self.cfg.rows))
        return rnd.randint(1, self.cfg.rows)

    def recover(self, conn):
        """Leave the connection idle (or replace it)."""
        try:
            if conn.in_transaction():
                conn.q("ROLLBACK")
        except Exception:
            try:
                conn.reopen()
            except Exception:
                pass

    # -- reads ----------------------------------------------------------------
    def read_one(self, rnd, who, conn, mode, snap=None):
        """Pick a read, snapshot what it must see (unless snap is given: REPEATABLE
        READ checks everything against the block's first snapshot), run it and check it.
        Returns (query, params, answer) so a block can repeat it."""
        kind, q, params = self.pick_read(rnd)
        st = self.state
        if snap is None:
            snap = st.snapshot()
        t_sent = st.now()
        rows = conn.q(q, params)
        self.check(kind, who, conn, mode, q, params, rows, snap, t_sent)
        self.count("reads", proto=conn.proto, mode=mode, by="reads_by_protocol")
        return q, params, rows

    def pick_read(self, rnd):
        cfg, sql = self.cfg, self.sql
        kind = rnd.choices(("point", "view", "fnread", "qual", "in3", "grp", "extras", "sum", "count",
                            "count_ge"),
                           weights=(32, 3, 3, 3, 8, 14, 8, 12, 8, 6))[0]
        if kind in ("point", "view", "fnread", "qual"):
            rid = self.hot_or_any(rnd)
            q, params = sql[kind], (rid,)
            kind = "point"
        elif kind == "in3":
            ids = sorted(rnd.sample(range(1, cfg.rows + 1), 3)) if cfg.rows >= 3 else [1, 1, 1]
            q, params = sql["in3"], tuple(ids)
        elif kind == "grp":
            g = rnd.randrange(min(cfg.groups, 2)) if rnd.random() < cfg.hot_share else rnd.randrange(cfg.groups)
            q, params = sql["grp"], (g,)
        elif kind == "extras":
            q, params = sql["grp"], (-1,)
        elif kind == "sum":
            q, params = sql["sum"], None
        elif kind == "count":
            q, params = sql["count"], None
        else:
            q, params = sql["count_ge"], (rnd.randint(1, 3),)
        return kind, q, params

    def pipelined_reads(self, rnd, who, conn):
        """psycopg 3 pipeline mode: several reads sent at once, each checked
        against the snapshot taken before the batch went out."""
        picks = [self.pick_read(rnd) for _ in range(rnd.randint(2, 4))]
        snap = self.state.snapshot()
        t_sent = self.state.now()
        results = conn.pipeline([(q, params) for _, q, params in picks])
        for (kind, q, params), rows in zip(picks, results):
            self.check(kind, who, conn, "pipeline", q, params, rows, snap, t_sent)
            self.count("reads", proto=conn.proto, mode="pipeline", by="reads_by_protocol")

    def pipelined_write_read(self, rnd, who, conn, w):
        """psycopg 3 pipeline mode: an autocommit UPDATE and a read of the same
        row in one batch; the read comes after the write in the session, so it
        must see it (whatever the cache holds)."""
        rid = self.hot_or_any(rnd)
        snap = self.state.snapshot_rows([rid])
        t_sent = self.state.now()
        res = conn.pipeline([(self.sql["upd"], (rid,)), (self.sql["point"], (rid,))])
        wrote, got = res[0][0][0], (res[1][0][0] if res[1] else None)
        w.pairs.append((rid, wrote))
        self.count_kind("upd_pipelined")
        self.count("reads", proto=conn.proto, mode="pipeline-own-write", by="reads_by_protocol")
        q = self.sql["upd"] + " ; " + self.sql["point"]
        if got is None or got < wrote:
            self.violation("stale-pipelined-own-write", who, conn, "pipeline-own-write", q, (rid, rid),
                           wrote, got, t_sent, rows=[rid])
        else:
            self.check("point", who, conn, "pipeline-own-write", q, (rid,), res[1], snap, t_sent,
                       name="stale-pipelined-own-write")

    def check(self, kind, who, conn, mode, q, params, rows, snap, t_sent, name=None):
        """Check a read's answer against the snapshot taken before it was sent.
        name: report a stale point read under this kind instead of stale-point.

        Proxy-acknowledged writes must all be visible; bypass writes only once
        they are bypass_bound_ms old (when the snapshot was taken).  So the
        answer is checked against the snapshot's views (see Snapshot.view):
        all of it (nothing missed: done), proxy acks only (missed: the usual
        stale-* kind), proxy acks + bypass acks older than the bound (missed:
        stale-bypass), else it is a lagged read: it missed only young bypass
        writes, and its lag is how long the oldest of them had been acked."""
        cfg = self.cfg
        v = lambda *a, **k: self.violation(*a, **k)  # noqa: E731
        dirty = [r for r in rows if any(isinstance(x, int) and x >= DIRTY for x in r)]
        if dirty:
            v("dirty-read", who, conn, mode, q, params, f"no value >= {DIRTY} (uncommitted)", dirty, t_sent,
              rows=[r[0] for r in dirty if len(r) > 1], stale=False)
            return
        # the shape of the answer, whatever was acked
        if kind in ("in3", "grp"):
            ids = list(params) if kind == "in3" else self.members[params[0]]
            got_ids = [r[0] for r in rows]
            if got_ids != sorted(set(ids)):
                v("wrong-rows", who, conn, mode, q, params, sorted(set(ids)), got_ids, t_sent, rows=ids)
        elif kind == "extras":
            if any(r[1] != 0 or r[0] <= cfg.rows for r in rows):
                v("wrong-rows", who, conn, mode, q, params, "extras (id > rows, ver 0)", rows, t_sent)
        ex = self.state.extras_now() if kind in ("extras", "count") else None
        if not self.stale_findings(kind, params, rows, snap.view(), ex):
            return
        found = self.stale_findings(kind, params, rows, snap.view("proxy"), ex)
        if found:
            for k, exp, got, ids, extra in found:
                v(name if name and k == "stale-point" else k, who, conn, mode, q, params, exp, got, t_sent,
                  rows=ids, extra=extra)
            return
        strict = snap.t - snap.bound
        found = self.stale_findings(kind, params, rows, snap.view(strict), ex)
        if found:
            ids = sorted({i for f in found for i in f[3]})
            one = len(found) == 1
            v("stale-bypass", who, conn, mode, q, params, found[0][1] if one else {f[0]: f[1] for f in found},
              found[0][2] if one else {f[0]: f[2] for f in found}, t_sent, rows=ids,
              extra={"read_kind": name or kind, "missed": [f[0] for f in found],
                     "bound_ms": self.cfg.bypass_bound_ms,
                     "t_snapshot": round(snap.t, 4),
                     "missed_bypass_acked_before": round(strict, 4),
                     "bypass_acks_in_bound": [e for e in snap.recent if not ids or e[3] in ids][-20:]})
            return
        # Lagged: find the earliest bypass acknowledgement the answer cannot
        # reflect (views grow with the cutoff, so the first failing cutoff).
        times = sorted({e[0] for e in snap.recent if e[0] > strict})
        lo, hi = 0, len(times) - 1          # the view at times[-1] is the whole snapshot: it fails
        while lo < hi:
            mid = (lo + hi) // 2
            if self.stale_findings(kind, params, rows, snap.view(times[mid]), ex):
                hi = mid
            else:
                lo = mid + 1
        lag_ms = (snap.t - times[lo]) * 1000.0 if times else 0.0
        with self.lock:
            self.res.lagged_reads += 1
            self.lags.append(lag_ms)
            if lag_ms > self.res.max_bypass_lag_ms:
                self.res.max_bypass_lag_ms = lag_ms

    def stale_findings(self, kind, params, rows, view, ex=None):
        """What the answer misses of the view: [(kind, expected, got, row ids, extra)].
        ex: State.extras_now() for the extras and count reads."""
        cfg = self.cfg
        out = []
        if kind == "point":
            rid = params[0]
            exp = view.ver(rid)
            got = rows[0][0] if rows else None
            if got is None or got < exp:
                out.append(("stale-point", exp, got, [rid], None))
        elif kind in ("in3", "grp"):
            stale = [(r[0], view.ver(r[0]), r[1]) for r in rows
                     if 1 <= r[0] <= cfg.rows and r[1] < view.ver(r[0])]
            if stale:
                out.append(("stale-" + kind, {i: e for i, e, _ in stale}, {i: g for i, _, g in stale},
                            [i for i, _, _ in stale], None))
        elif kind == "extras":
            seen = [r[0] for r in rows]
            must, bad, _upper = self.state.extra_bounds(view, seen, ex)
            missing = sorted(must - set(seen))
            if missing:
                out.append(("stale-extras-missing-insert", missing, seen, missing, None))
            if bad:
                out.append(("stale-extras-deleted-present", [], sorted(bad), sorted(bad), None))
        elif kind == "sum":
            exp = view.total()
            got = rows[0][0] if rows else None
            if got is None or got < exp:
                nz = sum(1 for i in range(1, cfg.rows + 1) if view.ver(i))
                out.append(("stale-sum", exp, got, [], {"acked_nonzero_rows": nz}))
        elif kind == "count":
            must, _bad, upper = self.state.extra_bounds(view, None, ex)
            lo, hi = cfg.rows + len(must), cfg.rows + upper
            got = rows[0][0]
            if got < lo:
                out.append(("stale-count-low", f">= {lo}", got, sorted(must), None))
            elif got > hi:
                out.append(("stale-count-high", f"<= {hi}", got, [], None))
        elif kind == "count_ge":
            th = params[0]
            exp = sum(1 for i in range(1, cfg.rows + 1) if view.ver(i) >= th)
            got = rows[0][0]
            if got < exp:
                out.append(("stale-count-ge", f">= {exp}", got, [], None))
        return out

    def reader(self, idx):
        who = f"reader-{idx}"
        rnd = random.Random(self.seed * 1009 + idx)
        cfg = self.cfg
        conns = self.conns(who)
        try:
            while not self.stop.is_set():
                conn = conns[rnd.choice(cfg.protocols)]
                r = rnd.random()
                mode = "autocommit"
                try:
                    if r < cfg.rr_blocks:
                        mode = "repeatable-read"
                        self.rr_block(rnd, who, conn)
                    elif r < cfg.rr_blocks + cfg.rc_blocks:
                        mode = "read-committed"
                        begin = rnd.choice(RC_BEGINS)
                        conn.q(begin)
                        for _ in range(rnd.randint(1, 4)):
                            self.read_one(rnd, who, conn, mode)
                        conn.q(rnd.choice(ENDS))
                    elif not conn.psycopg2 and r < cfg.rr_blocks + cfg.rc_blocks + cfg.pipelines:
                        mode = "pipeline"
                        self.pipelined_reads(rnd, who, conn)
                    else:
                        self.read_one(rnd, who, conn, mode)
                except (psycopg.Error, psycopg2.Error) as e:
                    self.error(who, conn, e, f"read ({mode})")
                    self.recover(conn)
        finally:
            for c in conns.values():
                c.close()

    def rr_block(self, rnd, who, conn):
        mode = "repeatable-read"
        for stmt in rnd.choice(RR_BEGINS):
            conn.q(stmt)
        snap = self.state.snapshot()       # before the first read: the block's snapshot is later
        t_first = self.state.now()
        first = self.read_one(rnd, who, conn, mode, snap=snap)
        for _ in range(rnd.randint(0, 2)):
            self.read_one(rnd, who, conn, mode, snap=snap)
        time.sleep(rnd.random() * 0.005)   # let writers move on
        q, params, rows = first
        again = conn.q(q, params)
        self.count("reads", proto=conn.proto, mode=mode, by="reads_by_protocol")
        if again != rows:
            self.violation("non-repeatable-read", who, conn, mode, q, params, rows, again, t_first, stale=False)
        conn.q(rnd.choice(ENDS))

    # -- writes ---------------------------------------------------------------
    def pick_write(self, rnd, plain=False):
        """plain: only plain UPDATE/INSERT/DELETE (bypass writers: Postgres sees
        them all alike, the replication stream carries rows, not statements)."""
        cfg = self.cfg
        choices = ["upd", "upd_grp", "upd_in", "upd_grp_ord", "upd_in_ord", "ins", "del"]
        weights = [50, 2, 2, 6, 6, 6, 6]
        if cfg.tricky_writes and not plain:
            choices += ["upd_cte", "upd_fn", "upsert", "do", "call", "multi"]
            weights += [4, 3, 3, 2, 2, 2]
        return rnd.choices(choices, weights=weights)[0]

    def pick_point_write(self, rnd, plain=False):
        """A single-row write for a transaction (MERGE and SQL PREPARE/EXECUTE
        only there: their versions are read back inside it)."""
        if not self.cfg.tricky_writes or plain:
            return "upd"
        return rnd.choices(("upd", "upd_cte", "upd_fn", "upsert", "do", "call", "multi", "merge", "prep"),
                           weights=(40, 4, 3, 3, 2, 2, 2, 2, 2 if self.cfg.pinning_writes else 0))[0]

    def write_stmt(self, rnd, conn, w, kind, rid=None, doomed=False):
        """One writing statement; adds what it reports to the WriteSet w and
        returns the (id, ver) pairs it reported.  doomed: it will be rolled
        back, so it writes DOOM-sized values (see DOOM)."""
        cfg, sql = self.cfg, self.sql
        if kind in ("ins", "del") and (kind == "ins") == (self.state.n_live() >= cfg.max_extra):
            kind = "del" if kind == "ins" else "ins"
        if rid is None:
            rid = self.hot_or_any(rnd)
        if doomed and kind not in ("ins", "del"):
            kind = "upd_doom"
        if kind in ("upd", "upd_doom"):
            rows = conn.q(sql[kind], (rid,))
            got = [(rid, rows[0][0])] if rows else []
        elif kind == "upd_cte":
            got = conn.q(sql["upd_cte"], (rid,))
        elif kind in ("upd_fn", "call", "upsert") or (kind == "multi" and conn.psycopg2):
            params = (rid, self.group_of[rid]) if kind == "upsert" else (rid,)
            rows = conn.q(sql[kind], params)
            got = [(rid, rows[-1][0])] if rows and rows[-1][0] is not None else []
        elif kind == "multi":           # several statements in one Query: simple protocol only
            kind = "upd"
            rows = conn.q(sql["upd"], (rid,))
            got = [(rid, rows[0][0])] if rows else []
        elif kind == "do":
            conn.notice_values("pgvalet-cc ver=")
            conn.q(sql["do"].format(id=int(rid)))
            vals = conn.notice_values("pgvalet-cc ver=")
            got = [(rid, max(vals))] if vals else []
        elif kind == "merge":
            conn.q(sql["merge"], (rid,))
            rows = conn.q(sql["lock_read"], (rid,))
            got = [(rid, rows[0][0])] if rows else []
        elif kind == "prep":
            name = "cc_" + uuid.UUID(int=rnd.getrandbits(128)).hex[:12]
            conn.q(sql["prep"].format(name=name))
            try:
                rows = conn.q(f"EXECUTE {name}({int(rid)})")   # utility statement: no bind parameters
            finally:
                if not conn.in_error():
                    conn.q(f"DEALLOCATE {name}")
            got = [(rid, rows[0][0])] if rows else []
        elif kind in ("upd_grp", "upd_grp_ord"):
            got = conn.q(sql[kind], (rnd.randrange(cfg.groups),))
        elif kind in ("upd_in", "upd_in_ord"):
            got = conn.q(sql[kind], (rid, rnd.randint(1, cfg.rows)))
        elif kind == "ins":
            rid = self.state.new_extra_id()
            w.ins.append(rid)           # before sending: if it fails, we know it was tried
            conn.q(sql["ins_doom" if doomed else "ins"], (rid,))
            self.count_kind("ins_doom" if doomed else "ins", w)
            return []
        else:
            rid = self.state.pick_delete(rnd)
            if rid is None:
                return []
            w.dele.append(rid)
            if not conn.q(sql["del"], (rid,)):
                raise RuntimeError(f"DELETE of live extra row {rid} deleted nothing")
            self.count_kind(kind, w)
            return []
        if not got:
            raise RuntimeError(f"{kind} updated nothing")
        w.pairs += got
        self.count_kind(kind, w)
        return got

    def count_kind(self, kind, w=None):
        if w is not None and w.bypass:
            kind = "bypass:" + kind
        with self.lock:
            d = self.res.write_statements_by_kind
            d[kind] = d.get(kind, 0) + 1

    def acked(self, who, conn, w):
        tag = f"{who}/{conn.proto}"
        if w.pairs:
            self.state.ack_versions(w.pairs, tag, bypass=w.bypass)
        if w.ins:
            self.state.ack_inserts(w.ins, tag, bypass=w.bypass)
        if w.dele:
            self.state.ack_deletes(w.dele, tag, bypass=w.bypass)
        if w.pairs or w.ins or w.dele:
            if w.bypass:
                self.count("bypass_writes", proto="bypass:" + conn.proto, by="writes_by_protocol")
            else:
                self.count("writes", proto=conn.proto, by="writes_by_protocol")

    def rolled_back(self, w):
        if w.ins:
            self.state.insert_rolled_back(w.ins)
        if w.dele:
            self.state.delete_rolled_back(w.dele)

    def feeder(self, idx):
        """Run the readers' reads through feeder_dsn, unchecked: they only
        fill what that proxy shares with the checked one."""
        rnd = random.Random(self.seed * 4001 + idx)
        protocols = tuple(p for p in self.cfg.protocols if p != L1_PROTOCOL) or ("simple",)
        conns = {p: Conn(p, self.cfg.feeder_dsn) for p in protocols}
        try:
            while not self.stop.is_set():
                conn = conns[rnd.choice(protocols)]
                _, q, params = self.pick_read(rnd)
                try:
                    conn.q(q, params)
                    self.count("feeder_reads")
                except Exception:
                    self.recover(conn)
        finally:
            for c in conns.values():
                c.close()

    def bypass_writer(self, idx):
        self.writer(idx, bypass=True)

    def writer(self, idx, bypass=False):
        """bypass: write on direct connections to Postgres, not through the
        proxy (plain UPDATE/INSERT/DELETE, in autocommit and in transactions;
        no reads on those connections: they would not test the proxy)."""
        who = f"{'bypass' if bypass else 'writer'}-{idx}"
        rnd = random.Random(self.seed * 2003 + 7 + idx + (500009 if bypass else 0))
        cfg = self.cfg
        conns = self.conns(who, direct=bypass)
        try:
            while not self.stop.is_set():
                conn = conns[rnd.choice(cfg.protocols)]
                w = WriteSet(bypass)
                tx = rnd.random() < 0.4
                try:
                    if tx:
                        self.write_tx(rnd, who, conn, conns, w)
                    else:
                        w.phase = "commit"      # autocommit: the statement is its own commit
                        if not bypass and not conn.psycopg2 and rnd.random() < cfg.pipelines:
                            w.phase = "pipeline"
                            self.pipelined_write_read(rnd, who, conn, w)
                        else:
                            self.write_stmt(rnd, conn, w, self.pick_write(rnd, plain=bypass))
                        w.phase = "done"
                        self.acked(who, conn, w)
                        self.read_own(rnd, who, conns, w)
                except (psycopg.Error, psycopg2.Error, RuntimeError) as e:
                    self.error(who, conn, e, f"write ({'tx' if tx else 'autocommit'}, {w.phase})")
                    self.recover(conn)
                    # A server error before COMMIT (or on an autocommit statement)
                    # means nothing committed; anything else: outcome unknown.
                    if sqlstate(e) and (w.phase == "body" or (not tx and w.phase != "pipeline")):
                        self.rolled_back(w)
                    else:
                        with self.lock:
                            self.res.unknown_outcomes += 1
                if cfg.write_pause_ms:
                    time.sleep(rnd.expovariate(1000.0 / cfg.write_pause_ms))
                self.wait_for_burst()
        finally:
            for c in conns.values():
                c.close()

    def wait_for_burst(self):
        cfg = self.cfg
        if cfg.write_duty >= 1 or cfg.write_cycle_ms <= 0:
            return
        cycle = cfg.write_cycle_ms / 1000.0
        pos = (time.monotonic() - self.t0) % cycle
        if pos >= cycle * cfg.write_duty:
            self.stop.wait(cycle - pos)

    def write_tx(self, rnd, who, conn, conns, w):
        st = self.state
        w.phase = "body"
        commit = rnd.random() < 0.75       # decided up front: doomed writes if not
        conn.q(rnd.choice(("BEGIN", "START TRANSACTION", "BEGIN ISOLATION LEVEL READ COMMITTED")))
        if not w.bypass and rnd.random() < 0.3:
            # reads first (a lazily opened block may answer them from the cache), then write
            for _ in range(rnd.randint(1, 2)):
                self.read_one(rnd, who, conn, "rc-before-write")
        # Row locks in ascending id order (no deadlocks between these), or one
        # multi-row statement; inserts/deletes touch rows no one else locks.
        if rnd.random() < 0.75:
            ids = sorted({self.hot_or_any(rnd) for _ in range(rnd.randint(1, 4))})
            plan = [(self.pick_point_write(rnd, plain=w.bypass), i) for i in ids]
        else:
            plan = [(rnd.choice(("upd_grp_ord", "upd_in_ord")), None)]
        if rnd.random() < 0.3:
            plan.insert(rnd.randint(0, len(plan)), (rnd.choice(("ins", "del")), None))
        for kind, rid in plan:
            sp = rnd.random() < 0.12
            if sp:
                release = rnd.random() < 0.5
                mark = (len(w.pairs), len(w.ins), len(w.dele))
                conn.q("SAVEPOINT cc_sp")
            got = self.write_stmt(rnd, conn, w, kind, rid, doomed=not commit or (sp and not release))
            if sp:
                if release:
                    conn.q("RELEASE SAVEPOINT cc_sp")
                else:
                    conn.q("ROLLBACK TO SAVEPOINT cc_sp")
                    undone = WriteSet(w.bypass)
                    undone.ins, undone.dele = w.ins[mark[1]:], w.dele[mark[2]:]
                    del w.pairs[mark[0]:], w.ins[mark[1]:], w.dele[mark[2]:]
                    self.rolled_back(undone)
                    continue
            if got and not w.bypass and rnd.random() < 0.3:
                # inside the writing transaction: its own write, exactly (the row is locked)
                rid = got[0][0]
                mine = max(v for i, v in w.pairs if i == rid)
                t_sent = st.now()
                rows = conn.q(self.sql["point"], (rid,))
                val = rows[0][0] if rows else None
                self.count("reads", proto=conn.proto, mode="own-tx", by="reads_by_protocol")
                if val != mine:
                    self.violation("own-write-in-tx", who, conn, "own-tx", self.sql["point"], (rid,), mine, val,
                                   t_sent, rows=[rid])
        if commit:
            w.phase = "commit"
            conn.q(rnd.choice(("COMMIT", "END")))
            w.phase = "done"
            self.count("commits")
            self.acked(who, conn, w)
            self.read_own(rnd, who, conns, w)
        else:
            w.phase = "rollback"
            conn.q(rnd.choice(("ROLLBACK", "ABORT")))
            w.phase = "done"
            self.count("rollbacks")
            self.rolled_back(w)

    def read_own(self, rnd, who, conns, w):
        """Right after the acknowledgement: read one written row back, on any
        of the writer's connections (the sharpest read-your-write race)."""
        if w.bypass or not w.pairs or rnd.random() < 0.5:
            return
        rid = rnd.choice(w.pairs)[0]
        conn = conns[rnd.choice(self.cfg.protocols)]
        snap = self.state.snapshot_rows([rid])
        t_sent = self.state.now()
        try:
            rows = conn.q(self.sql["point"], (rid,))
        except (psycopg.Error, psycopg2.Error) as e:
            self.error(who, conn, e, "read own write")
            self.recover(conn)
            return
        self.count("reads", proto=conn.proto, mode="read-own-write", by="reads_by_protocol")
        self.check("point", who, conn, "read-own-write", self.sql["point"], (rid,), rows, snap, t_sent,
                   name="stale-own-write")

    # -- driver -----------------------------------------------------------------
    def lag_stats(self):
        with self.lock:
            lags = sorted(self.lags)
            self.res.max_bypass_lag_ms = round(lags[-1], 2) if lags else 0.0
            self.res.p99_bypass_lag_ms = round(lags[max(0, -(-len(lags) * 99 // 100) - 1)], 2) if lags else 0.0

    def run(self):
        cfg = self.cfg
        self.setup()
        threads = []
        started = time.monotonic()
        try:
            def wrap(fn, idx):
                def body():
                    try:
                        fn(idx)
                    except Exception:       # a client died: count it, keep the others going
                        with self.lock:
                            self.res.errors += 1
                            if len(self.res.error_samples) < 20:
                                self.res.error_samples.append({"thread": f"{fn.__name__}-{idx}",
                                                               "error": traceback.format_exc()[-2000:]})
                return body

            for i in range(cfg.writers):
                threads.append(threading.Thread(target=wrap(self.writer, i), name=f"writer-{i}",
                                                daemon=True))
            for i in range(cfg.bypass_writers):
                threads.append(threading.Thread(target=wrap(self.bypass_writer, i), name=f"bypass-{i}",
                                                daemon=True))
            for i in range(cfg.feeders if cfg.feeder_dsn else 0):
                threads.append(threading.Thread(target=wrap(self.feeder, i), name=f"feeder-{i}",
                                                daemon=True))
            for i in range(cfg.readers):
                threads.append(threading.Thread(target=wrap(self.reader, i), name=f"reader-{i}", daemon=True))
            for t in threads:
                t.start()
            self.stop.wait(cfg.seconds)
            self.stop.set()
            deadline = time.monotonic() + cfg.grace
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            self.res.hung_threads = [t.name for t in threads if t.is_alive()]
            self.res.seconds = time.monotonic() - started
            self.lag_stats()
            if not self.res.hung_threads:
                self.final_check()
        finally:
            if not self.res.hung_threads:
                self.teardown()
        return self.res


def run(cfg: Config) -> Result:
    return Checker(cfg).run()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", required=True, help="connection URL through the proxy")
    ap.add_argument("--direct-dsn", required=True, help="connection URL straight to Postgres")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--bypass-writers", type=int, default=0,
                    help="writers on direct connections to Postgres, bypassing the proxy")
    ap.add_argument("--bypass-bound-ms", type=float, default=1000.0,
                    help="a bypass write must be visible to reads sent this long after its acknowledgement")
    ap.add_argument("--rows", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--table", default=None)
    ap.add_argument("--groups", type=int, default=5)
    ap.add_argument("--hot-rows", type=int, default=4)
    ap.add_argument("--hot-share", type=float, default=0.6)
    ap.add_argument("--write-pause-ms", type=float, default=2.0)
    ap.add_argument("--write-cycle-ms", type=float, default=300.0,
                    help="writers are active write-duty of every cycle, quiet otherwise")
    ap.add_argument("--write-duty", type=float, default=0.5, help="1 = write all the time")
    ap.add_argument("--max-extra", type=int, default=12)
    ap.add_argument("--protocols", default=",".join(PROTOCOLS),
                    help=f"comma-separated subset of {','.join(PROTOCOLS)}")
    ap.add_argument("--rr-blocks", type=float, default=0.08)
    ap.add_argument("--rc-blocks", type=float, default=0.30)
    ap.add_argument("--pipelines", type=float, default=0.08, help="share of psycopg 3 operations in pipeline mode")
    ap.add_argument("--no-tricky-writes", action="store_true", help="no CTE writes or writing functions")
    ap.add_argument("--pinning-writes", action="store_true",
                    help="also SQL PREPARE/EXECUTE in writer transactions (pgvalet pins such a client to a "
                         "backend: needs --pool-size above the writers' connection count)")
    ap.add_argument("--keep-table", action="store_true")
    ap.add_argument("--stop-after-violations", type=int, default=0, metavar="N",
                    help="end the run once N violations were seen (0 = run the full time)")
    ap.add_argument("--json", metavar="PATH", help="write the full result as JSON here ('-' = stdout)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each violation and error as it happens")
    a = ap.parse_args(argv)
    protocols = tuple(p for p in a.protocols.split(",") if p)
    for p in protocols:
        if p not in PROTOCOLS:
            ap.error(f"unknown protocol {p}")
    cfg = Config(dsn=a.dsn, direct_dsn=a.direct_dsn, seconds=a.seconds, readers=a.readers, writers=a.writers,
                 bypass_writers=a.bypass_writers, bypass_bound_ms=a.bypass_bound_ms,
                 rows=a.rows, seed=a.seed, table=a.table, groups=a.groups, hot_rows=a.hot_rows,
                 hot_share=a.hot_share, write_pause_ms=a.write_pause_ms,
                 write_cycle_ms=a.write_cycle_ms, write_duty=a.write_duty, max_extra=a.max_extra,
                 protocols=protocols, rr_blocks=a.rr_blocks, rc_blocks=a.rc_blocks, pipelines=a.pipelines,
                 tricky_writes=not a.no_tricky_writes, pinning_writes=a.pinning_writes,
                 keep_table=a.keep_table, verbose=a.verbose,
                 stop_after_violations=a.stop_after_violations)
    res = run(cfg)
    print(res.summary())
    print("reads by protocol:", res.reads_by_protocol, "by mode:", res.reads_by_mode)
    print("writes by protocol:", res.writes_by_protocol)
    print("write statements by kind:", res.write_statements_by_kind)
    for s in res.samples[:10]:
        print("VIOLATION:", json.dumps(s, default=str))
    for e in res.error_samples[:10]:
        print("ERROR:", json.dumps(e, default=str))
    for m in res.final_mismatches[:10]:
        print("FINAL MISMATCH:", json.dumps(m, default=str))
    if a.json:
        text = json.dumps(res.to_dict(), indent=2, default=str)
        if a.json == "-":
            print(text)
        else:
            with open(a.json, "w") as f:
                f.write(text + "\n")
    if res.violations:
        return 1
    return 0 if res.ok else 2


if __name__ == "__main__":
    sys.exit(main())
