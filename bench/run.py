#!/usr/bin/python3
"""pgbench: direct Postgres vs PgBouncer vs pgvalet (vs pgpool-II), in one run.

Starts a throwaway Postgres cluster, loads `pgbench -i -s 10`, starts PgBouncer
and pgvalet with the same pool mode and pool size in front of it, then runs
pgbench against each target, interleaved row by row, and prints the proxy
table (bench/results/<date>-proxy.csv).  Then the result-cache table: hot
point SELECTs (alone and in BEGIN/ROLLBACK) through direct, PgBouncer,
pgpool-II with its query cache and pgvalet with its cache, and a miss workload
through pgvalet with the cache on and off (bench/results/<date>-cache.csv).
Then the stream table: how fast a write made directly on Postgres (bypassing
the proxy) evicts pgvalet's cached results through the logical replication
stream, as seen on its push channel, idle and under pgbench writers; and the
hit rate of hot point reads through pgvalet while pgbench writers bypass it,
with row-level vs table-level invalidation (bench/results/<date>-stream.csv).
`--only proxy` / `--only cache` / `--only stream` runs one table.

Everything it starts (Postgres, PgBouncer, pgpool, pgvalet, pgbench) and every
temp directory it makes is removed at exit, also on Ctrl-C, SIGTERM or failure.

Run with /usr/bin/python3 (Debian's), e.g.
    /usr/bin/python3 bench/run.py --binary build/pgvalet --duration 5
"""

import argparse
import atexit
import csv
import datetime
import json
import os
import platform
import pwd
import random
import re
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PG_CLUSTER = os.path.join(ROOT, "scripts", "pg-cluster")

USER = "pgvalet"
PASSWORD = "pgvalet-pass"
DB = "appdb"
MIN_MAX_CONNECTIONS = 200

TARGETS = ("direct", "pgbouncer", "pgvalet")  # the proxy table
MODES = ("simple", "extended", "prepared")
WORKLOADS = (("select", ["-S"]), ("tpcb", []))  # builtin select-only, tpcb-like
ROWS = [(f"{w}-{m}", w, m, wargs) for w, wargs in WORKLOADS for m in MODES]

# The result-cache table.  hot-select and tx-select run against CACHE_TARGETS;
# miss runs against pgvalet with its cache on and with --cache-size 0.
CACHE_TARGETS = ("direct", "pgbouncer", "pgpool", "pgvalet")
ALL_TARGETS = ("direct", "pgbouncer", "pgpool", "pgvalet")
MISS_TARGETS = ("pgvalet", "pgvalet-nocache")
CACHE_WORKLOADS = ("hot-select", "tx-select", "miss")
CACHE_ROWS = [(f"{w}-{m}", w, m) for w in CACHE_WORKLOADS for m in MODES]
CACHE_WARMUP = 2  # seconds of unrecorded warm-up before every cache-table cell

# The stream table (pgvalet only): (row, workload, variant).
#   latency-idle / latency-load: an UPDATE made directly on Postgres -> the
#     matching `invalidate` event on pgvalet's push channel, with no other
#     writes / while pgbench TPC-B-like writers run directly on Postgres.
#   hits-*: hot (zipfian) point reads through pgvalet while pgbench writers
#     bypass it: no writers (the ceiling), reads the proxy tags by row
#     (row-level invalidation), reads it can only tag by table.
STREAM_ROWS = [("latency-idle", "latency", "idle"), ("latency-load", "latency", "load"),
               ("hits-nowriters", "hits", "nowriters"), ("hits-row", "hits", "row"),
               ("hits-table", "hits", "table")]
STREAM_GOAL_P99_MS = 20.0     # the goal for write -> eviction, p99
STREAM_LAT_WARMUP = 20        # unrecorded UPDATEs first (the stream's first
                              # Relation message makes it look up the key column)
STREAM_LAT_PAUSE = 0.01       # s between two samples
STREAM_LAT_TIMEOUT = 2.0      # s to wait for one event before counting it lost
STREAM_LOAD_WRITERS = ("-c", "4", "-j", "2", "-R", "300")   # latency-load
STREAM_HIT_READERS = 8        # pgbench -c of the hits-* readers (through pgvalet)
STREAM_HIT_WRITERS = ("-c", "4", "-j", "2", "-R", "200")    # hits-row/-table
STREAM_ZIPF = 1.1             # random_zipfian parameter of the hits-* reads
# The stats table (pgvalet only): the passthrough workloads through pgvalet with
# its workload statistics on (the default) and off (--stats off), interleaved.
STATS_ROWS = [(f"stats-{w}-{m}", w, m, wargs) for w, wargs in WORKLOADS
              for m in ("simple", "prepared")]
STATS_TARGETS = ("pgvalet", "pgvalet-nostats")
STATS_GOAL_PCT = 3.0          # the goal: collection costs <= 3 % of tps

SECTIONS = ("proxy", "cache", "stream", "stats")


def cache_script(workload, scale):
    """pgbench custom script text for a cache-table workload."""
    if workload == "hot-select":  # hot point SELECTs on 1,000 rows
        return ("\\set aid random(1, 1000)\n"
                "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n")
    if workload == "tx-select":  # the same, in a BEGIN ... ROLLBACK block
        return ("\\set aid random(1, 1000)\n"
                "BEGIN;\n"
                "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
                "ROLLBACK;\n")
    if workload == "miss":
        # point SELECTs over all rows, each with a nonce in it, so that no two
        # statements share a cache key: every one is a miss (and a store)
        return (f"\\set aid random(1, {100000 * scale})\n"
                "\\set nonce random(1, 2000000000)\n"
                "SELECT abalance FROM pgbench_accounts WHERE aid = :aid AND :nonce > 0;\n")
    raise ValueError(workload)


def stream_script(variant, scale):
    """pgbench script of the stream table's hits-* readers: skewed point reads.

    `aid = :aid` is tagged by row (an UPDATE of another row leaves it cached);
    `aid = :aid + 0` is the same read, but the proxy can't see the row in it,
    so it tags it by table and every write to pgbench_accounts evicts it.
    """
    key = ":aid + 0" if variant == "table" else ":aid"
    return (f"\\set aid random_zipfian(1, {100000 * scale}, {STREAM_ZIPF})\n"
            f"SELECT abalance FROM pgbench_accounts WHERE aid = {key};\n")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# cleanup: every process we start and every temp dir we make is registered
# here; cleanup() runs from atexit and from the signal handlers.

class Cleanup:
    def __init__(self):
        self.actions = []  # (name, callable), run in reverse order
        self.done = False

    def add(self, name, fn):
        self.actions.append((name, fn))

    def run(self):
        if self.done:
            return
        self.done = True
        for name, fn in reversed(self.actions):
            try:
                fn()
            except Exception as e:  # keep going: clean up the rest
                log(f"cleanup of {name} failed: {e}")
        self.actions.clear()


CLEANUP = Cleanup()

# --transport unix: pgbench and each proxy's server leg use unix-domain sockets.
# Filled as servers start: port -> directory holding its .s.PGSQL.<port>.
TRANSPORT = "tcp"
SOCKET_DIRS = {}
# port -> pid of the proxy listening there (pgvalet, pgbouncer): whose CPU a row measures
PROXY_PIDS = {}


def transport_text():
    return ("unix-domain sockets (pgbench -> target, proxy -> Postgres)"
            if TRANSPORT == "unix" else "loopback TCP")


def client_host(port):
    """pgbench's -h for a server on port: its socket directory, or loopback TCP."""
    if TRANSPORT == "unix":
        return SOCKET_DIRS[port]
    return "127.0.0.1"
atexit.register(CLEANUP.run)


def _on_signal(signum, _frame):
    # Turn SIGTERM/SIGHUP into an exception so `finally` blocks and atexit run.
    log(f"got signal {signum}, cleaning up")
    raise SystemExit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def stop_process(proc, name, sig=signal.SIGTERM, timeout=10.0):
    """Stop a process we started in its own session (pgid == pid)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {proc.pid}) did not stop, killing it")
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def make_tempdir(prefix, owner=None):
    d = tempfile.mkdtemp(prefix=prefix)
    CLEANUP.add(f"rm {d}", lambda: shutil.rmtree(d, ignore_errors=True))
    if owner is not None and os.geteuid() == 0:
        pw = pwd.getpwnam(owner)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def run_as_kwargs(user):
    """Popen kwargs to run a child as `user` when we are root."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam(user)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def valet_port():
    """A free port whose port + 1 (pgvalet's dashboard) and port + 2 (its push
    channel) are free too."""
    for _ in range(50):
        port = free_port()
        if port + 2 > 65535:
            continue
        try:
            for p in (port + 1, port + 2):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    return free_port()


def tcp_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def pg_env():
    env = dict(os.environ)
    env.update(PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="5", PGSSLMODE="disable")
    for k in ("PGSERVICE", "PGSERVICEFILE", "PGPASSFILE", "PGOPTIONS"):
        env.pop(k, None)
    return env


def psql(port, sql, timeout=30, db=DB):
    """Run one statement over TCP as the bench user; return (rc, stdout, stderr)."""
    try:
        p = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", db, "-c", sql],
            env=pg_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "", "psql timed out"
    return p.returncode, p.stdout.strip(), p.stderr.strip()


def wait_ready(port, proc, name, timeout=30.0, db=DB):
    """Wait until `SELECT 1` works through port; fail early if proc died."""
    deadline = time.time() + timeout
    err = ""
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode}")
        if tcp_open(port):
            rc, out, err = psql(port, "SELECT 1", timeout=10, db=db)
            if rc == 0 and out == "1":
                return
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready on port {port} after {timeout:.0f}s"
                       + (f": {err}" if err else ""))


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]).rstrip()
    except OSError:
        return ""


# --------------------------------------------------------------------------
# Postgres

def pg_bindir():
    for d in ("/usr/lib/postgresql/15/bin",):
        if os.path.exists(os.path.join(d, "postgres")):
            return d
    found = shutil.which("postgres")
    if found:
        return os.path.dirname(os.path.realpath(found))
    raise RuntimeError("cannot find the postgres binaries (postgresql-15)")


