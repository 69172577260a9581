#!/usr/bin/python3
"""Python clients: direct Postgres vs through pgvalet, sync and async, in one run.

Starts a throwaway Postgres (bench/run.py's start_cluster) with a 1,000-row
`bench_users` table, a pgvalet in front of it (bench/run.py's start_pgvalet:
transaction pooling, its result cache on), and times one read by key -- id 42 --
from Python, sync and async:

  driver   psycopg2 cursor.execute + fetchone (autocommit) / asyncpg conn.fetchrow
  core     `with engine.connect() as c: c.execute(select(...).where(id == :id)).one()`
           (SQLAlchemy Core: pool checkout, BEGIN, SELECT, ROLLBACK)
  orm      `Session.get(User, 42)` in a fresh Session / AsyncSession each time

against each column: `direct` (Postgres), `pgvalet` (the proxy; the same key
every time, so its result cache answers), `l1` (the in-process L1 cache under the
driver / engine) and `ormcache` (the ORM cache API, mem:// backend; ORM rows
only).  Each cell is the median (and p90) of
--iterations individually timed operations, after --warmup untimed ones, taken in
--rounds rounds that alternate the columns so drift on the machine hits all alike.
Prints the table and writes bench/results/<date>-python.csv, with the floor of the
timing method per row: a timed dict lookup (sync rows), the same in an awaited coroutine
(async rows).

Columns are Target objects made by one function each (COLUMNS): the L1 cache and
the ORM cache columns are one more function that returns a Target whose engine /
session factories switch that cache on (and None for a row they do not serve).

    /usr/bin/python3 bench/python_bench.py --binary build/pgvalet --iterations 1000
"""

import argparse
import asyncio
import datetime
import os
import re
import shlex
import statistics
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
import run as rb  # noqa: E402  bench/run.py: cluster, pgvalet, cleanup, CSV helpers

import asyncpg  # noqa: E402
import psycopg2  # noqa: E402
import sqlalchemy  # noqa: E402
from sqlalchemy import Column, Integer, String, select  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: E402
from sqlalchemy.orm import Session, declarative_base  # noqa: E402

KEY = 42
ROWS_IN_TABLE = 1000

Base = declarative_base()


class User(Base):
    __tablename__ = "bench_users"
    id = Column(Integer, primary_key=True)
    email = Column(String, nullable=False)


SQL = "SELECT id, email FROM bench_users WHERE id = %s"       # psycopg2
SQL_ASYNCPG = "SELECT id, email FROM bench_users WHERE id = $1"
CORE_STMT = select(User.__table__.c.id, User.__table__.c.email).where(
    User.__table__.c.id == sqlalchemy.bindparam("id"))


# --------------------------------------------------------------------------
# columns: one way of reaching Postgres each

class Target:
    """One column.  The factories return what a row times; override one to switch a
    cache on for it, or return None from it for a row the column does not serve."""

    serves_core = True  # False: the Core rows are N/A for this column

    def __init__(self, name, port, note=""):
        self.name, self.port, self.note = name, port, note
        self.url = f"postgresql://{rb.USER}:{rb.PASSWORD}@127.0.0.1:{port}/{rb.DB}"

    def psycopg2(self):
        conn = psycopg2.connect(self.url)
        conn.autocommit = True
        return conn

    async def asyncpg(self):
        return await asyncpg.connect(self.url)

    def engine(self):
        return sqlalchemy.create_engine(self.url, pool_size=1)

    def async_engine(self):
        return create_async_engine(self.url.replace("postgresql://", "postgresql+asyncpg://"),
                                   pool_size=1)

    def session(self, engine):
        return Session(engine)

    def async_session(self, engine):
        return AsyncSession(engine)


def column_direct(env):
    return Target("direct", env.pg_port, "Postgres itself")


def column_pgvalet(env):
    return Target("pgvalet", env.valet_port, "through the proxy (transaction pooling, result "
                  "cache on: the same key every time, so the proxy's cache answers)")


