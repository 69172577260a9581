#!/usr/bin/python3
"""pgbench: direct Postgres vs PgBouncer vs pgvalet, in one run.

Starts a throwaway Postgres cluster, loads `pgbench -i -s 10`, starts PgBouncer
and pgvalet with the same pool mode and pool size in front of it, then runs
pgbench against each target, interleaved row by row, and prints one table.
The results also go to bench/results/<date>-proxy.csv.

Everything it starts (Postgres, PgBouncer, pgvalet, pgbench) and every temp
directory it makes is removed at exit, also on Ctrl-C, SIGTERM or failure.

Run with /usr/bin/python3 (Debian's), e.g.
    /usr/bin/python3 bench/run.py --binary build/pgvalet --duration 5
"""

import argparse
import atexit
import csv
import datetime
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PG_CLUSTER = os.path.join(ROOT, "scripts", "pg-cluster")

USER = "pgvalet"
PASSWORD = "pgvalet-pass"
DB = "pgvalet"
MIN_MAX_CONNECTIONS = 200

TARGETS = ("direct", "pgbouncer", "pgvalet")
MODES = ("simple", "extended", "prepared")
WORKLOADS = (("select", ["-S"]), ("tpcb", []))  # builtin select-only, tpcb-like
ROWS = [(f"{w}-{m}", w, m, wargs) for w, wargs in WORKLOADS for m in MODES]


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


def psql(port, sql, timeout=30):
    """Run one statement over TCP as the bench user; return (rc, stdout, stderr)."""
    try:
        p = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", DB, "-c", sql],
            env=pg_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "", "psql timed out"
    return p.returncode, p.stdout.strip(), p.stderr.strip()


def wait_ready(port, proc, name, timeout=30.0):
    """Wait until `SELECT 1` works through port; fail early if proc died."""
    deadline = time.time() + timeout
    err = ""
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode}")
        if tcp_open(port):
            rc, out, err = psql(port, "SELECT 1", timeout=10)
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
                "full_page_writes = off\n"
                "shared_buffers = 128MB\n"
                "logging_collector = off\n")
    with open(os.path.join(d, "pg_hba.conf"), "w") as f:
        f.write("local all all trust\n"
                "host all all 127.0.0.1/32 scram-sha-256\n")
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
        wait_ready(port, proc, "postgres", timeout=60)
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
{DB} = host=127.0.0.1 port={pg_port} dbname={DB}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
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
    note = "" if prepared_ok or pool_mode != "transaction" else (
        f"{vstr} has no max_prepared_statements (needs >= 1.21)")
    return port, vstr, note


# --------------------------------------------------------------------------
# pgvalet

def start_pgvalet(base, binary, pg_port, pool_mode, pool_size, workers, extra):
    d = os.path.join(base, "pgvalet")
    os.mkdir(d)
    port = free_port()
    cmd = [binary,
           "--upstream", f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{pg_port}/{DB}",
           "--listen", "127.0.0.1", "--port", str(port),
           "--pool-mode", pool_mode, "--pool-size", str(pool_size)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    cmd += extra
    log("pgvalet: " + " ".join(cmd))
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
    CLEANUP.add("pgvalet", lambda: stop_process(proc, "pgvalet", signal.SIGTERM))
    try:
        wait_ready(port, proc, "pgvalet", timeout=20)
    except RuntimeError as e:
        stop_process(proc, "pgvalet")
        out = tail(errpath)
        raise RuntimeError(f"{e}" + (f"\n--- pgvalet output ---\n{out}" if out else
                                     "\n(pgvalet printed nothing)"))
    return port, proc, errpath


# --------------------------------------------------------------------------
# pgbench

TPS_RE = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)


