"""pgvalet.orm: two processes on one Redis, the backend going down, session state in the
key, the byte cap, bad configuration, and a randomized stale-read checker."""
import asyncio
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from ormmodels import User
from ormtest import (Env, Server, backend_url, env, memcached_server, mode,  # noqa: F401
                     orm_schema, redis_server, seeded)
from pgvalet.orm import configure
from pgvalet.orm.backends.mem import MemBackend

PEER = Path(__file__).resolve().parent / "orm_peer.py"


class Peer:
    def __init__(self, pg_url, backend, prefix):
        self.proc = subprocess.Popen([sys.executable, str(PEER), pg_url, backend, prefix],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.proc.stdout.close()


def test_two_processes_stay_coherent_over_redis(seeded):          # 7
    server = Server("redis")           # our own: this test stops and restarts it
    env = Env(seeded, "sync", server.url(), )
    peer = Peer(seeded.url(), server.url(), env.prefix)
    try:
        assert peer.ask("get 5")["selects"] == 1
        answer = peer.ask("get 5")
        assert (answer["name"], answer["selects"]) == ("user5", 0)        # peer's hit
        assert env.selects_during(lambda s: s.get(User, 5).name) == ("user5", 0)  # shared
        env.write(lambda s: setattr(s.get(User, 5), "name", "from P1"))
        answer = peer.ask("get 5")                                        # right after commit
        assert (answer["name"], answer["selects"]) == ("from P1", 1)
        assert peer.ask("count")["count"] == 50
        env.write(lambda s: s.add(User(id=600, email="p1@example.com")))
        assert peer.ask("count")["count"] == 51

        server.stop()                  # the backend (and with it the bus) is gone
        answer = peer.ask("get 5")
        assert (answer["name"], answer["selects"]) == ("from P1", 1)      # no hit, no error
        env.write(lambda s: setattr(s.get(User, 5), "name", "while down"))
        assert env.cache.stats["errors"] >= 1                             # invalidation owed
        answer = peer.ask("get 5")
        assert (answer["name"], answer["selects"]) == ("while down", 1)
        server.start()                 # back, empty
        assert env.selects_during(lambda s: s.get(User, 5).name) == ("while down", 1)
        assert env.selects_during(lambda s: s.get(User, 5).name) == ("while down", 0)
        answer = peer.ask("get 5")
        assert (answer["name"], answer["selects"]) == ("while down", 0)
    finally:
        peer.close()
        env.close()
        server.stop()


def test_redis_local_tier_stays_coherent_over_the_bus(seeded):    # 7 (local tier)
    """Both processes keep a local tier (redis://...?local_bytes=N): hits without a Redis
    round trip, invalidations over pub/sub; the bus gone = local tier off and flushed."""
    server = Server("redis")
    url = server.url() + "?local_bytes=4000000"
    env = Env(seeded, "sync", url)
    peer = Peer(seeded.url(), url, env.prefix)
    try:
        assert peer.ask("get 5")["selects"] == 1          # miss: stored in Redis
        assert peer.ask("get 5")["selects"] == 0          # Redis hit, kept locally
        answer = peer.ask("get 5")
        assert (answer["name"], answer["selects"], answer["stats"]["local_hits"]) == \
            ("user5", 0, 1)
        env.write(lambda s: setattr(s.get(User, 5), "name", "from P1"))
        deadline = time.monotonic() + 5          # bounded by the bus latency
        while (answer := peer.ask("get 5"))["name"] != "from P1":
            assert time.monotonic() < deadline, "the bus never evicted the peer's local copy"
        peer.ask("get 5")
        assert peer.ask("get 5")["stats"]["local_hits"] >= 2    # cached again, locally
        server.stop()                            # bus (and backend) gone
        time.sleep(1.5)
        env.write(lambda s: setattr(s.get(User, 5), "name", "bus down"))
        answer = peer.ask("get 5")
        assert (answer["name"], answer["selects"]) == ("bus down", 1)   # no local hit
    finally:
        peer.close()
        env.close()
        server.stop()


def test_search_path_and_schema_translate_map_are_part_of_the_key(env):   # 14
    env.pg.sql("CREATE SCHEMA IF NOT EXISTS orm_alt")
    env.pg.sql("DROP TABLE IF EXISTS orm_alt.orm_users")
    env.pg.sql("CREATE TABLE orm_alt.orm_users (LIKE public.orm_users INCLUDING ALL)")
    env.pg.sql("INSERT INTO orm_alt.orm_users (id, email, name) VALUES (1, 'alt', 'alt1')")

    def name1(session):
        return session.get(User, 1).name

    def translated(session):
        return session.execute(select(User).where(User.id == 1).execution_options(
            schema_translate_map={None: "orm_alt"})).scalar_one().name
    assert env.selects_during(name1) == ("user1", 1)
    assert env.selects_during(translated) == ("alt1", 1)
    assert env.selects_during(translated) == ("alt1", 0)
    assert env.selects_during(name1) == ("user1", 0)

    def search_path(session):
        session.execute(text("SET search_path TO orm_alt, public"))
        first = name1(session)
        session.expunge_all()
        second = name1(session)
        session.execute(text("RESET search_path"))
        return first, second
    assert env.selects_during(search_path) == (("alt1", "alt1"), 1)
    with Session(env.writer) as session:          # a clean connection: the public row
        assert name1(session) == "user1"


def test_mem_byte_cap_holds_and_tags_never_outlive_entries():    # 20
    cap = 2 << 20
    mem = MemBackend(max_bytes=cap)
    rng = random.Random(7)
    gens = ["g:t"]
    for i in range(60_000):
        tags = [f"R|t|{i}", f"T|t", f"P|t|c|{rng.randrange(1000)}", "E"]
        snap = mem.snapshot(gens)
        assert mem.store(f"e:{i}", b"x" * rng.randrange(10, 400), 300, tags, gens, snap)
        if i % 2000 == 0:
            mem.bump(["g:t"], [f"P|t|c|{rng.randrange(1000)}"])
        assert mem.bytes <= cap
    stats = mem.stats()
    assert stats["bytes"] <= cap and stats["entries"] < 60_000
    refs = {}
    for _, stamps, _, _ in mem.entries.values():
        for tag, _ in stamps:
            refs[tag] = refs.get(tag, 0) + 1
    assert refs == mem.refs and set(mem.tags) == set(refs)   # no tag without an entry
    mem.drop_prefix("e:")
    assert mem.stats() == {"entries": 0, "tags": 0, "bytes": 0}


def test_mem_byte_cap_through_the_orm(seeded, mode):
    env = Env(seeded, mode, "mem://?max_bytes=100000")
    try:
        for pk in range(1, 200):
            env.run(lambda s, pk=pk: s.get(User, pk))
        stats = env.cache.backend.stats()
        assert 0 < stats["bytes"] <= 100000 and stats["entries"] < 199
        assert env.selects_during(lambda s: s.get(User, 199)) == (None, 0)  # newest kept
    finally:
        env.close()


def test_redis_tags_expire_with_their_entries(redis_server, seeded):   # 20 (redis)
    import redis
    env = Env(seeded, "sync", redis_server.url(db=2),
              models={"*": {"timeout": 120}})
    try:
        env.run(lambda s: s.get(User, 1))
        client = redis.Redis.from_url(redis_server.url(db=2))
        keys = [k.decode() for k in client.keys(env.prefix + ":*")]
        entries = [k for k in keys if ":e:" in k]
        tag_keys = [k for k in keys if ":t:" in k]
        assert len(entries) == 1 and tag_keys
        assert 0 < client.ttl(entries[0]) <= 120
        assert all(0 < client.ttl(k) <= 120 for k in tag_keys)
        env.cache.invalidate_all()
        assert not [k for k in client.keys(env.prefix + ":e:*")]
    finally:
        env.close()


@pytest.mark.parametrize("bad, message", [
    (dict(backend="ftp://x"), "backend 'ftp://x'"),
    (dict(backend="mem://?max_bytes=lots"), "max_bytes='lots'"),
    (dict(models=["User"]), "models=['User']"),
    (dict(models={"User": {}}), "models key 'User'"),
    (dict(models={"app.User": {"ops": {"get", "list"}}}), "unknown op(s) 'list'"),
    (dict(models={"app.User": {"ops": "some"}}), "['ops']='some'"),
    (dict(models={"app.User": {"timeout": 0}}), "['timeout']=0"),
    (dict(models={"app.User": {"ttl": 5}}), "unknown key(s) 'ttl'"),
    (dict(models={"app.User": 5}), "models['app.User']=5"),
    (dict(default_timeout=-1), "default_timeout=-1"),
    (dict(prefix="a b"), "prefix='a b'"),
    (dict(serializer="yaml"), "serializer='yaml'"),
])
def test_bad_configuration_names_key_and_value(bad, message):
    args = dict(backend="mem://", models={"*": {"timeout": 60}})
    args.update(bad)
    with pytest.raises(ValueError) as err:
        configure(**args)
    assert message in str(err.value)


def test_randomized_readers_and_writers_never_read_stale(seeded, backend_url):  # 16
    """Writers bump a version column and publish it once commit() returned; a reader that
    starts after that must never see an older version.  Threads (sync sessions) and an
    asyncio reader (AsyncSession) share one cache.  Readers also get row QUIET, which no
    writer touches, and go on for a moment after the writers stop: a write the proxy
    reports evicts the whole table at first (the row-level event follows from the WAL),
    so with slow round trips (ASan, a slow backend) two unpaced writers can evict every
    entry before its next read, and the cache must still be seen serving."""
    QUIET = 6
    env = Env(seeded, "sync", backend_url)
    async_engine = create_async_engine(seeded.url(scheme="postgresql+asyncpg"))
    env.cache.bind(async_engine)
    committed = {pk: 0 for pk in range(1, 6)}
    lock = threading.Lock()
    stale, reads = [], [0]
    writers_stop = time.monotonic() + 2.0
    stop = writers_stop + 0.5

    def writer(seed):
        rng = random.Random(seed)
        while time.monotonic() < writers_stop:
            pk = rng.randrange(1, 6)
            with Session(env.writer) as session:
                user = session.get(User, pk, with_for_update=True)   # no lost update
                user.version += 1
                version = user.version
                session.commit()
            with lock:
                committed[pk] = max(committed[pk], version)

    def check(pk, floor, version):
        reads[0] += 1
        if version < floor:
            stale.append((pk, floor, version))

    def reader(seed):
        rng = random.Random(seed)
        while time.monotonic() < stop:
            pk = rng.randrange(1, QUIET + 1)
            with lock:
                floor = committed.get(pk, 0)
            with Session(env.engine) as session:
                if pk == QUIET or rng.random() < 0.5:
                    version = session.get(User, pk).version
                else:
                    version = session.execute(select(User).where(User.id <= 5)).scalars() \
                        .all()[pk - 1].version
            check(pk, floor, version)

    async def async_reader():
        rng = random.Random(99)
        while time.monotonic() < stop:
            pk = rng.randrange(1, QUIET + 1)
            with lock:
                floor = committed.get(pk, 0)
            async with AsyncSession(async_engine) as session:
                version = (await session.get(User, pk)).version
            check(pk, floor, version)
        await async_engine.dispose()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)] + \
        [threading.Thread(target=reader, args=(10 + i,)) for i in range(3)] + \
        [threading.Thread(target=lambda: asyncio.run(async_reader()))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert not stale, f"stale reads: {stale[:5]}"
        assert reads[0] > 20 and env.cache.stats["hits"] > 0
    finally:
        env.close()
