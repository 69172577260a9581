"""shared/USAGE.md, every example as written (§8, the ORM cache, is tested with pgvalet.orm).

"postgresql://user:pass@host:5432/mydb" is the session cluster's URL; models use
the SQLAlchemy 1.4 spelling on 1.4 (declarative_base + Column), as USAGE allows.
Each test checks that the example really went through a pgvalet proxy (the
engine's port is the proxy's, Postgres answers from its own port behind it) and
that the rows are right.  Async examples run in asyncio.run().
"""
import asyncio
import os
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

import pgvalet
import pgvalet.sqlalchemy
from pgvalet import _options
from pgvalet._compat import SA14

EXAMPLE_EMAILS = ["ann@example.com", "bob@example.com"]


def binary_has(*flags):
    """Does the pgvalet binary in use list every one of these flags in its --help?"""
    try:
        known = _options.binary_options(pgvalet.find_binary())
    except Exception:  # no binary: the tests that need it fail on their own
        return False
    return all(flag.lstrip("-") in known for flag in flags)


def upstream_of(proxy):
    """The upstream URL the proxy process was given (PGVALET_UPSTREAM in its environment)."""
    env = Path(f"/proc/{proxy.pid}/environ").read_bytes().split(b"\0")
    return next(e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"PGVALET_UPSTREAM="))


def assert_through_proxy(engine, pg):
    proxy = engine.pgvalet
    assert proxy.alive and engine.url.host == "127.0.0.1"
    assert engine.url.port == proxy.port != pg.port


def user_model():
    """USAGE §3's model: 1.4 spelling on 1.4, 2.0 spelling on 2.0."""
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
    return User


# ---- §1 ------------------------------------------------------------------------------------


def test_usage_1_sync_engine_change_one_import(pg, users):
    from pgvalet.sqlalchemy import create_engine      # was: from sqlalchemy import create_engine
    from sqlalchemy import text

    engine = create_engine(pg.url())
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM users")).all()

    assert isinstance(engine, Engine)
    assert sorted(r.email for r in rows) == users and len(rows[0]) == 2
    assert_through_proxy(engine, pg)
    assert engine.pgvalet.port >= 7932 and (engine.pgvalet.port - 7932) % 3 == 0  # 7932 or next
    with engine.connect() as conn:
        assert conn.execute(text("SELECT inet_server_port()")).scalar() == pg.port
    engine.dispose()


# ---- §2 ------------------------------------------------------------------------------------


def test_usage_2_async_engine_asyncpg(pg, users):
    from pgvalet.sqlalchemy import create_async_engine
    from sqlalchemy import text

    async def example():
        engine = create_async_engine(pg.url(scheme="postgresql+asyncpg"))
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM users"))).all()
        async with engine.connect() as conn:
            port = (await conn.execute(text("SELECT inet_server_port()"))).scalar()
        await engine.dispose()
        return engine, rows, port

    engine, rows, server_port = asyncio.run(example())
    assert isinstance(engine, AsyncEngine)
    assert sorted(r.email for r in rows) == users
    assert_through_proxy(engine, pg)
    assert server_port == pg.port
    assert engine.url.drivername == "postgresql+asyncpg"          # kept for the local leg
    assert upstream_of(engine.pgvalet).startswith("postgresql://")  # stripped for the upstream


def test_usage_2_dialect_suffixes(pg, users):
    engine = pgvalet.sqlalchemy.create_engine(pg.url(scheme="postgresql+psycopg2"),
                                              pgvalet_silent=True)
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT email FROM users")).scalars()) == users
    assert engine.url.drivername == "postgresql+psycopg2"
    assert upstream_of(engine.pgvalet).startswith("postgresql://")
    assert_through_proxy(engine, pg)
    engine.dispose()
    if SA14:  # "SQLAlchemy 1.4 has no +psycopg dialect ... the suffix is still handled"
        with pytest.raises(ValueError, match=r"\+psycopg \(psycopg 3\) needs SQLAlchemy 2.0"):
            pgvalet.sqlalchemy.create_engine(pg.url(scheme="postgresql+psycopg"))
    else:
        engine = pgvalet.sqlalchemy.create_engine(pg.url(scheme="postgresql+psycopg"),
                                                  pgvalet_silent=True)
        with engine.connect() as conn:
            assert sorted(conn.execute(text("SELECT email FROM users")).scalars()) == users
        assert upstream_of(engine.pgvalet).startswith("postgresql://")
        engine.dispose()


# ---- §3 ------------------------------------------------------------------------------------


def test_usage_3_orm_rides_on_the_engine(pg):
    from pgvalet.sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    User = user_model()

    engine = create_engine(pg.url())
    with Session(engine) as session:
        users = session.query(User).filter(User.email.like("%@example.com")).all()

    assert sorted(u.email for u in users) == EXAMPLE_EMAILS
    assert all(isinstance(u, User) for u in users)
    assert_through_proxy(engine, pg)
    engine.dispose()