class L1Target(Target):
    """Through the proxy with the in-process L1 (pgvalet.l1) under each client."""

    def __init__(self, env):
        super().__init__("l1", env.valet_port, "through the proxy, the in-process L1 cache "
                         "under the client (pgvalet.l1): repeated reads never leave the process")
        from pgvalet import l1
        self.l1 = l1
        self.cache = l1.for_address(push_address(env.valet_log))

    def hits(self):
        return self.cache.stats()["hits"]

    def psycopg2(self):
        conn = self.l1.psycopg2_connect(self.url, self.cache)
        conn.autocommit = True
        return conn

    async def asyncpg(self):
        return await self.l1.asyncpg_connect(self.url, self.cache)

    def engine(self):
        engine = super().engine()
        self.l1.attach(engine, self.cache)
        return engine

    def async_engine(self):
        engine = super().async_engine()
        self.l1.attach(engine.sync_engine, self.cache)
        return engine


def push_address(log_path):
    """The proxy's push channel, from its start-up banner."""
    with open(log_path) as f:
        m = re.search(r"push channel for in-process caches on (\S+?)(?: and (\S+))?$", f.read(),
                      re.M)
    if not m:
        raise RuntimeError("pgvalet printed no push channel line")
    return f"unix:{m.group(2)}" if m.group(2) else m.group(1)


def column_l1(env):
    return L1Target(env)


class OrmCacheTarget(Target):
    """Through the proxy with the ORM cache API (pgvalet.orm, mem:// backend, every op
    cached) bound to each engine; ORM rows only (it caches ORM statements, not Core
    or driver calls).  The engine carries the proxy's push address the way a
    pgvalet.sqlalchemy engine does, so the cache follows the proxy's invalidations
    exactly as in an application."""

    serves_core = False

    def __init__(self, env):
        super().__init__("ormcache", env.valet_port, "through the proxy, the ORM cache API "
                         "(pgvalet.orm.configure(backend='mem://'), bind(engine)) in front")
        from pgvalet import orm
        self.orm = orm
        self.address = push_address(env.valet_log)
        self.caches = []

    def psycopg2(self):
        return None

    async def asyncpg(self):
        return None

    def _bind(self, engine):
        sync = getattr(engine, "sync_engine", engine)
        sync.pgvalet = types.SimpleNamespace(push_address=self.address)
        cache = self.orm.configure(backend="mem://", models={"*": {"ops": "all"}})
        cache.bind(engine)
        if not cache.wait_ready(5.0):
            raise RuntimeError("ORM cache: the proxy's push channel did not come up")
        self.caches.append(cache)
        return engine

    def engine(self):
        return self._bind(super().engine())

    def async_engine(self):
        return self._bind(super().async_engine())

    def hits(self):
        return sum(c.stats["hits"] for c in self.caches)


def column_ormcache(env):
    return OrmCacheTarget(env)


COLUMNS = [("direct", column_direct), ("pgvalet", column_pgvalet), ("l1", column_l1),
           ("ormcache", column_ormcache)]


# --------------------------------------------------------------------------
# rows: each returns (setup, op, teardown) for a target; op is timed

