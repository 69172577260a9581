"""Subscriber to a pgvalet proxy's push channel (README "Push channel").

One background thread per address reads the newline-delimited JSON events and hands each
one, as a dict, to every callback subscribed to that address.  The contract of the channel
(src/invalidate/push.h) says a subscriber must flush and bypass its cache whenever it may
have missed an event; this module turns every such case into one synthetic event,

    {"type": "lost", "reason": "..."}

sent when the connection is lost or cannot be made, when seq skips a number, or when
nothing (not even a keepalive) arrived for LOST_AFTER_KEEPALIVES keepalive periods.  The
thread then reconnects with backoff; the next {"type": "hello"} (followed by the state line
of each database) says the channel is back.  A callback runs on the subscriber thread:
it must be quick and must not raise (what it raises is logged and ignored).

    sub = subscribe("unix:/tmp/.s.PGVALET.7934", callback)   # or "127.0.0.1:7934"
    sub.close()
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

log = logging.getLogger("pgvalet.push")

Event = Dict[str, Any]
Callback = Callable[[Event], None]

LOST_AFTER_KEEPALIVES = 3
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
MAX_LINE = 1 << 20


def _parse_address(address: str) -> Tuple[int, Any]:
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"push channel address {address!r}: expected 'unix:/path' or 'host:port'")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port))


class _Reader:
    """The one connection (and thread) per address, shared by its subscriptions."""

    def __init__(self, address: str):
        self.address = address
        self.family, self.sockaddr = _parse_address(address)
        self.callbacks: List[Callback] = []
        self.lock = threading.RLock()      # held while callbacks run: they see events in order
        self.closed = False
        self.hello: Optional[Event] = None  # the current connection's hello, then states
        self.states: Dict[Any, Event] = {}
        self.sock: Optional[socket.socket] = None
        self.connected = False          # hello read, no event missed since
        self.thread = threading.Thread(target=self._run, name=f"pgvalet-push {address}",
                                       daemon=True)

    def _emit(self, event: Event) -> None:
        with self.lock:
            kind = event.get("type")
            if kind == "hello":
                self.hello, self.states = event, {}
            elif kind == "state":
                self.states[event.get("db")] = event
            elif kind == "lost":
                self.hello, self.states = None, {}
            for cb in list(self.callbacks):
                _call(cb, event)

    def add(self, callback: Callback) -> None:
        """Subscribe; a late subscriber first gets the hello and states it missed."""
        with self.lock:
            self.callbacks.append(callback)
            if self.hello is not None:
                _call(callback, self.hello)
                for event in self.states.values():
                    _call(callback, event)

    def _lost(self, reason: str) -> None:
        was = self.connected
        self.connected = False
        if was:
            log.warning("pgvalet push channel %s lost: %s", self.address, reason)
        self._emit({"type": "lost", "reason": reason})

    def _run(self) -> None:
        backoff = BACKOFF_MIN
        first = True
        while not self.closed:
            try:
                self._session()
                backoff = BACKOFF_MIN
            except OSError as e:
                if first and not self.connected:   # never got in (a session that did is lost)
                    self._emit({"type": "lost", "reason": f"cannot connect: {e}"})
                else:
                    self._lost(str(e) or type(e).__name__)
            except ValueError as e:     # malformed line: treat as a lost connection
                self._lost(f"malformed event: {e}")
            first = False
            if self.closed:
                break
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _session(self) -> None:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        self.sock = sock
        try:
            sock.settimeout(2.0)
            sock.connect(self.sockaddr)
            if self.closed:
                return
            buf = b""
            seq: Optional[int] = None
            while not self.closed:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > MAX_LINE:
                        raise ValueError("line too long")
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionResetError("the proxy closed the channel")
                    buf += chunk
                    continue
                line, buf = buf[:nl], buf[nl + 1:]
                event = json.loads(line)
                if not isinstance(event, dict):
                    raise ValueError("not an object")
                kind = event.get("type")
                if kind == "hello":
                    seq = int(event.get("seq", 0))
                    keepalive = float(event.get("keepalive_ms", 1000)) / 1000.0
                    sock.settimeout(max(keepalive * LOST_AFTER_KEEPALIVES, 0.1))
                    self.connected = True
                elif seq is None:
                    raise ValueError(f"{kind!r} before hello")
                elif kind in ("invalidate", "flush") or \
                        (kind == "state" and int(event.get("seq", seq)) != seq):
                    n = int(event["seq"])
                    if n != seq + 1:
                        self._lost(f"seq jumped from {seq} to {n}")
                        return
                    seq = n
                self._emit(event)
        except socket.timeout:
            raise ConnectionResetError("no keepalive from the proxy") from None
        finally:
            self.sock = None
            sock.close()

    def close(self) -> None:
        self.closed = True
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _call(cb: Callback, event: Event) -> None:
    try:
        cb(event)
    except Exception:  # a subscriber's bug must not stop the others
        log.exception("pgvalet push subscriber %r failed on %s", cb, event.get("type"))


_readers: Dict[str, _Reader] = {}
_readers_lock = threading.Lock()


class Subscription:
    """One callback on one address; close() unsubscribes (idempotent)."""

    def __init__(self, reader: _Reader, callback: Callback):
        self._reader: Optional[_Reader] = reader
        self.callback = callback

    @property
    def address(self) -> Optional[str]:
        return self._reader.address if self._reader else None

    @property
    def connected(self) -> bool:
        """True between a hello and the next loss."""
        return bool(self._reader and self._reader.connected)

    def close(self) -> None:
        with _readers_lock:
            reader, self._reader = self._reader, None
            if reader is None:
                return
            with reader.lock:
                if self.callback in reader.callbacks:
                    reader.callbacks.remove(self.callback)
                last = not reader.callbacks
            if last:
                _readers.pop(reader.address, None)
                reader.close()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _forget_after_fork() -> None:
    """In a forked child: the readers' threads are gone; the next subscribe() starts anew."""
    global _readers_lock
    _readers_lock = threading.Lock()
    for reader in _readers.values():
        reader.closed = True
    _readers.clear()


def subscribe(address: str, callback: Callback) -> Subscription:
    """Call callback(event) for every event of the channel at address (see module doc).

    The first call for an address starts its reader thread; until its hello arrives the
    subscriber must treat the channel as lost (a cache starts flushed and bypassed)."""
    _parse_address(address)
    with _readers_lock:
        reader = _readers.get(address)
        if reader is None or reader.closed:
            reader = _readers[address] = _Reader(address)
            reader.add(callback)
            reader.thread.start()
        else:
            reader.add(callback)
    return Subscription(reader, callback)
