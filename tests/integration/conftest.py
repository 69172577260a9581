"""Fixtures for pgvalet's integration tests.

One throwaway Postgres cluster per session (scripts/pg-cluster), and a
`proxy` factory that starts $PGVALET_BINARY in front of it.  Without
PGVALET_BINARY, `proxy(...)` returns the cluster itself, so every test that
does not assert proxy-only behaviour also runs (and must pass) against raw
Postgres; tests marked `proxy_only` are skipped then.
"""
import atexit
import ctypes
import os
import re
import resource
import signal
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_CLUSTER = str(ROOT / "scripts" / "pg-cluster")
BINARY = os.environ.get("PGVALET_BINARY") or None
USER, PASSWORD, DB = "pgvalet", "pgvalet-pass", "appdb"
HOST = "127.0.0.1"

# A proxy that stops answering must fail the test (pytest-timeout), not hang the
# run: libpq's own blocking waits ignore signals, psycopg2's Python-level wait
# callback does not.  (COPY needs the callback off: see test_copy.py.)
psycopg2.extensions.set_wait_callback(psycopg2.extras.wait_select)
os.environ.setdefault("PGCONNECT_TIMEOUT", "10")

# 1,000-client tests need more than the usual 1,024 descriptors; raise the
# soft limit here so proxies started by the fixtures inherit it too.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _hard == resource.RLIM_INFINITY or _hard > _soft:
    _want = 65536 if _hard == resource.RLIM_INFINITY else min(_hard, 65536)
    if _want > _soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))


def _sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")  # so fixtures tear down clusters and proxies


def _die_with_parent():
    # PR_SET_PDEATHSIG: the proxy dies with the test run even if pytest is killed.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _sigterm)
    config.addinivalue_line("markers", "proxy_only: asserts pgvalet-only behaviour; skipped without PGVALET_BINARY")


def pytest_collection_modifyitems(config, items):
    if BINARY:
        return
    skip = pytest.mark.skip(reason="proxy-only test: PGVALET_BINARY is not set")
    for item in items:
        if "proxy_only" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    return f"pgvalet integration: {'binary ' + BINARY if BINARY else 'no PGVALET_BINARY, testing raw Postgres'}"


def make_url(port, user=USER, password=PASSWORD, db=DB, host=HOST, **params):
    url = f"postgresql://{user}:{password}@{host}:{port}/{db}"
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return url


