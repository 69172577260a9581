"""Client authentication at the proxy: SCRAM-SHA-256, wrong passwords, auth file users."""
import asyncio
import os
import subprocess

import asyncpg
import psycopg2
import pytest

import pgwire


def expect_28p01_raw(port, user, password):
    """Raw protocol: the failure is an ErrorResponse 28P01 and then the connection closes."""
    c = pgwire.PgWire("127.0.0.1", port)
    try:
        with pytest.raises(pgwire.PgError) as ei:
            c.login(user, password, "appdb")
        assert ei.value.sqlstate == "28P01", ei.value.fields
        with pytest.raises((pgwire.Closed, ConnectionResetError)):
            c.read_msg()
    finally:
        c.close()


def test_wrong_password_is_28p01_and_closes(proxy):
    p = proxy()
    expect_28p01_raw(p.port, "pgvalet", "not-the-password")


def test_wrong_password_psycopg2_and_asyncpg(proxy):
    p = proxy()
    with pytest.raises(psycopg2.OperationalError) as ei:
        psycopg2.connect(p.url(password="wrong"))
    assert "password authentication failed" in str(ei.value)

    async def main():
        with pytest.raises(asyncpg.InvalidPasswordError) as ai:
            await asyncpg.connect(p.url(password="wrong"))
        assert ai.value.sqlstate == "28P01"
    asyncio.run(main())
    # the proxy still serves the right password afterwards
    conn = p.connect()
    cur = conn.cursor()
    cur.execute("SELECT current_user")
    assert cur.fetchone() == ("pgvalet",)
    conn.close()


def test_unknown_user_is_28p01(proxy):
    p = proxy()
    expect_28p01_raw(p.port, "no_such_user_xyz", "whatever")


def test_scram_login_raw_protocol_reports_parameters(proxy):
    p = proxy()
    c = pgwire.connect(p.port)
    assert c.params.get("server_encoding") == "UTF8"
    assert c.backend_key is not None
    res = c.simple("SELECT current_user, current_database()")
    assert res.rows == [("pgvalet", "appdb")]
    c.send(pgwire.terminate())
    c.close()


@pytest.mark.parametrize("secret_form", ["plaintext", "scram_secret"])
def test_auth_file_user_logs_in_as_app(proxy, mode, tmp_path, pg, secret_form):
    if secret_form == "plaintext":
        secret = "app-pass"
    else:
        conn = pg.connect()
        cur = conn.cursor()
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
        secret = cur.fetchone()[0]
        conn.close()
        assert secret.startswith("SCRAM-SHA-256$")
    auth = tmp_path / "users.txt"
    auth.write_text(f'"app" "{secret}"\n"pgvalet" "pgvalet-pass"\n')
    p = proxy(pool_mode=mode, extra=["--auth-file", str(auth)])
    app = psycopg2.connect(p.url(user="app", password="app-pass"))
    app.autocommit = True
    cur = app.cursor()
    cur.execute("SELECT current_user, session_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)")
    assert cur.fetchone() == ("app", "app", False)
    cur.execute("SELECT sum(g) FROM generate_series(1, 100) g")
    assert cur.fetchone() == (5050,)
    # app is not a superuser: superuser-only things fail as app, not as the proxy's user
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute("SELECT pg_read_file('postgresql.conf')")
    # the superuser pool is separate: same proxy, different (db, user) pool
    su = p.connect()
    scur = su.cursor()
    scur.execute("SELECT current_user")
    assert scur.fetchone() == ("pgvalet",)
    cur.execute("SELECT current_user")
    assert cur.fetchone() == ("app",)
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(p.url(user="app", password="wrong"))
    app.close()
    su.close()


def test_psql_with_correct_and_wrong_password(proxy):
    p = proxy()
    base = ["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(p.port), "-U", "pgvalet", "-d", "appdb",
            "-c", "SELECT 'psql ok'"]
    ok = subprocess.run(base, capture_output=True, text=True, timeout=30,
                        env=dict(os.environ, PGPASSWORD="pgvalet-pass"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "psql ok"
    bad = subprocess.run(base, capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, PGPASSWORD="nope"))
    assert bad.returncode == 2
    assert "password authentication failed" in bad.stderr
