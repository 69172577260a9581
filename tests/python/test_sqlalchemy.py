"""pgvalet.sqlalchemy beyond the USAGE.md examples (test_usage.py runs those as written):
URL handling, init() details, option plumbing, engine/proxy lifetimes, dialects.

The async tests run in asyncio.run() (no pytest-asyncio needed).
"""
import asyncio
import os
import warnings

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

import pgvalet
import pgvalet.sqlalchemy
from pgvalet._compat import SA14

from pgvtest import ODD_PASSWORD, ODD_USER, free_group, wait_gone

EXAMPLE_EMAILS = ["ann@example.com", "bob@example.com"]


def test_async_engine_is_sqlalchemys_own_proxy(pg, users):
    from pgvalet.sqlalchemy import create_async_engine
    from sqlalchemy import text

    async def example():
        engine = create_async_engine(pg.url(scheme="postgresql+asyncpg"))
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM users"))).all()
        # prepared statements (asyncpg's statement cache) through transaction pooling:
        async with engine.connect() as conn:
            for i in range(1, 4):
                result = await conn.execute(text("SELECT email FROM users WHERE id = :id"),
                                            {"id": i})
                assert result.scalar() == users_by_id[i]
        await engine.dispose()
        return engine, rows

    users_by_id = dict(pg.sql("SELECT id, email FROM users"))
    engine, rows = asyncio.run(example())
    assert sorted(r.email for r in rows) == users
    assert isinstance(engine, AsyncEngine)
    assert engine.url.drivername == "postgresql+asyncpg"
    assert engine.pgvalet is engine.sync_engine.pgvalet and engine.pgvalet.alive
    assert AsyncEngine._retrieve_proxy_for_target(engine.sync_engine) is engine
    assert engine.url.port == engine.pgvalet.port


def test_init_keeps_the_driver_and_local_params(pg, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg.url(scheme="postgres+psycopg2",
                                              query="application_name=web&sslmode=prefer"))
    handle = pgvalet.sqlalchemy.init(silent=True)
    assert os.environ["DATABASE_URL"] == ("postgresql+psycopg2://pgvalet:pgvalet-pass@127.0.0.1:"
                                          f"{handle.port}/appdb?application_name=web")
    engine = sqlalchemy.create_engine(os.environ["DATABASE_URL"])
    with engine.connect() as conn:
        assert conn.execute(text("SHOW application_name")).scalar() == "web"
    engine.dispose()