def start_cluster_script(base):
    """Use scripts/pg-cluster: prints PORT=<n>. Returns port or None."""
    d = os.path.join(base, "pg")
    try:
        p = subprocess.run([PG_CLUSTER, "start", d], capture_output=True,
                           text=True, timeout=120)
    except subprocess.TimeoutExpired:
        log("scripts/pg-cluster start timed out")
        return None
    # Register the stop even on failure: the script may have half-started.
    CLEANUP.add("pg-cluster stop", lambda: subprocess.run(
        [PG_CLUSTER, "stop", d], capture_output=True, timeout=120))
    m = re.search(r"^PORT=(\d+)\s*$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        log(f"scripts/pg-cluster start failed (rc={p.returncode}): "
            f"{(p.stderr or p.stdout).strip()[-500:]}")
        subprocess.run([PG_CLUSTER, "stop", d], capture_output=True, timeout=120)
        return None
    port = int(m.group(1))
    rc, out, err = psql(port, "SHOW max_connections")
    if rc != 0:
        log(f"cannot query the pg-cluster Postgres: {err}")
        subprocess.run([PG_CLUSTER, "stop", d], capture_output=True, timeout=120)
        return None
    if int(out) < MIN_MAX_CONNECTIONS:
        log(f"pg-cluster gives max_connections={out} < {MIN_MAX_CONNECTIONS}; "
            "using the bench's own cluster instead")
        subprocess.run([PG_CLUSTER, "stop", d], capture_output=True, timeout=120)
        return None
    psql(port, "ALTER SYSTEM SET synchronous_commit = off")
    psql(port, "SELECT pg_reload_conf()")
    SOCKET_DIRS[port] = d
    return port


def start_cluster_own(base):
    """initdb + postgres in the foreground (own session) as user postgres."""
    bindir = pg_bindir()
    d = os.path.join(base, "pgdata")
    sock = os.path.join(base, "pgsock")
    as_pg = run_as_kwargs("postgres")
    for x in (d, sock):
        os.mkdir(x, 0o700)
        if as_pg:
            os.chown(x, as_pg["user"], as_pg["group"])
    pwfile = os.path.join(base, "pwfile")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    if as_pg:
        os.chown(pwfile, as_pg["user"], as_pg["group"])
    p = subprocess.run(
        [os.path.join(bindir, "initdb"), "-D", d, "-U", USER, "--pwfile", pwfile,
         "-A", "scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"],
        capture_output=True, text=True, **as_pg)
    if p.returncode != 0:
        raise RuntimeError(f"initdb failed: {p.stderr.strip()}")
    with open(os.path.join(d, "postgresql.conf"), "a") as f:
        f.write("\n# bench/run.py\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{sock}'\n"
                "max_connections = 400\n"
                "password_encryption = 'scram-sha-256'\n"
                "wal_level = logical\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "wal_writer_delay = 10ms\n"
                "full_page_writes = off\n"
                "shared_buffers = 128MB\n"
                "logging_collector = off\n")
    with open(os.path.join(d, "pg_hba.conf"), "w") as f:
        f.write("local all all trust\n"
                "host all all 127.0.0.1/32 scram-sha-256\n"
                "host replication all 127.0.0.1/32 scram-sha-256\n")
    port = free_port()
    logf = open(os.path.join(base, "postgres.log"), "w")
    if as_pg:
        os.chown(logf.name, as_pg["user"], as_pg["group"])
    proc = subprocess.Popen(
        [os.path.join(bindir, "postgres"), "-D", d, "-p", str(port)],
        stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
        start_new_session=True, cwd=base, **as_pg)
    logf.close()
    # SIGINT = fast shutdown
    CLEANUP.add("postgres", lambda: stop_process(proc, "postgres", signal.SIGINT, 30))
    try:
        # its database does not exist yet: ask the one initdb made
        wait_ready(port, proc, "postgres", timeout=60, db="postgres")
    except RuntimeError as e:
        raise RuntimeError(f"{e}\n{tail(logf.name)}")
    # initdb -U pgvalet made pgvalet the bootstrap superuser; create its db.
    rc, out, err = psql(port, f"SELECT 1 FROM pg_database WHERE datname = '{DB}'")
    if out != "1":
        p = subprocess.run(
            ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", USER,
             "-d", "postgres", "-c", f"CREATE DATABASE {DB}"],
            env=pg_env(), capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE failed: {p.stderr.strip()}")
    SOCKET_DIRS[port] = sock
    return port


def start_cluster(base, own=False):
    if not own and os.access(PG_CLUSTER, os.X_OK) or os.path.isfile(PG_CLUSTER):
        if not os.access(PG_CLUSTER, os.X_OK):
            log("scripts/pg-cluster is not executable; using the bench's own cluster")
        else:
            port = start_cluster_script(base)
            if port:
                log(f"postgres (scripts/pg-cluster) on port {port}")
                return port
    port = start_cluster_own(base)
    log(f"postgres (own throwaway cluster) on port {port}")
    return port


# --------------------------------------------------------------------------
# PgBouncer

def pgbouncer_version():
    try:
        out = subprocess.run(["pgbouncer", "--version"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None, ""
    m = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", out)
    if not m:
        return None, out.strip()
    return tuple(int(x or 0) for x in m.groups()), m.group(0)


def start_pgbouncer(base, pg_port, pool_mode, pool_size, clients):
    version, vstr = pgbouncer_version()
    if version is None:
        raise RuntimeError("pgbouncer not found (apt-get install pgbouncer)")
    d = os.path.join(base, "pgbouncer")
    os.mkdir(d, 0o700)
    as_pg = run_as_kwargs("postgres")
    port = free_port()
    with open(os.path.join(d, "userlist.txt"), "w") as f:
        f.write(f'"{USER}" "{PASSWORD}"\n')
    prepared_ok = version >= (1, 21, 0)
    ini = f"""[databases]
{DB} = host={client_host(pg_port)} port={pg_port} dbname={DB}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {d if TRANSPORT == "unix" else ""}
auth_type = scram-sha-256
auth_file = {d}/userlist.txt
pool_mode = {pool_mode}
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = {max(1000, clients * 2)}
max_db_connections = 0
ignore_startup_parameters = extra_float_digits,options
logfile = {d}/pgbouncer.log
pidfile = {d}/pgbouncer.pid
log_connections = 0
log_disconnections = 0
stats_period = 60
"""
    if prepared_ok:
        ini += "max_prepared_statements = 100\n"
    with open(os.path.join(d, "pgbouncer.ini"), "w") as f:
        f.write(ini)
    if as_pg:
        for root, _dirs, files in os.walk(d):
            os.chown(root, as_pg["user"], as_pg["group"])
            for fn in files:
                os.chown(os.path.join(root, fn), as_pg["user"], as_pg["group"])
    errf = open(os.path.join(d, "stderr.log"), "w")
    proc = subprocess.Popen(
        ["pgbouncer", os.path.join(d, "pgbouncer.ini")],
        stdin=subprocess.DEVNULL, stdout=errf, stderr=subprocess.STDOUT,
        start_new_session=True, cwd=d, **as_pg)
    errf.close()
    CLEANUP.add("pgbouncer", lambda: stop_process(proc, "pgbouncer", signal.SIGINT))
    try:
        wait_ready(port, proc, "pgbouncer", timeout=30)
    except RuntimeError as e:
        raise RuntimeError(f"{e}\n{tail(errf.name)}\n{tail(os.path.join(d, 'pgbouncer.log'))}")
    SOCKET_DIRS[port] = d
    PROXY_PIDS[port] = proc.pid
    note = "" if prepared_ok or pool_mode != "transaction" else (
        f"{vstr} has no max_prepared_statements (needs >= 1.21)")
    return port, vstr, note


# --------------------------------------------------------------------------
# pgpool-II, with its in-memory query cache (the other caching proxy)

def pgpool_binary():
    return shutil.which("pgpool") or (
        "/usr/sbin/pgpool" if os.access("/usr/sbin/pgpool", os.X_OK) else None)


def pgpool_version(binary):
    try:
        p = subprocess.run([binary, "--version"], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"pgpool-II version (\S+)", p.stdout + p.stderr)
    return f"pgpool-II {m.group(1)}" if m else ""


def start_pgpool(base, pg_port, clients):
    """pgpool-II in raw mode in front of the one Postgres, query cache in shmem.

    Clients log in with SCRAM (pool_hba.conf); pgpool logs in to Postgres with
    SCRAM too, from the plain-text password in pool_passwd.  One pgpool child
    serves one client, so num_init_children is the client count plus spares.
    Runs as `postgres` when we are root, in the foreground (-n), in its own
    session so stop_process() reaches its children.
    """
    binary = pgpool_binary()
    if binary is None:
        raise RuntimeError("pgpool not found (apt-get install pgpool2)")
    vstr = pgpool_version(binary)
    d = os.path.join(base, "pgpool")
    os.mkdir(d, 0o700)
    os.mkdir(os.path.join(d, "oiddir"), 0o700)
    as_pg = run_as_kwargs("postgres")
    port, pcp_port = free_port(), free_port()
    conf = f"""# bench/run.py: throwaway pgpool-II
backend_clustering_mode = 'raw'
listen_addresses = '127.0.0.1'
port = {port}
socket_dir = '{d}'
pcp_listen_addresses = ''
pcp_port = {pcp_port}
pcp_socket_dir = '{d}'
wd_ipc_socket_dir = '{d}'
use_watchdog = off
backend_hostname0 = '{client_host(pg_port)}'
backend_port0 = {pg_port}
backend_weight0 = 1
backend_flag0 = 'ALWAYS_PRIMARY'
enable_pool_hba = on
pool_passwd = '{d}/pool_passwd'
allow_clear_text_frontend_auth = off
num_init_children = {clients + 4}
max_pool = 1
reserved_connections = 0
connection_cache = on
load_balance_mode = off
failover_on_backend_error = off
health_check_period = 0
sr_check_period = 0
log_destination = 'stderr'
logging_collector = off
log_connections = off
log_statement = off
pid_file_name = '{d}/pgpool.pid'
logdir = '{d}'
memory_cache_enabled = on
memqcache_method = 'shmem'
memqcache_total_size = 64MB
memqcache_expire = 0
memqcache_auto_cache_invalidation = on
memqcache_oiddir = '{d}/oiddir'
"""
    files = {"pgpool.conf": conf,
             "pool_hba.conf": "host all all 127.0.0.1/32 scram-sha-256\n"
                              "local all all scram-sha-256\n",
             "pool_passwd": f"{USER}:TEXT{PASSWORD}\n",
             "pcp.conf": ""}
    for fn, text in files.items():
        path = os.path.join(d, fn)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
    if as_pg:
        for root, dirs, fns in os.walk(d):
            os.chown(root, as_pg["user"], as_pg["group"])
            for fn in fns:
                os.chown(os.path.join(root, fn), as_pg["user"], as_pg["group"])
    cmd = [binary, "-n", "-D", "-f", os.path.join(d, "pgpool.conf"),
           "-F", os.path.join(d, "pcp.conf"), "-a", os.path.join(d, "pool_hba.conf")]
    log("pgpool: " + " ".join(cmd))
    errpath = os.path.join(d, "stderr.log")
    errf = open(errpath, "w")
    if as_pg:
        os.chown(errpath, as_pg["user"], as_pg["group"])
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=d, **as_pg)
    except OSError as e:
        errf.close()
        raise RuntimeError(f"cannot exec {binary}: {e}")
    errf.close()
    # SIGINT = fast shutdown (SIGTERM would wait for clients to leave)
    CLEANUP.add("pgpool", lambda: stop_process(proc, "pgpool", signal.SIGINT, 20))
    try:
        wait_ready(port, proc, "pgpool", timeout=30)
    except RuntimeError as e:
        stop_process(proc, "pgpool", signal.SIGINT, 20)
        raise RuntimeError(f"{e}\n--- pgpool output ---\n{tail(errpath)}")
    SOCKET_DIRS[port] = d
    return port, proc, errpath, vstr


def pgpool_cache_stats(port):
    """SHOW POOL_CACHE through pgpool: (hits, selects that missed, ratio) or None."""
    rc, out, _err = psql(port, "SHOW POOL_CACHE", timeout=10)
    if rc != 0 or not out:
        return None
    f = out.splitlines()[0].split("|")
    try:
        return int(f[0]), int(f[1]), float(f[2])
    except (IndexError, ValueError):
        return None


# --------------------------------------------------------------------------
# pgvalet

def start_pgvalet(base, binary, pg_port, pool_mode, pool_size, workers, extra,
                  name="pgvalet"):
    d = os.path.join(base, name)
    os.mkdir(d)
    port = valet_port()
    cmd = [binary,
           "--upstream", f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{pg_port}/{DB}"
           + (f"?host={client_host(pg_port)}" if TRANSPORT == "unix" else ""),
           "--listen", "127.0.0.1", "--port", str(port),
           "--pool-mode", pool_mode, "--pool-size", str(pool_size)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if TRANSPORT == "unix":
        cmd += ["--unix-socket-dir", d]
        SOCKET_DIRS[port] = d
    cmd += extra
    log(f"{name}: " + " ".join(cmd))
    errpath = os.path.join(d, "stderr.log")
    errf = open(errpath, "w")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=d)
    except OSError as e:
        errf.close()
        raise RuntimeError(f"cannot exec {binary}: {e}")
    errf.close()
    CLEANUP.add(name, lambda: stop_process(proc, name, signal.SIGTERM))
    try:
        wait_ready(port, proc, name, timeout=20)
    except RuntimeError as e:
        stop_process(proc, name)
        out = tail(errpath)
        raise RuntimeError(f"{e}" + (f"\n--- pgvalet output ---\n{out}" if out else
                                     "\n(pgvalet printed nothing)"))
    PROXY_PIDS[port] = proc.pid
    return port, proc, errpath


# --------------------------------------------------------------------------
# pgbench

TPS_RE = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)


