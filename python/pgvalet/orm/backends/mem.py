"""mem:// - the ORM cache in this process: a dict under one lock, capped in bytes.

Atomic by the lock.  Tags live only while an entry is stamped with them (a
reference count), so metadata never outlives the data; the byte cap counts
entries, their stamps and the tag tokens, and evicts least recently used.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from . import Backend, fresh_token

ENTRY_OVERHEAD = 200    # bytes charged per entry beyond its payload and stamps
TAG_OVERHEAD = 80


class MemBackend(Backend):
    stable_payloads = True
    def __init__(self, max_bytes: int = 64 << 20):
        if max_bytes <= 0:
            raise ValueError(f"backend mem://: max_bytes={max_bytes} must be > 0")
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.entries: "OrderedDict[str, Tuple[float, Tuple[Tuple[str, str], ...], bytes, int]]" = \
            OrderedDict()
        self.tags: Dict[str, str] = {}
        self.refs: Dict[str, int] = {}
        self.gens: Dict[str, str] = {}
        self.bytes = 0

    def snapshot(self, gens: Sequence[str]) -> List[Optional[str]]:
        with self.lock:
            return [self.gens.get(g) for g in gens]

    def _drop(self, key: str) -> None:
        _, stamps, _, size = self.entries.pop(key)
        self.bytes -= size
        for tag, _token in stamps:
            n = self.refs.get(tag, 0) - 1
            if n <= 0:
                self.refs.pop(tag, None)
                if self.tags.pop(tag, None) is not None:
                    self.bytes -= len(tag) + TAG_OVERHEAD
            else:
                self.refs[tag] = n

    def fetch(self, key: str) -> Optional[bytes]:
        with self.lock:
            item = self.entries.get(key)
            if item is None:
                return None
            expires, stamps, payload, _ = item
            if expires < time.monotonic() or any(self.tags.get(t) != tok for t, tok in stamps):
                self._drop(key)
                return None
            self.entries.move_to_end(key)
            return payload

    def store(self, key, payload, ttl, tags, gens, snapshot) -> bool:
        with self.lock:
            if [self.gens.get(g) for g in gens] != list(snapshot):
                return False
            if key in self.entries:
                self._drop(key)
            stamps = []
            size = len(payload) + ENTRY_OVERHEAD
            for tag in dict.fromkeys(tags):
                token = self.tags.get(tag)
                if token is None:
                    token = self.tags[tag] = fresh_token()
                    self.bytes += len(tag) + TAG_OVERHEAD
                self.refs[tag] = self.refs.get(tag, 0) + 1
                stamps.append((tag, token))
                size += len(tag) + 16
            if size > self.max_bytes:       # never fits: undo the references just taken
                self.entries[key] = (0.0, tuple(stamps), b"", 0)
                self._drop(key)
                return False
            self.entries[key] = (time.monotonic() + ttl, tuple(stamps), payload, size)
            self.bytes += size
            while self.bytes > self.max_bytes and self.entries:
                self._drop(next(iter(self.entries)))
            return key in self.entries

    def bump(self, gens, tags) -> None:
        with self.lock:
            for g in gens:
                self.gens[g] = fresh_token()
            for t in tags:
                # a tag exists only while entries reference it; a new token kills them
                # (they are dropped, and release it, when next read or evicted)
                if t in self.tags:
                    self.tags[t] = fresh_token()

    def drop_prefix(self, prefix: str) -> None:
        with self.lock:
            for key in [k for k in self.entries if k.startswith(prefix)]:
                self._drop(key)

    def stats(self) -> Dict[str, int]:
        with self.lock:
            return {"entries": len(self.entries), "tags": len(self.tags), "bytes": self.bytes}
