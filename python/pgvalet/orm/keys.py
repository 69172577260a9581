"""Key names for the ORM cache.

    entry  {prefix}:e:<hash of engine, statement, parameters, session state>
    tag    {prefix}:t:<hash of the tag text>     tag texts are built by tags.py
    gen    {prefix}:g:<hash of the table name>   ("*" = every table)

Hashes keep memcached's key rules (<= 250 bytes, no spaces) for any table
or value.  The statement part is SQLAlchemy's cache key rendered offline
(SQL text + every parameter value), so bindparams and Session.get's
primary key are always part of the key.
"""
from __future__ import annotations

import hashlib
from typing import Any, Dict, Mapping, Optional

_STATEMENT_TEXT: Dict[Any, str] = {}     # CacheKey.key -> SQL text (bounded below)
_STATEMENT_TEXT_MAX = 2000


def _h(text: str, size: int = 12) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=size).hexdigest()


def tag_key(prefix: str, tag: str) -> str:
    return f"{prefix}:t:{_h(tag, 10)}"


def gen_key(prefix: str, table: str) -> str:
    return f"{prefix}:g:{_h(table, 8)}"


def statement_text(statement: Any, cache_key: Any, parameters: Optional[Mapping[str, Any]]
                   ) -> str:
    """SQL + parameter values of an ORM statement (cache_key: its _generate_cache_key())."""
    if len(_STATEMENT_TEXT) > _STATEMENT_TEXT_MAX:
        _STATEMENT_TEXT.clear()
    return cache_key.to_offline_string(_STATEMENT_TEXT, statement, dict(parameters or {}))


def entry_key(prefix: str, *parts: str) -> str:
    return f"{prefix}:e:{_h(chr(0).join(parts), 16)}"