def pgbench(port, args, timeout):
    cmd = ["pgbench", "-h", client_host(port), "-p", str(port), "-U", USER] + args + [DB]
    try:
        p = subprocess.run(cmd, env=pg_env(), capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"pgbench timed out after {timeout:.0f}s"
    return pgbench_result(p.returncode, p.stdout, p.stderr)


def pgbench_result(returncode, stdout, stderr):
    """(tps, "") from pgbench's output, or (None, why not)."""
    m = TPS_RE.search(stdout)
    problems = []
    if returncode != 0:
        problems.append(f"pgbench exit {returncode}")
    failed = re.search(r"number of failed transactions: (\d+)", stdout)
    if failed and int(failed.group(1)) > 0:
        problems.append(f"{failed.group(1)} failed transactions")
    if problems or not m:
        errs = [l for l in stderr.splitlines()
                if l and not l.startswith(("pgbench (", "starting vacuum",
                                           "end.", "transaction type"))]
        first = errs[0] if errs else "no tps line in output"
        return None, "; ".join(problems + [first])[:300]
    return float(m.group(1)), ""


def pgbench_background(port, args, name, outdir):
    """Start pgbench in its own session; returns (proc, stdout path, stderr path).

    Collect it with pgbench_collect(); cleanup stops it if we fail before.
    """
    cmd = ["pgbench", "-h", client_host(port), "-p", str(port), "-U", USER] + args + [DB]
    out, err = (os.path.join(outdir, f"{name}.{x}") for x in ("out", "err"))
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(cmd, env=pg_env(), stdin=subprocess.DEVNULL,
                                stdout=fo, stderr=fe, start_new_session=True)
    CLEANUP.add(name, lambda: stop_process(proc, name, signal.SIGINT))
    return proc, out, err


def pgbench_collect(bg, timeout):
    """Wait for a pgbench_background() run: (tps, "") or (None, why not)."""
    proc, out, err = bg
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc, "pgbench", signal.SIGINT)
        return None, f"pgbench timed out after {timeout:.0f}s"
    with open(out, errors="replace") as fo, open(err, errors="replace") as fe:
        return pgbench_result(proc.returncode, fo.read(), fe.read())


# --------------------------------------------------------------------------

def machine_info():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count() or 0, "cpu_model": cpu,
            "kernel": platform.release()}


def fmt_tps(v):
    return "N/A" if v is None else f"{v:,.0f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "N/A"
    return f"{a / b:.2f}"


def select_rows(only):
    """--only: returns (proxy rows, cache rows, stream rows, stats rows) to run.

    Words: a section (`proxy`, `cache`, `stream`), a row name
    (`select-simple`, `hot-select-prepared`, `latency-load`), a workload
    (`select`, `tpcb`, `hot-select`, `tx-select`, `miss`, `latency`, `hits`) or
    a mode / variant (`simple`, `extended`, `prepared`, `idle`, `load`,
    `nowriters`, `row`, `table`).  Section words pick whole tables; the other
    words pick rows (any match) in the picked tables, or in all of them when
    no section is named.
    """
    if not only:
        return list(ROWS), list(CACHE_ROWS), list(STREAM_ROWS), list(STATS_ROWS)
    want = [w.strip() for w in only.split(",") if w.strip()]
    sections = [w for w in want if w in SECTIONS] or list(SECTIONS)
    words = [w for w in want if w not in SECTIONS]
    proxy_keys = [(r[0], r[1], r[2]) for r in ROWS]
    cache_keys = [(r[0], r[1], r[2]) for r in CACHE_ROWS]
    stream_keys = [(r[0], r[1], r[2]) for r in STREAM_ROWS]
    stats_keys = [(r[0], r[1], r[2]) for r in STATS_ROWS]
    unknown = [w for w in words
               if not any(w in k for k in proxy_keys + cache_keys + stream_keys + stats_keys)]
    if unknown:
        sys.exit(f"--only: unknown row(s) {unknown}; choose sections "
                 f"{', '.join(SECTIONS)}, rows {', '.join(r[0] for r in ROWS)}, "
                 f"{', '.join(r[0] for r in CACHE_ROWS)}, "
                 f"{', '.join(r[0] for r in STREAM_ROWS)}, "
                 f"{', '.join(r[0] for r in STATS_ROWS)} (or a mode / workload name)")

    def pick(rows):
        return [r for r in rows if not words or any(w in (r[0], r[1], r[2])
                                                    for w in words)]
    proxy = pick(ROWS) if "proxy" in sections else []
    cache = pick(CACHE_ROWS) if "cache" in sections else []
    stream = pick(STREAM_ROWS) if "stream" in sections else []
    stats = pick(STATS_ROWS) if "stats" in sections else []
    if not proxy and not cache and not stream and not stats:
        sys.exit(f"--only {only}: selects no rows")
    return proxy, cache, stream, stats


def parse_args():
    ap = argparse.ArgumentParser(
        description="pgbench through direct Postgres, PgBouncer, pgpool-II and pgvalet: "
                    "a proxy table and a result-cache table")
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "pgvalet"),
                    help="pgvalet binary (default build/pgvalet)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per pgbench run (-T)")
    ap.add_argument("--proxy-rounds", type=int, default=2,
                    help="rounds of each proxy-table row, the targets' order reversed "
                         "every other round; the cell is the mean (default 2)")
    ap.add_argument("--miss-rounds", type=int, default=4,
                    help="rounds of each cache-table miss row (cache on / --cache-size 0, "
                         "alternating who goes first; the mean is reported)")
    ap.add_argument("--stats-rounds", type=int, default=4,
                    help="stats table: runs per cell, alternating on/off (ABBA...); the mean "
                         "is kept (use an even number: a steady drift then cancels out)")
    ap.add_argument("--stats-rate", default="",
                    help="stats table: pgbench -R, transactions/s for every row (N) or per "
                         "workload (select=N,tpcb=M); empty = as fast as it goes.  At a fixed "
                         "rate below saturation both proxies do the same work, so the CPU per "
                         "transaction column compares steadily")
    ap.add_argument("--clients", type=int, default=16, help="pgbench -c")
    ap.add_argument("--jobs", type=int, default=2, help="pgbench -j")
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i -s")
    ap.add_argument("--pool-mode", choices=("session", "transaction"),
                    default="transaction")
    ap.add_argument("--pool-size", type=int, default=20)
    ap.add_argument("--transport", choices=("tcp", "unix"), default="tcp",
                    help="how pgbench reaches each target and each proxy its server: "
                         "loopback TCP, or unix-domain sockets (every target alike)")
    ap.add_argument("--only", default="",
                    help="comma list of tables (proxy, cache, stream), rows (select-simple, "
                         "tpcb-prepared, hot-select-simple, miss-extended, latency-idle, "
                         "hits-row, ...), modes (simple, extended, prepared) or workloads "
                         "(select, tpcb, hot-select, tx-select, miss, latency, hits); "
                         "default: everything")
    ap.add_argument("--targets", default=",".join(ALL_TARGETS),
                    help="comma list out of direct,pgbouncer,pgpool,pgvalet "
                         "(pgpool is in the cache table only)")
    ap.add_argument("--stream-samples", type=int, default=500,
                    help="stream table: UPDATEs timed per latency row")
    ap.add_argument("--stream-duration", type=int, default=20,
                    help="stream table: seconds per hits-* run")
    ap.add_argument("--workers", type=int, default=None, help="passed to pgvalet --workers")
    ap.add_argument("--extra-args", default="",
                    help="extra pgvalet arguments, one shell-quoted string")
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--own-cluster", action="store_true",
                    help="start Postgres here instead of via scripts/pg-cluster")
    ap.add_argument("--no-csv", action="store_true", help="do not write the CSVs")
    a = ap.parse_args()
    want = [t.strip() for t in a.targets.split(",") if t.strip()]
    bad = [t for t in want if t not in ALL_TARGETS]
    if bad or not want:
        ap.error(f"--targets: unknown {bad}; choose from {','.join(ALL_TARGETS)}")
    a.targets = [t for t in TARGETS if t in want]  # proxy table, fixed order
    a.cache_targets = [t for t in CACHE_TARGETS if t in want]
    a.rows, a.cache_rows, a.stream_rows, a.stats_rows = select_rows(a.only)
    try:
        a.stats_rates = parse_stats_rate(a.stats_rate)
    except ValueError as e:
        ap.error(f"--stats-rate: {e}")
    if a.stats_rounds < 1:
        ap.error("--stats-rounds must be >= 1")
    if a.miss_rounds < 1:
        ap.error("--miss-rounds must be >= 1")
    if a.proxy_rounds < 1:
        ap.error("--proxy-rounds must be >= 1")
    if a.rows and not a.targets:
        log("--targets names no proxy-table target; skipping the proxy table")
        a.rows = []
    if a.cache_rows and not a.cache_targets:
        a.cache_rows = []
    if "pgvalet" not in a.cache_targets:
        a.cache_rows = [r for r in a.cache_rows if r[1] != "miss"]
    if a.stream_rows and "pgvalet" not in want:
        log("--targets names no pgvalet; skipping the stream table")
        a.stream_rows = []
    if a.stats_rows and "pgvalet" not in want:
        a.stats_rows = []
    if not a.rows and not a.cache_rows and not a.stream_rows and not a.stats_rows:
        ap.error("nothing to run with these --only / --targets")
    if a.stream_samples < 1 or a.stream_duration < 1:
        ap.error("--stream-samples and --stream-duration must be >= 1")
    import shlex
    a.extra = shlex.split(a.extra_args)
    return a