# ---- §4 ------------------------------------------------------------------------------------


def test_usage_4_fastapi(pg):
    from fastapi.testclient import TestClient

    from fastapi import FastAPI
    from pgvalet.sqlalchemy import create_async_engine
    if SA14:  # "1.4: sessionmaker(class_=AsyncSession)"
        from sqlalchemy.ext.asyncio import AsyncSession
        from sqlalchemy.orm import sessionmaker

        def async_sessionmaker(bind):
            return sessionmaker(bind, class_=AsyncSession)
    else:
        from sqlalchemy.ext.asyncio import async_sessionmaker
    from sqlalchemy import text

    engine = create_async_engine(pg.url(scheme="postgresql+asyncpg"))
    SessionLocal = async_sessionmaker(engine)
    app = FastAPI()

    @app.get("/users")
    async def list_users():
        async with SessionLocal() as session:
            result = await session.execute(text("SELECT * FROM users"))
            return result.mappings().all()

    expected = [{"id": i, "email": e} for i, e in pg.sql("SELECT id, email FROM users")]
    with TestClient(app) as client:   # one event loop for all requests (asyncpg's pool)
        for _ in range(3):
            response = client.get("/users")
            assert response.status_code == 200, response.text
            assert sorted(response.json(), key=lambda u: u["id"]) == \
                sorted(expected, key=lambda u: u["id"])
        client.portal.call(engine.dispose)
    assert_through_proxy(engine, pg)
    assert engine.url.drivername == "postgresql+asyncpg"


# ---- §5 ------------------------------------------------------------------------------------


def test_usage_5_init_no_import_change(pg, monkeypatch, users):
    monkeypatch.setenv("DATABASE_URL", pg.url())

    import os, pgvalet.sqlalchemy  # noqa: E401
    pgvalet.sqlalchemy.init()            # reads DATABASE_URL, starts the proxy, rewrites DATABASE_URL
    from sqlalchemy import create_engine
    engine = create_engine(os.environ["DATABASE_URL"])   # now connects through pgvalet

    handle = pgvalet.sqlalchemy.init()   # again: the same proxy
    assert os.environ["DATABASE_URL"] != pg.url()
    assert engine.url.port == handle.port != pg.port and handle.alive
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT email FROM users")).scalars()) == users
        assert conn.execute(text("SELECT inet_server_port()")).scalar() == pg.port
    engine.dispose()


# ---- §6 ------------------------------------------------------------------------------------


@pytest.mark.skipif(not binary_has("--mode", "--threshold-duration-ms"),
                    reason="the pgvalet binary has no --mode / --threshold-duration-ms yet")
def test_usage_6_options_as_written(pg, monkeypatch, users):
    from pgvalet.sqlalchemy import create_engine
    monkeypatch.setenv("DATABASE_URL", pg.url())

    engine = create_engine(
        pg.url(),
        pgvalet_port=9000,                                   # default 7932
        pgvalet_config={"mode": "optimize", "pool_size": 50},  # any proxy setting, snake_case
        pgvalet_extra_args=["--threshold-duration-ms", "200"], # raw flags for the binary
    )
    handle = pgvalet.sqlalchemy.init(port=9000, config={"pool_size": 50},
                                     extra_args=["--threshold-duration-ms", "200"])

    argv = engine.pgvalet.argv
    for flag, value in (("--mode", "optimize"), ("--pool-size", "50"),
                        ("--threshold-duration-ms", "200")):
        assert argv[argv.index(flag) + 1] == value
    assert "--mode" not in handle.argv and "--threshold-duration-ms" in handle.argv
    for port in (engine.pgvalet.port, handle.port):
        assert port >= 9000 and (port - 9000) % 3 == 0
    assert_through_proxy(engine, pg)
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT email FROM users")).scalars()) == users
    engine.dispose()
    env_engine = sqlalchemy.create_engine(os.environ["DATABASE_URL"])
    assert env_engine.url.port == handle.port
    with env_engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT email FROM users")).scalars()) == users
    env_engine.dispose()