def test_init_without_database_url(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(RuntimeError, match="DATABASE_URL is not set"):
        pgvalet.sqlalchemy.init()
    with pytest.raises(TypeError, match="unknown option"):
        pgvalet.sqlalchemy.init("postgresql://u:p@h/db", colour="red")


def test_all_start_options_as_pgvalet_kwargs(pg):
    port = free_group()
    engine = pgvalet.sqlalchemy.create_engine(pg.url(), pgvalet_port=port, pgvalet_log_level=1,
                                              pgvalet_silent=True, pgvalet_timeout=10,
                                              pgvalet_config={"workers": 2})
    assert engine.pgvalet.argv[1:] == ["--port", str(port), "--workers", "2", "--verbose", "1"]
    with pytest.raises(TypeError, match="pgvalet_colour.*pgvalet_port"):
        pgvalet.sqlalchemy.create_engine(pg.url(), pgvalet_colour="red")
    engine.dispose()
    port = free_group()
    engine = pgvalet.sqlalchemy.create_engine(pg.url(), pgvalet_port=port, pgvalet_silent=True,
                                              pgvalet_dashboard_port=0)
    assert engine.pgvalet.argv[1:] == ["--port", str(port), "--dashboard-port", "0"]
    assert engine.pgvalet.dashboard_url is None
    engine.dispose()


def test_shared_proxy_lives_until_the_last_handle(pg):
    port = free_group()
    e1 = pgvalet.sqlalchemy.create_engine(pg.url(), pgvalet_port=port, pgvalet_silent=True)
    e2 = pgvalet.sqlalchemy.create_async_engine(pg.url(scheme="postgresql+asyncpg"),
                                                pgvalet_port=port, pgvalet_silent=True)
    assert e1.pgvalet.pid == e2.pgvalet.pid
    e1.dispose()
    e1.pgvalet.stop()
    assert e2.pgvalet.alive
    e2.pgvalet.stop()
    assert wait_gone(e2.pgvalet.pid, 2)


def test_percent_encoded_password_through_sqlalchemy(pg):
    url = pg.url(ODD_USER, ODD_PASSWORD)
    engine = pgvalet.sqlalchemy.create_engine(url, pgvalet_port=free_group(), pgvalet_silent=True)
    assert make_url(str(engine.url.render_as_string(hide_password=False))).password == ODD_PASSWORD
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == ODD_USER
    engine.dispose()

    async def go():
        ae = pgvalet.sqlalchemy.create_async_engine(pg.url(ODD_USER, ODD_PASSWORD,
                                                           scheme="postgresql+asyncpg"),
                                                    pgvalet_silent=True)
        async with ae.connect() as conn:
            user = (await conn.execute(text("SELECT current_user"))).scalar()
        await ae.dispose()
        return user
    assert asyncio.run(go()) == ODD_USER


def test_sqlalchemy_url_object_accepted(pg):
    url = make_url(pg.url(ODD_USER, ODD_PASSWORD))
    engine = pgvalet.sqlalchemy.create_engine(url, pgvalet_port=free_group(), pgvalet_silent=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == ODD_USER
    engine.dispose()


def test_asyncpg_libpq_params_translated(pg):
    async def go():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engine = pgvalet.sqlalchemy.create_async_engine(
                pg.url(scheme="postgresql+asyncpg",
                       query="application_name=api&options=-c%20statement_timeout%3D1234"
                             "&connect_timeout=5&keepalives=1&sslmode=disable"),
                pgvalet_port=free_group(), pgvalet_silent=True,
                connect_args={"server_settings": {"work_mem": "5MB"}})
        assert [str(w.message) for w in caught] == [
            "pgvalet: the asyncpg driver does not understand the URL parameter(s) keepalives; "
            "they are not passed to it"]
        async with engine.connect() as conn:
            got = [(await conn.execute(text(f"SHOW {name}"))).scalar()
                   for name in ("application_name", "statement_timeout", "work_mem")]
        await engine.dispose()
        return got
    assert asyncio.run(go()) == ["api", "1234ms", "5MB"]


@pytest.mark.skipif(not SA14, reason="SQLAlchemy 2.0 has the psycopg dialect")
def test_psycopg3_dialect_on_sqlalchemy_14_is_a_clear_error(pg):
    with pytest.raises(ValueError, match=r"postgresql\+psycopg \(psycopg 3\) needs SQLAlchemy 2.0"):
        pgvalet.sqlalchemy.create_engine(pg.url(scheme="postgresql+psycopg"))
    assert not pgvalet._process._registry  # failed before starting anything


@pytest.mark.skipif(SA14, reason="psycopg 3 needs SQLAlchemy 2.0")
def test_psycopg3_dialect(pg, users):
    engine = pgvalet.sqlalchemy.create_engine(pg.url(scheme="postgresql+psycopg"),
                                              pgvalet_silent=True)
    with engine.connect() as conn:
        for _ in range(7):  # past psycopg's prepare_threshold
            rows = conn.execute(text("SELECT email FROM users WHERE id > :n"), {"n": 0}).all()
    assert sorted(r.email for r in rows) == users
    engine.dispose()


def test_engine_creation_failure_releases_the_proxy(pg):
    port = free_group()
    with pytest.raises(TypeError):
        pgvalet.sqlalchemy.create_engine(pg.url(), pgvalet_port=port, pgvalet_silent=True,
                                         no_such_sqlalchemy_option=1)
    assert not pgvalet._process._registry
