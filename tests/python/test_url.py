"""Unit tests of pgvalet._url: the upstream and local legs of one URL."""
import pytest
from sqlalchemy.engine import make_url

from pgvalet import _url

P, H = 7932, "127.0.0.1"


def legs(url, host=H, port=P):
    u = _url.parse(url)
    return _url.upstream(u), _url.local(u, host, port)


@pytest.mark.parametrize("scheme, driver", [
    ("postgresql", None), ("postgres", None), ("POSTGRESQL", None),
    ("postgresql+psycopg2", "psycopg2"), ("postgresql+psycopg", "psycopg"),
    ("postgresql+asyncpg", "asyncpg"), ("postgresql+pg8000", "pg8000"),
    ("postgres+asyncpg", "asyncpg"),
])
def test_driver_suffix_stripped_upstream_kept_locally(scheme, driver):
    up, local = legs(f"{scheme}://u:pw@db.example.com:5433/app")
    assert up == "postgresql://u:pw@db.example.com:5433/app"
    expected_scheme = "postgresql" + (f"+{driver}" if driver else "")
    assert local == f"{expected_scheme}://u:pw@127.0.0.1:7932/app"
    assert _url.parse(f"{scheme}://u@h/d").driver == driver


def test_handle_url_has_no_driver():
    u = _url.parse("postgresql+asyncpg://u:pw@h/db")
    assert _url.local(u, H, 9000, keep_driver=False) == "postgresql://u:pw@127.0.0.1:9000/db"


@pytest.mark.parametrize("userinfo", [
    "user:p%40ss%2Fword",            # @ and / in the password
    "user:p%3Fss%23x%25y",           # ? # %
    "odd%20user:a%3Ab%2Bc",          # space in the name, : and + in the password
    "user:%E2%82%AC",                # UTF-8
    "user:plain",
])
def test_percent_encoding_preserved_exactly_on_both_legs(userinfo):
    up, local = legs(f"postgresql+psycopg2://{userinfo}@h:5432/db")
    assert up == f"postgresql://{userinfo}@h:5432/db"
    assert local == f"postgresql+psycopg2://{userinfo}@127.0.0.1:7932/db"


def test_sqlalchemy_decodes_the_local_leg_to_the_real_password():
    _, local = legs("postgresql://user:p%40ss%2Fword@h/db")
    url = make_url(local)
    assert (url.username, url.password, url.host, url.port) == ("user", "p@ss/word", H, P)


def test_ipv6_upstream_host():
    up, local = legs("postgresql://u:pw@[::1]:5433/db")
    assert up == "postgresql://u:pw@[::1]:5433/db"
    assert local == "postgresql://u:pw@127.0.0.1:7932/db"


def test_ipv6_proxy_host_is_bracketed():
    _, local = legs("postgresql://u:pw@h/db", host="::1")
    assert local == "postgresql://u:pw@[::1]:7932/db"
    assert make_url(local).host == "::1"


@pytest.mark.parametrize("url, upstream", [
    ("postgresql://u:pw@/db?host=/var/run/postgresql",
     "postgresql://u:pw@/db?host=/var/run/postgresql"),
    ("postgresql:///db?host=%2Fvar%2Frun%2Fpostgresql&port=5433&user=u",
     "postgresql:///db?host=%2Fvar%2Frun%2Fpostgresql&port=5433&user=u"),
    ("postgresql://u@h/db?hostaddr=10.0.0.1", "postgresql://u@h/db?hostaddr=10.0.0.1"),
])
def test_unix_socket_and_address_params_upstream_only(url, upstream):
    up, local = legs(url)
    assert up == upstream
    assert "host=" not in local and "port=" not in local and "hostaddr" not in local
    assert "@127.0.0.1:7932/db" in local or "//127.0.0.1:7932/db" in local


def test_credential_params_on_both_legs():
    up, local = legs("postgresql://h/db?user=u&password=p%40w&dbname=other")
    assert up == "postgresql://h/db?user=u&password=p%40w&dbname=other"
    assert local == "postgresql://127.0.0.1:7932/db?user=u&password=p%40w&dbname=other"