def free_port(span=1):
    """A loopback port P such that P..P+span-1 are all free right now."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port + span > 65535:
            continue
        ok = True
        for p in range(port + 1, port + span):
            with socket.socket() as s:
                try:
                    s.bind((HOST, p))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no free port range")


class Cluster:
    """A Postgres started by scripts/pg-cluster."""

    def __init__(self, ssl=False, wal_level="logical"):
        self.dir = tempfile.mkdtemp(prefix="pgv-", dir="/tmp")
        self.ssl = ssl
        args = [PG_CLUSTER, "start", self.dir, "--wal-level", wal_level]
        if ssl:
            args.append("--ssl")
        out = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"pg-cluster start failed:\n{out.stdout}\n{out.stderr}")
        self.port = int(re.search(r"^PORT=(\d+)$", out.stdout, re.M).group(1))
        self.ca = os.path.join(self.dir, "ca.crt") if ssl else None
        atexit.register(self.stop)

    def url(self, user=USER, password=PASSWORD, db=DB, **params):
        return make_url(self.port, user, password, db, **params)

    @property
    def dsn(self):
        return self.url()

    def connect(self, **kw):
        conn = psycopg2.connect(self.dsn, **kw)
        conn.autocommit = True
        return conn

    def pg_ctl(self, *args):
        subprocess.run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl",
                        "-D", os.path.join(self.dir, "data"), *args],
                       check=True, capture_output=True, timeout=60)

    def stop_server(self):
        """Stop the server but keep its files (start_server() brings it back)."""
        self.pg_ctl("-m", "fast", "-w", "stop")

    def start_server(self):
        out = subprocess.run([PG_CLUSTER, "start", self.dir], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr

    def restart(self):
        out = subprocess.run([PG_CLUSTER, "restart", self.dir], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr

    def log(self):
        try:
            return Path(self.dir, "log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if os.path.isdir(self.dir):
            subprocess.run([PG_CLUSTER, "stop", self.dir], capture_output=True, timeout=120)


class Proxy:
    """A running pgvalet (or, without a binary, the upstream cluster itself)."""

    def __init__(self, port, proc=None, log_path=None, cluster=None, args=None):
        self.port = port
        self.proc = proc
        self.log_path = log_path
        self.cluster = cluster
        self.args = args or []
        self.ready = False
        self.dsn = make_url(port)

    @property
    def is_proxy(self):
        return self.proc is not None

    @property
    def stderr(self):
        if not self.log_path:
            return ""
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def url(self, user=USER, password=PASSWORD, db=DB, **params):
        return make_url(self.port, user, password, db, **params)

    def connect(self, autocommit=True, **kw):
        """psycopg2 connection through the proxy."""
        conn = psycopg2.connect(kw.pop("dsn", self.dsn), **kw)
        conn.autocommit = autocommit
        return conn

    def alive(self):
        return self.proc is None or self.proc.poll() is None

    def wait_ready(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


@pytest.fixture(scope="session")
def pg():
    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def proxy_log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("proxy-logs")


@pytest.fixture
def proxy(pg, proxy_log_dir, request):
    """Factory: proxy(pool_mode="transaction", pool_size=20, extra=[], upstream=None)."""
    started = []

    def start(pool_mode="transaction", pool_size=20, extra=(), upstream=None, cluster=None):
        cluster = cluster or pg
        if not BINARY:
            return Proxy(cluster.port, cluster=cluster)
        upstream = upstream or cluster.url()
        last_err = ""
        for _attempt in range(3):
            port = free_port(span=3)  # the proxy may also use port+1/port+2
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:80]
            log_path = proxy_log_dir / f"{name}-{port}.log"
            args = [BINARY, "--upstream", upstream, "--listen", HOST, "--port", str(port),
                    "--pool-mode", pool_mode, "--pool-size", str(pool_size), *extra]
            logf = open(log_path, "wb")
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
            logf.close()
            p = Proxy(port, proc, log_path, cluster, args)
            started.append(p)
            if p.wait_ready():
                p.ready = True
                return p
            p.stop()
            last_err = p.stderr
            if "in use" not in last_err.lower():
                break
        pytest.fail(f"pgvalet did not start ({' '.join(map(str, args))}):\n{last_err}", pytrace=False)

    yield start

    problems = []
    for p in started:
        died = p.proc.poll()
        p.stop()
        text = p.stderr
        if died is not None and p.ready:
            problems.append(f"pgvalet (port {p.port}) exited during the test (status {died}):\n{text[-4000:]}")
        elif any(m in text for m in SANITIZER_MARKERS):
            problems.append(f"pgvalet (port {p.port}) sanitizer report:\n{text[-6000:]}")
    for cluster in {id(p.cluster): p.cluster for p in started}.values():
        drop_inactive_slots(cluster)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def drop_inactive_slots(cluster):
    """Keep the replication-slot budget (20) for the next proxy."""
    try:
        c = cluster.connect()
        try:
            c.cursor().execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active")
        finally:
            c.close()
    except psycopg2.Error:
        pass


@pytest.fixture(params=["session", "transaction"])
def mode(request):
    return request.param


@pytest.fixture
def uniq():
    """A fresh identifier for tables and channels, so tests never collide."""
    return "t_" + uuid.uuid4().hex[:10]


@pytest.fixture
def table(pg, uniq):
    """A table of 10 rows (id, v int, note text), created directly on Postgres."""
    d = pg.connect()
    d.cursor().execute(f"CREATE TABLE {uniq} (id int PRIMARY KEY, v int NOT NULL, note text)")
    d.cursor().execute(f"INSERT INTO {uniq} SELECT g, g * 10, 'n' || g FROM generate_series(1, 10) g")
    yield uniq
    d.cursor().execute(f"DROP TABLE IF EXISTS {uniq} CASCADE")
    d.close()
