"""Session state follows the client in transaction pooling, and never leaks to others.

pool_size=1 means both clients run on the same backend through the proxy.
"""
import psycopg2
import pytest

SETTINGS = {
    "search_path": "myschema, public",
    "application_name": "client-a-app",
    "TimeZone": "Asia/Tokyo",
    "DateStyle": "SQL, DMY",
    "app.user_id": "7",
}
TS = "SELECT '2024-01-02 03:04:05+00'::timestamptz::text"


def state(conn):
    cur = conn.cursor()
    out = {}
    for name in ("search_path", "application_name", "TimeZone", "DateStyle"):
        cur.execute(f"SHOW {name}")
        out[name] = cur.fetchone()[0]
    cur.execute("SELECT current_setting('app.user_id', true)")
    v = cur.fetchone()[0]
    out["app.user_id"] = v or None  # '' after RESET of a placeholder == never set
    cur.execute(TS)
    out["ts"] = cur.fetchone()[0]
    return out


def apply_settings(conn):
    cur = conn.cursor()
    cur.execute("SET search_path TO myschema, public")
    cur.execute("SET application_name = 'client-a-app'")
    cur.execute("SET TimeZone = 'Asia/Tokyo'")
    cur.execute("SET DateStyle = 'SQL, DMY'")
    cur.execute("SET app.user_id = '7'")


A_EXPECTED = dict(SETTINGS, ts="02/01/2024 12:04:05 JST")


@pytest.fixture
def two_clients(proxy):
    p = proxy(pool_mode="transaction", pool_size=1)
    a, b = p.connect(), p.connect()
    yield p, a, b
    a.close()
    b.close()


def test_set_in_one_client_invisible_to_other_on_same_backend(two_clients):
    p, a, b = two_clients
    base_a, base_b = state(a), state(b)
    apply_settings(a)
    assert state(b) == base_b
    assert state(a) == A_EXPECTED
    assert state(b) == base_b
    assert state(a) == A_EXPECTED
    assert base_a["app.user_id"] is None


def test_client_settings_survive_other_clients_queries(two_clients):
    p, a, b = two_clients
    base_b = state(b)
    apply_settings(a)
    cb = b.cursor()
    for i in range(20):
        cb.execute("SELECT %s::int", (i,))
        assert cb.fetchone() == (i,)
        cb.execute("SET TimeZone = 'UTC'")  # b's own setting
    b_now = state(b)
    assert b_now["TimeZone"] == "UTC"
    assert b_now["search_path"] == base_b["search_path"]
    assert state(a) == A_EXPECTED


def test_reset_all_restores_defaults(two_clients):
    p, a, b = two_clients
    base_a = state(a)
    apply_settings(a)
    assert state(a) == A_EXPECTED
    a.cursor().execute("RESET ALL")
    after = state(a)
    assert after == base_a
    a.cursor().execute("SET TimeZone = 'America/New_York'")
    a.cursor().execute("RESET TimeZone")
    assert state(a)["TimeZone"] == base_a["TimeZone"]


def test_set_local_does_not_leak(two_clients):
    p, a, b = two_clients
    base_a, base_b = state(a), state(b)
    cur = a.cursor()
    cur.execute("BEGIN")
    cur.execute("SET LOCAL search_path TO local_only")
    cur.execute("SET LOCAL app.user_id = '99'")
    cur.execute("SHOW search_path")
    assert cur.fetchone() == ("local_only",)
    cur.execute("SELECT current_setting('app.user_id', true)")
    assert cur.fetchone() == ("99",)
    cur.execute("COMMIT")
    assert state(a) == base_a
    assert state(b) == base_b


def test_set_in_rolled_back_transaction_is_undone(two_clients):
    p, a, b = two_clients
    base_a, base_b = state(a), state(b)
    cur = a.cursor()
    cur.execute("BEGIN")
    cur.execute("SET search_path TO rolled_back")
    cur.execute("SET app.user_id = '13'")
    cur.execute("ROLLBACK")
    assert state(a) == base_a
    assert state(b) == base_b
    # a SET in a failed-then-rolled-back transaction is undone too
    cur.execute("BEGIN")
    cur.execute("SET TimeZone = 'Asia/Tokyo'")
    with pytest.raises(psycopg2.errors.DivisionByZero):
        cur.execute("SELECT 1/0")
    cur.execute("ROLLBACK")
    assert state(a) == base_a


def test_set_in_committed_transaction_is_kept(two_clients):
    p, a, b = two_clients
    base_b = state(b)
    cur = a.cursor()
    cur.execute("BEGIN")
    cur.execute("SET search_path TO myschema, public")
    cur.execute("SET app.user_id = '7'")
    cur.execute("COMMIT")
    assert state(b) == base_b
    s = state(a)
    assert s["search_path"] == "myschema, public"
    assert s["app.user_id"] == "7"


def test_set_config_function_follows_client(proxy):
    """set_config(..., false) is a session-level SET in function form.

    pool_size=2, not 1: a proxy may keep correctness by pinning the client to its
    backend instead of tracking the value; either way B must not see it.
    """
    p = proxy(pool_mode="transaction", pool_size=2)
    a, b = p.connect(), p.connect()
    base_b = state(b)
    ca = a.cursor()
    ca.execute("SELECT set_config('app.user_id', '21', false), set_config('search_path', 'sc_path', false)")
    assert ca.fetchone() == ("21", "sc_path")
    assert state(b) == base_b
    s = state(a)
    assert (s["app.user_id"], s["search_path"]) == ("21", "sc_path")
    assert state(b) == base_b
    a.close()
    b.close()