@pytest.mark.parametrize("url, up, local", [
    ("postgresql://u@h/db", "postgresql://u@h/db", "postgresql://u@127.0.0.1:7932/db"),
    ("postgresql://h/db", "postgresql://h/db", "postgresql://127.0.0.1:7932/db"),
    ("postgresql://u:pw@h", "postgresql://u:pw@h", "postgresql://u:pw@127.0.0.1:7932"),
    ("postgresql://u:pw@h:5432/", "postgresql://u:pw@h:5432/", "postgresql://u:pw@127.0.0.1:7932/"),
    ("postgresql://u:@h/db", "postgresql://u:@h/db", "postgresql://u:@127.0.0.1:7932/db"),
    ("postgresql://", "postgresql://", "postgresql://127.0.0.1:7932"),
])
def test_missing_parts(url, up, local):
    assert legs(url) == (up, local)


TLS = ("sslmode=verify-full&sslrootcert=/etc/ca.pem&sslcert=/c.pem&sslkey=/k.pem"
       "&sslpassword=s%40cret&sslcrl=/crl.pem")


def test_tls_params_upstream_only_other_params_local_only():
    up, local = legs(f"postgresql://u:pw@h/db?application_name=my%20app&{TLS}"
                     "&options=-c%20search_path%3Dapp&connect_timeout=5")
    assert up == f"postgresql://u:pw@h/db?{TLS}"
    assert local == ("postgresql://u:pw@127.0.0.1:7932/db?application_name=my%20app"
                     "&options=-c%20search_path%3Dapp&connect_timeout=5")


def test_query_order_and_raw_values_preserved():
    up, local = legs("postgresql://u@h/db?b=2&sslmode=require&a=x+y&&c=%2B")
    assert up == "postgresql://u@h/db?sslmode=require"
    assert local == "postgresql://u@127.0.0.1:7932/db?b=2&a=x+y&c=%2B"


@pytest.mark.parametrize("value, mode", [("require", "require"), ("verify-full", "verify-full"),
                                         ("true", "require"), ("False", "disable")])
def test_asyncpg_ssl_becomes_sslmode_upstream(value, mode):
    up, local = legs(f"postgresql+asyncpg://u:pw@h/db?ssl={value}&direct_tls=true")
    assert up == f"postgresql://u:pw@h/db?sslmode={mode}&direct_tls=true"
    assert local == "postgresql+asyncpg://u:pw@127.0.0.1:7932/db"


def test_at_sign_in_a_query_value_is_fine():
    up, local = legs("postgresql://u:pw@h/db?application_name=me@host")
    assert up == "postgresql://u:pw@h/db"
    assert local.endswith("?application_name=me@host")


def test_userinfo_ends_at_the_last_at_sign():
    u = _url.parse("postgresql://us@r:pw@h/db")
    assert (u.userinfo, u.hostport) == ("us@r:pw", "h")


@pytest.mark.parametrize("url", [
    "postgresql://u:se/cret@h/db",       # raw '/' in the password
    "postgresql://u:se?cret@h/db",       # raw '?'
    "postgresql://u:pw@h/d@b",           # '@' in the path
])
def test_unescaped_password_characters_refused_without_echoing(url):
    with pytest.raises(ValueError, match="percent-encode") as err:
        _url.parse(url)
    assert "cret" not in str(err.value)


@pytest.mark.parametrize("url", ["mysql://u:secret@h/db", "http://h", "secret", "postgresql:/h"])
def test_not_a_postgres_url(url):
    with pytest.raises(ValueError, match="not a PostgreSQL URL") as err:
        _url.parse(url)
    assert "secret" not in str(err.value)


def test_not_a_string():
    with pytest.raises(TypeError):
        _url.parse(None)


def test_display_hides_password_and_query():
    u = _url.parse("postgresql+asyncpg://u:secret@h:5/db?password=x&sslmode=require")
    assert _url.display(u) == "postgresql://u@h:5/db"
    assert _url.display(_url.parse("postgres://h")) == "postgresql://h"


