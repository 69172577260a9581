"""shared/USAGE.md §1, §2, §3, §5, §6 and §7, as written, against the real Postgres.

Each example's "postgresql://user:pass@host:5432/mydb" is the session cluster's
URL.  The async examples run in asyncio.run() (no pytest-asyncio needed).
"""
import asyncio
import os
import warnings

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

import pgvalet
import pgvalet.sqlalchemy
from pgvalet._compat import SA14

from pgvtest import ODD_PASSWORD, ODD_USER, free_group, wait_gone

EXAMPLE_EMAILS = ["ann@example.com", "bob@example.com"]


def test_usage_1_sync_engine(pg, users):
    from pgvalet.sqlalchemy import create_engine      # was: from sqlalchemy import create_engine
    from sqlalchemy import text

    engine = create_engine(pg.url())
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM users")).all()

    assert sorted(r.email for r in rows) == users
    assert isinstance(engine, Engine)
    proxy = engine.pgvalet
    assert (engine.url.host, engine.url.port) == ("127.0.0.1", proxy.port)
    assert proxy.port % 3 == 7932 % 3 and proxy.port >= 7932  # 7932, or the next free group
    engine.dispose()
    assert proxy.alive  # dispose() leaves the proxy running


def test_usage_2_async_engine_asyncpg(pg, users):
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


def test_usage_3_orm(pg):
    from pgvalet.sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    if SA14:
        from sqlalchemy import Column, Integer, String
        from sqlalchemy.orm import declarative_base

        Base = declarative_base()

        class User(Base):
            __tablename__ = "users"
            id = Column(Integer, primary_key=True)
            email = Column(String)
    else:
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

        class Base(DeclarativeBase):
            ...

        class User(Base):
            __tablename__ = "users"
            id: Mapped[int] = mapped_column(primary_key=True)
            email: Mapped[str]

    engine = create_engine(pg.url())
    with Session(engine) as session:
        users = session.query(User).filter(User.email.like("%@example.com")).all()

    assert sorted(u.email for u in users) == EXAMPLE_EMAILS
    with Session(engine) as session:  # and a write through the proxy, rolled back
        session.add(User(email="new@example.com"))
        session.flush()
        assert session.query(User).filter(User.email == "new@example.com").count() == 1
        session.rollback()
    engine.dispose()


def test_usage_5_init(pg, monkeypatch, users):
    monkeypatch.setenv("DATABASE_URL", pg.url())

    import os, pgvalet.sqlalchemy
    pgvalet.sqlalchemy.init()            # reads DATABASE_URL, starts the proxy, rewrites DATABASE_URL
    from sqlalchemy import create_engine
    engine = create_engine(os.environ["DATABASE_URL"])   # now connects through pgvalet

    handle = pgvalet.sqlalchemy.init()  # idempotent: DATABASE_URL already points at the proxy
    assert os.environ["DATABASE_URL"] == \
        f"postgresql://pgvalet:pgvalet-pass@127.0.0.1:{handle.port}/pgvalet"
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT email FROM users")).scalars()) == users
        assert conn.execute(text("SELECT inet_server_port()")).scalar() == pg.port
    engine.dispose()


def test_init_keeps_the_driver_and_local_params(pg, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg.url(scheme="postgres+psycopg2",
                                              query="application_name=web&sslmode=prefer"))
    handle = pgvalet.sqlalchemy.init(silent=True)
    assert os.environ["DATABASE_URL"] == ("postgresql+psycopg2://pgvalet:pgvalet-pass@127.0.0.1:"
                                          f"{handle.port}/pgvalet?application_name=web")
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


def test_usage_6_options(pg, monkeypatch):
    import pgvalet.sqlalchemy
    from pgvalet.sqlalchemy import create_engine

    # As written: this binary has no --mode yet, which must be said clearly.
    with pytest.raises(ValueError, match="no --mode option"):
        engine = create_engine(
            pg.url(),
            pgvalet_port=9000,                                   # default 7932
            pgvalet_config={"mode": "optimize", "pool_size": 50},  # any proxy setting, snake_case
            pgvalet_extra_args=["--threshold-duration-ms", "200"], # raw flags for the binary
        )
    # ...and with options this binary has:
    engine = create_engine(
        pg.url(),
        pgvalet_port=9000,
        pgvalet_config={"pool_size": 50},
        pgvalet_extra_args=["--pool-timeout", "5s"],
        pgvalet_silent=True,
        pool_size=3,                                         # SQLAlchemy's own option
    )
    proxy = engine.pgvalet
    assert proxy.port >= 9000 and (proxy.port - 9000) % 3 == 0
    assert proxy.argv[-4:] == ["--pool-size", "50", "--pool-timeout", "5s"]
    assert engine.pool.size() == 3
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    assert "pool size 50," in proxy.log
    engine.dispose()

    monkeypatch.setenv("DATABASE_URL", pg.url())
    handle = pgvalet.sqlalchemy.init(port=9000, config={"pool_size": 50},
                                     extra_args=["--pool-timeout", "5s"])
    assert handle.pid == proxy.pid  # same upstream, port and options: shared
    with pytest.raises(pgvalet.ProxyError, match="unknown option: --threshold-duration-ms"):
        pgvalet.sqlalchemy.init(pg.url(), port=9000, extra_args=["--threshold-duration-ms", "200"])
    with pytest.raises(ValueError, match="unknown pgvalet setting 'poolsize'.*pool_size"):
        create_engine(pg.url(), pgvalet_config={"poolsize": 50})


def test_usage_6_pgvalet_env(pg, monkeypatch):
    monkeypatch.setenv("PGVALET_POOL_SIZE", "9")
    engine = pgvalet.sqlalchemy.create_engine(pg.url(), pgvalet_port=free_group(),
                                              pgvalet_silent=True)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert "pool size 9," in engine.pgvalet.log
    engine.dispose()


def test_usage_7_proxy_on_its_own(pg, capsys, users):
    import psycopg2

    import pgvalet
    with pgvalet.start(pg.url(), port=7932) as pg_:
        print(pg_.url, pg_.dashboard_url)    # connect any driver or tool to pg.url
        conn = psycopg2.connect(pg_.url)
        with conn.cursor() as cur:
            cur.execute("SELECT email FROM users")
            assert sorted(r[0] for r in cur.fetchall()) == users
        conn.close()
    assert capsys.readouterr().out == f"{pg_.url} None\n"
    assert not pg_.alive


def test_all_start_options_as_pgvalet_kwargs(pg):
    port = free_group()
    engine = pgvalet.sqlalchemy.create_engine(pg.url(), pgvalet_port=port, pgvalet_log_level=1,
                                              pgvalet_silent=True, pgvalet_timeout=10,
                                              pgvalet_config={"workers": 2})
    assert engine.pgvalet.argv[1:] == ["--port", str(port), "--workers", "2", "--verbose", "1"]
    with pytest.raises(TypeError, match="pgvalet_colour.*pgvalet_port"):
        pgvalet.sqlalchemy.create_engine(pg.url(), pgvalet_colour="red")
    with pytest.raises(ValueError, match="no --dashboard-port"):
        pgvalet.sqlalchemy.create_engine(pg.url(), pgvalet_dashboard_port=port + 1)
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
