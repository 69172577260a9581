"""pgvalet.start(): the real binary in front of the session's Postgres."""
import asyncio
import contextlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import asyncpg
import psycopg
import psycopg2
import pytest

import pgvalet
from pgvalet import _process

from pgvtest import (ODD_PASSWORD, ODD_USER, ROOT, accepts, free_group, group_free, running,
                      wait_gone)


def query(url, sql="SELECT email FROM users ORDER BY id"):
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def test_start_serves_queries_and_exposes_the_handle(pg, port, users):
    pg_ = pgvalet.start(pg.url(), port=port, silent=True)
    try:
        assert pg_.port == port and pg_.host == "127.0.0.1"
        assert pg_.url == f"postgresql://pgvalet:pgvalet-pass@127.0.0.1:{port}/appdb"
        assert pg_.dashboard_url == f"http://127.0.0.1:{port + 1}/"
        assert running(pg_.pid) and pg_.alive and not pg_.stopped
        assert sorted(query(pg_.url)) == users
        assert "listening on 127.0.0.1:%d" % port in pg_.log
        assert "pgvalet-pass" not in repr(pg_) and "pgvalet-pass" not in " ".join(pg_.argv)
    finally:
        pg_.stop()
    assert pg_.stopped and wait_gone(pg_.pid, 1) and not accepts(port)


def test_context_manager(pg, port):
    with pgvalet.start(pg.url(), port=port, silent=True) as proxy:
        pid = proxy.pid
        assert query(proxy.url, "SELECT 42") == [42]
    assert not running(pid)
    proxy.stop()  # idempotent


def test_percent_encoded_user_and_password(pg, port):
    with pgvalet.start(pg.url(ODD_USER, ODD_PASSWORD), port=port, silent=True) as proxy:
        assert "odd%20user:" in proxy.url
        assert query(proxy.url, "SELECT current_user") == [ODD_USER]
        conn = psycopg2.connect(host="127.0.0.1", port=proxy.port, user=ODD_USER,
                                password=ODD_PASSWORD, dbname="appdb")
        conn.close()


def test_proxy_error_carries_the_binarys_message(pg, port):
    with pytest.raises(pgvalet.ProxyError) as err:
        pgvalet.start(pg.url(), port=port, config={"pool_size": 0}, silent=True)
    assert "invalid value for pool-size: '0'" in str(err.value)
    assert str(err.value).startswith("pgvalet: invalid value")
    assert err.value.returncode == 2 and "pool-size" in err.value.stderr
    assert group_free(port)


def test_wal_level_error_surfaced(pg_replica, port):
    with pytest.raises(pgvalet.ProxyError, match="wal_level is 'replica'.*wal_level = logical"):
        pgvalet.start(pg_replica.url(), port=port, silent=True)
    # ...and the binary's own way out works through config:
    with pgvalet.start(pg_replica.url(), port=port, silent=True,
                       config={"invalidation": "ttl", "cache_ttl": "30s"}) as proxy:
        assert query(proxy.url, "SELECT 1") == [1]


@pytest.mark.parametrize("url, message", [
    ("postgresql://pgvalet:x@127.0.0.1:1/db?sslcrl=/crl.pem", "unsupported query parameter 'sslcrl'"),
    ("postgresql://nopass@127.0.0.1:1/db", "no password for upstream user 'nopass'"),
])
def test_upstream_refused_by_the_binary(url, message, port):
    with pytest.raises(pgvalet.ProxyError, match=message):
        pgvalet.start(url, port=port, silent=True)


def test_timeout_gives_the_last_lines(tmp_path, monkeypatch, port):
    fake = tmp_path / "pgvalet"
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = --help ] && exec {pgvalet.find_binary()} --help\n"
                    "echo 'fake: warming up'\necho 'fake: still thinking' >&2\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PGVALET_BINARY", str(fake))
    t0 = time.monotonic()
    with pytest.raises(pgvalet.ProxyError, match=r"within 1 s.*\nfake: warming up\nfake: still thinking"):
        pgvalet.start("postgresql://u:p@127.0.0.1:1/db", port=port, timeout=1, silent=True)
    assert time.monotonic() - t0 < 5
    assert not _process._registry


