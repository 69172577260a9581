"""redis://host:port/db - the ORM cache shared by every process using that Redis.

fetch and store are one Lua script each (one round trip, atomic): fetch
returns the payload only if every stamped tag still holds its token; store
checks the gen snapshot, reads (or creates) the tag tokens and writes the
entry as a hash {s: stamps JSON, p: payload} with its TTL.  Tags get the
TTL of the longest-lived entry stamped with them, so they never outlive the
data by more than that; a tag that expires early only costs misses.
Invalidations made by any process are seen by all at their next read: the
tokens live in Redis.

Optional local tier (``redis://host:port/db?local_bytes=N``): a per-process LRU
of entries read from Redis, kept coherent over Redis pub/sub.  Every
invalidation is published, in the same MULTI as the bump, as (origin, seq,
tag keys) on ``pgvalet-orm:<db>``; subscribers drop the local entries stamped
with those tags.  A seq gap, a lost or reconnected subscription, or a bus
that is not (yet) subscribed flushes the local tier and switches it off
(reads go to Redis) until the subscription is back.  A local fill is refused
if any bus message or flush was applied while it read Redis.  Hits from the
local tier cost no round trip; another process's commit reaches them after
the bus latency (without the local tier: at once).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Set, Tuple

import redis as redis_py

from . import Backend, fresh_token

GEN_TTL = 7 * 24 * 3600
log = logging.getLogger("pgvalet.orm")

FETCH = """
local v = redis.call('HMGET', KEYS[1], 's', 'p')
if not v[1] then return false end
local st = cjson.decode(v[1])
for i = 1, #st, 2 do
  if redis.call('GET', st[i]) ~= st[i + 1] then
    redis.call('DEL', KEYS[1])
    return false
  end
end
return {v[2], v[1]}
"""

# ARGV: ttl, payload, fresh token, ngens, gen keys.., snapshot.., tag keys..
STORE = """
local ttl = tonumber(ARGV[1])
local ngens = tonumber(ARGV[4])
for i = 1, ngens do
  local cur = redis.call('GET', ARGV[4 + i]) or ''
  if cur ~= ARGV[4 + ngens + i] then return 0 end
end
local stamps = {}
local n = 0
for i = 5 + 2 * ngens, #ARGV do
  local tag = ARGV[i]
  local tok = redis.call('GET', tag)
  if not tok then
    tok = ARGV[3] .. ':' .. i
    redis.call('SET', tag, tok, 'EX', ttl)
  elseif redis.call('TTL', tag) < ttl then
    redis.call('EXPIRE', tag, ttl)
  end
  stamps[n + 1] = tag
  stamps[n + 2] = tok
  n = n + 2
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', cjson.encode(stamps), 'p', ARGV[2])
redis.call('EXPIRE', KEYS[1], ttl)
return 1
"""


class _Local:
    """The local tier: entries (payload, tag keys) by key, LRU, capped in bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.entries: "OrderedDict[str, Tuple[float, Tuple[str, ...], bytes, int]]" = \
            OrderedDict()
        self.index: Dict[str, Set[str]] = {}
        self.bytes = 0
        self.epoch = 0          # +1 per applied invalidation or flush
        self.hits = 0

    def _drop(self, key: str) -> None:
        _, tags, _, size = self.entries.pop(key)
        self.bytes -= size
        for t in tags:
            keys = self.index.get(t)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.index[t]

    def get(self, key: str) -> Optional[bytes]:
        with self.lock:
            item = self.entries.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                self._drop(key)
                return None
            self.entries.move_to_end(key)
            self.hits += 1
            return item[2]

    def put(self, key: str, tags: Sequence[str], payload: bytes, ttl: float, epoch: int) -> None:
        size = len(payload) + sum(len(t) + 60 for t in tags) + 200
        with self.lock:
            if epoch != self.epoch or size > self.max_bytes:
                return
            if key in self.entries:
                self._drop(key)
            self.entries[key] = (time.monotonic() + ttl, tuple(tags), payload, size)
            self.bytes += size
            for t in tags:
                self.index.setdefault(t, set()).add(key)
            while self.bytes > self.max_bytes:
                self._drop(next(iter(self.entries)))

    def invalidate(self, tags: Sequence[str]) -> None:
        with self.lock:
            self.epoch += 1
            for t in tags:
                for key in list(self.index.get(t, ())):
                    self._drop(key)

    def flush(self) -> None:
        with self.lock:
            self.epoch += 1
            self.entries.clear()
            self.index.clear()
            self.bytes = 0