def test_multi_statement_set_string(two_clients):
    p, a, b = two_clients
    base_b = state(b)
    a.cursor().execute("SET app.user_id = '5'; SET search_path TO multi; SELECT 1")
    assert state(b) == base_b
    s = state(a)
    assert (s["app.user_id"], s["search_path"]) == ("5", "multi")


def test_discard_all_and_disconnect_leave_nothing_behind(proxy, mode):
    """A client that SETs things and leaves: the next client on that backend sees defaults."""
    p = proxy(pool_mode=mode, pool_size=1)
    probe = p.connect()
    base = state(probe)
    probe.close()

    a = p.connect()
    apply_settings(a)
    if mode == "session":  # session-only state: meaningless under transaction pooling
        ca = a.cursor()
        ca.execute("PREPARE leftover AS SELECT 1")
        ca.execute("CREATE TEMP TABLE leftover_tmp (x int)")
        ca.execute("LISTEN leftover_channel")
    a.close()

    b = p.connect()
    assert state(b) == base
    cb = b.cursor()
    cb.execute("SELECT count(*) FROM pg_prepared_statements WHERE name = 'leftover'")
    assert cb.fetchone() == (0,)
    cb.execute("SELECT count(*) FROM pg_class WHERE relname = 'leftover_tmp' AND relpersistence = 't'")
    assert cb.fetchone() == (0,)
    cb.execute("SELECT count(*) FROM pg_listening_channels()")
    assert cb.fetchone() == (0,)
    b.close()


def test_discard_all_by_client_resets_its_state(two_clients):
    p, a, b = two_clients
    base_a = state(a)
    apply_settings(a)
    a.cursor().execute("DISCARD ALL")
    assert state(a) == base_a


def test_startup_options_are_parsed_like_postgres_does(proxy, pg, mode):
    """options=-c search_path=a,b at connect time sets a two-element list
    (as Postgres itself does), not one quoted name; quotes survive."""
    p = proxy(pool_mode=mode, pool_size=1)
    opts = "-c search_path=public,pg_catalog -c application_name=it\\'s"
    seen = []
    for target in (pg, p):
        c = psycopg2.connect(target.dsn, options=opts)
        c.autocommit = True
        cur = c.cursor()
        cur.execute("SHOW search_path")
        path = cur.fetchone()[0]
        cur.execute("SELECT current_schemas(false), current_setting('application_name')")
        seen.append((path,) + cur.fetchone())
        c.close()
    assert seen[1] == seen[0]
    assert seen[0][1] == ["public", "pg_catalog"] and seen[0][2] == "it's"


def test_startup_option_values_stay_literal_without_conforming_strings(proxy, pg):
    """A start-up setting is replayed as SQL on whichever backend the client lands on,
    and that backend may have standard_conforming_strings off (another client's
    setting, still in force while the replay is parsed): the value must read the same,
    backslashes and quotes included."""
    p = proxy(pool_mode="transaction", pool_size=1)
    value = "a\\b'c\\\\d\\"                     # a\b'c\\d\ as Python shows it
    note_opts = "-c app.note=" + value.replace("\\", "\\\\").replace("'", "\\'")
    direct = psycopg2.connect(pg.dsn, options=note_opts)
    direct.autocommit = True
    cur = direct.cursor()
    cur.execute("SELECT current_setting('app.note')")
    assert cur.fetchone()[0] == value
    direct.close()

    other = psycopg2.connect(p.dsn, options="-c standard_conforming_strings=off")
    other.autocommit = True
    mine = psycopg2.connect(p.dsn, options=note_opts)
    mine.autocommit = True
    for _ in range(3):          # one backend: each turn replays the other's settings
        oc = other.cursor()
        oc.execute("SHOW standard_conforming_strings")
        assert oc.fetchone()[0] == "off"
        mc = mine.cursor()
        mc.execute("SELECT current_setting('app.note'), "
                   "current_setting('standard_conforming_strings')")
        assert mc.fetchone() == (value, "on")
    other.close()
    mine.close()


def test_sets_with_backslashes_replay_as_the_client_ran_them(proxy):
    """Session-level SETs are replayed on the backend a client lands on.  A literal
    with a backslash reads differently under standard_conforming_strings on and off,
    and a Query is parsed whole before it runs: the replay must read each SET the way
    the client's own session read it, whatever the backend's last client left."""
    p = proxy(pool_mode="transaction", pool_size=1)
    old = psycopg2.connect(p.dsn)               # non-conforming, as old apps were
    old.autocommit = True
    new = psycopg2.connect(p.dsn)               # the default
    new.autocommit = True
    oc, nc = old.cursor(), new.cursor()
    oc.execute("SET standard_conforming_strings = off")
    oc.execute("SET app.path = 'c:\\\\temp'")    # under off: c:\temp
    nc.execute("SET app.path = 'd:\\data'")      # under on: d:\data
    for _ in range(3):          # one backend: each turn replays the other's SETs
        oc.execute("SELECT current_setting('app.path'), "
                   "current_setting('standard_conforming_strings')")
        assert oc.fetchone() == ("c:\\temp", "off")
        nc.execute("SELECT current_setting('app.path'), "
                   "current_setting('standard_conforming_strings')")
        assert nc.fetchone() == ("d:\\data", "on")
    old.close()
    new.close()
