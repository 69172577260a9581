"""--unix-socket-dir: clients on a unix-domain socket named as Postgres names its own."""
import os
import socket
import stat
import subprocess

import psycopg2
import pytest

from conftest import BINARY, PASSWORD, USER, free_port

pytestmark = pytest.mark.proxy_only


def psql_unix(sock_dir, port, sql):
    env = dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="10")
    return subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(sock_dir),
                           "-p", str(port), "-U", USER, "-d", "appdb", "-c", sql],
                          capture_output=True, text=True, env=env, timeout=60)


def unix_connect(sock_dir, port):
    return psycopg2.connect(host=str(sock_dir), port=port, user=USER, password=PASSWORD,
                            dbname="appdb")


def test_psql_and_psycopg2_connect_on_the_unix_socket(proxy, mode, tmp_path):
    p = proxy(pool_mode=mode, extra=["--unix-socket-dir", str(tmp_path)])
    path = tmp_path / f".s.PGSQL.{p.port}"
    assert stat.S_ISSOCK(path.stat().st_mode)
    out = psql_unix(tmp_path, p.port, "SELECT 40 + 2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"
    # A unix client and a TCP client share the pool and the cache.
    with unix_connect(tmp_path, p.port) as u, p.connect() as t:
        cu, ct = u.cursor(), t.cursor()
        cu.execute("SELECT inet_client_addr() IS NULL, current_user")
        assert cu.fetchone() == (False, USER)   # the server sees the proxy's TCP leg
        ct.execute("SELECT 1")
        assert ct.fetchone() == (1,)
    assert "/.s.PGSQL." in p.stderr           # the banner names the socket


def test_a_wrong_password_on_the_unix_socket_is_refused(proxy, tmp_path):
    p = proxy(extra=["--unix-socket-dir", str(tmp_path)])
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host=str(tmp_path), port=p.port, user=USER, password="wrong",
                         dbname="appdb")


class Started:
    """pgvalet run by the test itself (the proxy fixture counts an exit as a failure)."""

    def __init__(self, args):
        self.proc = subprocess.Popen([BINARY, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = []
        for line in self.proc.stdout:          # the banner comes once it handles signals
            self.lines.append(line)
            if "listening on" in line:
                return
        self.proc.wait(10)
        raise AssertionError("pgvalet did not start:\n" + "".join(self.lines))

    def stop(self):
        self.proc.terminate()
        rest = self.proc.communicate(timeout=10)[0]
        self.lines.append(rest)
        return self.proc.returncode


def test_the_socket_file_is_removed_at_shutdown(pg, tmp_path):
    port = free_port(span=3)
    path = tmp_path / f".s.PGSQL.{port}"
    p = Started(["--upstream", pg.url(), "--port", str(port), "--unix-socket-dir", str(tmp_path)])
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o777   # who connects is decided by auth
    assert p.stop() == 0
    assert not path.exists()


def test_a_stale_socket_file_is_replaced(pg, tmp_path):
    port = free_port(span=3)
    path = tmp_path / f".s.PGSQL.{port}"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))            # bound, never listening: what a crash leaves behind
    dead.close()
    assert path.exists()
    p = Started(["--upstream", pg.url(), "--port", str(port), "--unix-socket-dir", str(tmp_path)])
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))    # ours now: it accepts
    finally:
        assert p.stop() == 0, "".join(p.lines)
    assert not path.exists()


def test_a_socket_someone_listens_on_is_not_taken(pg, tmp_path):
    port = free_port(span=3)
    path = tmp_path / f".s.PGSQL.{port}"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        out = subprocess.run([BINARY, "--upstream", pg.url(), "--port", str(port),
                              "--unix-socket-dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 2, out.stderr
        assert (f"invalid value for unix-socket-dir: '{tmp_path}': cannot listen on {path}: "
                "another process is listening there") in out.stderr
        assert path.exists()           # still the other process's


@pytest.mark.parametrize("bad, why", [("/nonexistent-dir", "No such file or directory"),
                                      ("/tmp/" + "d" * 120, "path too long")])
def test_a_bad_directory_names_the_key_and_the_value(pg, bad, why):
    out = subprocess.run([BINARY, "--upstream", pg.url(), "--port", str(free_port(span=3)),
                          "--unix-socket-dir", bad], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2, out.stderr
    assert f"invalid value for unix-socket-dir: '{bad}'" in out.stderr
    assert why in out.stderr
