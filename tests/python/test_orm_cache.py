"""pgvalet.orm against a real Postgres, redis-server and memcached; every test runs on the
three backends (mem://, redis://, memcached://) and with sync and async sessions.

"selects" counts the SELECTs that reached Postgres (a before_cursor_execute hook), so a
hit is proven by 0.  Numbers in comments refer to the 20 tests of shared/ORM-NOTES.md.
"""
import asyncio
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy import bindparam, delete, exists, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.util import await_only

from ormmodels import Address, Product, Tag, User
from ormtest import (Env, backend_url, env, memcached_server, mode, orm_schema,  # noqa: F401
                     redis_server, seeded)


def get_name(session, pk):
    user = session.get(User, pk)
    return None if user is None else user.name


def active_ids(session):
    return sorted(u.id for u in session.execute(
        select(User).where(User.active == True)).scalars())  # noqa: E712


def count_users(session):
    return session.execute(select(func.count()).select_from(User)).scalar()


def email_exists(session, email):
    return session.execute(select(exists().where(User.email == email))).scalar()


def test_get_is_cached_and_commit_evicts_the_row(env):
    assert env.selects_during(get_name, 42) == ("user42", 1)       # miss: stored, R|orm_users|42
    assert env.selects_during(get_name, 42) == ("user42", 0)       # hit
    assert env.selects_during(get_name, 41) == ("user41", 1)       # keyed per pk (13)

    def rename(session):
        session.get(User, 42).name = "Alice"
        session.commit()                                            # evicts users:42 at once
    env.run(rename)
    assert env.selects_during(get_name, 42) == ("Alice", 1)
    assert env.selects_during(get_name, 41) == ("user41", 0)       # other rows stay cached
    stats = env.cache.stats
    assert stats["hits"] >= 2 and stats["invalidations"] >= 1


def test_commit_in_one_session_is_seen_by_the_next_at_once(env):   # 6
    env.run(get_name, 7)
    env.write(lambda s: setattr(s.get(User, 7), "name", "from writer"))
    assert env.selects_during(get_name, 7) == ("from writer", 1)


def test_bulk_update_evicts_the_model(env):
    assert env.selects_during(active_ids) == (list(range(2, 51, 2)), 1)
    assert env.selects_during(get_name, 3)[1] == 1
    assert env.selects_during(active_ids)[1] == 0

    def bulk(session):
        session.execute(update(User).where(User.id <= 5).values(active=True, name="bulk"))
        session.commit()
    env.run(bulk)
    ids, selects = env.selects_during(active_ids)
    assert selects == 1 and ids == sorted(set(range(2, 51, 2)) | {1, 3, 5})
    assert env.selects_during(get_name, 3) == ("bulk", 1)


def test_get_miss_is_cached_and_insert_of_that_pk_is_seen(env):   # 3
    assert env.selects_during(get_name, 9999) == (None, 1)
    assert env.selects_during(get_name, 9999) == (None, 0)        # the miss itself is cached
    env.write(lambda s: s.add(User(id=9999, email="late@example.com", name="late")))
    assert env.selects_during(get_name, 9999) == ("late", 1)


def test_fetch_sees_inserts_and_rows_that_start_to_match(env):     # 4
    expected = list(range(2, 51, 2))
    assert env.selects_during(active_ids) == (expected, 1)
    env.write(lambda s: s.add(User(id=100, email="n@example.com", active=True)))
    assert env.selects_during(active_ids) == (expected + [100], 1)
    # a write to a row that matches neither before nor after keeps the entry (predicate tags)
    env.write(lambda s: setattr(s.get(User, 3), "name", "still inactive"))
    assert env.selects_during(active_ids) == (expected + [100], 0)
    # an UPDATE that makes a row match
    env.write(lambda s: setattr(s.get(User, 5), "active", True))
    assert env.selects_during(active_ids) == (sorted(expected + [5, 100]), 1)
    # and one that makes a row stop matching
    env.write(lambda s: setattr(s.get(User, 2), "active", False))
    assert env.selects_during(active_ids) == (sorted(set(expected + [5, 100]) - {2}), 1)