def test_usage_6_every_start_option_and_env_vars(pg, monkeypatch, users):
    from pgvalet.sqlalchemy import create_engine

    # "Every pgvalet.start() option is accepted as pgvalet_<name>"
    engine = create_engine(pg.url(), pgvalet_port=9000, pgvalet_config={"pool_size": 50},
                           pgvalet_extra_args=["--pool-timeout", "5s"], pgvalet_silent=True,
                           pgvalet_log_level="debug", pgvalet_timeout=20)
    argv = engine.pgvalet.argv
    assert [argv[argv.index(f) + 1] for f in ("--pool-size", "--pool-timeout", "--verbose")] \
        == ["50", "5s", "1"]
    assert_through_proxy(engine, pg)
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT email FROM users")).scalars()) == users
    assert "pool size 50," in engine.pgvalet.log
    engine.dispose()

    # "PGVALET_<NAME> environment variables work too"
    monkeypatch.setenv("PGVALET_POOL_SIZE", "7")
    engine = create_engine(pg.url(), pgvalet_port=9000, pgvalet_silent=True)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert "pool size 7," in engine.pgvalet.log
    engine.dispose()

    # "Unknown config keys fail with the list of valid ones"
    with pytest.raises(ValueError, match=r"unknown pgvalet setting 'poolsize'.*pool_size"):
        create_engine(pg.url(), pgvalet_config={"poolsize": 50})
    with pytest.raises(TypeError, match=r"pgvalet_colour.*pgvalet_port"):
        create_engine(pg.url(), pgvalet_colour="red")


# ---- §7 ------------------------------------------------------------------------------------


def test_usage_7_proxy_on_its_own(pg, capsys, users):
    import psycopg2

    import pgvalet
    with pgvalet.start(pg.url(), port=7932) as pg_:
        print(pg_.url, pg_.dashboard_url)    # connect any driver or tool to pg.url
        conn = psycopg2.connect(pg_.url)
        with conn.cursor() as cur:
            cur.execute("SELECT email, inet_server_port() FROM users")
            rows = cur.fetchall()
        conn.close()
        assert pg_.alive and pg_.port >= 7932
    assert sorted(r[0] for r in rows) == users and {r[1] for r in rows} == {pg.port}
    assert capsys.readouterr().out == f"{pg_.url} {pg_.dashboard_url}\n"
    assert f":{pg_.port}/" in pg_.url and pg_.port != pg.port
    assert not pg_.alive    # stopped by the with block


# ---- §9 ------------------------------------------------------------------------------------


@pytest.fixture
def user_42(pg):
    """USAGE §9 adds and reads User 42; remove it again so the shared `users` table is intact."""
    pg.sql("DELETE FROM users WHERE id = 42")
    yield "u42@sessionproxy.test"
    pg.sql("DELETE FROM users WHERE id = 42")


def legacy_fn(session, arg):
    """Sync ORM code that USAGE §9 runs with run_sync()."""
    return f"{arg}:{session.execute(text('SELECT count(*) FROM users')).scalar()}"


def test_usage_9_session_proxy_async(pg, user_42):
    from pgvalet.orm import SessionProxy
    from pgvalet.sqlalchemy import create_async_engine
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession

    User = user_model()
    engine = create_async_engine(pg.url(scheme="postgresql+asyncpg"))
    obj = User(id=42, email=user_42)
    stmt = select(User.email).where(User.id == 42)

    async def example():
        try:
            async with AsyncSession(engine) as session:
                proxy = SessionProxy(session)             # Session or AsyncSession
                proxy.add(obj)                             # never awaited
                await proxy.commit()                       # awaited when proxy.is_async, plain call otherwise
                result = await proxy.execute(stmt)
                user = await proxy.get(User, 42)
                ran = await proxy.run_sync(legacy_fn, "x")       # AsyncSession only
                assert proxy.is_async
                return result.scalar_one(), user, ran
        finally:
            await engine.dispose()

    email, user, ran = asyncio.run(example())
    assert email == user_42 and user is obj and user.email == user_42
    assert ran == f"x:{pg.sql('SELECT count(*) FROM users')[0][0]}"
    assert pg.sql("SELECT email FROM users WHERE id = 42") == [(user_42,)]
    assert_through_proxy(engine, pg)


def test_usage_9_session_proxy_sync(pg, user_42):
    """The same example with a Session: the same calls, without `await` (plain values)."""
    from pgvalet.orm import SessionProxy
    from pgvalet.sqlalchemy import create_engine
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    User = user_model()
    engine = create_engine(pg.url())
    obj = User(id=42, email=user_42)
    stmt = select(User.email).where(User.id == 42)

    with Session(engine) as session:
        proxy = SessionProxy(session)
        proxy.add(obj)
        proxy.commit()
        result = proxy.execute(stmt)
        user = proxy.get(User, 42)
        assert not proxy.is_async
        with pytest.raises(NotImplementedError, match=r"run_sync\(\) needs an AsyncSession"):
            proxy.run_sync(legacy_fn, "x")
        assert legacy_fn(proxy.session, "x").startswith("x:")  # what to do instead
        assert result.scalar_one() == user_42 and user is obj
    assert pg.sql("SELECT email FROM users WHERE id = 42") == [(user_42,)]
    assert_through_proxy(engine, pg)
    engine.dispose()
