"""Storage for the ORM cache: one protocol over three key-value stores.

Every backend holds three kinds of keys (names built by pgvalet.orm.keys):

  entry  the serialized result plus its *stamps*: the token each of its tags
         had when it was stored.  fetch() returns the payload only if every
         tag still has that token (one tag deleted or changed = a miss).
  tag    a random token; invalidating a tag deletes it, so every entry
         stamped with the old token is dead at once, however many there are.
  gen    a per-table generation token, replaced by every invalidation of the
         table.  A fill snapshots the gens of its tables BEFORE its DB read
         and store() refuses it if any changed (the stale-set race).

store() reads the tags' tokens before the gens; bump() replaces the gens
before deleting the tags.  With that order a store that races an
invalidation is either refused (gen changed) or stamped with a token that
the invalidation deletes, even where the store is not atomic (memcached).
"""
from __future__ import annotations

import secrets
from typing import Dict, List, Optional, Sequence
from urllib.parse import parse_qs, urlsplit


def fresh_token() -> str:
    return secrets.token_hex(8)


class Backend:
    """Interface (all calls blocking, thread-safe)."""

    # fetch() returns the very bytes object store() was given while the entry lives,
    # so a caller may keep what it decoded from it (identity-checked) instead of
    # decoding it again.
    stable_payloads = False

    def snapshot(self, gens: Sequence[str]) -> List[Optional[str]]:
        raise NotImplementedError

    def fetch(self, key: str) -> Optional[bytes]:
        raise NotImplementedError

    def store(self, key: str, payload: bytes, ttl: int, tags: Sequence[str],
              gens: Sequence[str], snapshot: Sequence[Optional[str]]) -> bool:
        raise NotImplementedError

    def bump(self, gens: Sequence[str], tags: Sequence[str]) -> None:
        raise NotImplementedError

    def drop_prefix(self, prefix: str) -> None:
        """Free this prefix's keys where the store can enumerate them (optional)."""

    def close(self) -> None:
        pass


def open_backend(url: str, options: Optional[Dict[str, object]] = None) -> Backend:
    if not isinstance(url, str):
        raise ValueError(f"backend: expected a URL string, got {url!r}")
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "mem":
        from .mem import MemBackend
        size = query.pop("max_bytes", None)
        if query:
            raise ValueError(f"backend {url!r}: unknown parameter(s) {', '.join(query)}; "
                             "mem:// takes max_bytes")
        try:
            max_bytes = int(size) if size is not None else 64 << 20
        except ValueError:
            raise ValueError(f"backend {url!r}: max_bytes={size!r} is not an integer") from None
        return MemBackend(max_bytes=max_bytes)
    if parts.scheme in ("redis", "rediss"):
        from .redis import RedisBackend
        local = query.get("local_bytes")
        if local is not None:
            try:
                local_bytes = int(local)
                if local_bytes < 0:
                    raise ValueError
            except ValueError:
                raise ValueError(f"backend {url!r}: local_bytes={local!r} is not a byte count "
                                 "(>= 0)") from None
            rest = "&".join(p for p in parts.query.split("&")
                            if not p.startswith("local_bytes="))
            url = parts._replace(query=rest).geturl()
        else:
            local_bytes = 0
        return RedisBackend(url, local_bytes)
    if parts.scheme == "memcached":
        from .memcached import MemcachedBackend
        if not parts.hostname:
            raise ValueError(f"backend {url!r}: memcached://host:port needs a host")
        try:
            port = parts.port or 11211
        except ValueError:
            raise ValueError(f"backend {url!r}: bad port") from None
        return MemcachedBackend(parts.hostname, port)
    raise ValueError(f"backend {url!r}: scheme must be mem://, redis:// or memcached://")
