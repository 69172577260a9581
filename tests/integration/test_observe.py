"""Observability: workload statistics, the admin console (database "pgvalet"),
the dashboard's JSON API and /metrics, against a real Postgres through the proxy."""
import json
import time
import urllib.error
import urllib.request

import psycopg
import psycopg2
import psycopg2.errors
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Cluster

pytestmark = pytest.mark.proxy_only

TOKEN = "test-token-5f2a"


def start(proxy, *extra):
    return proxy(extra=["--dashboard-token", TOKEN, *extra])


def api(p, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{p.port + 1}{path}", timeout=10) as r:
        assert r.status == 200
        return r.headers.get("Content-Type"), r.read().decode()


def get_json(p, path):
    ctype, body = api(p, path)
    assert ctype == "application/json"
    return json.loads(body)


def post(p, path, body="", token=TOKEN, header="Authorization"):
    req = urllib.request.Request(f"http://127.0.0.1:{p.port + 1}{path}", data=body.encode(),
                                 method="POST")
    if token is not None:
        req.add_header(header, f"Bearer {token}" if header == "Authorization" else token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def fresh_stats(p):
    """Wait for the pg_stat_statements read at start-up (the test cluster has
    the extension once some test created it), then start the stats afresh."""
    deadline = time.monotonic() + 15
    while "stats: " not in p.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    assert post(p, "/api/stats/reset")[0] == 200


def admin(p, user="pgvalet", password="pgvalet-pass"):
    conn = psycopg2.connect(p.url(user=user, password=password, db="pgvalet"))
    conn.autocommit = True
    return conn


def show(conn, what):
    cur = conn.cursor()
    cur.execute(f"SHOW {what}")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def shape_of(shapes, needle):
    found = [s for s in shapes if needle in s["query"]]
    assert len(found) == 1, (needle, [s["query"] for s in shapes])
    return found[0]


def test_stats_reflect_a_workload(proxy, table):
    p = start(proxy)
    fresh_stats(p)
    conn = p.connect()
    cur = conn.cursor()
    cur.execute(f"INSERT INTO {table} (id, v) SELECT g, g FROM generate_series(11, 20) g")
    for i in range(25):                        # one shape, 25 literal values
        cur.execute(f"SELECT v FROM {table} WHERE id = {i % 20 + 1}")
        assert cur.fetchone() is not None
    for _ in range(3):
        with pytest.raises(psycopg2.errors.UndefinedColumn):
            cur.execute(f"SELECT no_such_column FROM {table}")
    cur.execute("SELECT pg_sleep(0.12)")      # slow: over --threshold-duration-ms 100
    conn.close()
    with psycopg.connect(p.url(), autocommit=True) as c3:   # extended protocol, $1 params
        for i in range(7):
            assert c3.execute(f"SELECT count(*) FROM {table} WHERE id <= %s", (i,)).fetchone()[0] == i
    shapes = get_json(p, "/api/shapes")
    point = shape_of(shapes, f"FROM {table} WHERE id = ")
    assert point["calls"] == 25 and point["rows"] == 25 and point["failures"] == 0
    assert point["mean_ms"] > 0 and point["p95_ms"] > 0
    assert point["max_ms"] >= point["mean_ms"] and point["last_seen"] > time.time() - 60
    bad = shape_of(shapes, "no_such_column")
    assert bad["calls"] == 3 and bad["failures"] == 3
    ext = shape_of(shapes, f"FROM {table} WHERE id <= $1")
    assert ext["calls"] == 7 and ext["rows"] == 7
    slow = shape_of(shapes, "pg_sleep")
    assert slow["slow"] and slow["mean_ms"] >= 120
    assert not point["slow"] or point["impact"] >= 0.2
    assert shapes == sorted(shapes, key=lambda s: -s["total_ms"])
    stats = get_json(p, "/api/stats")
    assert stats["stats_enabled"] and stats["statements"] >= 25 + 3 + 1 + 7 + 1
    assert stats["failures"] >= 3 and stats["slow_shapes"] >= 1
    assert stats["p95_ms"] > 0 and stats["mean_ms"] > 0
    assert stats["pools"] and stats["pools"][0]["database"] == "appdb"
    # thresholds change at run time: nothing is slow at 10 s and impact off
    status, body = post(p, "/api/settings", '{"threshold_duration_ms": 10000, "threshold_impact": 0}')
    assert status == 200 and body["threshold_duration_ms"] == 10000 and body["threshold_impact"] == 0
    assert not any(s["slow"] for s in get_json(p, "/api/shapes"))
    assert get_json(p, "/api/settings")["threshold_duration_ms"] == 10000


def test_cache_hits_are_counted(proxy, table):
    p = start(proxy)
    conn = p.connect()
    cur = conn.cursor()
    query = f"SELECT note FROM {table} WHERE id = 1"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:         # the stream must be up before reads are cached
        cur.execute(query)
        assert cur.fetchone() == ("n1",)
        s = shape_of(get_json(p, "/api/shapes"), query)
        if s["cache_hits"] >= 3:
            break
        time.sleep(0.05)
    assert s["cache_hits"] >= 3 and s["rows"] == s["calls"]
    cache = get_json(p, "/api/cache")
    assert cache["enabled"] and cache["hits"] >= 3 and cache["entries"] >= 1
    assert get_json(p, "/api/stats")["cache_hits"] >= 3
    status, body = post(p, "/api/cache/flush")
    assert status == 200 and body == {"flushed": True}
    assert get_json(p, "/api/cache")["entries"] == 0
    conn.close()


def test_admin_console(proxy, table):
    p = start(proxy)
    conn = p.connect()
    cur = conn.cursor()
    for i in range(5):
        cur.execute(f"SELECT count(*) FROM {table} WHERE id > {i}")
    a = admin(p)
    stats = show(a, "STATS")
    assert len(stats) == 1 and int(stats[0]["statements"]) >= 5
    pools = show(a, "POOLS")
    assert {(r["database"], r["user"]) for r in pools} >= {("appdb", "pgvalet")}
    assert all(int(r["pool_size"]) == 20 for r in pools)
    clients = show(a, "CLIENTS")
    assert {r["database"] for r in clients} == {"appdb", "pgvalet"}
    assert [r["state"] for r in clients if r["database"] == "pgvalet"] == ["admin"]
    assert all(r["addr"] == "127.0.0.1" and int(r["port"]) > 0 for r in clients)
    cache = show(a, "CACHE")
    assert cache[0]["enabled"] == "on" and cache[0]["stream"] in ("up", "down")
    shapes = show(a, "shapes;")                 # case and ';' do not matter
    mine = [r for r in shapes if f"FROM {table} WHERE id >" in r["query"]]
    assert len(mine) == 1 and mine[0]["calls"] == "5" and len(mine[0]["fingerprint"]) == 16
    acur = a.cursor()
    with pytest.raises(psycopg2.errors.SyntaxError, match="unknown admin console command"):
        acur.execute("SELECT 1")
    acur.execute("SHOW HELP")                   # the session goes on after an error
    assert ("SHOW SHAPES",) in [(r[0],) for r in acur.fetchall()]
    # drivers' chatter is accepted
    a.autocommit = False
    acur.execute("SHOW STATS")
    a.rollback()
    a.close()
    # the extended protocol is refused with an error, not a hang
    with psycopg.connect(p.url(db="pgvalet"), autocommit=True) as c3:
        for _ in range(2):
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                c3.execute("SHOW STATS", prepare=True)
        rows = c3.execute("SHOW POOLS").fetchall()   # no parameters: the simple protocol
        assert ("appdb", "pgvalet") in [r[:2] for r in rows]
    conn.close()


def test_admin_console_users(proxy, tmp_path):
    auth = tmp_path / "users.txt"
    auth.write_text('"app" "app-pass"\n"pgvalet" "pgvalet-pass"\n')
    p = proxy(extra=["--auth-file", str(auth)])
    with pytest.raises(psycopg2.OperationalError, match="not allowed to use the admin console"):
        admin(p, "app", "app-pass")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        admin(p, "pgvalet", "wrong")
    admin(p).close()                            # the upstream URL's user
    p2 = proxy(extra=["--auth-file", str(auth), "--admin-users", "someone, app"])
    a = admin(p2, "app", "app-pass")
    assert show(a, "STATS")
    a.close()


def test_api_writes_need_the_token(proxy):
    p = start(proxy)
    for path in ("/api/settings", "/api/cache/flush", "/api/stats/reset"):
        assert post(p, path, "{}", token=None)[0] == 403
        assert post(p, path, "{}", token="wrong")[0] == 403
        assert post(p, path, "{}", token=TOKEN[:-1])[0] == 403
    assert post(p, "/api/settings", '{"threshold_impact": 5}', header="X-Pgvalet-Token")[0] == 200
    status, body = post(p, "/api/settings", '{"threshold_impact": 5, "pool_size": 3}')
    assert status == 400 and body["error"] == "unknown setting: pool_size"
    status, body = post(p, "/api/settings", '{"threshold_duration_ms": -3}')
    assert status == 400 and "threshold_duration_ms" in body["error"] and "-3" in body["error"]
    status, body = post(p, "/api/settings", '{"threshold_impact": 7,')
    assert status == 400 and "invalid JSON" in body["error"]
    status, body = post(p, "/api/settings", '{"cache_ttl_ms": 2500}')
    assert status == 200 and body["cache_ttl_ms"] == 2500 and body["threshold_impact"] == 5
    assert get_json(p, "/api/audit") == [] and get_json(p, "/api/advice") == []
    with pytest.raises(urllib.error.HTTPError) as e:
        api(p, "/api/nothing")
    assert e.value.code == 404


def test_the_token_is_printed_when_not_given(proxy):
    p = proxy()
    deadline = time.monotonic() + 5
    while "API writes need the token" not in p.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    token = p.stderr.split("API writes need the token ")[1].split(")")[0]
    assert len(token) == 32
    assert post(p, "/api/stats/reset", "", token=token)[0] == 200
    assert post(p, "/api/stats/reset", "", token=token.upper())[0] == 403


def test_metrics_parse(proxy, table):
    p = start(proxy)
    conn = p.connect()
    cur = conn.cursor()
    for i in range(12):
        cur.execute(f"SELECT {i} FROM {table}")
    conn.close()
    ctype, text = api(p, "/metrics")
    assert ctype.startswith("text/plain; version=0.0.4")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("pgvalet_statements", "pgvalet_statement_duration_seconds", "pgvalet_clients",
                 "pgvalet_server_connections", "pgvalet_cache_hits", "pgvalet_cache_evictions",
                 "pgvalet_stream_state", "pgvalet_replication_lag_bytes",
                 "pgvalet_replication_lag_ms", "pgvalet_uptime_seconds"):
        assert name in fams, name
    total = fams["pgvalet_statements"].samples[0].value
    assert total >= 12
    hist = {s.name + s.labels.get("le", ""): s.value for s in fams["pgvalet_statement_duration_seconds"].samples}
    assert hist["pgvalet_statement_duration_seconds_count"] == total
    assert hist["pgvalet_statement_duration_seconds_bucket+Inf"] == total
    assert hist["pgvalet_statement_duration_seconds_sum"] > 0
    buckets = [s.value for s in fams["pgvalet_statement_duration_seconds"].samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets)
    sources = {s.labels["source"] for s in fams["pgvalet_cache_evictions"].samples}
    assert sources == {"capacity", "invalidation", "ttl"}
    states = {s.labels["state"]: s.value for s in fams["pgvalet_stream_state"].samples}
    assert sum(states.values()) == 1


def test_stats_off_and_no_dashboard(proxy):
    p = proxy(extra=["--stats", "off", "--dashboard-port", "0"])
    conn = p.connect()
    conn.cursor().execute("SELECT 1")
    conn.close()
    with pytest.raises(urllib.error.URLError):
        api(p, "/api/stats")
    a = admin(p)
    with pytest.raises(psycopg2.errors.ObjectNotInPrerequisiteState, match="statistics are off"):
        a.cursor().execute("SHOW SHAPES")
    assert show(a, "POOLS")
    a.close()


def test_stats_are_seeded_from_pg_stat_statements(proxy):
    cluster = Cluster()
    try:
        conn = cluster.connect()    # scripts/pg-cluster preloads pg_stat_statements
        cur = conn.cursor()
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cur.execute("CREATE TABLE seeded_t (id int PRIMARY KEY)")
        for i in range(9):
            cur.execute(f"SELECT count(*) FROM seeded_t WHERE id = {i}")
        conn.close()
        p = proxy(cluster=cluster)
        deadline = time.monotonic() + 15
        while "seeded" not in p.stderr and time.monotonic() < deadline:
            time.sleep(0.05)
        a = admin(p)
        rows = [r for r in show(a, "SHAPES") if "FROM seeded_t WHERE id = $1" in r["query"]]
        assert len(rows) == 1 and int(rows[0]["calls"]) >= 9, rows
        a.close()
        c = p.connect()
        c.cursor().execute("SELECT count(*) FROM seeded_t WHERE id = 42")   # same shape
        c.close()
        shapes = [s for s in get_json(p, "/api/shapes") if "seeded_t WHERE id" in s["query"]]
        assert len(shapes) == 1 and shapes[0]["seeded"] and shapes[0]["calls"] >= 10
        assert get_json(p, "/api/stats")["seeded_from_pg_stat_statements"]
    finally:
        cluster.stop()