def print_table(header, table):
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    line = "  ".join(h.rjust(w) if i else h.ljust(w)
                     for i, (h, w) in enumerate(zip(header, widths)))
    print(line)
    print("-" * len(line))
    for row in table:
        print("  ".join(c.rjust(w) if i else c.ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))


def csv_path(results_dir, started, suffix):
    """bench/results/<date>-<suffix>.csv, never overwriting an earlier run."""
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, f"{started:%Y-%m-%d}-{suffix}.csv")
    n = 2
    while os.path.exists(path):
        path = os.path.join(results_dir, f"{started:%Y-%m-%d}-{n}-{suffix}.csv")
        n += 1
    return path


def show_path(path):
    rel = os.path.relpath(path, os.getcwd())
    return path if rel.startswith("..") else rel


def print_notes(notes):
    """The "N/A and notes" list under a table (none when empty), then a blank line."""
    if notes:
        print("N/A and notes:")
        for n in notes:
            print(f"  - {n}")
    print(flush=True)


def write_csv(a, started, suffix, header, rows):
    """One table's CSV in --results-dir, written whole (tmp file, then rename); not with --no-csv."""
    if a.no_csv:
        return
    path = csv_path(a.results_dir, started, suffix)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)
    print(f"CSV: {show_path(path)}", flush=True)


VALET_STATS_RE = re.compile(r"cache: (\d+) hits, (\d+) misses, (\d+) stores")


def valet_cache_stats(errpath):
    """The `cache: N hits, M misses, S stores` line pgvalet logs at shutdown."""
    try:
        with open(errpath, errors="replace") as f:
            m = None
            for m in VALET_STATS_RE.finditer(f.read()):
                pass
    except OSError:
        return None
    return tuple(int(x) for x in m.groups()) if m else None


def fmt_hits(hits, misses):
    total = hits + misses
    pct = f"{100.0 * hits / total:.1f} %" if total else "n/a"
    return f"{hits:,} hits / {misses:,} misses ({pct})"


# --------------------------------------------------------------------------
# the proxy table

def run_proxy(a, base, pg_port, ports, notes, bouncer_version, started, mach):
    valet = None
    if "pgvalet" in a.targets:
        try:
            if not os.path.isfile(a.binary):
                raise RuntimeError(f"{a.binary} does not exist (make all)")
            vport, vproc, verr = start_pgvalet(base, os.path.abspath(a.binary), pg_port,
                                               a.pool_mode, a.pool_size, a.workers, a.extra)
            ports["pgvalet"] = vport
            valet = (vproc, verr)
            log(f"pgvalet on port {vport}")
        except RuntimeError as e:
            log(f"pgvalet failed to start, marking it N/A:\n{e}")
            notes["pgvalet"] = "failed to start: " + str(e).splitlines()[0]

    # Warm-up (not recorded): settle the cluster after the load and open the
    # proxies' server connections, so the first row isn't penalised.
    psql(pg_port, "CHECKPOINT", timeout=120)
    warm = max(1, min(3, a.duration))
    for t in a.targets:
        if t in ports:
            _tps, err = pgbench(ports[t], ["-n", "-S", "-c", str(a.clients), "-j",
                                           str(a.jobs), "-T", str(warm)], warm + 60)
            log(f"warm-up {t} ({warm}s)" + (f": {err}" if err else ""))

    log(f"{len(a.rows)} rows x {len(a.targets)} targets x {a.duration}s; "
        f"-c {a.clients} -j {a.jobs}, pool {a.pool_mode}/{a.pool_size}")
    results = []  # dicts
    timeout = a.duration + 60
    for name, _w, mode, wargs in a.rows:
        res = {"row": name}
        errs = {}
        runs = {t: [] for t in a.targets}
        cpu_runs = {t: [] for t in a.targets}
        # interleaved: every target for this row, then the next row; each
        # round reverses the order (A B C, C B A, ...) and the cell is the mean
        for rnd in range(a.proxy_rounds):
            for t in (a.targets if rnd % 2 == 0 else a.targets[::-1]):
                if t not in ports:
                    continue
                if t == "pgvalet" and valet and valet[0].poll() is not None:
                    errs[t] = f"pgvalet died (status {valet[0].returncode})"
                    continue
                args = ["-n", "-c", str(a.clients), "-j", str(a.jobs),
                        "-T", str(a.duration), "-M", mode] + wargs
                pid = PROXY_PIDS.get(ports[t])
                cpu0 = proc_cpu_s(pid) if pid else None
                tps, err = pgbench(ports[t], args, timeout)
                cpu1 = proc_cpu_s(pid) if pid else None
                cpu = None
                if tps:
                    runs[t].append(tps)
                    if cpu0 is not None and cpu1 is not None:
                        cpu = (cpu1 - cpu0) * 1e6 / (tps * a.duration)
                        cpu_runs[t].append(cpu)
                if err:
                    errs[t] = err
                log(f"{name:16s} {t:10s} {fmt_tps(tps):>10s}"
                    + (f"  {cpu:.1f} us proxy CPU/tx" if cpu else "")
                    + (f"  ({err})" if err else ""))
                if t == "pgvalet" and valet and valet[0].poll() is not None:
                    log(f"pgvalet exited with status {valet[0].returncode}; its output:\n"
                        f"{tail(valet[1])}")
        for t in a.targets:
            res[t] = statistics.fmean(runs[t]) if runs[t] and t not in errs else None
            res["cpu " + t] = (statistics.fmean(cpu_runs[t])
                               if cpu_runs[t] and t not in errs else None)
        res["errors"] = errs
        results.append(res)
    if valet:  # its store is not reused by the cache table: free it
        stop_process(valet[0], "pgvalet")

    # ---- table
    def g(r, t):
        return r.get(t) if t in a.targets else None

    def cpu(r, t):
        v = r.get("cpu " + t)
        return "-" if t not in a.targets else "N/A" if v is None else f"{v:.1f}"

    header = ["row", "direct tps", "pgbouncer tps", "pgvalet tps",
              "pgvalet/pgbouncer", "pgvalet/direct", "pgbouncer CPU/tx", "pgvalet CPU/tx"]
    table = []
    for r in results:
        table.append([r["row"],
                      fmt_tps(g(r, "direct")) if "direct" in a.targets else "-",
                      fmt_tps(g(r, "pgbouncer")) if "pgbouncer" in a.targets else "-",
                      fmt_tps(g(r, "pgvalet")) if "pgvalet" in a.targets else "-",
                      fmt_ratio(g(r, "pgvalet"), g(r, "pgbouncer")),
                      fmt_ratio(g(r, "pgvalet"), g(r, "direct")),
                      cpu(r, "pgbouncer"), cpu(r, "pgvalet")])
    print()
    print(f"pgbench -c {a.clients} -j {a.jobs} -T {a.duration}, scale {a.scale}, "
          f"pool_mode={a.pool_mode} pool_size={a.pool_size}"
          + (f", {bouncer_version}" if bouncer_version else "")
          + (f"; each cell the mean of {a.proxy_rounds} interleaved rounds"
             if a.proxy_rounds > 1 else ""))
    print(f"{mach['nproc']} CPUs, {mach['cpu_model']}, kernel {mach['kernel']}, "
          f"{started:%Y-%m-%d %H:%M}, {transport_text()}")
    print_table(header, table)
    footnotes = []
    for t in TARGETS:
        if t in a.targets and notes.get(t):
            footnotes.append(f"{t}: {notes[t]}")
    for r in results:
        for t, e in r["errors"].items():
            footnotes.append(f"{r['row']} / {t}: {e}")
    footnotes.append("CPU/tx: the proxy process's user + system CPU per transaction, in us "
                     "(/proc/<pid>/stat over each run), the mean over the rounds")
    print_notes(footnotes)

    rows = []
    for r in results:
        def num(t):
            v = g(r, t)
            return "" if v is None else f"{v:.1f}"
        ratio = lambda x, y: "" if fmt_ratio(x, y) == "N/A" else f"{x / y:.3f}"
        note = "; ".join(f"{t}: {e}" for t, e in r["errors"].items())
        rows.append([started.isoformat(timespec="seconds"), mach["nproc"],
                     mach["cpu_model"], mach["kernel"], a.pool_mode, a.pool_size,
                     a.clients, a.jobs, a.duration, a.proxy_rounds, a.scale,
                     bouncer_version,
                     " ".join(([f"--workers {a.workers}"] if a.workers else [])
                              + a.extra),
                     r["row"], num("direct"), num("pgbouncer"), num("pgvalet"),
                     ratio(g(r, "pgvalet"), g(r, "pgbouncer")),
                     ratio(g(r, "pgvalet"), g(r, "direct")), note,
                     *("" if r.get("cpu " + t) is None else f"{r['cpu ' + t]:.2f}"
                       for t in ("pgbouncer", "pgvalet"))])
    write_csv(a, started, "proxy" + ("-unix" if TRANSPORT == "unix" else ""),
              ["date", "nproc", "cpu_model", "kernel", "pool_mode", "pool_size",
               "clients", "jobs", "duration_s", "rounds", "scale", "pgbouncer_version",
               "pgvalet_extra_args", "row", "direct_tps", "pgbouncer_tps",
               "pgvalet_tps", "pgvalet_over_pgbouncer", "pgvalet_over_direct",
               "notes", "pgbouncer_cpu_us_per_tx", "pgvalet_cpu_us_per_tx"], rows)


