"""LISTEN/NOTIFY in session mode: notifications reach an idle listener."""
import asyncio
import select
import time

import asyncpg
import pytest


def wait_notifies(conn, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(conn.notifies) < n and time.monotonic() < deadline:
        if select.select([conn], [], [], max(0.0, deadline - time.monotonic())) != ([], [], []):
            conn.poll()
    return list(conn.notifies)


def test_notify_reaches_idle_listener_with_payload(proxy, uniq):
    p = proxy(pool_mode="session")
    listener, sender = p.connect(), p.connect()
    listener.cursor().execute(f"LISTEN {uniq}")
    sender.cursor().execute(f"NOTIFY {uniq}, 'hello payload'")
    got = wait_notifies(listener, 1)
    assert [(n.channel, n.payload) for n in got] == [(uniq, "hello payload")]
    listener.close()
    sender.close()


def test_notify_many_in_one_transaction_arrive_in_order(proxy, uniq):
    p = proxy(pool_mode="session")
    listener, sender = p.connect(), p.connect(autocommit=False)
    listener.cursor().execute(f"LISTEN {uniq}")
    cur = sender.cursor()
    for i in range(500):
        cur.execute("SELECT pg_notify(%s, %s)", (uniq, f"msg-{i}"))
    assert wait_notifies(listener, 1, timeout=0.3) == []  # nothing before commit
    sender.commit()
    got = wait_notifies(listener, 500)
    assert [n.payload for n in got] == [f"msg-{i}" for i in range(500)]
    listener.close()
    sender.close()


def test_unlisten_stops_delivery(proxy, uniq):
    p = proxy(pool_mode="session")
    listener, sender = p.connect(), p.connect()
    lc = listener.cursor()
    lc.execute(f"LISTEN {uniq}")
    sender.cursor().execute(f"NOTIFY {uniq}, 'one'")
    assert [n.payload for n in wait_notifies(listener, 1)] == ["one"]
    lc.execute(f"UNLISTEN {uniq}")
    sender.cursor().execute(f"NOTIFY {uniq}, 'two'")
    time.sleep(0.3)
    lc.execute("SELECT 1")
    assert [n.payload for n in listener.notifies] == ["one"]
    listener.close()
    sender.close()


def test_asyncpg_listener_callback(proxy, uniq):
    p = proxy(pool_mode="session")

    async def main():
        listener = await asyncpg.connect(p.dsn)
        sender = await asyncpg.connect(p.dsn)
        got = asyncio.Queue()
        await listener.add_listener(uniq, lambda *args: got.put_nowait(args[3]))
        for i in range(10):
            await sender.execute(f"NOTIFY {uniq}, 'a{i}'")
        payloads = [await asyncio.wait_for(got.get(), 5) for _ in range(10)]
        assert payloads == [f"a{i}" for i in range(10)]
        await listener.close()
        await sender.close()

    asyncio.run(main())