def test_count_and_exists_see_insert_and_delete(env):             # 5
    assert env.selects_during(count_users) == (50, 1)
    assert env.selects_during(email_exists, "x@example.com") == (False, 1)
    assert env.selects_during(count_users) == (50, 0)
    assert env.selects_during(email_exists, "x@example.com") == (False, 0)
    env.write(lambda s: s.add(User(id=200, email="x@example.com")))
    assert env.selects_during(count_users) == (51, 1)
    assert env.selects_during(email_exists, "x@example.com") == (True, 1)
    env.write(lambda s: s.delete(s.get(User, 200)))
    assert env.selects_during(count_users) == (50, 1)
    assert env.selects_during(email_exists, "x@example.com") == (False, 1)


def test_bindparams_with_different_values_never_share_an_entry(env):  # 13
    stmt = select(User).where(User.id == bindparam("uid"))

    def by_param(session, uid):
        return session.execute(stmt, {"uid": uid}).scalar_one().email
    assert env.selects_during(by_param, 1) == ("u1@example.com", 1)
    assert env.selects_during(by_param, 2) == ("u2@example.com", 1)
    assert env.selects_during(by_param, 1) == ("u1@example.com", 0)
    assert env.selects_during(by_param, 2) == ("u2@example.com", 0)


def test_rollback_after_a_write_leaves_the_cache_untouched(env):  # 15
    env.run(get_name, 9)

    def write_then_rollback(session):
        session.get(User, 9).name = "never"
        session.flush()
        assert get_name(session, 9) == "never"
        session.rollback()
    env.run(write_then_rollback)
    assert env.selects_during(get_name, 9) == ("user9", 0)


def test_flush_then_query_sees_own_writes_and_never_reverts(env):  # 9
    env.run(get_name, 11)
    env.run(active_ids)

    def body(session):
        user = session.get(User, 11)          # a hit
        user.name = "flushed"
        session.flush()
        # a cached answer merged with load=False would revert user.name (fact 4)
        again = session.execute(select(User).where(User.id == 11)).scalar_one()
        assert again is user and user.name == "flushed"
        assert 11 in active_ids(session) or True
        session.rollback()
        with session.no_autoflush:
            user = session.get(User, 11)
            user.name = "pending edit"
            session.execute(select(User).where(User.active == True)).scalars().all()  # noqa
            assert user.name == "pending edit"
        session.rollback()
    env.run(body)
    assert env.selects_during(get_name, 11) == ("user11", 0)


