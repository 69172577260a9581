"""Basics through the proxy: psql, simple-query strings, ParameterStatus, errors."""
import os
import subprocess

import psycopg
import psycopg2
import psycopg2.errors
import pytest

import pgwire


def psql(proxy, *args, input=None, password="pgvalet-pass", user="pgvalet"):
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    return subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                           "-p", str(proxy.port), "-U", user, "-d", "appdb", *args],
                          input=input, capture_output=True, text=True, env=env, timeout=60)


def test_psql_c_returns_computed_value(proxy, mode):
    p = proxy(pool_mode=mode)
    out = psql(p, "-c", "SELECT 40 + 2, 'x' || repeat('y', 3)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42|xyyy"


def test_psql_script_file_runs_every_statement(proxy, mode, uniq, tmp_path):
    p = proxy(pool_mode=mode)
    script = tmp_path / "s.sql"
    script.write_text(f"""
CREATE TABLE {uniq} (id int PRIMARY KEY, v text);
INSERT INTO {uniq} SELECT g, md5(g::text) FROM generate_series(1, 500) g;
UPDATE {uniq} SET v = 'even' WHERE id % 2 = 0;
DELETE FROM {uniq} WHERE id > 400;
BEGIN;
INSERT INTO {uniq} VALUES (1000, 'in-tx');
COMMIT;
SELECT count(*), sum(id), count(*) FILTER (WHERE v = 'even') FROM {uniq};
\\set x 5
SELECT :x * 2;
DROP TABLE {uniq};
""")
    out = psql(p, "-f", str(script))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    # 400 rows left + 1; sum(1..400)=80200 + 1000; 200 even ids
    assert "401|81200|200" in lines
    assert "10" in lines


def test_psql_stdin_script_stops_on_error_with_exit_3(proxy, mode):
    p = proxy(pool_mode=mode)
    out = psql(p, input="SELECT 1;\nSELECT * FROM no_such_table_xyz;\nSELECT 2;\n")
    assert out.returncode == 3
    assert "no_such_table_xyz" in out.stderr
    assert out.stdout.split() == ["1"]


def test_multi_statement_string_returns_last_result(proxy, mode, uniq):
    p = proxy(pool_mode=mode)
    conn = p.connect()
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {uniq} (a int); INSERT INTO {uniq} VALUES (1),(2),(3); "
                f"SELECT sum(a) FROM {uniq}")
    assert cur.fetchone() == (6,)
    cur.execute("SELECT 1; SELECT 2; SELECT 'last'")
    assert cur.fetchall() == [("last",)]
    cur.execute(f"DROP TABLE {uniq}")
    conn.close()


def test_multi_statement_string_is_one_implicit_transaction(proxy, mode, uniq):
    p = proxy(pool_mode=mode)
    conn = p.connect()
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {uniq} (a int)")
    with pytest.raises(psycopg2.errors.DivisionByZero):
        cur.execute(f"INSERT INTO {uniq} VALUES (1); INSERT INTO {uniq} VALUES (2); SELECT 1/0")
    cur.execute(f"SELECT count(*) FROM {uniq}")
    assert cur.fetchone() == (0,)
    cur.execute(f"DROP TABLE {uniq}")
    conn.close()


def test_parameter_status_matches_server(proxy, mode, pg):
    direct = pg.connect()
    dcur = direct.cursor()
    dcur.execute("SHOW server_version")
    server_version = dcur.fetchone()[0]
    direct.close()

    p = proxy(pool_mode=mode)
    conn = p.connect()
    assert conn.get_parameter_status("server_version") == server_version
    assert conn.get_parameter_status("client_encoding") == "UTF8"
    assert conn.get_parameter_status("server_encoding") == "UTF8"
    assert conn.get_parameter_status("integer_datetimes") == "on"
    assert conn.get_parameter_status("standard_conforming_strings") == "on"
    assert conn.server_version == int(server_version.split(".")[0]) * 10000 + int(server_version.split(".")[1].split()[0])
    conn.close()


