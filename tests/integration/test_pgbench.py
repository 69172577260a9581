"""pgbench through the proxy: init, TPC-B-like and select-only in every protocol mode."""
import os
import re
import subprocess

import pytest

TX = 1600  # -c 8 -t 200


def pgbench(port, *args, timeout=180):
    env = dict(os.environ, PGPASSWORD="pgvalet-pass", PGCONNECT_TIMEOUT="10")
    return subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "pgvalet", *args, "appdb"],
                          capture_output=True, text=True, env=env, timeout=timeout)


def balances(pg):
    conn = pg.connect()
    cur = conn.cursor()
    cur.execute("""SELECT (SELECT sum(abalance) FROM pgbench_accounts),
                          (SELECT sum(tbalance) FROM pgbench_tellers),
                          (SELECT sum(bbalance) FROM pgbench_branches),
                          (SELECT coalesce(sum(delta), 0) FROM pgbench_history),
                          (SELECT count(*) FROM pgbench_history)""")
    row = cur.fetchone()
    conn.close()
    return row


@pytest.fixture(scope="module")
def pgbench_tables(pg):
    out = pgbench(pg.port, "-i", "-q", "-s", "1")
    assert out.returncode == 0, out.stderr
    return pg


def assert_all_processed(out):
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"number of transactions actually processed: {TX}/{TX}" in out.stdout, out.stdout
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    assert failed is None or failed.group(1) == "0", out.stdout


def test_pgbench_init_through_proxy(proxy, mode, pg):
    p = proxy(pool_mode=mode)
    out = pgbench(p.port, "-i", "-q", "-s", "1")
    assert out.returncode == 0, out.stderr
    conn = pg.connect()
    cur = conn.cursor()
    cur.execute("SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_branches),"
                " (SELECT count(*) FROM pgbench_tellers)")
    assert cur.fetchone() == (100000, 1, 10)
    conn.close()


@pytest.mark.parametrize("protocol", ["simple", "extended", "prepared"])
def test_pgbench_tpcb_all_transactions_processed(proxy, mode, protocol, pgbench_tables):
    p = proxy(pool_mode=mode)
    before = balances(pgbench_tables)
    out = pgbench(p.port, "-n", "-c", "8", "-j", "2", "-t", "200", "-M", protocol)
    assert_all_processed(out)
    a, t, b, h, n = balances(pgbench_tables)
    assert n - before[4] == TX
    # TPC-B invariant: every delta landed in account, teller and branch.
    assert a == t == b == h


@pytest.mark.parametrize("protocol", ["simple", "prepared"])
def test_pgbench_select_only(proxy, mode, protocol, pgbench_tables):
    p = proxy(pool_mode=mode)
    out = pgbench(p.port, "-n", "-S", "-c", "8", "-j", "2", "-t", "200", "-M", protocol)
    assert_all_processed(out)


def test_pgbench_prepared_on_tiny_transaction_pool(proxy, pgbench_tables):
    """8 clients with named statements share 2 backends: statements must follow clients."""
    p = proxy(pool_mode="transaction", pool_size=2)
    out = pgbench(p.port, "-n", "-c", "8", "-j", "2", "-t", "200", "-M", "prepared")
    assert_all_processed(out)
    a, t, b, h, n = balances(pgbench_tables)
    assert a == t == b == h
