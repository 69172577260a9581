from .api import Done, OrmCache, configure  # noqa: F401
from .session_proxy import SessionProxy