def timed(op, n):
    """Run op() n times; the duration of each in µs."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        op()
        out.append((clock() - t0) / 1000)
    return out


async def timed_async(op, n):
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        await op()
        out.append((clock() - t0) / 1000)
    return out


def row_driver_sync(t, n, warmup):
    conn = t.psycopg2()
    if conn is None:
        return None
    cur = conn.cursor()

    def op():
        cur.execute(SQL, (KEY,))
        assert cur.fetchone()[0] == KEY
    try:
        timed(op, warmup)
        return timed(op, n)
    finally:
        conn.close()


def row_driver_async(t, n, warmup):
    async def main():
        conn = await t.asyncpg()
        if conn is None:
            return None

        async def op():
            assert (await conn.fetchrow(SQL_ASYNCPG, KEY))[0] == KEY
        try:
            await timed_async(op, warmup)
            return await timed_async(op, n)
        finally:
            await conn.close()
    return asyncio.run(main())


def row_core_sync(t, n, warmup):
    engine = t.engine() if t.serves_core else None
    if engine is None:
        return None

    def op():
        with engine.connect() as c:
            assert c.execute(CORE_STMT, {"id": KEY}).one()[0] == KEY
    try:
        timed(op, warmup)
        return timed(op, n)
    finally:
        engine.dispose()


def row_core_async(t, n, warmup):
    async def main():
        engine = t.async_engine() if t.serves_core else None
        if engine is None:
            return None

        async def op():
            async with engine.connect() as c:
                assert (await c.execute(CORE_STMT, {"id": KEY})).one()[0] == KEY
        try:
            await timed_async(op, warmup)
            return await timed_async(op, n)
        finally:
            await engine.dispose()
    return asyncio.run(main())


def row_orm_sync(t, n, warmup):
    engine = t.engine()
    if engine is None:
        return None

    def op():
        with t.session(engine) as s:
            assert s.get(User, KEY).id == KEY
    try:
        timed(op, warmup)
        return timed(op, n)
    finally:
        engine.dispose()


def row_orm_async(t, n, warmup):
    async def main():
        engine = t.async_engine()
        if engine is None:
            return None

        async def op():
            async with t.async_session(engine) as s:
                assert (await s.get(User, KEY)).id == KEY
        try:
            await timed_async(op, warmup)
            return await timed_async(op, n)
        finally:
            await engine.dispose()
    return asyncio.run(main())


ROWS = [  # (name, what it times, function)
    ("driver-sync", "psycopg2 cursor.execute + fetchone", row_driver_sync),
    ("driver-async", "asyncpg conn.fetchrow", row_driver_async),
    ("core-sync", "engine.connect() + execute(select where id = :id)", row_core_sync),
    ("core-async", "async engine.connect() + execute(select ...)", row_core_async),
    ("orm-sync", "Session.get(User, 42), fresh Session", row_orm_sync),
    ("orm-async", "AsyncSession.get(User, 42), fresh AsyncSession", row_orm_async),
]


def dict_lookup_us(n=200000):
    """Median timed Python dict lookup (µs): the floor of this timing method."""
    d = {(SQL, KEY): ("row",)}
    key = (SQL, KEY)
    return statistics.median(timed(lambda: d.get(key), n))


def async_dict_lookup_us(n=200000):
    """The same lookup in an awaited coroutine (µs): the floor of an async API, whose
    every call is one (asyncpg's fetchrow, and the L1 under it)."""
    d = {(SQL_ASYNCPG, KEY): ("row",)}
    key = (SQL_ASYNCPG, KEY)

    async def lookup():
        return d.get(key)
    return statistics.median(asyncio.run(timed_async(lookup, n)))


# --------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description="Python clients (psycopg2, asyncpg, SQLAlchemy "
                                             "Core and ORM) direct vs through pgvalet")
    ap.add_argument("--binary", default=os.path.join(rb.ROOT, "build", "pgvalet"))
    ap.add_argument("--iterations", type=int, default=2000, help="timed operations per cell")
    ap.add_argument("--warmup", type=int, default=200, help="untimed operations per round")
    ap.add_argument("--rounds", type=int, default=4,
                    help="rounds per cell, alternating the columns (iterations are split)")
    ap.add_argument("--only", default="", help="comma list of rows and/or columns")
    ap.add_argument("--pool-size", type=int, default=20)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--extra-args", default="", help="extra pgvalet arguments, one string")
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--own-cluster", action="store_true")
    ap.add_argument("--no-csv", action="store_true")
    a = ap.parse_args()
    only = {w.strip() for w in a.only.split(",") if w.strip()}
    row_names = {r[0] for r in ROWS}
    col_names = {c[0] for c in COLUMNS}
    bad = only - row_names - col_names
    if bad:
        ap.error(f"--only: unknown {sorted(bad)}; rows {sorted(row_names)}, "
                 f"columns {sorted(col_names)}")
    a.rows = [r for r in ROWS if not (only & row_names) or r[0] in only]
    a.columns = [c for c in COLUMNS if not (only & col_names) or c[0] in only]
    if a.iterations < a.rounds or a.rounds < 1 or a.warmup < 0:
        ap.error("need --iterations >= --rounds >= 1 and --warmup >= 0")
    a.extra = shlex.split(a.extra_args)
    a.binary = os.path.abspath(a.binary)  # pgvalet runs in its own directory
    return a


class Env:
    pg_port = None
    valet_port = None
    valet_log = None


def fmt_us(v):
    return "N/A" if v is None else f"{v:,.1f}"


