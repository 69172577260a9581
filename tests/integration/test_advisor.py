"""The self-optimizer against a real Postgres with hypopg: slow shapes get an
index advice verified with hypothetical indexes; --mode optimize creates it
(and EXPLAIN then uses it), --mode observe creates nothing and serves no
cached answer, --exclude-tables is honoured, an ORM's lazy-loading loop is
reported as N+1, deep OFFSETs are warned about, and `pgvalet clean` leaves
the database as it was.

"Slow" is made cheap: --threshold-duration-ms 1 and a 50,000-row table
whose filtered column has no index (a sequential scan takes a few ms).
"""
import json
import re
import subprocess
import time
import urllib.request

import psycopg
import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, declarative_base, relationship

from conftest import BINARY

pytestmark = pytest.mark.proxy_only

WAIT = 15.0
SLOW = ["--threshold-duration-ms", "1"]


def one(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
        return row[0] if row and len(row) == 1 else row


def wait_log(p, pattern, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, p.stderr)
        if m:
            return m
        time.sleep(0.05)
    pytest.fail(f"no /{pattern}/ in the proxy log:\n{p.stderr[-4000:]}")


def api(p, path):
    """A JSON document of the dashboard (on --port + 1)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{p.port + 1}{path}", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        return json.loads(r.read().decode())


def wait_api(p, path, pred, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = api(p, path)
        hits = [it for it in doc if pred(it)]
        if hits:
            return hits
        time.sleep(0.1)
    pytest.fail(f"nothing matching in {path}: {json.dumps(doc)[:3000]}")


def show(p, what):
    """SHOW <what> on the admin console (virtual database pgvalet)."""
    conn = psycopg2.connect(p.url(db="pgvalet"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"SHOW {what}")
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]
    finally:
        conn.close()


def indexes(pg, table):
    d = pg.connect()
    try:
        with d.cursor() as cur:
            cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY 1", (table,))
            return [r[0] for r in cur.fetchall()]
    finally:
        d.close()


@pytest.fixture
def big(pg, uniq):
    """50,000 rows; only id is indexed."""
    d = pg.connect()
    d.cursor().execute(f"CREATE TABLE {uniq} (id int PRIMARY KEY, v int NOT NULL, w int NOT NULL, note text)")
    d.cursor().execute(f"INSERT INTO {uniq} SELECT g, g % 5000, g % 97, 'n' || g FROM generate_series(1, 50000) g")
    d.cursor().execute(f"ANALYZE {uniq}")
    yield uniq
    d.cursor().execute(f"DROP TABLE IF EXISTS {uniq} CASCADE")
    d.close()


def run_slow(p, table, times=3):
    c = p.connect()
    try:
        for i in range(times):
            assert one(c, f"SELECT count(*) FROM {table} WHERE v = %s", (100 + i,)) == 10
    finally:
        c.close()


def test_recommendation_is_verified_and_nothing_created(proxy, pg, big):
    """Default mode (cache): the advice is logged with its costs; no DDL."""
    p = proxy(extra=SLOW)
    run_slow(p, big)
    m = wait_log(p, rf"advisor: recommended on public\.{big}: pgvalet_idx_{big}_v: "
                    rf"CREATE INDEX CONCURRENTLY \"pgvalet_idx_{big}_v\" ON \"public\"\.\"{big}\" \(\"v\"\); "
                    rf"cost ([\d.]+) -> ([\d.]+)")
    before, after = float(m.group(1)), float(m.group(2))
    assert after <= before * 0.7
    advice = wait_api(p, "/api/advice", lambda a: a.get("table") == big)[0]
    assert advice["kind"] == "index" and advice["schema"] == "public" and advice["columns"] == ["v"]
    assert advice["index"] == f"pgvalet_idx_{big}_v" and advice["status"] == "recommended"
    assert advice["ddl"] == f'CREATE INDEX CONCURRENTLY "pgvalet_idx_{big}_v" ON "public"."{big}" ("v")'
    assert (advice["cost_before"], advice["cost_after"]) == (before, after)
    assert re.fullmatch(rf"SELECT count\(\*\) FROM {big} WHERE v = 10\d", advice["example"])
    assert advice["mode"] == "cache" and advice["db"] == "appdb" and advice["calls"] >= 1
    assert re.fullmatch(r"[0-9a-f]{16}", advice["shape"]) and advice["at"] > 1.7e9
    audit = wait_api(p, "/api/audit", lambda a: a["table"] == f"public.{big}")
    assert [a["action"] for a in audit] == ["recommended"]
    assert audit[0]["summary"].startswith(f"recommended on public.{big}: pgvalet_idx_{big}_v: CREATE INDEX")
    time.sleep(0.5)
    assert indexes(pg, big) == [f"{big}_pkey"]
    assert "advisor: created" not in p.stderr


def test_threshold_changed_at_run_time(proxy, pg, big):
    """POST /api/settings {"threshold_duration_ms": 1} makes the advisor look."""
    p = proxy(extra=["--threshold-duration-ms", "100000", "--dashboard-token", "tok"])
    run_slow(p, big)
    time.sleep(0.5)
    assert "advisor: recommended" not in p.stderr
    req = urllib.request.Request(f"http://127.0.0.1:{p.port + 1}/api/settings", method="POST",
                                 data=b'{"threshold_duration_ms": 1}',
                                 headers={"Authorization": "Bearer tok", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    c = p.connect()
    one(c, f"SELECT count(*) FROM {big} WHERE v = 4242")  # a miss: not cached yet
    c.close()
    wait_log(p, rf"advisor: recommended on public\.{big}: pgvalet_idx_{big}_v")


def test_optimize_creates_index_and_plan_uses_it(proxy, pg, big):
    p = proxy(extra=SLOW + ["--mode", "optimize"])
    run_slow(p, big)
    wait_log(p, rf"advisor: created on public\.{big}: pgvalet_idx_{big}_v: .*the example's plan uses it")
    assert f"pgvalet_idx_{big}_v" in indexes(pg, big)
    audit = [a for a in api(p, "/api/audit") if a["table"] == f"public.{big}"]
    assert [a["action"] for a in audit] == ["created", "recommended"]  # newest first
    assert [a["status"] for a in api(p, "/api/advice") if a.get("table") == big] == ["created, used by the plan"]
    rows = [r for r in show(p, "ADVICE") if r["table"] == f"public.{big}"]
    assert len(rows) == 1 and rows[0]["index"] == f"pgvalet_idx_{big}_v" and rows[0]["columns"] == "v"
    assert rows[0]["status"] == "created, used by the plan"
    assert float(rows[0]["cost_after"]) <= 0.7 * float(rows[0]["cost_before"])
    assert [r["action"] for r in show(p, "AUDIT") if r["table"] == f"public.{big}"] == ["created", "recommended"]
    d = pg.connect()
    try:
        assert one(d, "SELECT obj_description(%s::regclass, 'pg_class')",
                   (f"pgvalet_idx_{big}_v",)).startswith("created by pgvalet")
        assert one(d, "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass",
                   (f"pgvalet_idx_{big}_v",))
        plan = "\n".join(r[0] for r in _rows(d, f"EXPLAIN SELECT count(*) FROM {big} WHERE v = 7"))
        assert f"pgvalet_idx_{big}_v" in plan
    finally:
        d.close()


def _rows(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_parameters_get_a_generic_plan(proxy, pg, big):
    """$n parameters (psycopg 3, server-side prepared): planned generically."""
    p = proxy(extra=SLOW)
    with psycopg.connect(p.dsn, autocommit=True, prepare_threshold=0) as conn:
        for i in range(3):
            assert conn.execute(f"SELECT count(*) FROM {big} WHERE w = %s", (i,)).fetchone()[0] > 0
    wait_log(p, rf"advisor: recommended on public\.{big}: pgvalet_idx_{big}_w: .*verified with hypopg")


def test_observe_mode_creates_nothing_and_serves_no_cached_answer(proxy, pg, big):
    d = pg.connect()
    had_pss = one(d, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'") == 1
    d.cursor().execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    try:
        p = proxy(extra=SLOW + ["--mode", "observe"])
        wait_log(p, r"result cache off \(--mode observe serves no cached answers\)")
        c = p.connect()
        sql = f"SELECT note FROM {big} WHERE id = 4242"

        def calls():  # how often Postgres itself ran it
            return one(d, "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE %s"
                          " AND query NOT LIKE '%%pg_stat_statements%%'", (f"%{big} WHERE id%",))

        one(c, sql)
        before = calls()
        for _ in range(5):
            assert one(c, sql) == "n4242"
        assert calls() == before + 5, "observe mode answered from a cache"
        run_slow(p, big)
        wait_log(p, rf"advisor: recommended on public\.{big}: pgvalet_idx_{big}_v")
        time.sleep(0.5)
        assert indexes(pg, big) == [f"{big}_pkey"]
        assert "advisor: created" not in p.stderr
        c.close()
    finally:
        if not had_pss:  # later tests seed statistics from it: leave none behind
            d.cursor().execute("SELECT pg_stat_statements_reset()")
            d.cursor().execute("DROP EXTENSION pg_stat_statements")
        d.close()


def test_exclude_tables(proxy, pg, big):
    p = proxy(extra=SLOW + ["--mode", "optimize", "--exclude-tables", f"other, public.{big}"])
    run_slow(p, big)
    wait_log(p, rf"advisor: skipped on public\.{big}: pgvalet_idx_{big}_v: not created: "
                r"the table is in --exclude-tables")
    assert indexes(pg, big) == [f"{big}_pkey"]


def test_hourly_cap(proxy, pg, big):
    p = proxy(extra=SLOW + ["--mode", "optimize", "--max-indexes-per-hour", "0"])
    run_slow(p, big)
    wait_log(p, r"advisor: skipped on .*--max-indexes-per-hour 0 reached")
    assert indexes(pg, big) == [f"{big}_pkey"]


def test_an_update_gets_advice_for_the_rows_it_finds(proxy, pg, big):
    """A slow UPDATE ... WHERE v = $1: the same verified advice as a SELECT's."""
    p = proxy(extra=SLOW)
    c = p.connect()
    try:
        with c.cursor() as cur:
            for i in range(3):
                cur.execute(f"UPDATE {big} SET note = note WHERE v = %s", (200 + i,))
                assert cur.rowcount == 10
    finally:
        c.close()
    m = wait_log(p, rf"advisor: recommended on public\.{big}: pgvalet_idx_{big}_v: .*"
                    rf"cost ([\d.]+) -> ([\d.]+)")
    assert float(m.group(2)) <= 0.7 * float(m.group(1))
    advice = wait_api(p, "/api/advice", lambda a: a.get("table") == big)[0]
    assert advice["example"].startswith(f"UPDATE {big} SET note = note WHERE v = ")
    assert indexes(pg, big) == [f"{big}_pkey"]      # recommended only (mode cache)


def test_a_correlated_subquery_gets_advice_on_its_join_column(proxy, pg, big):
    """EXISTS (SELECT ... WHERE k.parent_id = b.id): the index goes on the subquery's table."""
    kids = f"{big}_kids"
    d = pg.connect()
    d.cursor().execute(f"CREATE TABLE {kids} (id int PRIMARY KEY, parent_id int NOT NULL)")
    d.cursor().execute(f"INSERT INTO {kids} SELECT g, g % 5000 FROM generate_series(1, 50000) g")
    d.cursor().execute(f"ANALYZE {kids}")
    try:
        p = proxy(extra=SLOW)
        c = p.connect()
        try:
            for i in range(3):
                one(c, f"SELECT count(*) FROM {big} b WHERE b.id < %s AND EXISTS "
                       f"(SELECT 1 FROM {kids} k WHERE k.parent_id = b.id)", (20 + i,))
        finally:
            c.close()
        wait_log(p, rf"advisor: recommended on public\.{kids}: pgvalet_idx_{kids}_parent_id: "
                    rf"CREATE INDEX CONCURRENTLY \"pgvalet_idx_{kids}_parent_id\" ON "
                    rf"\"public\"\.\"{kids}\" \(\"parent_id\"\)")
        assert indexes(pg, kids) == [f"{kids}_pkey"]
    finally:
        d.cursor().execute(f"DROP TABLE IF EXISTS {kids}")
        d.close()


def test_orm_lazy_loading_is_nplus1(proxy, pg, uniq):
    """SQLAlchemy: parents, then each parent's children loaded lazily."""
    Base = declarative_base()

    class Parent(Base):
        __tablename__ = f"{uniq}_parent"
        id = sa.Column(sa.Integer, primary_key=True)
        name = sa.Column(sa.String)
        children = relationship("Child", lazy="select")

    class Child(Base):
        __tablename__ = f"{uniq}_child"
        id = sa.Column(sa.Integer, primary_key=True)
        parent_id = sa.Column(sa.Integer, sa.ForeignKey(f"{uniq}_parent.id"))

    direct = sa.create_engine(pg.url().replace("postgresql://", "postgresql+psycopg2://"))
    Base.metadata.create_all(direct)
    try:
        with Session(direct) as s:
            for i in range(1, 16):
                s.add(Parent(id=i, name=f"p{i}", children=[Child(id=i * 10), Child(id=i * 10 + 1)]))
            s.commit()
        p = proxy()
        engine = sa.create_engine(p.url().replace("postgresql://", "postgresql+psycopg2://"))
        with Session(engine) as s:
            total = sum(len(parent.children) for parent in s.query(Parent).all())
        assert total == 30
        engine.dispose()
        m = wait_log(p, r"N\+1 queries \(one connection\): shape [0-9a-f]+ ran (\d+) times within 1000 ms "
                        rf"with a different parameter each time, e\.g\.: SELECT .*{uniq}_child")
        assert int(m.group(1)) >= 10
        found = wait_api(p, "/api/nplus1", lambda f: f["kind"] == "n+1" and f"{uniq}_child" in f["example"])
        assert [f["scope"] for f in found] == ["connection"]  # one client: not "across connections"
        assert found[0]["db"] == "appdb" and found[0]["max_calls"] >= 10 and found[0]["detections"] >= 1
        rows = [r for r in show(p, "NPLUS1") if f"{uniq}_child" in r["example"]]
        assert [(r["kind"], r["scope"]) for r in rows] == [("n+1", "connection")]
    finally:
        Base.metadata.drop_all(direct)
        direct.dispose()


def test_repeating_one_query_is_not_nplus1(proxy, big):
    """The same parameter every time is a hot query, not N+1."""
    p = proxy()
    c = p.connect()
    for _ in range(30):
        one(c, f"SELECT note FROM {big} WHERE id = 1")
    for i in range(1, 4):
        one(c, f"SELECT note FROM {big} WHERE id = %s", (i,))
    c.close()
    time.sleep(0.3)
    assert "N+1" not in p.stderr


def test_deep_offset_warning(proxy, big):
    p = proxy()
    c = p.connect()
    assert len(_rows(c, f"SELECT id FROM {big} ORDER BY id LIMIT 10 OFFSET 5000")) == 10
    assert len(_rows(c, f"SELECT id FROM {big} ORDER BY id LIMIT 10 OFFSET 10")) == 10
    c.close()
    m = wait_log(p, r"deep OFFSET pagination: shape [0-9a-f]+ skips (\d+) rows")
    assert m.group(1) == "5000"
    found = wait_api(p, "/api/nplus1", lambda f: f["kind"] == "deep_offset")
    assert len(found) == 1 and found[0]["offset"] == 5000 and "OFFSET 5000" in found[0]["example"]


def catalog_snapshot(pg):
    """What pgvalet may create: relations, indexes, triggers, extensions,
    schemas, publications, functions and event triggers."""
    d = pg.connect()
    try:
        q = {
            "rels": "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE n.nspname NOT LIKE 'pg_toast%%'"
                    " AND n.nspname NOT LIKE 'pg_temp%%' ORDER BY 1, 2",
            "triggers": "SELECT tgrelid::regclass::text, tgname FROM pg_trigger ORDER BY 1, 2",
            "extensions": "SELECT extname FROM pg_extension ORDER BY 1",
            "schemas": "SELECT nspname FROM pg_namespace ORDER BY 1",
            "publications": "SELECT pubname FROM pg_publication ORDER BY 1",
            "event_triggers": "SELECT evtname FROM pg_event_trigger ORDER BY 1",
            "functions": "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                         " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        }
        return {k: _rows(d, v) for k, v in q.items()}
    finally:
        d.close()


def test_clean_leaves_the_database_as_it_was(proxy, pg, big):
    # Start from what pgvalet had not touched (earlier tests' proxies left
    # their publication, schema and hypopg behind: that is what clean is for).
    subprocess.run([BINARY, "clean", "--upstream", pg.url()], check=True, capture_output=True, timeout=60)
    before = catalog_snapshot(pg)
    assert ("hypopg",) not in before["extensions"]
    p = proxy(extra=SLOW + ["--mode", "optimize"])
    run_slow(p, big)
    wait_log(p, rf"advisor: created on public\.{big}: pgvalet_idx_{big}_v")
    p.stop()
    assert p.proc.returncode == 0, p.stderr[-3000:]
    p.ready = False  # stopped on purpose
    during = catalog_snapshot(pg)
    assert ("public", f"pgvalet_idx_{big}_v", "i") in during["rels"]
    assert ("hypopg",) in during["extensions"]
    out = subprocess.run([BINARY, "clean", "--upstream", pg.url()], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"DROP INDEX CONCURRENTLY IF EXISTS public.pgvalet_idx_{big}_v" in out.stdout
    assert "DROP EXTENSION hypopg" in out.stdout
    assert catalog_snapshot(pg) == before


def test_clean_keeps_indexes_pgvalet_did_not_create(proxy, pg, big):
    """Named like ours but not commented by pgvalet: someone else's."""
    d = pg.connect()
    d.cursor().execute(f"CREATE INDEX pgvalet_idx_{big}_w ON {big} (w)")
    out = subprocess.run([BINARY, "clean", "--upstream", pg.url()], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"pgvalet_idx_{big}_w" in indexes(pg, big)
    d.close()


def test_statements_are_planned_as_their_role(proxy, pg, big, tmp_path):
    """The proxy's own role is a superuser; the client's is not.  Planning
    runs IMMUTABLE functions (constant folding): the advisor must plan as
    the client's role, or a client could run code as the superuser."""
    d = pg.connect()
    d.cursor().execute(f"GRANT SELECT ON {big} TO app")
    d.cursor().execute(f"""CREATE FUNCTION {big}_f() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
        BEGIN
            IF current_user <> 'app' THEN RAISE EXCEPTION 'planned as %', current_user; END IF;
            RETURN 7;
        END $$""")
    auth = tmp_path / "users.txt"
    auth.write_text('"app" "app-pass"\n"pgvalet" "pgvalet-pass"\n')
    p = proxy(extra=SLOW + ["--auth-file", str(auth)])
    c = p.connect(dsn=p.url(user="app", password="app-pass"))
    assert one(c, f"SELECT count(*) FROM {big} WHERE v = {big}_f()") == 10
    c.close()
    wait_log(p, rf"advisor: recommended on public\.{big}: pgvalet_idx_{big}_v")
    assert "planned as" not in p.stderr
    d.cursor().execute(f"DROP FUNCTION {big}_f()")
    d.close()


def test_hypopg_missing_is_said_clearly(proxy, pg, uniq):
    """A role that may not CREATE EXTENSION, in a database without hypopg."""
    d = pg.connect()
    db = f"{uniq}_db"
    d.cursor().execute(f"CREATE DATABASE {db} OWNER app")
    try:
        a = psycopg.connect(pg.url(user="app", password="app-pass", db=db), autocommit=True)
        a.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        a.execute("INSERT INTO t SELECT g, g % 100 FROM generate_series(1, 50000) g")
        a.execute("ANALYZE t")
        a.close()
        p = proxy(extra=SLOW + ["--cache-size", "0"], upstream=pg.url(user="app", password="app-pass", db=db))
        c = p.connect(dsn=p.url(user="app", password="app-pass", db=db))
        one(c, "SELECT count(*) FROM t WHERE v = 5")
        c.close()
        wait_log(p, rf"advisor: database {db}: hypopg is not available \(CREATE EXTENSION hypopg failed\): "
                    r"ERROR: +permission denied to create extension \"hypopg\"")
        wait_log(p, r"advisor: skipped: hypopg is missing: nothing can be verified")
        notes = [a for a in api(p, "/api/advice") if a["kind"] == "note"]
        assert len(notes) == 1 and "permission denied to create extension" in notes[0]["summary"]
    finally:
        time.sleep(0.2)
        d.cursor().execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        d.close()
