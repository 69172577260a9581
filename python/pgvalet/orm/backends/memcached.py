"""memcached://host:port - the ORM cache in memcached (also the classic per-model
`get` cache with a timeout).

memcached has no scripts, so the protocol of backends/__init__.py is run as
separate commands in a safe order: store() reads the tag tokens (adding the
missing ones) before it reads the gens; bump() replaces the gens before it
deletes the tags.  The entry value carries its stamps; fetch() validates
them with one get_many.  Keys are fixed-length hashes (memcached keys must
not hold spaces); the LRU may evict tags, which only turns entries into
misses.
"""
from __future__ import annotations

import pickle
import threading
from typing import List, Optional, Sequence

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

from . import Backend, fresh_token

GEN_TTL = 7 * 24 * 3600


class MemcachedBackend(Backend):
    def __init__(self, host: str, port: int):
        self.client = Client((host, port), connect_timeout=5, timeout=5, no_delay=True,
                             default_noreply=False)
        self.address = f"{host}:{port}"
        self.lock = threading.Lock()      # one connection; the push thread invalidates too

    def snapshot(self, gens: Sequence[str]) -> List[Optional[str]]:
        with self.lock:
            return self._snapshot(gens)

    def _snapshot(self, gens: Sequence[str]) -> List[Optional[str]]:
        got = self.client.get_many(list(gens))
        return [got[g].decode() if g in got else None for g in gens]

    def fetch(self, key: str) -> Optional[bytes]:
        with self.lock:
            return self._fetch(key)

    def _fetch(self, key: str) -> Optional[bytes]:
        raw = self.client.get(key)
        if raw is None:
            return None
        stamps, payload = pickle.loads(raw)
        if stamps:
            got = self.client.get_many([t for t, _ in stamps])
            for tag, token in stamps:
                if got.get(tag, b"").decode() != token:
                    self.client.delete(key)
                    return None
        return payload

    def store(self, key, payload, ttl, tags, gens, snapshot) -> bool:
        with self.lock:
            return self._store(key, payload, ttl, tags, gens, snapshot)

    def _store(self, key, payload, ttl, tags, gens, snapshot) -> bool:
        tags = list(dict.fromkeys(tags))
        got = self.client.get_many(tags) if tags else {}
        missing = [t for t in tags if t not in got]
        for tag in missing:
            self.client.add(tag, fresh_token(), expire=int(ttl) * 2)
        if missing:
            got.update(self.client.get_many(missing))
            if any(t not in got for t in tags):
                return False
        if self._snapshot(gens) != list(snapshot):
            return False
        value = pickle.dumps(([(t, got[t].decode()) for t in tags], payload),
                             protocol=pickle.HIGHEST_PROTOCOL)
        try:
            return bool(self.client.set(key, value, expire=int(ttl)))
        except MemcacheError:       # e.g. larger than the item size limit
            return False

    def bump(self, gens, tags) -> None:
        with self.lock:
            if gens:
                self.client.set_many({g: fresh_token() for g in gens}, expire=GEN_TTL)
            if tags:
                # pipelined, unacknowledged deletes, then one acknowledged command on the
                # same connection: memcached runs a connection's commands in order, so when
                # its reply arrives every delete is done
                self.client.delete_many(list(tags), noreply=True)
                self.client.get(tags[0])

    def close(self) -> None:
        with self.lock:
            self.client.close()
