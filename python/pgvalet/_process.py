"""Running the pgvalet binary: find it, start it, wait for it, share it, stop it.

One proxy per (binary, upstream, requested port, flags) per Python process,
reference-counted through the handles start() returns.  The child dies with
this process: SIGTERM at exit (atexit), and PR_SET_PDEATHSIG on Linux when the
process is killed outright.
"""
from __future__ import annotations

import atexit
import collections
import concurrent.futures
import ctypes
import errno
import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _options, _url

log = logging.getLogger("pgvalet")

DEFAULT_PORT = 7932
PORT_GROUP = 3          # port, port + 1 (dashboard), port + 2 (push channel)
MAX_GROUPS = 50         # port groups tried before giving up
LOG_LINES = 2000        # lines kept in each proxy's in-memory log ring
STOP_TIMEOUT = 5.0      # seconds between SIGTERM and SIGKILL
# The start-up banner's push channel line, and the line saying there is none (cache off).
_PUSH_LINE = re.compile(r"push channel for in-process caches on (\S+?)(?: and (\S+))?$")
_READY_LINE = re.compile(r"result cache off")
_PORT_TAKEN = re.compile(r"Address already in use|another process is listening there")
_PR_SET_PDEATHSIG = 1

_PACKAGE_DIR = Path(__file__).resolve().parent


class ProxyError(RuntimeError):
    """The proxy could not be started (or died); carries its own stderr."""

    def __init__(self, message: str, *, stderr: str = "", returncode: Optional[int] = None):
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


class _PortTaken(Exception):
    pass


# ---- the binary ---------------------------------------------------------------------------


def find_binary() -> str:
    """$PGVALET_BINARY, the package's bin/pgvalet, a source checkout's build/pgvalet, PATH."""
    tried: List[str] = []
    env = os.environ.get("PGVALET_BINARY")
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return os.path.abspath(env)
        raise ProxyError(f"PGVALET_BINARY={env} is not an executable file")
    tried.append("$PGVALET_BINARY (not set)")
    for candidate in (_PACKAGE_DIR / "bin" / "pgvalet",
                      _PACKAGE_DIR.parent.parent / "build" / "pgvalet"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        tried.append(str(candidate))
    found = shutil.which("pgvalet")
    if found:
        return os.path.abspath(found)
    tried.append("pgvalet on PATH")
    raise ProxyError("cannot find the pgvalet binary; looked at: " + ", ".join(tried)
                     + " (set PGVALET_BINARY or run `make`)")


# ---- the child's lifetime -----------------------------------------------------------------

try:
    _libc: Optional[ctypes.CDLL] = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith(
        "linux") else None
except OSError:  # pragma: no cover - exotic libc
    _libc = None


def _die_with_parent(parent: int) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    return setup


class _Spawner:
    """A thread that lives as long as the process and forks the proxies.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so a
    proxy started from a short-lived thread (a request handler, a thread pool)
    would die with that thread.  Forks from other threads are done here instead.
    """

    _instance: Optional["_Spawner"] = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._jobs: "queue.Queue[Tuple[Callable[[], Any], concurrent.futures.Future]]"
        self._jobs = queue.Queue()
        threading.Thread(target=self._run, name="pgvalet-spawner", daemon=True).start()

    def _run(self) -> None:
        while True:
            fn, fut = self._jobs.get()
            try:
                fut.set_result(fn())
            except BaseException as e:  # handed to the caller
                fut.set_exception(e)

    @classmethod
    def call(cls, fn: Callable[[], Any]) -> Any:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Spawner()
        fut: concurrent.futures.Future = concurrent.futures.Future()
        cls._instance._jobs.put((fn, fut))
        return fut.result()


def _popen(argv: List[str], env: Dict[str, str]) -> subprocess.Popen:
    def spawn() -> subprocess.Popen:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent(os.getpid()))
    if threading.current_thread() is threading.main_thread():
        return spawn()
    return _Spawner.call(spawn)