class _Bus:
    """The subscriber thread of the local tier."""

    def __init__(self, client: "redis_py.Redis", channel: str, origin: str, local: _Local):
        self.client, self.channel, self.origin, self.local = client, channel, origin, local
        self.up = False
        self.closed = False
        self.seqs: Dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, name="pgvalet-orm-bus", daemon=True)
        self.thread.start()

    def _down(self, reason: str) -> None:
        if self.up:
            log.warning("pgvalet.orm: Redis bus %s lost (%s): local tier off", self.channel,
                        reason)
        self.up = False
        self.seqs.clear()
        self.local.flush()

    def _run(self) -> None:
        backoff = 0.05
        while not self.closed:
            pubsub = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=False)
                pubsub.subscribe(self.channel)
                while not self.closed:
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is None:
                        pubsub.ping()
                        continue
                    if msg["type"] == "subscribe":
                        self.local.flush()
                        self.up = True
                        backoff = 0.05
                    elif msg["type"] == "message":
                        self._apply(msg["data"])
                    elif msg["type"] == "unsubscribe":
                        raise ConnectionError("unsubscribed")
            except Exception as e:     # connection lost, bad message: flush, reconnect
                self._down(str(e) or type(e).__name__)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass
            if not self.closed:
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _apply(self, data: bytes) -> None:
        msg = json.loads(data)
        origin, seq, tags = msg["o"], int(msg["s"]), msg["t"]
        last = self.seqs.get(origin)
        self.seqs[origin] = seq
        if last is not None and seq != last + 1:
            log.warning("pgvalet.orm: Redis bus gap from %s (%d after %d): local tier flushed",
                        origin, seq, last)
            self.local.flush()
        elif origin != self.origin:
            self.local.invalidate(tags)

    def close(self) -> None:
        self.closed = True
        self.up = False


class RedisBackend(Backend):
    def __init__(self, url: str, local_bytes: int = 0):
        try:
            self.client = redis_py.Redis.from_url(url, socket_timeout=5,
                                                  socket_connect_timeout=5)
        except ValueError as e:
            raise ValueError(f"backend {url!r}: {e}") from None
        self.url = url
        self._fetch = self.client.register_script(FETCH)
        self._store = self.client.register_script(STORE)
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.seq = 0
        self.seq_lock = threading.Lock()
        self.local: Optional[_Local] = None
        self.bus: Optional[_Bus] = None
        if local_bytes:
            self.local = _Local(local_bytes)
            self.stable_payloads = True     # local hits return the stored bytes
            db = self.client.connection_pool.connection_kwargs.get("db", 0)
            self.channel = f"pgvalet-orm:{db}"
            self.bus = _Bus(self.client, self.channel, self.origin, self.local)

    def wait_bus(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.bus is not None and not self.bus.up:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def snapshot(self, gens: Sequence[str]) -> List[Optional[str]]:
        return [v.decode() if v is not None else None for v in self.client.mget(list(gens))]

    def fetch(self, key: str) -> Optional[bytes]:
        local = self.local if self.bus is not None and self.bus.up else None
        if local is not None:
            payload = local.get(key)
            if payload is not None:
                return payload
            epoch = local.epoch
        got = self._fetch(keys=[key])
        if not got:
            return None
        payload, stamps = got[0], json.loads(got[1])
        if local is not None and self.bus is not None and self.bus.up:
            ttl = self.client.ttl(key)
            if ttl and ttl > 0:
                local.put(key, stamps[0::2], payload, ttl, epoch)
        return payload

    def store(self, key, payload, ttl, tags, gens, snapshot) -> bool:
        args = [int(ttl), payload, fresh_token(), len(gens), *gens,
                *[s if s is not None else "" for s in snapshot], *dict.fromkeys(tags)]
        return bool(self._store(keys=[key], args=args))

    def bump(self, gens, tags) -> None:
        pipe = self.client.pipeline(transaction=True)
        for g in gens:
            pipe.set(g, fresh_token(), ex=GEN_TTL)
        if tags:
            pipe.delete(*tags)
        if self.bus is not None:
            with self.seq_lock:
                self.seq += 1
                seq = self.seq
            pipe.publish(self.channel, json.dumps({"o": self.origin, "s": seq,
                                                   "t": list(tags)}, separators=(",", ":")))
        pipe.execute()
        if self.local is not None:      # after Redis: a local fill racing this is refused
            self.local.invalidate(tags)

    def drop_prefix(self, prefix: str) -> None:
        batch = []
        for key in self.client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.unlink(*batch)
                batch = []
        if batch:
            self.client.unlink(*batch)

    def close(self) -> None:
        if self.bus is not None:
            self.bus.close()
        self.client.close()
