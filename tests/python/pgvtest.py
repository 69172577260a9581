"""Helpers for the pgvalet Python package tests: a throwaway Postgres, ports, pids.

(A module of its own, not conftest.py: tests/integration has a conftest too, and
`from conftest import ...` would be ambiguous when both directories run together.)
"""
import atexit
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg2

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "python") not in sys.path:  # works without PYTHONPATH=python too
    sys.path.insert(0, str(ROOT / "python"))

from pgvalet import _process  # noqa: E402

PG_CLUSTER = str(ROOT / "scripts" / "pg-cluster")
USER, PASSWORD, DB = "pgvalet", "pgvalet-pass", "appdb"
# A role whose name and password only survive a URL percent-encoded.
ODD_USER, ODD_PASSWORD = "odd user", "p@ss/wo:rd?#%&+ x"

os.environ.setdefault("PGCONNECT_TIMEOUT", "10")


class Cluster:
    """A Postgres started by scripts/pg-cluster in a temp dir; stop() removes it."""

    def __init__(self, wal_level="logical"):
        self.dir = tempfile.mkdtemp(prefix="pgvpy-", dir="/tmp")
        atexit.register(self.stop)
        out = subprocess.run([PG_CLUSTER, "start", self.dir, "--wal-level", wal_level],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            self.stop()
            raise RuntimeError(f"pg-cluster start failed:\n{out.stdout}\n{out.stderr}")
        self.port = int(re.search(r"^PORT=(\d+)$", out.stdout, re.M).group(1))

    def url(self, user=USER, password=PASSWORD, db=DB, scheme="postgresql", query=""):
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
        return f"{scheme}://{auth}@127.0.0.1:{self.port}/{db}" + (f"?{query}" if query else "")

    def sql(self, statement, *args):
        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args or None)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def stop(self):
        if os.path.isdir(self.dir):
            subprocess.run([PG_CLUSTER, "stop", self.dir], capture_output=True, timeout=120)
            shutil.rmtree(self.dir, ignore_errors=True)


def group_free(port):
    return all(_process._port_free("127.0.0.1", p) for p in range(port, port + 3))


def free_group():
    """A port P with P, P+1 and P+2 free, below the ephemeral range."""
    for _ in range(500):
        port = random.randrange(12000, 32000)
        if group_free(port):
            return port
    raise RuntimeError("no free port group")


def proxy_children():
    """pids of live pgvalet processes whose parent is this test process."""
    found = []
    # os.listdir, not Path.glob: glob stats each match after listing, and a
    # process that exits in between raises ESRCH (ProcessLookupError) there
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = Path("/proc", name, "stat").read_text()
        except OSError:     # gone meanwhile: ENOENT or ESRCH
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        state, ppid = text[text.rindex(")") + 2:].split()[:2]
        if comm == "pgvalet" and int(ppid) == os.getpid() and state != "Z":
            found.append(int(name))
    return found


def running(pid):
    """Is pid alive (a zombie counts as gone)?"""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def wait_gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not running(pid)


def accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