# ---- ports --------------------------------------------------------------------------------


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _port_free(host: str, port: int) -> bool:
    """Could we listen there?  (SO_REUSEADDR like the binary: TIME_WAIT is no obstacle.)"""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _group_free(host: str, port: int) -> bool:
    """Are port (proxy), port + 1 (dashboard) and port + 2 (push channel) all free?"""
    return port + PORT_GROUP - 1 <= 65535 and all(
        _port_free(host, p) for p in range(port, port + PORT_GROUP))


def _owns_listener(pid: int, port: int) -> Optional[bool]:
    """Does process pid hold a socket listening on port?  None where /proc cannot tell.

    Accepting a connection is not enough: in the moment between our pre-check and
    the binary's own bind, someone else (another pgvalet) may have taken the port.
    """
    listening = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                listening.add(f"socket:[{fields[9]}]")
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    if not readable:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in listening:
                return True
        except OSError:
            continue
    return False


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.25):
            return True
    except OSError:
        return False


# ---- one running proxy --------------------------------------------------------------------


class _Process:
    """One pgvalet child process, shared by every handle with the same key."""

    def __init__(self, key: Tuple, proc: subprocess.Popen, argv: List[str], host: str, port: int,
                 upstream: _url.PgUrl, dashboard_url: Optional[str], echo: bool):
        self.key = key
        self.proc = proc
        self.argv = argv
        self.host = host
        self.port = port
        self.upstream = upstream
        self.dashboard_url = dashboard_url
        self.owner = os.getpid()
        self.refs = 0
        self.echo = int(echo)             # handles that want the log on stderr
        self.ring: Deque[str] = collections.deque(maxlen=LOG_LINES)
        self.reader = threading.Thread(target=self._read, args=(proc.stdout,),
                                       name=f"pgvalet-log-{port}", daemon=True)
        self.reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")[:8192]
            self.ring.append(line)
            if self.echo > 0:
                try:
                    sys.stderr.write(f"[pgvalet :{self.port}] {line}\n")
                except (ValueError, OSError):  # stderr closed at shutdown
                    pass

    @property
    def log(self) -> str:
        return "\n".join(self.ring)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def push_address(self, wait: float = 2.0) -> Optional[str]:
        """Read from the start-up banner, which the proxy prints before it accepts."""
        deadline = time.monotonic() + wait
        while True:
            for line in list(self.ring):
                m = _PUSH_LINE.search(line)
                if m:
                    return f"unix:{m.group(2)}" if m.group(2) else m.group(1)
                if _READY_LINE.search(line):
                    return None
            if time.monotonic() >= deadline or not self.alive():
                return None
            time.sleep(0.01)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(list(self.ring)[-lines:]).strip()

    def wait_ready(self, deadline: float, timeout: float) -> None:
        """Return once the proxy accepts TCP connections; raise if it exits first."""
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.reader.join(2.0)
                text = self.log
                if _PORT_TAKEN.search(text):
                    raise _PortTaken(text)
                raise ProxyError(f"{self.tail() or '(no output)'}\n(pgvalet exited with status "
                                 f"{rc} before accepting connections on {self.host}:{self.port})",
                                 stderr=text, returncode=rc)
            if _owns_listener(self.proc.pid, self.port) is not False and \
                    _accepts(self.host, self.port) and self.proc.poll() is None:
                return
            if time.monotonic() >= deadline:
                self.terminate()
                raise ProxyError(f"pgvalet did not accept connections on {self.host}:{self.port} "
                                 f"within {timeout:g} s; its last lines:\n"
                                 f"{self.tail() or '(no output)'}", stderr=self.log)
            time.sleep(0.02)

    def terminate(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; only the process that started it."""
        if self.owner != os.getpid():
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


_registry: Dict[Tuple, _Process] = {}
_lock = threading.RLock()


def _forget_after_fork() -> None:
    # A forked child does not own its parent's proxies (terminate() checks the
    # owner) and has none of its threads: start afresh.
    global _lock
    _lock = threading.RLock()
    _registry.clear()
    _Spawner._instance = None
    _Spawner._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


# ---- handles ------------------------------------------------------------------------------


class Proxy:
    """A handle on a running pgvalet proxy; stop() releases it, `with` does too."""

    def __init__(self, process: _Process, silent: bool, upstream: _url.PgUrl):
        self._process: Optional[_Process] = process
        self._p = process
        self._silent = silent
        self._url = _url.local(upstream, process.host, process.port, keep_driver=False)

    @property
    def url(self) -> str:
        """postgresql://user:password@127.0.0.1:PORT/db: connect any driver or tool here.

        The upstream's user, password, database and non-TLS parameters, on the proxy."""
        return self._url

    @property
    def dashboard_url(self) -> Optional[str]:
        """The dashboard's address (http://127.0.0.1:<port>/), or None when it is off."""
        return self._p.dashboard_url

    @property
    def push_address(self) -> Optional[str]:
        """Where in-process caches subscribe to evictions (pgvalet._push.subscribe), or None.

        'unix:/tmp/.s.PGVALET.<port>' when the proxy has its unix socket, else
        '127.0.0.1:<port>'; None when the push channel is off (--push-port 0)."""
        return self._p.push_address()

    @property
    def host(self) -> str:
        return self._p.host

    @property
    def port(self) -> int:
        """The port the proxy listens on (may differ from the requested one)."""
        return self._p.port

    @property
    def pid(self) -> int:
        return self._p.proc.pid

    @property
    def argv(self) -> List[str]:
        """The command line (the upstream URL is passed in PGVALET_UPSTREAM, not here)."""
        return list(self._p.argv)

    @property
    def log(self) -> str:
        """The proxy's recent output (the last LOG_LINES lines)."""
        return self._p.log

    @property
    def alive(self) -> bool:
        return self._p.alive()

    @property
    def stopped(self) -> bool:
        """True once this handle has been stopped (the proxy may live on for others)."""
        return self._process is None

    def stop(self) -> None:
        """Release this handle; the proxy stops when its last handle is released."""
        with _lock:
            process, self._process = self._process, None
            if process is None:
                return
            process.refs -= 1
            if not self._silent:
                process.echo -= 1
            if process.refs > 0:
                return
            if _registry.get(process.key) is process:
                del _registry[process.key]
        process.terminate()

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else ("running" if self.alive else "dead")
        return (f"<pgvalet.Proxy {state} pid={self.pid} port={self.port} "
                f"upstream={_url.display(self._p.upstream)}>")


def _host_for(listen: Any) -> str:
    """The address to reach a proxy started with --listen listen."""
    if listen is None or str(listen) in ("", "*", "0.0.0.0"):
        return "127.0.0.1"
    if str(listen) == "::":
        return "::1"
    return str(listen)


def start(upstream: str, *, port: Optional[int] = None, dashboard_port: Optional[int] = None,
          config: Optional[Mapping[str, Any]] = None, extra_args: Optional[Sequence[str]] = None,
          mode: Optional[str] = None, log_level: Union[int, str, None] = None,
          silent: bool = False, timeout: float = 15.0) -> Proxy:
    """Start (or reuse) a pgvalet proxy in front of upstream and return a handle.

    upstream: postgresql:// URL of the real server (a +driver suffix is ignored).
    port: where the proxy listens (default $PGVALET_PORT or 7932).  If that port,
        port + 1 or port + 2 is taken (by anything, another pgvalet included), the
        next free group of three is used and a warning is logged.
    config: proxy settings, e.g. {"pool_size": 50}; keys are the binary's options
        (snake_case or kebab-case); unknown keys raise ValueError.
    extra_args: raw flags appended to the command line.
    mode, log_level ('info', 'debug', 'trace' or 0..5), dashboard_port: shortcuts for
        the binary's --mode, --verbose and --dashboard-port (ValueError if it lacks them).
    silent: keep the proxy's log only in memory (handle.log) instead of also
        echoing it to this process's stderr.
    timeout: seconds to wait for the proxy to accept connections.

    A second start() with the same arguments returns another handle on the same
    proxy; it stops when every handle is stopped, at pgvalet.stop(), or when this
    process exits.  Raises ProxyError with the proxy's own message if it cannot start.
    PGVALET_* environment variables reach the binary as usual.
    """
    binary = find_binary()
    options = _options.binary_options(binary)
    args = _options.build_args(binary, options, config, mode=mode, log_level=log_level,
                               dashboard_port=dashboard_port)
    args += [str(a) for a in (extra_args or ())]
    parsed = _url.parse(upstream)
    upstream_leg = _url.upstream(parsed)
    if port is None:
        port = int(os.environ.get("PGVALET_PORT") or DEFAULT_PORT)
    listen = next((v for k, v in (config or {}).items() if _options.normalize_key(k) == "listen"),
                  None)
    host = _host_for(listen)
    key = (binary, upstream_leg, port, tuple(args))
    with _lock:
        process = _registry.get(key)
        if process is None or not process.alive():
            process = _launch(binary, args, parsed, upstream_leg, host, port, key,
                              "dashboard-port" in options, timeout, echo=not silent)
            _registry[key] = process
        elif not silent:
            process.echo += 1
        process.refs += 1
        return Proxy(process, silent, parsed)


def _dashboard_port(args: Sequence[str], env: Mapping[str, str], port: int,
                    has_dashboard: bool) -> Optional[int]:
    """The dashboard port a proxy on port gets from args/env (-1 = port + 1), or None."""
    if not has_dashboard:
        return None
    value = env.get("PGVALET_DASHBOARD_PORT") or "-1"
    for i, a in enumerate(args):  # the last flag wins, as in the binary
        if a == "--dashboard-port" and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith("--dashboard-port="):
            value = a.split("=", 1)[1]
    try:
        n = int(value)
    except ValueError:
        return None
    if n == -1:
        n = port + 1
    return n if 0 < n <= 65535 else None


def _launch(binary: str, args: List[str], parsed: _url.PgUrl, upstream_leg: str, host: str,
            port: int, key: Tuple, has_dashboard: bool, timeout: float,
            echo: bool) -> _Process:
    env = dict(os.environ)
    # In the environment, not argv: other users can read a command line, not an environment.
    env["PGVALET_UPSTREAM"] = upstream_leg
    deadline = time.monotonic() + timeout
    # L1 cache / ORM cache: will subscribe to the push channel (port + 2) once started.
    for group in range(MAX_GROUPS):
        p = port + group * PORT_GROUP
        if not _group_free(host, p):
            continue
        argv = [binary, "--port", str(p), *args]
        dport = _dashboard_port(args, env, p, has_dashboard)
        # the dashboard listens on loopback whatever --listen says
        dashboard_url = f"http://127.0.0.1:{dport}/" if dport else None
        process = _Process(key, _popen(argv, env), argv, host, p, parsed, dashboard_url, echo)
        try:
            process.wait_ready(deadline, timeout)
        except _PortTaken:
            process.terminate()
            continue
        except BaseException:
            process.terminate()
            raise
        if p != port:
            log.warning("pgvalet: port %d (or %d/%d) is taken; the proxy for %s listens on %d",
                        port, port + 1, port + 2, _url.display(parsed), p)
        return process
    raise ProxyError(f"no free port group found from {port} to "
                     f"{port + MAX_GROUPS * PORT_GROUP - 1} (steps of {PORT_GROUP})")


def stop() -> None:
    """Stop every proxy this process started, whatever handles remain."""
    with _lock:
        processes = list(_registry.values())
        _registry.clear()
    for process in processes:
        process.refs = 0
        process.terminate()


atexit.register(stop)
