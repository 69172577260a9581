from .session_proxy import SessionProxy