def pgbench(port, args, timeout):
    cmd = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", USER] + args + [DB]
    try:
        p = subprocess.run(cmd, env=pg_env(), capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"pgbench timed out after {timeout:.0f}s"
    m = TPS_RE.search(p.stdout)
    problems = []
    if p.returncode != 0:
        problems.append(f"pgbench exit {p.returncode}")
    failed = re.search(r"number of failed transactions: (\d+)", p.stdout)
    if failed and int(failed.group(1)) > 0:
        problems.append(f"{failed.group(1)} failed transactions")
    if problems or not m:
        errs = [l for l in p.stderr.splitlines()
                if l and not l.startswith(("pgbench (", "starting vacuum",
                                           "end.", "transaction type"))]
        first = errs[0] if errs else "no tps line in output"
        return None, "; ".join(problems + [first])[:300]
    return float(m.group(1)), ""


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
    if not only:
        return ROWS
    want = [w.strip() for w in only.split(",") if w.strip()]
    rows = [r for r in ROWS
            if any(w in (r[0], r[1], r[2]) for w in want)]
    unknown = [w for w in want
               if not any(w in (r[0], r[1], r[2]) for r in ROWS)]
    if unknown:
        sys.exit(f"--only: unknown row(s) {unknown}; rows are "
                 f"{', '.join(r[0] for r in ROWS)} (or a mode / workload name)")
    return rows


def parse_args():
    ap = argparse.ArgumentParser(
        description="pgbench through direct Postgres, PgBouncer and pgvalet")
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "pgvalet"),
                    help="pgvalet binary (default build/pgvalet)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per pgbench run (-T)")
    ap.add_argument("--clients", type=int, default=16, help="pgbench -c")
    ap.add_argument("--jobs", type=int, default=2, help="pgbench -j")
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i -s")
    ap.add_argument("--pool-mode", choices=("session", "transaction"),
                    default="transaction")
    ap.add_argument("--pool-size", type=int, default=20)
    ap.add_argument("--only", default="",
                    help="comma list of rows (select-simple, tpcb-prepared, ...), "
                         "modes (simple, extended, prepared) or workloads (select, tpcb)")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help="comma list out of direct,pgbouncer,pgvalet")
    ap.add_argument("--workers", type=int, default=None, help="passed to pgvalet --workers")
    ap.add_argument("--extra-args", default="",
                    help="extra pgvalet arguments, one shell-quoted string")
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--own-cluster", action="store_true",
                    help="start Postgres here instead of via scripts/pg-cluster")
    ap.add_argument("--no-csv", action="store_true", help="do not write the CSV")
    a = ap.parse_args()
    a.targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    bad = [t for t in a.targets if t not in TARGETS]
    if bad or not a.targets:
        ap.error(f"--targets: unknown {bad}; choose from {','.join(TARGETS)}")
    a.targets = [t for t in TARGETS if t in a.targets]  # fixed order
    a.rows = select_rows(a.only)
    import shlex
    a.extra = shlex.split(a.extra_args)
    return a


