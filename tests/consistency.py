#!/usr/bin/python3
"""Randomized consistency checker for pgvalet's result cache (DESIGN.md section 1).

Writers and readers hammer one table through the proxy, mixing drivers and
protocols; every read is checked against what writers had been told was
committed before the read was sent:

    a read that starts after a write was acknowledged must see it,
    and no read outside a transaction sees what that transaction wrote
    before it commits (or ever, if it rolls back).

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

Readers snapshot the acknowledged state they will check BEFORE sending a
read, then check the answer against it:
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

Connections ("protocols"), each reader and writer holds one of each:
  simple   psycopg2: simple Query protocol, parameters inlined
  named    psycopg 3, prepare_threshold=0: named prepared statements
  unnamed  psycopg 3, prepare_threshold=None: extended protocol, unnamed
  binary   psycopg 3, unnamed statements, binary results
  auto     psycopg 3 defaults (unnamed, named after 5 executions)

Any violation is recorded with the query, parameters, protocol, mode,
timing (seconds since the start: when sent, when answered) and the recent
acknowledgement history of the rows involved (when, which version, by which
writer and protocol).  At the end, Postgres itself (direct connection) must
hold exactly the acked versions when every write's outcome is known.

Usable as a module (`run(Config(...))` -> Result) and as a CLI:

    /usr/bin/python3 tests/consistency.py --dsn PROXY_URL --direct-dsn PG_URL \\
        --seconds 30 --readers 4 --writers 3 --rows 50 --seed 1 [--json out.json] [-v]

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
    writes: int = 0               # acknowledged writing units (autocommit statements + commits)
    commits: int = 0
    rollbacks: int = 0
    aborted: int = 0              # deadlocks/serialization failures (expected)
    errors: int = 0               # anything else
    stale_reads: int = 0          # reads that missed an acknowledged write
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
                f"{self.seconds:.1f}s; stale reads {self.stale_reads}, violations {self.violations} "
                f"{self.violation_kinds or ''}; errors {self.errors}; hung {len(self.hung_threads)}; "
                f"final mismatches {len(self.final_mismatches)}")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["ok"] = self.ok
        return d


class WriteSet:
    """What one writing unit (statement or transaction) reported."""

    def __init__(self):
        self.pairs = []   # (id, ver) from RETURNING
        self.ins = []     # extra ids inserted
        self.dele = []    # extra ids deleted
        self.phase = "start"


# ---------------------------------------------------------------------------
# Shared acknowledged state
# ---------------------------------------------------------------------------

class State:
    """What writers have been told is committed, guarded by one lock."""

    def __init__(self, rows, t0):
        self.lock = threading.Lock()
        self.t0 = t0
        self.rows = rows
        self.acked = [0] * (rows + 1)                 # by id; [0] unused
        self.history = [collections.deque(maxlen=8) for _ in range(rows + 1)]
        self.seq = 0                                  # one tick per acknowledgement
        # extra rows
        self.next_extra = rows + 1
        self.ins_possible = 0          # inserts sent, minus those known rolled back
        self.ins_ack_seq = {}          # id -> seq of its acknowledged insert
        self.del_ack_seq = {}          # id -> seq of its acknowledged delete
        self.n_del_acked = 0
        self.live = set()              # insert acked, no delete sent yet
        self.del_started = set()       # delete sent, not acked (or outcome unknown)
        self.extra_history = {}        # id -> list of events

    def now(self):
        return round(time.monotonic() - self.t0, 4)

    # -- writers ------------------------------------------------------------
    def ack_versions(self, pairs, who):
        """pairs: [(id, ver)] acknowledged as committed."""
        with self.lock:
            self.seq += 1
            t = self.now()
            for rid, ver in pairs:
                if ver > self.acked[rid]:
                    self.acked[rid] = ver
                self.history[rid].append((t, ver, who))

    def new_extra_id(self):
        with self.lock:
            rid = self.next_extra
            self.next_extra += 1
            self.ins_possible += 1
            self.extra_history[rid] = [(self.now(), "insert sent")]
            return rid

    def ack_inserts(self, ids, who):
        with self.lock:
            self.seq += 1
            for rid in ids:
                self.ins_ack_seq[rid] = self.seq
                self.live.add(rid)
                self.extra_history[rid].append((self.now(), f"insert acked by {who}"))

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

    def ack_deletes(self, ids, who):
        with self.lock:
            self.seq += 1
            for rid in ids:
                self.del_started.discard(rid)
                self.del_ack_seq[rid] = self.seq
                self.n_del_acked += 1
                self.extra_history[rid].append((self.now(), f"delete acked by {who}"))

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
    def snapshot(self):
        with self.lock:
            return Snapshot(list(self.acked), self.seq, self.n_del_acked)

    def snapshot_rows(self, ids):
        with self.lock:
            return Snapshot({i: self.acked[i] for i in ids}, self.seq, self.n_del_acked)

    def extra_bounds(self, snap, seen=None):
        """After a read: (must_present, bad_present, upper) for the extra rows.
        must_present: extras acked before the read whose delete was not sent
        by now; bad_present: seen extras whose delete was acked before the read
        (or that were never inserted); upper: how many extras may be visible."""
        with self.lock:
            must = {i for i in self.live if self.ins_ack_seq.get(i, 1 << 62) <= snap.seq}
            bad = set()
            for i in seen or ():
                if self.del_ack_seq.get(i, 1 << 62) <= snap.seq or i >= self.next_extra:
                    bad.add(i)
            upper = self.ins_possible - snap.n_del_acked
            return must, bad, upper

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
    acked: object      # list by id, or {id: ver}
    seq: int
    n_del_acked: int

    def ver(self, rid):
        return self.acked[rid]


# ---------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------

class Conn:
    """One client connection through the proxy, in one protocol."""

    def __init__(self, proto, dsn):
        self.proto = proto
        self.dsn = dsn
        self.c = None
        self.notices = []
        self.open()

    def open(self):
        if self.proto == "simple":
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
        if self.proto == "simple":
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
        if self.proto == "simple":
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
        if self.proto == "simple":
            return self.c.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR
        return self.c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR

    def in_transaction(self):
        if self.proto == "simple":
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
        self.state = State(cfg.rows, self.t0)
        self.stop = threading.Event()
        self.lock = threading.Lock()        # counters and records below
        self.res = Result(table=self.table, seed=self.seed, seconds=0.0)
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
        for i in st.del_ack_seq:
            if i in extras:
                bad.append({"id": i, "extra": "acked delete still present"})
        self.res.final_mismatches = bad[:50]

    # -- thread helpers -------------------------------------------------------
    def conns(self, who):
        return {p: Conn(p, self.cfg.dsn) for p in self.cfg.protocols}

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
        if got is None or got < wrote or got < snap.ver(rid):
            self.violation("stale-pipelined-own-write", who, conn, "pipeline-own-write",
                           self.sql["upd"] + " ; " + self.sql["point"], (rid, rid),
                           max(wrote, snap.ver(rid)), got, t_sent, rows=[rid])

    def check(self, kind, who, conn, mode, q, params, rows, snap, t_sent):
        cfg = self.cfg
        v = lambda *a, **k: self.violation(*a, **k)  # noqa: E731
        dirty = [r for r in rows if any(isinstance(x, int) and x >= DIRTY for x in r)]
        if dirty:
            v("dirty-read", who, conn, mode, q, params, f"no value >= {DIRTY} (uncommitted)", dirty, t_sent,
              rows=[r[0] for r in dirty if len(r) > 1], stale=False)
            return
        if kind == "point":
            rid = params[0]
            exp = snap.ver(rid)
            got = rows[0][0] if rows else None
            if got is None or got < exp:
                v("stale-point", who, conn, mode, q, params, exp, got, t_sent, rows=[rid])
        elif kind in ("in3", "grp"):
            ids = list(params) if kind == "in3" else self.members[params[0]]
            got_ids = [r[0] for r in rows]
            if got_ids != sorted(set(ids)):
                v("wrong-rows", who, conn, mode, q, params, sorted(set(ids)), got_ids, t_sent, rows=ids)
            stale = [(r[0], snap.ver(r[0]), r[1]) for r in rows
                     if 1 <= r[0] <= cfg.rows and r[1] < snap.ver(r[0])]
            if stale:
                v("stale-" + kind, who, conn, mode, q, params,
                  {i: e for i, e, _ in stale}, {i: g for i, _, g in stale}, t_sent, rows=[i for i, _, _ in stale])
        elif kind == "extras":
            seen = [r[0] for r in rows]
            must, bad, upper = self.state.extra_bounds(snap, seen)
            missing = sorted(must - set(seen))
            if missing:
                v("stale-extras-missing-insert", who, conn, mode, q, params, missing, seen, t_sent, rows=missing)
            if bad:
                v("stale-extras-deleted-present", who, conn, mode, q, params, [], sorted(bad), t_sent,
                  rows=sorted(bad))
            if any(r[1] != 0 or r[0] <= cfg.rows for r in rows):
                v("wrong-rows", who, conn, mode, q, params, "extras (id > rows, ver 0)", rows, t_sent)
        elif kind == "sum":
            exp = sum(snap.acked)
            got = rows[0][0] if rows else None
            if got is None or got < exp:
                lag = {i: snap.acked[i] for i in range(1, cfg.rows + 1) if snap.acked[i]}
                v("stale-sum", who, conn, mode, q, params, exp, got, t_sent,
                  extra={"acked_nonzero_rows": len(lag)})
        elif kind == "count":
            must, _bad, upper = self.state.extra_bounds(snap)
            lo, hi = cfg.rows + len(must), cfg.rows + upper
            got = rows[0][0]
            if got < lo:
                v("stale-count-low", who, conn, mode, q, params, f">= {lo}", got, t_sent, rows=sorted(must))
            elif got > hi:
                v("stale-count-high", who, conn, mode, q, params, f"<= {hi}", got, t_sent)
        elif kind == "count_ge":
            th = params[0]
            exp = sum(1 for i in range(1, cfg.rows + 1) if snap.acked[i] >= th)
            got = rows[0][0]
            if got < exp:
                v("stale-count-ge", who, conn, mode, q, params, f">= {exp}", got, t_sent)

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
                    elif conn.proto != "simple" and r < cfg.rr_blocks + cfg.rc_blocks + cfg.pipelines:
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
    def pick_write(self, rnd):
        cfg = self.cfg
        choices = ["upd", "upd_grp", "upd_in", "upd_grp_ord", "upd_in_ord", "ins", "del"]
        weights = [50, 2, 2, 6, 6, 6, 6]
        if cfg.tricky_writes:
            choices += ["upd_cte", "upd_fn", "upsert", "do", "call", "multi"]
            weights += [4, 3, 3, 2, 2, 2]
        return rnd.choices(choices, weights=weights)[0]

    def pick_point_write(self, rnd):
        """A single-row write for a transaction (MERGE and SQL PREPARE/EXECUTE
        only there: their versions are read back inside it)."""
        if not self.cfg.tricky_writes:
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
        elif kind in ("upd_fn", "call", "upsert") or (kind == "multi" and conn.proto == "simple"):
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
            self.count_kind("ins_doom" if doomed else "ins")
            return []
        else:
            rid = self.state.pick_delete(rnd)
            if rid is None:
                return []
            w.dele.append(rid)
            if not conn.q(sql["del"], (rid,)):
                raise RuntimeError(f"DELETE of live extra row {rid} deleted nothing")
            self.count_kind(kind)
            return []
        if not got:
            raise RuntimeError(f"{kind} updated nothing")
        w.pairs += got
        self.count_kind(kind)
        return got

    def count_kind(self, kind):
        with self.lock:
            d = self.res.write_statements_by_kind
            d[kind] = d.get(kind, 0) + 1

    def acked(self, who, conn, w):
        tag = f"{who}/{conn.proto}"
        if w.pairs:
            self.state.ack_versions(w.pairs, tag)
        if w.ins:
            self.state.ack_inserts(w.ins, tag)
        if w.dele:
            self.state.ack_deletes(w.dele, tag)
        if w.pairs or w.ins or w.dele:
            self.count("writes", proto=conn.proto, by="writes_by_protocol")

    def rolled_back(self, w):
        if w.ins:
            self.state.insert_rolled_back(w.ins)
        if w.dele:
            self.state.delete_rolled_back(w.dele)

    def writer(self, idx):
        who = f"writer-{idx}"
        rnd = random.Random(self.seed * 2003 + 7 + idx)
        cfg = self.cfg
        conns = self.conns(who)
        try:
            while not self.stop.is_set():
                conn = conns[rnd.choice(cfg.protocols)]
                w = WriteSet()
                tx = rnd.random() < 0.4
                try:
                    if tx:
                        self.write_tx(rnd, who, conn, conns, w)
                    else:
                        w.phase = "commit"      # autocommit: the statement is its own commit
                        if conn.proto != "simple" and rnd.random() < cfg.pipelines:
                            w.phase = "pipeline"
                            self.pipelined_write_read(rnd, who, conn, w)
                        else:
                            self.write_stmt(rnd, conn, w, self.pick_write(rnd))
                        w.phase = "done"
                        self.acked(who, conn, w)
                        self.read_own(rnd, who, conns, w.pairs)
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
        if rnd.random() < 0.3:
            # reads first (a lazily opened block may answer them from the cache), then write
            for _ in range(rnd.randint(1, 2)):
                self.read_one(rnd, who, conn, "rc-before-write")
        # Row locks in ascending id order (no deadlocks between these), or one
        # multi-row statement; inserts/deletes touch rows no one else locks.
        if rnd.random() < 0.75:
            ids = sorted({self.hot_or_any(rnd) for _ in range(rnd.randint(1, 4))})
            plan = [(self.pick_point_write(rnd), i) for i in ids]
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
                    undone = WriteSet()
                    undone.ins, undone.dele = w.ins[mark[1]:], w.dele[mark[2]:]
                    del w.pairs[mark[0]:], w.ins[mark[1]:], w.dele[mark[2]:]
                    self.rolled_back(undone)
                    continue
            if got and rnd.random() < 0.3:
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
            self.read_own(rnd, who, conns, w.pairs)
        else:
            w.phase = "rollback"
            conn.q(rnd.choice(("ROLLBACK", "ABORT")))
            w.phase = "done"
            self.count("rollbacks")
            self.rolled_back(w)

    def read_own(self, rnd, who, conns, pairs):
        """Right after the acknowledgement: read one written row back, on any
        of the writer's connections (the sharpest read-your-write race)."""
        if not pairs or rnd.random() < 0.5:
            return
        rid = rnd.choice(pairs)[0]
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
        got = rows[0][0] if rows else None
        if got is None or got < snap.ver(rid):
            self.violation("stale-own-write", who, conn, "read-own-write", self.sql["point"], (rid,),
                           snap.ver(rid), got, t_sent, rows=[rid])

    # -- driver -----------------------------------------------------------------
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
