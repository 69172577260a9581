"""COPY in and out through the proxy, and COPY failures that leave the session usable."""
import contextlib
import hashlib
import io
import threading

import psycopg
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import pytest

N = 100_000


def rows_text(n=N):
    return "".join(f"{i}\tname-{i}\t{i * 7 % 1000}.5\n" for i in range(1, n + 1))


def copy_expert(cur, sql, f, timeout=60):
    """psycopg2 COPY refuses to run with a wait callback, and libpq's own wait
    ignores signals: run it blocking in a thread so a stuck proxy fails the test."""
    box = {}

    def run():
        try:
            cur.copy_expert(sql, f)
        except BaseException as e:  # noqa: BLE001
            box["exc"] = e

    psycopg2.extensions.set_wait_callback(None)
    try:
        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(timeout)
    finally:
        psycopg2.extensions.set_wait_callback(psycopg2.extras.wait_select)
    if t.is_alive():
        pytest.fail(f"COPY did not finish within {timeout}s: {sql}")
    if "exc" in box:
        raise box["exc"]


def create(conn, name):
    conn.cursor().execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name text, amount numeric)")


def test_psycopg2_copy_100k_rows_roundtrip(proxy, mode, uniq):
    p = proxy(pool_mode=mode)
    conn = p.connect()
    create(conn, uniq)
    data = rows_text()
    cur = conn.cursor()
    copy_expert(cur, f"COPY {uniq} FROM STDIN", io.StringIO(data))
    assert cur.rowcount == N
    cur.execute(f"SELECT count(*), sum(id), sum(amount) FROM {uniq}")
    count, sid, samount = cur.fetchone()
    assert (count, sid) == (N, N * (N + 1) // 2)
    assert samount == sum(i * 7 % 1000 + 0.5 for i in range(1, N + 1))
    out = io.StringIO()
    copy_expert(cur, f"COPY (SELECT * FROM {uniq} ORDER BY id) TO STDOUT", out)
    assert hashlib.sha256(out.getvalue().encode()).hexdigest() == hashlib.sha256(data.encode()).hexdigest()
    cur.execute(f"DROP TABLE {uniq}")
    conn.close()


def test_psycopg3_copy_100k_rows_roundtrip(proxy, mode, uniq):
    p = proxy(pool_mode=mode)
    with psycopg.connect(p.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {uniq} (id int PRIMARY KEY, name text, amount numeric)")
        cur = conn.cursor()
        digest_in = hashlib.sha256()
        with cur.copy(f"COPY {uniq} (id, name, amount) FROM STDIN") as copy:
            for i in range(1, N + 1):
                row = (i, f"name-{i}", f"{i * 7 % 1000}.5")
                copy.write_row(row)
                digest_in.update(f"{row[0]}\t{row[1]}\t{row[2]}\n".encode())
        assert conn.execute(f"SELECT count(*), sum(id) FROM {uniq}").fetchone() == (N, N * (N + 1) // 2)
        digest_out = hashlib.sha256()
        with cur.copy(f"COPY (SELECT * FROM {uniq} ORDER BY id) TO STDOUT") as copy:
            for block in copy:
                digest_out.update(bytes(block))
        assert digest_out.hexdigest() == digest_in.hexdigest()
        # binary format round trip of a slice
        with cur.copy(f"COPY (SELECT id, name FROM {uniq} WHERE id <= 1000 ORDER BY id) TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text"])
            got = list(copy.rows())
        assert got == [(i, f"name-{i}") for i in range(1, 1001)]
        conn.execute(f"DROP TABLE {uniq}")


def test_copy_bad_row_mid_stream_leaves_connection_usable(proxy, mode, uniq):
    p = proxy(pool_mode=mode)
    conn = p.connect()
    create(conn, uniq)
    good = rows_text(50_000)
    bad = good + "not-a-number\tx\t1\n" + rows_text(10)
    cur = conn.cursor()
    with pytest.raises(psycopg2.errors.InvalidTextRepresentation) as ei:
        copy_expert(cur, f"COPY {uniq} FROM STDIN", io.StringIO(bad))
    assert ei.value.pgcode == "22P02"
    cur.execute(f"SELECT count(*) FROM {uniq}")
    assert cur.fetchone() == (0,)
    copy_expert(cur, f"COPY {uniq} FROM STDIN", io.StringIO(rows_text(1000)))
    cur.execute(f"SELECT count(*) FROM {uniq}")
    assert cur.fetchone() == (1000,)
    cur.execute(f"DROP TABLE {uniq}")
    conn.close()


def test_copy_fail_from_client_leaves_connection_usable(proxy, mode, uniq):
    """An exception inside psycopg's copy block sends CopyFail; the server aborts the COPY."""
    p = proxy(pool_mode=mode)
    with psycopg.connect(p.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {uniq} (id int)")
        with pytest.raises(psycopg.errors.QueryCanceled):
            with conn.cursor().copy(f"COPY {uniq} FROM STDIN") as copy:
                for i in range(10_000):
                    copy.write_row((i,))
                raise ZeroDivisionError("client gives up")
        assert conn.execute(f"SELECT count(*) FROM {uniq}").fetchone() == (0,)
        assert conn.execute("SELECT 'alive'").fetchone() == ("alive",)
        conn.execute(f"DROP TABLE {uniq}")


def test_copy_inside_transaction_then_rollback(proxy, mode, uniq):
    p = proxy(pool_mode=mode)
    conn = p.connect()
    create(conn, uniq)
    conn.autocommit = False
    cur = conn.cursor()
    copy_expert(cur, f"COPY {uniq} FROM STDIN", io.StringIO(rows_text(5000)))
    cur.execute(f"SELECT count(*) FROM {uniq}")
    assert cur.fetchone() == (5000,)
    conn.rollback()
    cur.execute(f"SELECT count(*) FROM {uniq}")
    assert cur.fetchone() == (0,)
    conn.commit()
    conn.autocommit = True
    cur.execute(f"DROP TABLE {uniq}")
    conn.close()