def test_reuse_and_refcount(pg, port):
    a = pgvalet.start(pg.url(), port=port, silent=True)
    b = pgvalet.start(pg.url(query="application_name=other"), port=port, silent=True)
    assert b.pid == a.pid and b.url != a.url  # same upstream: one proxy
    c = pgvalet.start(pg.url(), port=port, config={"pool_size": 5}, silent=True)
    assert c.pid != a.pid and c.port == port + 3  # other options: another proxy, next group
    a.stop()
    a.stop()  # a handle releases once
    assert b.alive and query(b.url, "SELECT 1") == [1]
    b.stop()
    assert wait_gone(a.pid, 1)
    assert c.alive
    c.stop()
    assert not c.alive


def test_stop_all(pg, port):
    a = pgvalet.start(pg.url(), port=port, silent=True)
    b = pgvalet.start(pg.url(), port=port, silent=True)
    c = pgvalet.start(pg.url(), port=port, log_level=1, silent=True)
    pgvalet.stop()
    assert not running(a.pid) and not running(c.pid)
    b.stop()  # harmless after pgvalet.stop()
    d = pgvalet.start(pg.url(), port=port, silent=True)
    assert d.pid != a.pid and d.port == port
    d.stop()


def test_port_taken_by_another_processes_pgvalet(pg, port, caplog):
    env = dict(os.environ, PGVALET_UPSTREAM=pg.url())
    other = subprocess.Popen([pgvalet.find_binary(), "--port", str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not accepts(port):
            assert other.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        with caplog.at_level(logging.WARNING, logger="pgvalet"):
            mine = pgvalet.start(pg.url(), port=port, silent=True)
        assert mine.port == port + 3 and mine.pid != other.pid
        assert f"port {port} (or {port + 1}/{port + 2}) is taken" in caplog.text
        assert f"listens on {port + 3}" in caplog.text
        assert query(mine.url, "SELECT 1") == [1]
        mine.stop()
        assert other.poll() is None
        assert query(f"postgresql://pgvalet:pgvalet-pass@127.0.0.1:{port}/appdb", "SELECT 2") == [2]
    finally:
        other.terminate()
        other.wait(10)


@contextlib.contextmanager
def listening(port):
    """Someone else's listener on port.  SO_REUSEADDR as any server sets it, so a
    connection of an earlier test in TIME_WAIT there cannot fail the bind (a second
    listener on the port is still refused)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        yield s


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_any_port_of_the_group_taken_moves_to_the_next(pg, offset):
    port = free_group()
    while not group_free(port + 3):
        port = free_group()
    with listening(port + offset):
        with pgvalet.start(pg.url(), port=port, silent=True) as proxy:
            assert proxy.port == port + 3


def test_binary_refusing_the_port_moves_on(pg, monkeypatch):
    """The pre-check can race with another process: the binary's own refusal counts too."""
    port = free_group()
    while not group_free(port + 3):
        port = free_group()
    monkeypatch.setattr(_process, "_group_free", lambda host, p: True)
    with listening(port):
        with pgvalet.start(pg.url(), port=port, silent=True) as proxy:
            assert proxy.port == port + 3
            assert "Address already in use" not in proxy.log  # a fresh process, fresh log


def test_parent_death_kills_the_proxy(pg, port):
    code = ("import time, pgvalet\n"
            f"pg = pgvalet.start({pg.url()!r}, port={port}, silent=True)\n"
            "print(pg.pid, flush=True)\n"
            "time.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    parent = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
    try:
        pid = int(parent.stdout.readline())
        assert running(pid) and accepts(port)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_gone(pid, 10), "the proxy outlived its SIGKILLed parent"
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


def test_parent_exit_stops_the_proxy(pg, port):
    code = ("import pgvalet\n"
            f"pg = pgvalet.start({pg.url()!r}, port={port}, silent=True)\n"
            "print(pg.pid, flush=True)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert wait_gone(int(out.stdout), 5)


def test_started_from_a_short_lived_thread_survives_it(pg, port):
    box = {}
    t = threading.Thread(target=lambda: box.update(h=pgvalet.start(pg.url(), port=port, silent=True)))
    t.start()
    t.join()
    time.sleep(0.3)  # PR_SET_PDEATHSIG would have fired by now
    assert box["h"].alive and query(box["h"].url, "SELECT 1") == [1]
    box["h"].stop()


def test_log_echo_and_ring(pg, port, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with pgvalet.start(pg.url(), port=port) as loud:
        deadline = time.monotonic() + 5
        while "listening on" not in err.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    assert f"[pgvalet :{port}] " in err.getvalue() and "listening on" in err.getvalue()
    assert "listening on" in loud.log
    err.truncate(0)
    with pgvalet.start(pg.url(), port=port, silent=True) as quiet:
        query(quiet.url, "SELECT 1")
    assert "listening on" in quiet.log
    assert err.getvalue() == ""


def test_log_level_and_pgvalet_env_reach_the_binary(pg, port, monkeypatch):
    monkeypatch.setenv("PGVALET_POOL_SIZE", "7")
    with pgvalet.start(pg.url(), port=port, log_level="debug", silent=True) as proxy:
        query(proxy.url, "SELECT 1")
        assert proxy.argv[-2:] == ["--verbose", "1"]
        deadline = time.monotonic() + 5
        while " DEBUG " not in proxy.log and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "pool size 7," in proxy.log and " DEBUG " in proxy.log


def test_default_port_from_env(pg, monkeypatch):
    port = free_group()
    monkeypatch.setenv("PGVALET_PORT", str(port))
    with pgvalet.start(pg.url(), silent=True) as proxy:
        assert proxy.port == port


def test_dashboard_port_not_in_this_binary(pg, port):
    if "dashboard-port" in pgvalet._options.binary_options(pgvalet.find_binary()):
        with pgvalet.start(pg.url(), port=port, dashboard_port=port + 1, silent=True) as proxy:
            assert proxy.dashboard_url == f"http://127.0.0.1:{port + 1}/"
        return
    with pytest.raises(ValueError, match="has no --dashboard-port option"):
        pgvalet.start(pg.url(), port=port, dashboard_port=port + 1)


def test_extra_args(pg, port):
    with pgvalet.start(pg.url(), port=port, extra_args=["--pool-timeout", "5s"], silent=True) as p:
        assert p.argv[-2:] == ["--pool-timeout", "5s"]
    with pytest.raises(pgvalet.ProxyError, match="unknown option: --no-such-option"):
        pgvalet.start(pg.url(), port=port, extra_args=["--no-such-option", "200"])


def test_prepared_statements_through_transaction_pooling(pg, port):
    """ORM-NOTES §4: named statements from asyncpg and psycopg 3 work with defaults."""
    with pgvalet.start(pg.url(), port=port, silent=True) as proxy:
        with psycopg.connect(proxy.url, autocommit=True) as conn:  # prepare_threshold = 5
            for i in range(8):
                assert conn.execute("SELECT %s::int + 1", (i,)).fetchone() == (i + 1,)
            assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] >= 0

        async def go():
            conn = await asyncpg.connect(proxy.url)  # statement cache on: __asyncpg_stmt_N__
            try:
                stmt = await conn.prepare("SELECT email FROM users WHERE id = $1")
                for _ in range(3):
                    assert await stmt.fetchval(1) == "ann@example.com"
                for i in range(5):
                    assert await conn.fetchval("SELECT $1::int * 2", i) == i * 2
            finally:
                await conn.close()
        asyncio.run(go())


def test_startup_search_path_list(pg, port):
    with pgvalet.start(pg.url(), port=port, silent=True) as proxy:
        conn = psycopg2.connect(proxy.url, options="-c search_path=public,pg_catalog")
        try:
            cur = conn.cursor()
            cur.execute("SHOW search_path")
            assert cur.fetchone()[0] == "public,pg_catalog"
        finally:
            conn.close()
