"""redis://host:port/db - the ORM cache shared by every process using that Redis.

fetch and store are one Lua script each (one round trip, atomic): fetch
returns the payload only if every stamped tag still holds its token; store
checks the gen snapshot, reads (or creates) the tag tokens and writes the
entry as a hash {s: stamps JSON, p: payload} with its TTL.  Tags get the
TTL of the longest-lived entry stamped with them, so they never outlive the
data by more than that; a tag that expires early only costs misses.
Invalidations made by any process are seen by all at their next read: the
tokens live in Redis, there is no per-process copy to keep coherent.
"""
from __future__ import annotations

import json
from typing import List, Optional, Sequence

import redis as redis_py

from . import Backend, fresh_token

GEN_TTL = 7 * 24 * 3600

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
return v[2]
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


class RedisBackend(Backend):
    def __init__(self, url: str):
        try:
            self.client = redis_py.Redis.from_url(url, socket_timeout=5,
                                                  socket_connect_timeout=5)
        except ValueError as e:
            raise ValueError(f"backend {url!r}: {e}") from None
        self.url = url
        self._fetch = self.client.register_script(FETCH)
        self._store = self.client.register_script(STORE)

    def snapshot(self, gens: Sequence[str]) -> List[Optional[str]]:
        return [v.decode() if v is not None else None for v in self.client.mget(list(gens))]

    def fetch(self, key: str) -> Optional[bytes]:
        return self._fetch(keys=[key])

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
        pipe.execute()

    def drop_prefix(self, prefix: str) -> None:
        batch = []
        for key in self.client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.unlink(*batch)
                batch = []
        if batch:
            self.client.unlink(*batch)

    def publish(self, channel: str, message: str) -> None:
        self.client.publish(channel, message)

    def close(self) -> None:
        self.client.close()


def dumps_json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))