# --------------------------------------------------------------------------
# the result-cache table

def run_cache(a, base, pg_port, ports, notes, bouncer_version, started, mach):
    binary = os.path.abspath(a.binary)
    sdir = os.path.join(base, "cache-scripts")
    os.mkdir(sdir)
    os.chmod(sdir, 0o755)
    scripts = {}
    for w in CACHE_WORKLOADS:
        scripts[w] = os.path.join(sdir, f"{w}.sql")
        with open(scripts[w], "w") as f:
            f.write(cache_script(w, a.scale))

    targets = list(a.cache_targets)
    cports = {t: ports[t] for t in ("direct", "pgbouncer") if t in targets and t in ports}
    cnotes = {t: notes.get(t, "") for t in targets}
    need_hot = any(w != "miss" for _n, w, _m in a.cache_rows)
    pgpool_ver = ""
    pgpool = None
    if "pgpool" in targets and need_hot:
        try:
            pport, pproc, perr, pgpool_ver = start_pgpool(base, pg_port, a.clients)
            cports["pgpool"] = pport
            pgpool = (pproc, perr, pport)
            log(f"{pgpool_ver or 'pgpool'} on port {pport}")
        except RuntimeError as e:
            log(f"pgpool failed to start, marking it N/A:\n{e}")
            cnotes["pgpool"] = "failed to start: " + str(e).splitlines()[0]
    valet = None  # the cache-on pgvalet for hot-select and tx-select
    if "pgvalet" in targets and need_hot:
        try:
            if not os.path.isfile(binary):
                raise RuntimeError(f"{a.binary} does not exist (make all)")
            vport, vproc, verr = start_pgvalet(base, binary, pg_port, a.pool_mode,
                                               a.pool_size, a.workers, a.extra,
                                               name="pgvalet-cache")
            cports["pgvalet"] = vport
            valet = (vproc, verr)
            log(f"pgvalet (cache on) on port {vport}")
        except RuntimeError as e:
            log(f"pgvalet failed to start, marking it N/A:\n{e}")
            cnotes["pgvalet"] = "failed to start: " + str(e).splitlines()[0]

    psql(pg_port, "CHECKPOINT", timeout=120)
    warm = max(1, min(CACHE_WARMUP, a.duration))
    timeout = a.duration + 60
    log(f"cache table: {len(a.cache_rows)} rows x {a.duration}s (+{warm}s warm-up "
        f"per cell); -c {a.clients} -j {a.jobs}")
    footnotes = []
    results = []
    n_miss = 0
    for name, w, mode in a.cache_rows:
        res = {"row": name, "workload": w, "mode": mode, "tps": {}, "errors": {}}
        procs = {}  # target -> (proc, errpath) of pgvalets to watch
        if w == "miss":
            # Fresh pgvalets for every miss row, so no key cached by an earlier
            # row (or the other protocol) turns a miss into a hit.  The order
            # alternates from row to row: the first run after a change of
            # workload pays for pulling pgbench_accounts into shared_buffers.
            row_targets = list(MISS_TARGETS)
            if n_miss % 2:
                row_targets.reverse()
            n_miss += 1
            rports = {}
            for t in row_targets:
                extra = list(a.extra) + (["--cache-size", "0"] if t == "pgvalet-nocache"
                                         else [])
                try:
                    if not os.path.isfile(binary):
                        raise RuntimeError(f"{a.binary} does not exist (make all)")
                    port, proc, errpath = start_pgvalet(
                        base, binary, pg_port, a.pool_mode, a.pool_size, a.workers,
                        extra, name=f"{t}-{name}")
                    rports[t] = port
                    procs[t] = (proc, errpath)
                except RuntimeError as e:
                    log(f"{t} failed to start for {name}:\n{e}")
                    res["errors"][t] = "failed to start: " + str(e).splitlines()[0]
        else:
            row_targets = targets
            rports = cports
            if valet:
                procs["pgvalet"] = valet
        if w == "miss":
            run_miss_row(a, name, mode, scripts[w], rports, procs, res, warm, timeout,
                         first=row_targets[0])
            row_targets = ()
        for t in row_targets:  # interleaved, as in the proxy table
            if t not in rports:
                res["tps"][t] = None
                continue
            if t in procs and procs[t][0].poll() is not None:
                res["tps"][t] = None
                res["errors"][t] = f"{t} died (status {procs[t][0].returncode})"
                continue
            base_args = ["-n", "-c", str(a.clients), "-j", str(a.jobs), "-M", mode,
                         "-f", scripts[w]]
            _tps, werr = pgbench(rports[t], base_args + ["-T", str(warm)], warm + 60)
            if werr:
                log(f"{name:20s} {t:15s} warm-up: {werr}")
            tps, err = pgbench(rports[t], base_args + ["-T", str(a.duration)], timeout)
            res["tps"][t] = tps
            if err:
                res["errors"][t] = err
            log(f"{name:20s} {t:15s} {fmt_tps(tps):>10s}" + (f"  ({err})" if err else ""))
            if t in procs and procs[t][0].poll() is not None:
                log(f"{t} exited with status {procs[t][0].returncode}; its output:\n"
                    f"{tail(procs[t][1])}")
        if w == "miss":
            for t, (proc, errpath) in procs.items():
                stop_process(proc, t)
            if "pgvalet" in procs:
                st = valet_cache_stats(procs["pgvalet"][1])
                if st:
                    footnotes.append(f"{name}: pgvalet cache (warm-ups + runs): "
                                     f"{fmt_hits(st[0], st[1])}")
            on, off = (res["cpu_us"].get(t) for t in MISS_TARGETS)
            if on and off:
                footnotes.append(f"{name}: proxy CPU per transaction {on:.1f} us with the "
                                 f"cache, {off:.1f} us with --cache-size 0 "
                                 f"({100.0 * (on - off) / off:+.1f} %)")
        results.append(res)

    # cache counters over all hot-select / tx-select rows
    if pgpool and pgpool[0].poll() is None:
        st = pgpool_cache_stats(pgpool[2])
        if st:
            footnotes.insert(0, f"pgpool query cache over hot/tx rows (warm-ups included): "
                                f"{fmt_hits(st[0], st[1])}")
        stop_process(pgpool[0], "pgpool", signal.SIGINT, 20)
    if valet:
        stop_process(valet[0], "pgvalet")
        st = valet_cache_stats(valet[1])
        if st:
            footnotes.insert(0, f"pgvalet cache over hot/tx rows (warm-ups included): "
                                f"{fmt_hits(st[0], st[1])}")

    # ---- table
    def tps(r, t):
        return r["tps"].get(t)

    def cell(r, t):
        return fmt_tps(tps(r, t)) if t in r["tps"] else "-"

    header = ["row", "direct", "pgbouncer", "pgpool", "pgvalet", "pgvalet nocache",
              "pgvalet/direct", "pgvalet/pgbouncer", "pgvalet/pgpool", "miss cost"]
    table = []
    for r in results:
        hot = r["workload"] != "miss"

        def rat(x, y):
            return fmt_ratio(tps(r, x), tps(r, y)) if x in r["tps"] and y in r["tps"] \
                else "-"
        table.append([r["row"]] + [cell(r, t) for t in
                                   ("direct", "pgbouncer", "pgpool", "pgvalet",
                                    "pgvalet-nocache")]
                     + ([rat("pgvalet", "direct"), rat("pgvalet", "pgbouncer"),
                         rat("pgvalet", "pgpool"), "-"] if hot else
                        ["-", "-", "-", rat("pgvalet", "pgvalet-nocache")]))
    print()
    print(f"result cache: pgbench -c {a.clients} -j {a.jobs} -T {a.duration} "
          f"(after {warm}s unrecorded warm-up per cell), scale {a.scale}, "
          f"pool_mode={a.pool_mode} pool_size={a.pool_size}"
          + "".join(f", {v}" for v in (bouncer_version, pgpool_ver) if v))
    print(f"{mach['nproc']} CPUs, {mach['cpu_model']}, kernel {mach['kernel']}, "
          f"{started:%Y-%m-%d %H:%M}, {transport_text()}")
    print_table(header, table)
    print("goals: pgvalet/direct >= 2.0 and pgvalet/pgbouncer >= 3.0 on hot-select and "
          "tx-select; miss cost = pgvalet / pgvalet --cache-size 0 >= 0.95 (miss rows: "
          f"every statement a new key; mean of {a.miss_rounds} interleaved rounds)")
    notes_out = [f"{t}: {cnotes[t]}" for t in targets if cnotes.get(t)]
    for r in results:
        for t, e in r["errors"].items():
            notes_out.append(f"{r['row']} / {t}: {e}")
    print_notes(notes_out + footnotes)
    write_csv(a, started, "cache" + ("-unix" if TRANSPORT == "unix" else ""), ["row", "mode", "target", "tps"],
              [[r["workload"], r["mode"], t, "" if v is None else f"{v:.1f}"]
               for r in results for t, v in r["tps"].items()])


# --------------------------------------------------------------------------
# the stats table: what collecting workload statistics costs

def run_miss_row(a, name, mode, script, rports, procs, res, warm, timeout, first):
    """One miss row: pgvalet with its cache on vs --cache-size 0, a.miss_rounds rounds
    of a.duration s each, alternating who goes first; the mean tps and proxy CPU per
    transaction go into res["tps"] / res["cpu_us"]."""
    targets = list(MISS_TARGETS) if first == MISS_TARGETS[0] else list(reversed(MISS_TARGETS))
    args = ["-n", "-c", str(a.clients), "-j", str(a.jobs), "-M", mode, "-f", script]
    tps_runs = {t: [] for t in targets}
    cpu_runs = {t: [] for t in targets}
    for t in targets:
        if t in rports:
            _tps, werr = pgbench(rports[t], args + ["-T", str(warm)], warm + 60)
            if werr:
                log(f"{name:20s} {t:15s} warm-up: {werr}")
    for rnd in range(a.miss_rounds):
        for t in (targets if rnd % 2 == 0 else list(reversed(targets))):
            if t not in rports or procs[t][0].poll() is not None:
                continue
            timed_round(res, tps_runs, cpu_runs, t, f"{name:20s} {t:15s}", rports[t],
                        procs[t][0], args, a.duration, timeout)
    mean_of_rounds(res, tps_runs, cpu_runs)
    for t in targets:
        if t in procs and procs[t][0].poll() is not None:
            res["errors"][t] = f"{t} died (status {procs[t][0].returncode})"


