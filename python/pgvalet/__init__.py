"""pgvalet: a caching PostgreSQL proxy, started and managed from Python.

    import pgvalet
    with pgvalet.start("postgresql://user:pass@host:5432/mydb") as pg:
        ...  # connect any driver or tool to pg.url

SQLAlchemy users: ``pgvalet.sqlalchemy.create_engine`` / ``create_async_engine`` /
``init()``.  The in-process L1 cache (``pgvalet.l1``) and the ORM cache API
(``pgvalet.orm``) will live beside these modules.
"""
from ._process import Proxy, ProxyError, find_binary, start, stop

__version__ = "0.1.0"
__all__ = ["Proxy", "ProxyError", "find_binary", "start", "stop", "__version__"]
