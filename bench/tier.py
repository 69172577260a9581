#!/usr/bin/python3
"""bench/tier.py - what a read costs with the shared result tier
(`--cache-tier`): through a proxy that finds the answer in Redis, against
its own in-process cache and against Postgres.

`make bench-tier` (= `/usr/bin/python3 bench/tier.py --binary build/pgvalet`)
starts a throwaway Postgres (bench/run.py's helpers), a redis-server on a
free loopback port, and three proxies: a and b share the tier, c has none.
On a table of --rows rows it reads every row once by primary key, then runs
--scans distinct aggregates that each scan the table, one client (psycopg2,
simple protocol), each in this order:

| row | what answers |
| --- | --- |
| `upstream, no tier` | c: a local miss, Postgres answers |
| `upstream + tier miss` | a: a local miss, a tier lookup that misses, Postgres answers, stored in both |
| `tier hit` | b: a local miss, the tier answers (a stored it) |
| `local hit` | b again: its own cache answers |

Per row: mean, p50 and p99 of the client's round trip in microseconds, and
how many of the reads reached Postgres (pg_stat_statements).  One CSV in
--results-dir (`<date>-tier.csv`).  Everything it starts is removed at exit.
"""
import argparse
import datetime
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (bench/run.py: cluster, proxies, tables)

TABLE = "bench_tier"
HEADER = ["row", "reads", "mean_us", "p50_us", "p99_us", "reached_postgres"]


def start_redis():
    port = bench.free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.CLEANUP.add("redis-server", lambda: bench.stop_process(proc, "redis-server"))
    deadline = time.time() + 10
    while not bench.tcp_open(port):
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    return port


def upstream_calls(d):
    with d.cursor() as cur:
        cur.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                    f" WHERE query LIKE '%{TABLE}%' AND query NOT LIKE '%pg_stat%'")
        return int(cur.fetchone()[0])


POINT = "SELECT v FROM " + TABLE + " WHERE id = {}"
SCAN = "SELECT count(*), sum(v) FROM " + TABLE + " WHERE v % {} = 0"


def read_all(conn, ids, sql):
    lat = []
    with conn.cursor() as cur:
        for i in ids:
            t = time.perf_counter()
            cur.execute(sql.format(i))
            cur.fetchone()
            lat.append(time.perf_counter() - t)
    return sorted(lat)


def row(name, lat, reached):
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e6
    return [name, str(len(lat)), f"{sum(lat) / len(lat) * 1e6:.0f}", f"{pct(50):.0f}",
            f"{pct(99):.0f}", str(reached)]


def wait_warm(conn, d):
    """Past the catalog's first sight of the table and of count/sum on this
    proxy: until it knows a function, a statement calling it may write, and
    invalidates the database (the tier too)."""
    for sql, i in ((POINT, 0), (SCAN, 1)):
        deadline = time.time() + 20
        while True:
            before = upstream_calls(d)
            read_all(conn, [i], sql)
            if upstream_calls(d) == before:
                break
            if time.time() > deadline:
                raise RuntimeError("the proxy never served the warm-up read from its cache")
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--scans", type=int, default=300, help="distinct aggregate reads (each scans the table)")
    ap.add_argument("--tier-timeout", default="2ms", help="--cache-tier-timeout of a and b")
    ap.add_argument("--results-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--no-csv", action="store_true")
    a = ap.parse_args()
    started = datetime.datetime.now()
    base = bench.make_tempdir("pgvalet-bench-tier-", owner="postgres")
    pg_port = bench.start_cluster(base)
    d = bench.pg_connect(pg_port)
    with d.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cur.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, v int NOT NULL)")
        cur.execute(f"INSERT INTO {TABLE} SELECT g, g * 10 FROM generate_series(1, {a.rows}) g")
    tier = ["--cache-tier", f"redis://127.0.0.1:{start_redis()}",
            "--cache-tier-timeout", a.tier_timeout]
    proxies = {}
    for name, extra in (("a", tier), ("b", tier), ("c", [])):
        port, proc, errpath = bench.start_pgvalet(base, a.binary, pg_port, "transaction", 20, 1,
                                                  extra, name=f"pgvalet-{name}")
        bench.wait_stream_up(errpath, proc, f"pgvalet-{name}")
        proxies[name] = (bench.pg_connect(port), proc, errpath)
    # a proxy's first read of the table adds it to the publication, DDL the
    # others' streams answer with a flush: warm up once every one is there
    for _ in range(2):
        for conn, _, _ in proxies.values():
            wait_warm(conn, d)
    table = []
    for what, sql, ids in (("point", POINT, list(range(1, a.rows + 1))),
                           ("scan", SCAN, list(range(2, 2 + a.scans)))):
        for name, who in (("upstream, no tier", "c"), ("upstream + tier miss", "a"),
                          ("tier hit", "b"), ("local hit", "b")):
            if name == "tier hit":
                time.sleep(1.0)  # a's stores are asynchronous
            before = upstream_calls(d)
            lat = read_all(proxies[who][0], ids, sql)
            table.append(row(f"{what}: {name}", lat, upstream_calls(d) - before))
    counters = []
    for who in ("a", "b"):
        proc, errpath = proxies[who][1], proxies[who][2]
        bench.stop_process(proc, f"pgvalet-{who}")
        with open(errpath, errors="replace") as f:
            counters += [f"{who}: " + ln.split("INFO ", 1)[-1].strip() for ln in f
                         if "cache tier: " in ln or "stream: " in ln]
    print()
    m = bench.machine_info()
    print(f"Shared result tier: {a.rows} point reads or {a.scans} scans of {a.rows} rows per row, "
          "one psycopg2 client, "
          f"--cache-tier-timeout {a.tier_timeout}; {m['nproc']} x {m['cpu_model']}, "
          f"load {os.getloadavg()[0]:.1f}")
    bench.print_table(HEADER, table)
    bench.print_notes(counters)
    bench.write_csv(a, started, "tier", HEADER, table)
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    except KeyboardInterrupt:
        bench.log("interrupted, cleaning up")
        rc = 130
    except RuntimeError as e:
        bench.log(f"error: {e}")
        rc = 1
    finally:
        bench.CLEANUP.run()
    sys.exit(rc)
