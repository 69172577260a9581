"""TLS: client-facing (--tls-cert/--tls-key) and upstream (sslmode in the upstream URL)."""
import subprocess

import psycopg2
import pytest

from conftest import Cluster

pytestmark = pytest.mark.proxy_only


def make_ca_and_cert(d, cn="localhost"):
    """A CA and a server certificate for localhost/127.0.0.1 signed by it."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "30", "-extfile", "ext.cnf", "-out", "server.crt")
    return d / "ca.crt", d / "server.crt", d / "server.key"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca, crt, key = make_ca_and_cert(d)
    other = tmp_path_factory.mktemp("tls-other")
    other_ca, _, _ = make_ca_and_cert(other)
    return {"ca": ca, "crt": crt, "key": key, "other_ca": other_ca}


@pytest.fixture(scope="module")
def ssl_cluster():
    c = Cluster(ssl=True)
    yield c
    c.stop()


def tls_proxy(proxy, certs, mode="transaction"):
    return proxy(pool_mode=mode, extra=["--tls-cert", str(certs["crt"]), "--tls-key", str(certs["key"])])


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_client_tls_in_use(proxy, certs, sslmode, mode):
    p = tls_proxy(proxy, certs, mode)
    conn = psycopg2.connect(p.dsn, sslmode=sslmode, sslrootcert=str(certs["ca"]))
    conn.autocommit = True
    assert conn.info.ssl_in_use is True
    assert conn.info.ssl_attribute("protocol") in ("TLSv1.2", "TLSv1.3")
    cur = conn.cursor()
    cur.execute("SELECT g FROM generate_series(1, 50000) g")
    assert sum(r[0] for r in cur.fetchall()) == 50000 * 50001 // 2
    big = "z" * 1_000_000
    cur.execute("SELECT length(%s)", (big,))
    assert cur.fetchone() == (1_000_000,)
    conn.close()


def test_client_tls_wrong_ca_is_rejected(proxy, certs):
    p = tls_proxy(proxy, certs)
    with pytest.raises(psycopg2.OperationalError) as ei:
        psycopg2.connect(p.dsn, sslmode="verify-ca", sslrootcert=str(certs["other_ca"]))
    assert "certificate" in str(ei.value).lower()
    # the proxy still works for a good client afterwards
    conn = psycopg2.connect(p.dsn, sslmode="verify-ca", sslrootcert=str(certs["ca"]))
    assert conn.info.ssl_in_use
    conn.close()


def test_client_plaintext_still_allowed_with_tls_configured(proxy, certs):
    p = tls_proxy(proxy, certs)
    conn = psycopg2.connect(p.dsn, sslmode="disable")
    assert conn.info.ssl_in_use is False
    cur = conn.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
    conn.close()


def test_no_tls_configured_answers_n(proxy):
    p = proxy()
    import pgwire
    c = pgwire.PgWire("127.0.0.1", p.port)
    assert c.ssl_request() == b"N"
    c.login("pgvalet", "pgvalet-pass", "appdb")
    assert c.simple("SELECT 'plain'").rows == [("plain",)]
    c.close()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(p.dsn, sslmode="require")
    conn = psycopg2.connect(p.dsn, sslmode="prefer")
    assert conn.info.ssl_in_use is False
    conn.close()


def server_side_ssl(p):
    conn = p.connect()
    cur = conn.cursor()
    cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    v = cur.fetchone()[0]
    conn.close()
    return v


def test_upstream_tls_verify_ca(proxy, ssl_cluster, mode):
    up = ssl_cluster.url(sslmode="verify-ca", sslrootcert=ssl_cluster.ca)
    p = proxy(pool_mode=mode, upstream=up, cluster=ssl_cluster)
    assert server_side_ssl(p) is True


def test_upstream_tls_verify_full(proxy, ssl_cluster):
    up = ssl_cluster.url(sslmode="verify-full", sslrootcert=ssl_cluster.ca)
    p = proxy(upstream=up, cluster=ssl_cluster)
    assert server_side_ssl(p) is True


def test_upstream_sslmode_disable_is_plaintext(proxy, ssl_cluster):
    p = proxy(upstream=ssl_cluster.url(sslmode="disable"), cluster=ssl_cluster)
    assert server_side_ssl(p) is False


def test_upstream_require_against_non_tls_server_errors(proxy, pg):
    """sslmode=require on a server without TLS: the client gets an error, not a hang."""
    try:
        p = proxy(upstream=pg.url(sslmode="require"))
    except pytest.fail.Exception:
        return  # refusing to start is an acceptable answer too
    with pytest.raises(psycopg2.Error):
        conn = psycopg2.connect(p.dsn, connect_timeout=10)
        conn.cursor().execute("SELECT 1")


def test_upstream_verify_ca_with_wrong_ca_errors(proxy, ssl_cluster, certs):
    up = ssl_cluster.url(sslmode="verify-ca", sslrootcert=certs["other_ca"])
    try:
        p = proxy(upstream=up, cluster=ssl_cluster)
    except pytest.fail.Exception:
        return
    with pytest.raises(psycopg2.Error):
        conn = psycopg2.connect(p.dsn, connect_timeout=10)
        conn.cursor().execute("SELECT 1")