def test_param_lookup_decodes():
    u = _url.parse("postgresql://h/db?options=-c%20a%3Db&x=1&x=2")
    assert u.param("options") == "-c a=b"
    assert u.param("x") == "2"
    assert u.param("missing") is None


# ---- SQLAlchemy legs per driver -----------------------------------------------------------


def test_libpq_drivers_keep_every_non_tls_param():
    for driver in ("", "+psycopg2", "+psycopg"):
        u = _url.parse(f"postgresql{driver}://u:pw@h/db?application_name=a&keepalives=1&{TLS}")
        leg = _url.sqlalchemy_leg(u, H, P)
        assert leg.url == f"postgresql{driver}://u:pw@127.0.0.1:7932/db?application_name=a&keepalives=1"
        assert leg.connect_args == {} and leg.dropped == []


def test_asyncpg_translates_libpq_params():
    u = _url.parse("postgresql+asyncpg://u:p%40w@h/db?application_name=my%20app"
                   "&options=-c%20search_path%3Dapp%20-c%20statement_timeout%3D5s"
                   "&connect_timeout=7&prepared_statement_cache_size=50&statement_cache_size=0"
                   "&command_timeout=2.5&dbname=other&keepalives=1&target_session_attrs=any"
                   f"&{TLS}&ssl=require")
    leg = _url.sqlalchemy_leg(u, H, P)
    assert leg.url == ("postgresql+asyncpg://u:p%40w@127.0.0.1:7932/db"
                       "?prepared_statement_cache_size=50")
    assert leg.connect_args == {
        "server_settings": {"application_name": "my app", "search_path": "app",
                            "statement_timeout": "5s"},
        "timeout": 7.0, "statement_cache_size": 0, "command_timeout": 2.5, "database": "other"}
    assert leg.dropped == ["keepalives", "target_session_attrs"]


def test_asyncpg_sqlalchemy_dialect_accepts_the_leg():
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
    u = _url.parse("postgresql+asyncpg://u:p%40w@h/db?application_name=x&async_fallback=false"
                   "&prepared_statement_cache_size=10")
    leg = _url.sqlalchemy_leg(u, H, P)
    _, kwargs = PGDialect_asyncpg().create_connect_args(make_url(leg.url))
    assert kwargs == {"user": "u", "password": "p@w", "host": H, "port": P, "database": "db",
                      "async_fallback": "false", "prepared_statement_cache_size": 10}
    import asyncpg
    import inspect
    accepted = set(inspect.signature(asyncpg.connect).parameters)
    assert set(kwargs) - {"async_fallback", "prepared_statement_cache_size"} <= accepted
    assert set(leg.connect_args) <= accepted


def test_pg8000_leg():
    u = _url.parse("postgresql+pg8000://u:pw@h/db?application_name=a&connect_timeout=3"
                   "&options=-c%20x%3D1&sslmode=require")
    leg = _url.sqlalchemy_leg(u, H, P)
    assert leg.url == "postgresql+pg8000://u:pw@127.0.0.1:7932/db?application_name=a"
    assert leg.connect_args == {"timeout": 3.0}
    assert leg.dropped == ["options"]


@pytest.mark.parametrize("options, settings", [
    ("-c search_path=app", {"search_path": "app"}),
    ("-csearch_path=app -c work_mem=4MB", {"search_path": "app", "work_mem": "4MB"}),
    ("--search-path=app", {"search_path": "app"}),
    ("-c 'application_name=a b'", {"application_name": "a b"}),
    ("", {}),
])
def test_parse_libpq_options(options, settings):
    assert _url.parse_libpq_options(options) == settings


@pytest.mark.parametrize("options", ["-c", "search_path=app", "-c noequals", "-X y=1"])
def test_parse_libpq_options_refuses_what_it_cannot_translate(options):
    with pytest.raises(ValueError, match="cannot translate"):
        _url.parse_libpq_options(options)