def main():
    a = parse_args()
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

    ports = {}
    notes = {t: "" for t in TARGETS}
    if "direct" in a.targets:
        ports["direct"] = pg_port
    bouncer_version = ""
    if "pgbouncer" in a.targets:
        try:
            ports["pgbouncer"], bouncer_version, notes["pgbouncer"] = start_pgbouncer(
                base, pg_port, a.pool_mode, a.pool_size, a.clients)
            log(f"{bouncer_version} on port {ports['pgbouncer']}")
            if notes["pgbouncer"]:
                log(f"note: {notes['pgbouncer']}")
        except RuntimeError as e:
            log(f"PgBouncer failed to start, marking it N/A:\n{e}")
            notes["pgbouncer"] = "failed to start: " + str(e).splitlines()[0]
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
        for t in a.targets:  # interleaved: every target for this row, then next row
            if t not in ports:
                res[t] = None
                continue
            if t == "pgvalet" and valet and valet[0].poll() is not None:
                res[t] = None
                errs[t] = f"pgvalet died (status {valet[0].returncode})"
                continue
            args = ["-n", "-c", str(a.clients), "-j", str(a.jobs), "-T", str(a.duration),
                    "-M", mode] + wargs
            tps, err = pgbench(ports[t], args, timeout)
            res[t] = tps
            if err:
                errs[t] = err
            log(f"{name:16s} {t:10s} {fmt_tps(tps):>10s}" + (f"  ({err})" if err else ""))
            if t == "pgvalet" and valet and valet[0].poll() is not None:
                log(f"pgvalet exited with status {valet[0].returncode}; its output:\n"
                    f"{tail(valet[1])}")
        res["errors"] = errs
        results.append(res)

    # ---- table
    def g(r, t):
        return r.get(t) if t in a.targets else None

    header = ["row", "direct tps", "pgbouncer tps", "pgvalet tps",
              "pgvalet/pgbouncer", "pgvalet/direct"]
    table = []
    for r in results:
        table.append([r["row"],
                      fmt_tps(g(r, "direct")) if "direct" in a.targets else "-",
                      fmt_tps(g(r, "pgbouncer")) if "pgbouncer" in a.targets else "-",
                      fmt_tps(g(r, "pgvalet")) if "pgvalet" in a.targets else "-",
                      fmt_ratio(g(r, "pgvalet"), g(r, "pgbouncer")),
                      fmt_ratio(g(r, "pgvalet"), g(r, "direct"))])
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print()
    print(f"pgbench -c {a.clients} -j {a.jobs} -T {a.duration}, scale {a.scale}, "
          f"pool_mode={a.pool_mode} pool_size={a.pool_size}"
          + (f", {bouncer_version}" if bouncer_version else ""))
    print(f"{mach['nproc']} CPUs, {mach['cpu_model']}, kernel {mach['kernel']}, "
          f"{started:%Y-%m-%d %H:%M}")
    line = "  ".join(h.rjust(w) if i else h.ljust(w)
                     for i, (h, w) in enumerate(zip(header, widths)))
    print(line)
    print("-" * len(line))
    for row in table:
        print("  ".join(c.rjust(w) if i else c.ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))
    footnotes = []
    for t in TARGETS:
        if notes[t]:
            footnotes.append(f"{t}: {notes[t]}")
    for r in results:
        for t, e in r["errors"].items():
            footnotes.append(f"{r['row']} / {t}: {e}")
    if footnotes:
        print("N/A and notes:")
        for f_ in footnotes:
            print(f"  - {f_}")
    print()

    # ---- CSV
    if not a.no_csv:
        os.makedirs(a.results_dir, exist_ok=True)
        path = os.path.join(a.results_dir, f"{started:%Y-%m-%d}-proxy.csv")
        n = 2
        while os.path.exists(path):  # never overwrite an earlier run
            path = os.path.join(a.results_dir, f"{started:%Y-%m-%d}-{n}-proxy.csv")
            n += 1
        tmp = path + ".tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["date", "nproc", "cpu_model", "kernel", "pool_mode", "pool_size",
                        "clients", "jobs", "duration_s", "scale", "pgbouncer_version",
                        "pgvalet_extra_args", "row", "direct_tps", "pgbouncer_tps",
                        "pgvalet_tps", "pgvalet_over_pgbouncer", "pgvalet_over_direct",
                        "notes"])
            for r in results:
                def num(t):
                    v = g(r, t)
                    return "" if v is None else f"{v:.1f}"
                ratio = lambda x, y: "" if fmt_ratio(x, y) == "N/A" else f"{x / y:.3f}"
                note = "; ".join(f"{t}: {e}" for t, e in r["errors"].items())
                w.writerow([started.isoformat(timespec="seconds"), mach["nproc"],
                            mach["cpu_model"], mach["kernel"], a.pool_mode, a.pool_size,
                            a.clients, a.jobs, a.duration, a.scale, bouncer_version,
                            " ".join(([f"--workers {a.workers}"] if a.workers else [])
                                     + a.extra),
                            r["row"], num("direct"), num("pgbouncer"), num("pgvalet"),
                            ratio(g(r, "pgvalet"), g(r, "pgbouncer")),
                            ratio(g(r, "pgvalet"), g(r, "direct")), note])
        os.replace(tmp, path)
        rel = os.path.relpath(path, os.getcwd())
        print(f"CSV: {path if rel.startswith('..') else rel}")
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