def timed_round(res, tps_runs, cpu_runs, t, label, port, proc, args, duration, timeout):
    """One measured `pgbench -T duration` of target t through the proxy process proc: its
    tps and the proxy's CPU per transaction go to tps_runs[t] / cpu_runs[t], an error to
    res["errors"], and a line to the log."""
    cpu0 = proc_cpu_s(proc.pid)
    tps, err = pgbench(port, args + ["-T", str(duration)], timeout)
    cpu1 = proc_cpu_s(proc.pid)
    cpu = None
    if tps:
        tps_runs[t].append(tps)
        if cpu0 is not None and cpu1 is not None:
            cpu = (cpu1 - cpu0) * 1e6 / (tps * duration)
            cpu_runs[t].append(cpu)
    if err:
        res["errors"][t] = err
    log(f"{label} {fmt_tps(tps):>10s}"
        + (f"  {cpu:.1f} us CPU/tx" if cpu else "") + (f"  ({err})" if err else ""))


def mean_of_rounds(res, tps_runs, cpu_runs):
    """res["tps"] / res["cpu_us"]: the mean over the rounds of each target.  With an even
    number of rounds, each alternating who goes first (A B, B A, ...), a steady drift of
    the machine (WAL, table growth, other jobs) weighs on both targets alike."""
    res.setdefault("cpu_us", {})
    for t, runs in tps_runs.items():
        res["tps"][t] = statistics.fmean(runs) if runs else None
        if cpu_runs[t]:
            res["cpu_us"][t] = statistics.fmean(cpu_runs[t])


def proc_cpu_s(pid):
    """User + system CPU seconds a process has used (/proc/<pid>/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def parse_stats_rate(spec):
    """--stats-rate ("N" or "select=N,tpcb=M") as {workload: N}, "" meaning every one."""
    rates = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.rpartition("=")
        if (name and name not in dict(WORKLOADS)) or not value.isdigit() or int(value) < 1:
            raise ValueError(f"{part!r}: expected N or select=N,tpcb=M (N >= 1)")
        rates[name] = value
    return rates


def run_stats(a, base, pg_port, started, mach):
    """tps, and the proxy's own CPU time per transaction, which a busy shared
    machine disturbs far less than tps."""
    binary = os.path.abspath(a.binary)
    sports, procs, snotes = {}, {}, []
    for t in STATS_TARGETS:
        extra = list(a.extra) + (["--stats", "off"] if t == "pgvalet-nostats" else [])
        try:
            if not os.path.isfile(binary):
                raise RuntimeError(f"{a.binary} does not exist (make all)")
            port, proc, errpath = start_pgvalet(base, binary, pg_port, a.pool_mode,
                                                a.pool_size, a.workers, extra,
                                                name=f"{t}-stats")
            sports[t] = port
            procs[t] = (proc, errpath)
        except RuntimeError as e:
            log(f"{t} failed to start, marking it N/A:\n{e}")
            snotes.append(f"{t}: failed to start: " + str(e).splitlines()[0])
    psql(pg_port, "CHECKPOINT", timeout=120)
    warm = max(1, min(3, a.duration))
    for t, port in sports.items():
        _tps, err = pgbench(port, ["-n", "-S", "-c", str(a.clients), "-j", str(a.jobs),
                                   "-T", str(warm)], warm + 60)
        log(f"warm-up {t} ({warm}s)" + (f": {err}" if err else ""))
    log(f"stats table: {len(a.stats_rows)} rows x {len(STATS_TARGETS)} x {a.stats_rounds} "
        f"rounds x {a.duration}s")
    results = []
    for i, (name, workload, mode, wargs) in enumerate(a.stats_rows):
        res = {"row": name, "tps": {}, "cpu_us": {}, "errors": {}}
        rate = a.stats_rates.get(workload, a.stats_rates.get(""))
        rate_args = ["-R", rate] if rate else []
        tps_runs = {t: [] for t in STATS_TARGETS}
        cpu_runs = {t: [] for t in STATS_TARGETS}
        for rnd in range(a.stats_rounds):
            order = list(STATS_TARGETS) if (i + rnd) % 2 == 0 else list(reversed(STATS_TARGETS))
            for t in order:  # alternate who goes first: no order bias
                if t not in sports or procs[t][0].poll() is not None:
                    continue
                timed_round(res, tps_runs, cpu_runs, t, f"{name:24s} {t:16s}", sports[t],
                            procs[t][0], ["-n", "-c", str(a.clients), "-j", str(a.jobs),
                                          "-M", mode] + rate_args + wargs,
                            a.duration, a.duration + 60)
        mean_of_rounds(res, tps_runs, cpu_runs)
        results.append(res)
    for t, (proc, _errpath) in procs.items():
        stop_process(proc, t)

    def overhead(r):
        on, off = r["tps"].get("pgvalet"), r["tps"].get("pgvalet-nostats")
        return None if not on or not off else 100.0 * (off - on) / off

    def cpu_overhead(r):
        on, off = r["cpu_us"].get("pgvalet"), r["cpu_us"].get("pgvalet-nostats")
        return None if not on or not off else 100.0 * (on - off) / off

    def us(v):
        return "N/A" if v is None else f"{v:.1f}"

    header = ["row", "stats on tps", "stats off tps", "tps overhead",
              "CPU us/tx on", "CPU us/tx off", "CPU overhead"]
    table = []
    for r in results:
        ov, cov = overhead(r), cpu_overhead(r)
        table.append([r["row"], fmt_tps(r["tps"].get("pgvalet")),
                      fmt_tps(r["tps"].get("pgvalet-nostats")),
                      "N/A" if ov is None else f"{ov:+.1f} %",
                      us(r["cpu_us"].get("pgvalet")), us(r["cpu_us"].get("pgvalet-nostats")),
                      "N/A" if cov is None else f"{cov:+.1f} %"])
    print()
    print(f"workload statistics: pgbench -c {a.clients} -j {a.jobs} -T {a.duration}"
          + (f" -R {a.stats_rate}" if a.stats_rate else "")
          + f", scale {a.scale}, pool_mode={a.pool_mode} pool_size={a.pool_size}; pgvalet "
          f"vs pgvalet --stats off, interleaved, mean of {a.stats_rounds} rounds")
    print(f"{mach['nproc']} CPUs, {mach['cpu_model']}, kernel {mach['kernel']}, "
          f"{started:%Y-%m-%d %H:%M}, {transport_text()}")
    print_table(header, table)
    ovs = [overhead(r) for r in results if overhead(r) is not None]
    covs = [cpu_overhead(r) for r in results if cpu_overhead(r) is not None]
    if ovs:
        print(f"goal: overhead <= {STATS_GOAL_PCT:.0f} % of tps; mean over rows: tps "
              f"{sum(ovs) / len(ovs):+.1f} %"
              + (f", proxy CPU per transaction {sum(covs) / len(covs):+.1f} %" if covs else ""))
    for r in results:
        for t, e in r["errors"].items():
            snotes.append(f"{r['row']} / {t}: {e}")
    print_notes(snotes)
    def f1(v):
        return "" if v is None else f"{v:.2f}"
    write_csv(a, started, "stats",
              ["row", "stats_on_tps", "stats_off_tps", "tps_overhead_pct",
               "cpu_us_per_tx_on", "cpu_us_per_tx_off", "cpu_overhead_pct"],
              [[r["row"], f1(r["tps"].get("pgvalet")), f1(r["tps"].get("pgvalet-nostats")),
                f1(overhead(r)), f1(r["cpu_us"].get("pgvalet")),
                f1(r["cpu_us"].get("pgvalet-nostats")), f1(cpu_overhead(r))]
               for r in results])


# --------------------------------------------------------------------------
# the stream table: writes that bypass pgvalet, seen through Postgres' logical
# replication stream

STREAM_STATS_RE = re.compile(
    r"stream: (\d+) databases? \((\d+) up\), (\d+) transactions, (\d+) row and "
    r"(\d+) table evictions, (\d+) flushes, (\d+) reconnects, "
    r"lag (\d+) bytes / (\d+) ms")
STREAM_STATS_KEYS = ("databases", "up", "transactions", "row_evictions",
                     "table_evictions", "flushes", "reconnects", "lag_bytes", "lag_ms")
STREAM_UP_RE = re.compile(r"stream (\S+): up\b")
VALET_INVALIDATED_RE = re.compile(r"cache: .*evicted \(\d+ capacity, (\d+) invalidated")


def valet_invalidated(errpath):
    """Cached entries invalidated, from pgvalet's shutdown `cache:` line."""
    try:
        with open(errpath, errors="replace") as f:
            m = None
            for m in VALET_INVALIDATED_RE.finditer(f.read()):
                pass
    except OSError:
        return None
    return int(m.group(1)) if m else None


def valet_stream_stats(errpath):
    """The `stream: ... lag X bytes / Y ms` line pgvalet logs at shutdown, as a dict."""
    try:
        with open(errpath, errors="replace") as f:
            m = None
            for m in STREAM_STATS_RE.finditer(f.read()):
                pass
    except OSError:
        return None
    return dict(zip(STREAM_STATS_KEYS, (int(x) for x in m.groups()))) if m else None