def test_never_served_from_cache(env):                             # 10
    def twice(fn, **kw):
        return [env.selects_during(fn, **kw)[1] for _ in range(2)]

    assert twice(lambda s: s.execute(select(User).where(User.id == 1)
                                     .with_for_update()).scalar_one().id) == [1, 1]
    assert twice(lambda s: s.execute(select(User).where(User.id == 1)
                                     .execution_options(populate_existing=True))
                 .scalar_one().id) == [1, 1]
    assert twice(lambda s: s.execute(select(User.id, func.now()).where(User.id == 1))
                 .all()) == [1, 1]
    assert twice(lambda s: s.execute(select(User).where(User.id == func.floor(
        func.random() * 2))).all()) == [1, 1]

    def repeatable_read(session):
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        return get_name(session, 1)
    assert twice(repeatable_read) == [1, 1]

    def serializable_sql(session):
        session.execute(text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
        return get_name(session, 2)
    assert twice(serializable_sql) == [1, 1]
    # and the same reads outside those conditions are cached
    assert twice(lambda s: get_name(s, 1)) == [1, 0] or twice(lambda s: get_name(s, 1)) == [0, 0]


def test_savepoint_released_then_outer_rollback(env):             # 8a
    env.run(get_name, 12)

    def body(session):
        with session.begin_nested():
            session.get(User, 12).name = "in savepoint"
        # RELEASE happened (SQLAlchemy fires after_commit here): nothing may be evicted yet
        session.rollback()
    env.run(body)
    assert env.selects_during(get_name, 12) == ("user12", 0)


def test_savepoint_rolled_back_then_outer_commit(env):            # 8b
    env.run(get_name, 13)
    env.run(get_name, 14)

    def body(session):
        session.get(User, 13).name = "outer"
        session.flush()
        nested = session.begin_nested()
        session.get(User, 14).name = "inner"
        session.flush()
        nested.rollback()          # ROLLBACK TO SAVEPOINT: drops only the inner writes
        session.commit()
    env.run(body)
    assert env.selects_during(get_name, 13) == ("outer", 1)        # outer write evicted
    assert env.selects_during(get_name, 14) == ("user14", 0)       # inner one never happened


def test_eager_loads_by_option_are_tracked(env):                   # 11 (statement option)
    def addresses(session):
        user = session.execute(select(User).options(selectinload(User.addresses))
                               .where(User.id == 20)).scalar_one()
        return [a.email for a in user.addresses]
    assert env.selects_during(addresses) == (["a20@example.com"], 2)
    assert env.selects_during(addresses) == (["a20@example.com"], 0)
    env.write(lambda s: s.add(Address(user_id=20, email="new@example.com")))     # child INSERT
    assert env.selects_during(addresses) == (["a20@example.com", "new@example.com"], 2)
    env.write(lambda s: setattr(s.get(Address, 20), "email", "upd@example.com"))  # child UPDATE
    assert env.selects_during(addresses)[0] == ["upd@example.com", "new@example.com"]
    env.write(lambda s: s.delete(s.get(Address, 20)))                             # child DELETE
    assert env.selects_during(addresses)[0] == ["new@example.com"]


def test_mapper_level_eager_loads_are_tracked(env):                # 11 (lazy= on the mapper)
    def product_tags(session):
        product = session.execute(select(Product).where(Product.id == 1)).scalar_one()
        return [t.name for t in product.tags]                       # lazy="selectin"

    def address_owner(session):
        return session.execute(select(Address).where(Address.id == 30)).scalar_one().user.name
    assert env.selects_during(product_tags) == (["office", "school"], 2)
    assert env.selects_during(product_tags) == (["office", "school"], 0)
    env.write(lambda s: s.get(Tag, 2).__setattr__("name", "college"))             # child UPDATE
    assert env.selects_during(product_tags) == (["office", "college"], 2)
    def tag_it(session):
        product = session.get(Product, 1)
        product.tags.append(session.get(Tag, 3))
    env.write(tag_it)                                                             # association
    assert env.selects_during(product_tags)[0] == ["office", "college", "sale"]
    with env.writer.begin() as conn:                                              # Core, secondary
        conn.execute(text("DELETE FROM orm_product_tags WHERE tag_id = 1"))
    assert env.selects_during(product_tags)[0] == ["college", "sale"]
    assert env.selects_during(address_owner) == ("user30", 1)      # lazy="joined" many-to-one
    assert env.selects_during(address_owner) == ("user30", 0)
    env.write(lambda s: setattr(s.get(User, 30), "name", "owner renamed"))
    assert env.selects_during(address_owner) == ("owner renamed", 1)


def test_text_core_and_bulk_writes_are_seen(env):                  # 12
    assert env.selects_during(count_users)[0] == 50
    assert env.selects_during(get_name, 15)[0] == "user15"

    def text_update(session):
        session.execute(text("UPDATE orm_users SET name = 'via text' WHERE id = 15"))
        session.commit()
    env.run(text_update)
    assert env.selects_during(get_name, 15) == ("via text", 1)

    def bulk_insert(session):
        session.bulk_insert_mappings(User, [{"id": 300 + i, "email": f"b{i}@x"} for i in range(3)])
        session.commit()
    env.run(bulk_insert)
    assert env.selects_during(count_users) == (53, 1)
    with env.writer.begin() as conn:
        conn.execute(insert(User.__table__).values(id=400, email="core@x"))
    assert env.selects_during(count_users) == (54, 1)
    with env.writer.connect() as conn:       # driver-level autocommit
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("DELETE FROM orm_users WHERE id >= 300")
    assert env.selects_during(count_users) == (50, 1)


def test_invalidate_and_invalidate_all(env):
    env.run(get_name, 1)
    env.run(get_name, 2)
    env.run(count_users)
    other = Env(env.pg, "sync", env.cache.backend_url)   # another prefix on the same backend
    try:
        other.run(get_name, 1)
        # a write that bypasses SQLAlchemy (and here no proxy follows the WAL): stale by design
        env.pg.sql("UPDATE orm_users SET name = 'outside' WHERE id IN (1, 2)")
        env.pg.sql("INSERT INTO orm_users (id, email) VALUES (500, 'outside@x')")
        assert env.selects_during(get_name, 1) == ("user1", 0)
        env.cache.invalidate(User, pks=[1])
        assert env.selects_during(get_name, 1) == ("outside", 1)
        assert env.selects_during(get_name, 2) == ("user2", 0)     # other rows stay
        env.cache.invalidate(User)
        assert env.selects_during(get_name, 2) == ("outside", 1)
        assert env.selects_during(count_users) == (51, 1)
        env.cache.invalidate_all()
        assert env.selects_during(get_name, 2) == ("outside", 1)
        assert other.selects_during(get_name, 1) == ("user1", 0)   # other prefix untouched
    finally:
        other.close()


def test_stale_set_is_rejected(env):                               # 1 and 2
    for kind in ("row", "bulk"):
        paused, resume = threading.Event(), threading.Event()
        target = 16 if kind == "row" else 17

        def pause_after_read(conn, cursor, statement, parameters, context, executemany):
            if "FROM orm_users" in statement and not paused.is_set():
                paused.set()
                assert resume.wait(20)
        sa.event.listen(env.sync_engine, "after_cursor_execute", pause_after_read)

        def writer():
            assert paused.wait(20)
            if kind == "row":      # (FOR UPDATE: never from the cache, nor coalesced)
                env.write(lambda s: setattr(s.get(User, target, with_for_update=True),
                                            "name", "new"))
            else:
                env.write(lambda s: s.execute(update(User).where(User.id == target)
                                              .values(name="new")))
            resume.set()
        thread = threading.Thread(target=writer)
        thread.start()
        rejected = env.cache.stats["sets_rejected"]
        try:
            assert env.run(get_name, target) == f"user{target}"   # read before the commit
        finally:
            resume.set()
            thread.join(30)
            sa.event.remove(env.sync_engine, "after_cursor_execute", pause_after_read)
        assert env.cache.stats["sets_rejected"] == rejected + 1
        assert env.selects_during(get_name, target) == ("new", 1)
        assert env.selects_during(get_name, target) == ("new", 0)


def test_concurrent_misses_on_one_key_make_one_query(env):         # 17
    """20 sessions miss the same key at once: the first reads (held inside its read until
    the 19 others wait for it), the others are answered by its fill."""
    n = 20
    waited = []

    def hold_leader(conn, cursor, statement, parameters, context, executemany):
        if "FROM orm_users" not in statement or waited:
            return
        waited.append(True)
        deadline = time.monotonic() + 20
        while env.cache.waiting() < n - 1 and time.monotonic() < deadline:
            if env.mode == "async":
                await_only(asyncio.sleep(0.01))     # let the other tasks reach the cache
            else:
                time.sleep(0.01)
    sa.event.listen(env.sync_engine, "after_cursor_execute", hold_leader)
    before = env.counter.selects
    try:
        if env.mode == "sync":
            barrier = threading.Barrier(n)
            names = []

            def one():
                barrier.wait()
                with Session(env.engine) as session:
                    names.append(get_name(session, 21))
            threads = [threading.Thread(target=one) for _ in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        else:
            async def one():
                async with AsyncSession(env.engine) as session:
                    return (await session.get(User, 21)).name

            async def all_of_them():
                return await asyncio.gather(*[one() for _ in range(n)])
            names = env.loop.run_until_complete(all_of_them())
    finally:
        sa.event.remove(env.sync_engine, "after_cursor_execute", hold_leader)
    assert names == ["user21"] * n
    assert env.counter.selects - before == 1
    assert env.cache.stats["coalesced"] == n - 1