def main():
    a = parse_args()
    started = datetime.datetime.now()
    mach = rb.machine_info()
    base = rb.make_tempdir("pgvalet-pybench-", owner="postgres")
    os.chmod(base, 0o711)
    env = Env()
    env.pg_port = rb.start_cluster(base, own=a.own_cluster)
    rc, _out, err = rb.psql(env.pg_port,
                            "CREATE TABLE bench_users (id int PRIMARY KEY, email text NOT NULL); "
                            "INSERT INTO bench_users SELECT i, 'user' || i || '@example.com' "
                            f"FROM generate_series(1, {ROWS_IN_TABLE}) i; ANALYZE bench_users")
    if rc != 0:
        raise RuntimeError(f"cannot create bench_users: {err}")
    env.valet_port, proc, errpath = rb.start_pgvalet(
        base, a.binary, env.pg_port, "transaction", a.pool_size, a.workers, a.extra)
    env.valet_log = errpath
    targets = [make(env) for _name, make in a.columns]

    floor = dict_lookup_us()
    async_floor = async_dict_lookup_us()
    per_round = a.iterations // a.rounds
    results = {}  # (row, column) -> list of µs, or None
    for name, _what, fn in a.rows:
        samples = {t.name: [] for t in targets}
        for rnd in range(a.rounds):
            order = targets if rnd % 2 == 0 else targets[::-1]
            for t in order:
                got = fn(t, per_round, a.warmup)
                if got is None:
                    samples[t.name] = None
                elif samples[t.name] is not None:
                    samples[t.name].extend(got)
        for t in targets:
            results[(name, t.name)] = samples[t.name]
        rb.log(f"{name}: " + ", ".join(
            f"{t.name} {fmt_us(median(results[(name, t.name)]))} µs" for t in targets))

    header = ["row"] + [f"{t.name} µs" for t in targets] + \
        [f"direct/{t.name}" for t in targets if t.name != "direct"] + ["times"]
    table, csv_rows = [], []
    for name, what, _fn in a.rows:
        med = {t.name: median(results[(name, t.name)]) for t in targets}
        direct = med.get("direct")
        table.append([name] + [fmt_us(med[t.name]) for t in targets]
                     + [rb.fmt_ratio(direct, med[t.name]) for t in targets if t.name != "direct"]
                     + [what])
        for t in targets:
            s = results[(name, t.name)]
            csv_rows.append([started.isoformat(timespec="seconds"), name, t.name,
                             f"{med[t.name]:.2f}" if med[t.name] is not None else "",
                             f"{p90(s):.2f}" if s else "", len(s) if s else 0,
                             rb.fmt_ratio(direct, med[t.name]), KEY,
                             sqlalchemy.__version__, psycopg2.__version__.split()[0],
                             asyncpg.__version__, mach["nproc"], mach["cpu_model"],
                             f"{async_floor if name.endswith('-async') else floor:.3f}"])

    rb.stop_process(proc, "pgvalet")
    stats = rb.valet_cache_stats(errpath)
    print()
    print(f"Python clients, median µs per operation ({a.iterations} timed per cell, "
          f"{a.rounds} rounds; SQLAlchemy {sqlalchemy.__version__}, {mach['nproc']} CPUs)")
    rb.print_table(header, table)
    rb.print_notes([f"{t.name}: {t.note}" for t in targets] +
                   [f"{t.name}: {t.hits():,} cache hits over the run" for t in targets
                    if hasattr(t, "hits")] +
                   [f"floor: a timed Python dict lookup takes {floor:.2f} µs here; "
                    f"in an awaited coroutine, {async_floor:.2f} µs",
                    "pgvalet result cache over the whole run: " + (
                        rb.fmt_hits(stats[0], stats[1]) if stats else "no stats line")])
    rb.write_csv(a, started, "python",
                 ["date", "row", "target", "median_us", "p90_us", "ops", "direct_over_target",
                  "key", "sqlalchemy", "psycopg2", "asyncpg", "nproc", "cpu_model",
                  "floor_us"], csv_rows)
    return 0


def median(samples):
    return statistics.median(samples) if samples else None


def p90(samples):
    s = sorted(samples)
    return s[min(len(s) - 1, int(0.9 * len(s)))]


if __name__ == "__main__":
    try:
        rc = main()
    except KeyboardInterrupt:
        rb.log("interrupted, cleaning up")
        rc = 130
    except RuntimeError as e:
        rb.log(f"error: {e}")
        rc = 1
    finally:
        rb.CLEANUP.run()
    sys.exit(rc)