def wait_stream_up(errpath, proc, name, timeout=30.0):
    """Wait for pgvalet's `stream <db>: up` (before it, it serves nothing cached)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode}\n"
                               f"{tail(errpath)}")
        try:
            with open(errpath, errors="replace") as f:
                if STREAM_UP_RE.search(f.read()):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name}: no `stream ...: up` after {timeout:.0f}s\n{tail(errpath)}")


def pg_connect(port):
    """psycopg2 connection as the bench user, autocommit (simple protocol)."""
    import psycopg2  # only this table needs it
    c = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD,
                         dbname=DB, connect_timeout=5, sslmode="disable",
                         application_name="bench-stream")
    c.autocommit = True
    return c


class PushListener:
    """A subscriber of pgvalet's push channel, reading on its own thread.

    Every line is timestamped (perf_counter) as soon as it is read.  The main
    thread arms it with expect(key) before its UPDATE and then waits for the
    first `invalidate` event (source wal, the table) whose rows hold the key.
    """

    def __init__(self, port, db, schema, table):
        self.db, self.schema, self.table = db, schema, table
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.settimeout(None)
        self.f = self.sock.makefile("rb")
        self.sock.settimeout(5)
        hello = json.loads(self.f.readline() or b"{}")
        self.sock.settimeout(None)
        if hello.get("type") != "hello":
            raise RuntimeError(f"push channel: no hello line (got {hello!r})")
        self.seq = int(hello.get("seq", 0))
        self.cond = threading.Condition()
        self.want = None          # (key, armed at)
        self.got = None           # perf_counter of the matching event
        self.events = 0           # invalidate events (wal) of the table
        self.whole = 0            # ... of them without rows (the whole table)
        self.flushes = 0          # flush events, state "down" lines
        self.downs = 0
        self.gaps = 0             # seq jumps (events lost)
        self.error = ""
        self.thread = threading.Thread(target=self._run, name="push", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for line in self.f:
                t = time.perf_counter()
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                typ = ev.get("type")
                seq = ev.get("seq")
                if typ in ("invalidate", "flush", "state") and isinstance(seq, int):
                    if seq > self.seq + 1:
                        self.gaps += 1
                    self.seq = max(self.seq, seq)
                if typ == "flush" and ev.get("db") in (None, self.db):
                    self.flushes += 1
                elif typ == "state" and ev.get("db") == self.db and ev.get("stream") != "up":
                    self.downs += 1
                elif (typ == "invalidate" and ev.get("source") == "wal"
                      and ev.get("db") == self.db and ev.get("table") == self.table
                      and ev.get("schema", self.schema) == self.schema):
                    rows = ev.get("rows")
                    with self.cond:
                        self.events += 1
                        if rows is None:
                            self.whole += 1
                        elif (self.want is not None and self.got is None
                              and t >= self.want[1] and self.want[0] in rows):
                            self.got = t
                            self.cond.notify_all()
            self.error = "push channel closed by pgvalet"
        except (OSError, ValueError) as e:
            self.error = f"push channel: {e}"

    def expect(self, key):
        with self.cond:
            self.want = (key, time.perf_counter())
            self.got = None

    def wait(self, timeout):
        """perf_counter of the expected event, or None after timeout."""
        with self.cond:
            self.cond.wait_for(lambda: self.got is not None, timeout=timeout)
            got, self.want = self.got, None
            return got

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=2)


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, -(-len(sorted_vals) * p // 100) - 1))
    return sorted_vals[int(k)]


def stream_latency(a, pg_port, vport, push_port, keys, writers_bg=None):
    """Time n UPDATEs made directly on Postgres until their invalidate event.

    For each key: read its row through pgvalet (so a cached entry exists to
    evict), arm the listener, UPDATE it on a direct connection whose session
    has synchronous_commit = on, t0 = when the UPDATE returned (commit
    acknowledged), t1 = when the matching event was read off the push channel.
    The first STREAM_LAT_WARMUP keys are not recorded.
    """
    res = {"samples": [], "lost": 0, "other_wps": None, "errors": []}
    listener = PushListener(push_port, DB, "public", "pgbench_accounts")
    reader = pg_connect(vport)
    writer = pg_connect(pg_port)
    try:
        wcur, rcur = writer.cursor(), reader.cursor()
        wcur.execute("SET synchronous_commit = on")
        ev0 = t_start = None
        for i, key in enumerate(keys):
            if i == STREAM_LAT_WARMUP:
                ev0, t_start = listener.events, time.perf_counter()
            if writers_bg is not None and writers_bg[0].poll() is not None:
                res["errors"].append(f"the pgbench writers exited early "
                                     f"(status {writers_bg[0].returncode}): "
                                     f"{tail(writers_bg[2], 3)}")
                writers_bg = None
            rcur.execute("SELECT abalance FROM pgbench_accounts WHERE aid = %s", (key,))
            rcur.fetchall()
            listener.expect(key)
            wcur.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 "
                          "WHERE aid = %s", (key,))
            t0 = time.perf_counter()
            t1 = listener.wait(STREAM_LAT_TIMEOUT)
            if i >= STREAM_LAT_WARMUP:
                if t1 is None:
                    res["lost"] += 1
                else:  # the event can be read before execute() returns: 0
                    res["samples"].append(max(0.0, t1 - t0) * 1000.0)
            if t1 is None and listener.error:
                res["errors"].append(listener.error)
                break
            time.sleep(STREAM_LAT_PAUSE)
        if t_start is not None:
            elapsed = time.perf_counter() - t_start
            mine = len(res["samples"]) + res["lost"]
            res["other_wps"] = max(0, listener.events - ev0 - mine) / elapsed
    finally:
        reader.close()
        writer.close()
        listener.close()
    for what, n in (("whole-table invalidate events", listener.whole),
                    ("flush events", listener.flushes),
                    ("stream down lines", listener.downs),
                    ("seq gaps (events lost)", listener.gaps)):
        if n:
            res["errors"].append(f"{n} {what} on the push channel")
    return res


def stream_hits(a, base, binary, pg_port, name, variant, script, outdir):
    """One hits-* run on a fresh pgvalet: skewed reads through it, writers bypassing it."""
    res = {"errors": []}
    vname = f"pgvalet-{name}"
    port, proc, errpath = start_pgvalet(base, binary, pg_port, "transaction",
                                        a.pool_size, a.workers, a.extra, name=vname)
    try:
        wait_stream_up(errpath, proc, vname)
        dur = a.stream_duration
        writers = None
        if variant != "nowriters":
            writers = pgbench_background(
                pg_port, ["-n", *STREAM_HIT_WRITERS, "-T", str(dur)], f"writers-{name}",
                outdir)
        res["read_tps"], err = pgbench(
            port, ["-n", "-c", str(STREAM_HIT_READERS), "-j", str(a.jobs), "-M", "simple",
                   "-T", str(dur), "-f", script], dur + 60)
        if err:
            res["errors"].append(f"readers: {err}")
        if writers:
            res["write_tps"], err = pgbench_collect(writers, dur + 60)
            if err:
                res["errors"].append(f"writers: {err}")
        if proc.poll() is not None:
            res["errors"].append(f"{vname} died (status {proc.returncode})")
    finally:
        stop_process(proc, vname)
    st = valet_cache_stats(errpath)
    if st:
        res["hits"], res["misses"] = st[0], st[1]
    else:
        res["errors"].append("no `cache:` line in pgvalet's output")
    res["invalidated"] = valet_invalidated(errpath)
    res["stream"] = valet_stream_stats(errpath)
    if res["stream"] is None:
        res["errors"].append("no `stream:` line in pgvalet's output")
    return res


def run_stream(a, base, pg_port, started, mach):
    binary = os.path.abspath(a.binary)
    outdir = os.path.join(base, "stream")
    os.mkdir(outdir)
    os.chmod(outdir, 0o755)
    naccounts = 100000 * a.scale
    rc, settings, _err = psql(
        pg_port, "SELECT string_agg(n || '=' || current_setting(n), ', ') FROM "
        "unnest(ARRAY['synchronous_commit', 'wal_writer_delay', 'wal_writer_flush_after', "
        "'fsync', 'wal_level']) n")
    settings = settings if rc == 0 else "unknown"
    log(f"stream table: Postgres {settings}")
    psql(pg_port, "CHECKPOINT", timeout=120)
    load_before = os.getloadavg()[0]

    results = {}  # row name -> dict
    notes = []

    def err_row(name, e):
        results[name] = {"errors": [str(e).splitlines()[0] if str(e) else repr(e)]}
        log(f"{name}: {e}")

    lat_rows = [r for r in a.stream_rows if r[1] == "latency"]
    hit_rows = [r for r in a.stream_rows if r[1] == "hits"]

    # ---- write -> eviction latency: one pgvalet for both rows
    if lat_rows:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            for name, _w, _v in lat_rows:
                err_row(name, "needs psycopg2 (apt-get install python3-psycopg2)")
            lat_rows = []
    if lat_rows:
        proc = None
        try:
            if not os.path.isfile(binary):
                raise RuntimeError(f"{a.binary} does not exist (make all)")
            vport, proc, errpath = start_pgvalet(base, binary, pg_port, "transaction",
                                                 a.pool_size, a.workers, a.extra,
                                                 name="pgvalet-latency")
            wait_stream_up(errpath, proc, "pgvalet-latency")
            m = re.search(r"push channel for in-process caches on 127\.0\.0\.1:(\d+)",
                          tail(errpath, 50))
            push_port = int(m.group(1)) if m else vport + 2
            rng = random.Random(42)
            all_keys = rng.sample(range(1, naccounts + 1),
                                  len(lat_rows) * (STREAM_LAT_WARMUP + a.stream_samples))
        except RuntimeError as e:
            for name, _w, _v in lat_rows:
                err_row(name, f"pgvalet: {e}")
            lat_rows = []
            if proc is not None:
                stop_process(proc, "pgvalet-latency")
        for idx, (name, _w, variant) in enumerate(lat_rows):
            n_keys = STREAM_LAT_WARMUP + a.stream_samples
            keys = all_keys[idx * n_keys:(idx + 1) * n_keys]
            bg = None
            try:
                if variant == "load":
                    bg = pgbench_background(pg_port, ["-n", *STREAM_LOAD_WRITERS, "-T", "3600"],
                                            f"writers-{name}", outdir)
                    time.sleep(1.0)  # let the writers connect and reach their rate
                log(f"{name}: {a.stream_samples} UPDATEs (+{STREAM_LAT_WARMUP} "
                    "unrecorded)" + (" under pgbench " + " ".join(STREAM_LOAD_WRITERS)
                                     if bg else ""))
                res = stream_latency(a, pg_port, vport, push_port, keys, bg)
            except Exception as e:  # psycopg2 errors, socket errors
                err_row(name, f"{type(e).__name__}: {e}")
                continue
            finally:
                if bg is not None:
                    stop_process(bg[0], f"writers-{name}", signal.SIGINT)
            s = sorted(res["samples"])
            res.update(n=len(s), p50=percentile(s, 50), p90=percentile(s, 90),
                       p99=percentile(s, 99), max=s[-1] if s else None)
            results[name] = res
            log(f"{name}: p50 {fmt_ms(res['p50'])} p90 {fmt_ms(res['p90'])} "
                f"p99 {fmt_ms(res['p99'])} max {fmt_ms(res['max'])} ms, "
                f"{res['lost']} lost")
        if lat_rows:
            stop_process(proc, "pgvalet-latency")
            st = valet_stream_stats(errpath)
            if st:
                notes.append(f"latency rows' pgvalet: {fmt_stream(st)}")

    # ---- hit rate under bypassing writers: a fresh pgvalet per row
    for name, _w, variant in hit_rows:
        script = os.path.join(outdir, f"{name}.sql")
        with open(script, "w") as f:
            f.write(stream_script(variant, a.scale))
        try:
            if not os.path.isfile(binary):
                raise RuntimeError(f"{a.binary} does not exist (make all)")
            log(f"{name}: {a.stream_duration}s, {STREAM_HIT_READERS} readers through "
                "pgvalet" + ("" if variant == "nowriters" else
                             ", pgbench " + " ".join(STREAM_HIT_WRITERS) + " direct"))
            res = stream_hits(a, base, binary, pg_port, name, variant, script, outdir)
        except RuntimeError as e:
            err_row(name, f"pgvalet: {e}")
            continue
        results[name] = res
        log(f"{name}: read {fmt_tps(res.get('read_tps'))} tps, "
            f"{fmt_hits(res['hits'], res['misses']) if 'hits' in res else 'no cache stats'}")

    load_after = os.getloadavg()[0]
    loadavg = f"{load_before:.1f} before, {load_after:.1f} after"

    # ---- tables
    print()
    print(f"stream: writes made directly on Postgres (bypassing pgvalet) -> evictions "
          f"via the logical replication stream; scale {a.scale}, pgvalet "
          f"pool_mode=transaction pool_size={a.pool_size}")
    print(f"{mach['nproc']} CPUs, {mach['cpu_model']}, kernel {mach['kernel']}, "
          f"{started:%Y-%m-%d %H:%M}, {transport_text()}")
    print(f"Postgres: {settings}; the timed UPDATEs' session: synchronous_commit = on; "
          f"1-min load average {loadavg} (on {mach['nproc']} CPUs)")
    if any(r[1] == "latency" for r in a.stream_rows):
        print()
        print(f"write -> eviction: UPDATE one row on a direct connection, t0 = the UPDATE "
              f"returned, t1 = its invalidate event (source wal) read off the push channel; "
              f"{a.stream_samples} samples, {STREAM_LAT_PAUSE * 1000:.0f} ms apart; "
              f"load = pgbench TPC-B-like {' '.join(STREAM_LOAD_WRITERS)} direct")
        header = ["row", "samples", "p50 ms", "p90 ms", "p99 ms", "max ms", "lost",
                  "other writes/s", f"goal p99 <= {STREAM_GOAL_P99_MS:.0f} ms"]
        table = []
        for name, w, _v in a.stream_rows:
            if w != "latency":
                continue
            r = results.get(name, {})
            p99 = r.get("p99")
            goal = "N/A" if p99 is None or r.get("lost") else (
                "met" if p99 <= STREAM_GOAL_P99_MS else "MISSED")
            if p99 is not None and r.get("lost"):
                goal = "MISSED (lost events)"
            table.append([name, str(r.get("n", "N/A")), fmt_ms(r.get("p50")),
                          fmt_ms(r.get("p90")), fmt_ms(r.get("p99")), fmt_ms(r.get("max")),
                          str(r.get("lost", "N/A")),
                          "N/A" if r.get("other_wps") is None else f"{r['other_wps']:.0f}",
                          goal])
        print_table(header, table)
    if any(r[1] == "hits" for r in a.stream_rows):
        print()
        print(f"hit rate: pgbench -n -c {STREAM_HIT_READERS} -j {a.jobs} -M simple "
              f"-T {a.stream_duration} through a fresh pgvalet, `aid = "
              f"random_zipfian(1, {naccounts}, {STREAM_ZIPF})`, while pgbench TPC-B-like "
              f"{' '.join(STREAM_HIT_WRITERS)} -T {a.stream_duration} writes directly; "
              "hits/misses from pgvalet's shutdown stats (cold start included)")
        header = ["row", "invalidation", "read tps", "writer tps", "hits", "misses",
                  "hit rate", "stream txns", "entries invalidated", "stream lag"]
        kinds = {"nowriters": "(no writers)", "row": "row-level (aid = :aid)",
                 "table": "table-level (aid = :aid + 0)"}
        table = []
        for name, w, v in a.stream_rows:
            if w != "hits":
                continue
            r = results.get(name, {})
            st = r.get("stream") or {}
            table.append([name, kinds[v], fmt_tps(r.get("read_tps")),
                          fmt_tps(r.get("write_tps")) if v != "nowriters" else "-",
                          f"{r['hits']:,}" if "hits" in r else "N/A",
                          f"{r['misses']:,}" if "misses" in r else "N/A",
                          fmt_pct(hit_rate(r)),
                          f"{st['transactions']:,}" if st else "N/A",
                          "N/A" if r.get("invalidated") is None else f"{r['invalidated']:,}",
                          f"{st['lag_bytes']} B / {st['lag_ms']} ms" if st else "N/A"])
        print_table(header, table)
        row, tbl, ceil = (results.get(n, {}) for n in ("hits-row", "hits-table",
                                                       "hits-nowriters"))
        ratios = []
        if hit_rate(row) is not None and hit_rate(tbl) is not None:
            ratios.append(f"row-level / table-level: hit rate "
                          f"{fmt_ratio(hit_rate(row), hit_rate(tbl))}, read tps "
                          f"{fmt_ratio(row.get('read_tps'), tbl.get('read_tps'))}")
        if hit_rate(row) is not None and hit_rate(ceil) is not None:
            ratios.append(f"row-level / no writers: hit rate "
                          f"{fmt_ratio(hit_rate(row), hit_rate(ceil))}, read tps "
                          f"{fmt_ratio(row.get('read_tps'), ceil.get('read_tps'))}")
        for line in ratios:
            print(line)
    notes_out = []
    for name, _w, _v in a.stream_rows:
        for e in results.get(name, {}).get("errors", []):
            notes_out.append(f"{name}: {e}")
    notes_out += notes
    for name, w, _v in a.stream_rows:
        st = results.get(name, {}).get("stream")
        if w == "hits" and st:
            notes_out.append(f"{name} pgvalet stream: {fmt_stream(st)}")
    print_notes(notes_out)

    def num(v, fmt):
        return "" if v is None else format(v, fmt)

    rows = []
    for name, w, v in a.stream_rows:
        r = results.get(name, {})
        st = r.get("stream") or {}
        lat = w == "latency"
        writer_args = (" ".join(STREAM_LOAD_WRITERS) if lat and v == "load" else
                       " ".join(STREAM_HIT_WRITERS) if not lat and v != "nowriters"
                       else "")
        rows.append([started.isoformat(timespec="seconds"), mach["nproc"],
                     mach["cpu_model"], mach["kernel"], a.scale, a.pool_size,
                     " ".join(([f"--workers {a.workers}"] if a.workers else [])
                              + a.extra),
                     settings, name, w, v, loadavg,
                     r.get("n", "") if lat else "",
                     num(r.get("p50"), ".3f"), num(r.get("p90"), ".3f"),
                     num(r.get("p99"), ".3f"), num(r.get("max"), ".3f"),
                     r.get("lost", "") if lat else "",
                     num(r.get("other_wps"), ".1f"),
                     STREAM_GOAL_P99_MS if lat else "",
                     "" if lat else a.stream_duration,
                     "" if lat else STREAM_HIT_READERS, writer_args,
                     num(r.get("read_tps"), ".1f"), num(r.get("write_tps"), ".1f"),
                     r.get("hits", ""), r.get("misses", ""),
                     num(hit_rate(r), ".4f"), num(r.get("invalidated"), "d"),
                     st.get("transactions", ""), st.get("row_evictions", ""),
                     st.get("table_evictions", ""), st.get("lag_bytes", ""),
                     st.get("lag_ms", ""), "; ".join(r.get("errors", []))])
    write_csv(a, started, "stream",
              ["date", "nproc", "cpu_model", "kernel", "scale", "pool_size",
               "pgvalet_extra_args", "postgres_settings", "row", "workload",
               "variant", "loadavg_1m", "samples", "p50_ms", "p90_ms", "p99_ms", "max_ms",
               "lost", "other_writes_per_s", "goal_p99_ms", "duration_s",
               "read_clients", "writer_args", "read_tps", "writer_tps", "hits",
               "misses", "hit_rate", "entries_invalidated",
               "stream_transactions", "row_evictions", "table_evictions",
               "lag_bytes", "lag_ms", "notes"], rows)


def fmt_ms(v):
    return "N/A" if v is None else f"{v:.2f}"


def fmt_pct(v):
    return "N/A" if v is None else f"{100.0 * v:.1f} %"


def hit_rate(r):
    total = r.get("hits", 0) + r.get("misses", 0)
    return r["hits"] / total if "hits" in r and total else None


def fmt_stream(st):
    return (f"{st['transactions']:,} transactions, {st['row_evictions']:,} row and "
            f"{st['table_evictions']:,} table evictions, {st['flushes']} flushes, "
            f"{st['reconnects']} reconnects, lag {st['lag_bytes']} bytes / "
            f"{st['lag_ms']} ms")


def main():
    global TRANSPORT
    a = parse_args()
    TRANSPORT = a.transport
    for tool in ("pgbench", "psql"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install postgresql-client-15)")
    started = datetime.datetime.now()
    mach = machine_info()
    base = make_tempdir("pgvalet-bench-", owner="postgres")
    os.chmod(base, 0o711)

    pg_port = start_cluster(base, own=a.own_cluster)
    log(f"pgbench -i -s {a.scale}")
    p = subprocess.run(["pgbench", "-i", "-q", "-s", str(a.scale), "-h", "127.0.0.1",
                        "-p", str(pg_port), "-U", USER, DB],
                       env=pg_env(), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"pgbench -i failed: {p.stderr.strip()[-1000:]}")

    used = set(a.targets if a.rows else []) | set(a.cache_targets if a.cache_rows else [])
    ports = {}
    notes = {t: "" for t in ALL_TARGETS}
    if "direct" in used:
        ports["direct"] = pg_port
    bouncer_version = ""
    if "pgbouncer" in used and (a.rows or any(w != "miss" for _n, w, _m in a.cache_rows)):
        try:
            ports["pgbouncer"], bouncer_version, notes["pgbouncer"] = start_pgbouncer(
                base, pg_port, a.pool_mode, a.pool_size, a.clients)
            log(f"{bouncer_version} on port {ports['pgbouncer']}")
            if notes["pgbouncer"]:
                log(f"note: {notes['pgbouncer']}")
        except RuntimeError as e:
            log(f"PgBouncer failed to start, marking it N/A:\n{e}")
            notes["pgbouncer"] = "failed to start: " + str(e).splitlines()[0]

    if a.rows:
        run_proxy(a, base, pg_port, ports, notes, bouncer_version, started, mach)
    if a.cache_rows:
        run_cache(a, base, pg_port, ports, notes, bouncer_version, started, mach)
    if a.stream_rows:
        run_stream(a, base, pg_port, started, mach)
    if a.stats_rows:
        run_stats(a, base, pg_port, started, mach)
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    except KeyboardInterrupt:
        log("interrupted, cleaning up")
        rc = 130
    except RuntimeError as e:
        log(f"error: {e}")
        rc = 1
    finally:
        CLEANUP.run()
    sys.exit(rc)
