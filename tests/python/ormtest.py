"""Helpers for the ORM cache tests: real redis-server / memcached on free loopback ports,
seeded tables, and an Env that runs one test body sync or async.

An async Env runs the body through AsyncSession.run_sync on an asyncpg engine: the same
path AsyncSession.get/execute take (a sync Session driven in a greenlet), so
do_orm_execute, the hooks and the backends run exactly as for async application code.
"""
import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from pgvtest import free_group  # noqa: F401  (puts python/ on sys.path)

from ormmodels import SCHEMA
from pgvalet.orm import configure

N_USERS = 50


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port, proc, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on {port}")


class Server:
    """redis-server or memcached on loopback; stop() ends it (and only it)."""

    def __init__(self, kind):
        self.kind = kind
        self.port = free_port()
        if kind == "redis":
            argv = [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--daemonize", "no",
                    "--protected-mode", "no", "--logfile", ""]
        else:
            argv = [shutil.which("memcached"), "-l", "127.0.0.1", "-p", str(self.port), "-U", "0",
                    "-m", "64"] + (["-u", "root"] if os.geteuid() == 0 else [])
        self.argv = argv
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, self.kind)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def url(self, db=1):
        return (f"redis://127.0.0.1:{self.port}/{db}" if self.kind == "redis"
                else f"memcached://127.0.0.1:{self.port}")


@pytest.fixture(scope="session")
def redis_server():
    server = Server("redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_server():
    server = Server("memcached")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orm_schema(pg):
    for statement in SCHEMA.split(";"):
        if statement.strip():
            pg.sql(statement)
    return pg


SEED = f"""
TRUNCATE orm_users, orm_addresses, orm_products, orm_tags, orm_product_tags
    RESTART IDENTITY CASCADE;
INSERT INTO orm_users (id, email, name, active) SELECT g, 'u' || g || '@example.com',
    'user' || g, g % 2 = 0 FROM generate_series(1, {N_USERS}) g;
SELECT setval('orm_users_id_seq', {N_USERS});
INSERT INTO orm_addresses (user_id, email) SELECT g, 'a' || g || '@example.com'
    FROM generate_series(1, {N_USERS}) g;
INSERT INTO orm_products (name, price) VALUES ('pen', 2), ('ink', 5), ('pad', 3);
INSERT INTO orm_tags (name) VALUES ('office'), ('school'), ('sale');
INSERT INTO orm_product_tags VALUES (1, 1), (1, 2), (2, 1);
"""


def seed(pg):
    pg.sql(SEED)


@pytest.fixture
def seeded(orm_schema):
    seed(orm_schema)
    return orm_schema


@pytest.fixture(params=["mem", "redis", "redis-local", "memcached"])
def backend_url(request):
    if request.param == "mem":
        return "mem://"
    if request.param == "redis-local":     # with the pub/sub-coherent local tier
        return request.getfixturevalue("redis_server").url() + "?local_bytes=8000000"
    return request.getfixturevalue(f"{request.param}_server").url()


class Counter:
    """SELECTs that reached the database, per engine (a before_cursor_execute hook)."""

    def __init__(self):
        self.selects = 0
        self.statements = []

    def attach(self, engine):
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append(statement)
        if statement.lstrip().lower().startswith("select"):
            self.selects += 1


class Env:
    """One cache, a sync engine (writers, helpers) and the engine under test."""

    def __init__(self, pg, mode, backend, models=None, **configure_args):
        self.pg, self.mode = pg, mode
        self.prefix = "t" + uuid.uuid4().hex[:10]
        self.cache = configure(backend=backend, models=models or {"*": {"timeout": 300}},
                               prefix=self.prefix, **configure_args)
        self.counter = Counter()
        self.writer = sa.create_engine(pg.url(), future=True)
        self.cache.bind(self.writer)
        self.loop = None
        if mode == "sync":
            self.engine = sa.create_engine(pg.url(), future=True)
            self.sync_engine = self.engine
        else:
            self.loop = asyncio.new_event_loop()
            self.engine = create_async_engine(pg.url(scheme="postgresql+asyncpg"))
            self.sync_engine = self.engine.sync_engine
        self.cache.bind(self.engine)
        self.counter.attach(self.sync_engine)

    def run(self, fn, *args, **session_kw):
        """fn(session, *args) in a fresh session of the engine under test."""
        if self.mode == "sync":
            with Session(self.engine, **session_kw) as session:
                return fn(session, *args)

        async def go():
            async with AsyncSession(self.engine, **session_kw) as session:
                return await session.run_sync(fn, *args)
        return self.loop.run_until_complete(go())

    def write(self, fn, *args):
        """fn(session, *args) in a sync session of the writer engine, committed."""
        with Session(self.writer) as session:
            out = fn(session, *args)
            session.commit()
            return out

    def selects_during(self, fn, *args, **kw):
        before = self.counter.selects
        out = self.run(fn, *args, **kw)
        return out, self.counter.selects - before

    def close(self):
        self.cache.disconnect()
        self.writer.dispose()
        if self.mode == "sync":
            self.engine.dispose()
        else:
            self.loop.run_until_complete(self.engine.dispose())
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def mode(request):
    return request.param


@pytest.fixture
def env(seeded, mode, backend_url):
    e = Env(seeded, mode, backend_url)
    yield e
    e.close()