def test_client_encoding_change_is_reported_and_used(proxy, mode):
    p = proxy(pool_mode=mode)
    conn = p.connect()
    conn.set_client_encoding("LATIN1")
    assert conn.get_parameter_status("client_encoding") == "LATIN1"
    cur = conn.cursor()
    cur.execute("SELECT %s::text, length(%s::text)", ("caf\u00e9", "caf\u00e9"))
    assert cur.fetchone() == ("caf\u00e9", 4)
    cur.execute("SHOW client_encoding")
    assert cur.fetchone() == ("LATIN1",)
    conn.close()


def test_error_keeps_session_usable(proxy, mode):
    p = proxy(pool_mode=mode)
    conn = p.connect()
    cur = conn.cursor()
    with pytest.raises(psycopg2.errors.DivisionByZero) as ei:
        cur.execute("SELECT 1/0")
    assert ei.value.pgcode == "22012"
    cur.execute("SELECT 7")
    assert cur.fetchone() == (7,)
    with pytest.raises(psycopg2.errors.UndefinedTable):
        cur.execute("SELECT * FROM surely_missing_table")
    cur.execute("SELECT 8")
    assert cur.fetchone() == (8,)
    conn.close()


def test_error_inside_transaction_then_rollback(proxy, mode):
    p = proxy(pool_mode=mode)
    conn = p.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("SELECT 1")
    with pytest.raises(psycopg2.errors.DivisionByZero):
        cur.execute("SELECT 1/0")
    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
        cur.execute("SELECT 2")
    conn.rollback()
    cur.execute("SELECT 3")
    assert cur.fetchone() == (3,)
    conn.commit()
    conn.close()


def test_empty_query_gets_empty_query_response(proxy, mode):
    p = proxy(pool_mode=mode)
    c = pgwire.connect(p.port)
    for text in ("", "   ", ";"):
        res = c.simple(text)
        assert res.types == [b"I", b"Z"], (text, res.types)
        assert res.status == b"I"
    res = c.simple("SELECT 5")
    assert res.rows == [("5",)]
    c.close()


def test_empty_query_psycopg3(proxy, mode):
    p = proxy(pool_mode=mode)
    with psycopg.connect(p.dsn, autocommit=True) as conn:
        cur = conn.execute("")
        assert cur.pgresult.status == psycopg.pq.ExecStatus.EMPTY_QUERY
        assert conn.execute("SELECT 9").fetchone() == (9,)


def test_large_result_and_large_query(proxy, mode):
    p = proxy(pool_mode=mode)
    conn = p.connect()
    cur = conn.cursor()
    cur.execute("SELECT g, repeat('x', 100) FROM generate_series(1, 200000) g")
    rows = cur.fetchall()
    assert len(rows) == 200000
    assert sum(r[0] for r in rows) == 200000 * 200001 // 2
    big = "a" * (4 * 1024 * 1024)
    cur.execute("SELECT length(%s), md5(%s)", (big, big))
    import hashlib
    assert cur.fetchone() == (len(big), hashlib.md5(big.encode()).hexdigest())
    conn.close()


def test_many_sequential_connections(proxy, mode):
    p = proxy(pool_mode=mode, pool_size=4)
    for i in range(60):
        conn = p.connect()
        cur = conn.cursor()
        cur.execute("SELECT %s::int * 3", (i,))
        assert cur.fetchone() == (i * 3,)
        conn.close()


@pytest.mark.proxy_only
def test_second_proxy_on_a_taken_port_refuses_to_start(proxy):
    """Workers share the port with SO_REUSEPORT; a second pgvalet must not
    silently share it too (it would take half of the first one's clients)."""
    first = proxy(extra=["--workers", "2"])
    second = subprocess.run(
        [os.environ["PGVALET_BINARY"], "--upstream", first.cluster.url(),
         "--port", str(first.port), "--workers", "2"],
        capture_output=True, text=True, timeout=10)
    assert second.returncode != 0
    assert "Address already in use" in second.stderr, second.stderr
    conn = first.connect()          # the first one still serves
    cur = conn.cursor()
    cur.execute("SELECT 41 + 1")
    assert cur.fetchone() == (42,)
    conn.close()
