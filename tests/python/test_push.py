"""pgvalet._push: the Python subscriber to the proxy's push channel, against a real proxy."""
import queue
import time

import psycopg2
import pytest

import pgvalet
from pgvalet import _push

from pgvtest import DB


def _next(events, kind, timeout=10.0, **match):
    """The next event of type kind (and matching fields), skipping keepalives and others."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {kind} event {match} within {timeout} s")
        try:
            event = events.get(timeout=left)
        except queue.Empty:
            continue
        if event.get("type") == kind and all(event.get(k) == v for k, v in match.items()):
            return event


def test_push_address_and_events(pg, port):
    with pgvalet.start(pg.url(), port=port, silent=True) as proxy:
        assert proxy.push_address == f"unix:/tmp/.s.PGVALET.{port + 2}"
        events = queue.Queue()
        with _push.subscribe(proxy.push_address, events.put) as sub:
            _next(events, "hello")
            _next(events, "state", db=DB, stream="up")
            assert sub.connected
            conn = psycopg2.connect(proxy.url)
            conn.autocommit = True
            # A cached read makes the proxy publish the table (asynchronously): read until
            # it is in the publication, or the UPDATE below would not be in the stream.
            deadline = time.monotonic() + 10
            while not pg.sql("SELECT 1 FROM pg_publication_tables WHERE pubname = 'pgvalet' "
                             "AND tablename = 'users'"):
                assert time.monotonic() < deadline, "the proxy never published users"
                with conn.cursor() as cur:
                    cur.execute("SELECT email FROM users WHERE id = 2")
                    cur.fetchall()
                time.sleep(0.05)
            bypass = psycopg2.connect(pg.url())
            bypass.autocommit = True
            with bypass.cursor() as cur:
                cur.execute("UPDATE users SET email = email WHERE id = 2")
            event = _next(events, "invalidate", source="wal", table="users")
            assert event["rows"] == [2] and event["schema"] == "public"
            bypass.close()
            conn.close()
            # A second subscriber on the same address gets the hello and states it missed.
            late = queue.Queue()
            with _push.subscribe(proxy.push_address, late.put):
                _next(late, "hello", timeout=1)
                _next(late, "state", timeout=1, db=DB, stream="up")


def test_lost_when_the_proxy_goes_away(pg, port):
    proxy = pgvalet.start(pg.url(), port=port, silent=True)
    events = queue.Queue()
    sub = _push.subscribe(f"127.0.0.1:{port + 2}", events.put)
    try:
        _next(events, "hello")
        proxy.stop()
        lost = _next(events, "lost")
        assert lost["reason"]
        assert not sub.connected
        # It reconnects on its own once a proxy is there again.
        with pgvalet.start(pg.url(), port=port, silent=True):
            _next(events, "hello")
            assert sub.connected
    finally:
        sub.close()


def test_no_proxy_is_lost_at_once(port):
    events = queue.Queue()
    with _push.subscribe(f"127.0.0.1:{port + 2}", events.put):
        assert _next(events, "lost", timeout=5)["reason"].startswith("cannot connect")


def test_bad_address():
    with pytest.raises(ValueError, match="push channel address"):
        _push.subscribe("nowhere", print)
