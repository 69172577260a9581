"""The binary's options from --help, config -> flags, and finding the binary."""
import os
from datetime import timedelta
from pathlib import Path

import pytest

import pgvalet
from pgvalet import _options

HELP = """\
Usage: pgvalet --upstream URL [options]

Options (--name value or --name=value):
  -u, --upstream URL
        the server: postgresql://user:password@host:port/dbname
  -p, --port N
        TCP port to accept clients on
      --pool-mode session|transaction
        hold a server connection for the whole client session
      --pool-size N
        server connections per user/database pair
      --debug-skip-invalidation 0|1
        TESTING ONLY
      --tls on|off
        made up, for the on/off spelling
      --daemon
        made up: a switch
  -v, --verbose N
        log more: -v, -vv, ... or --verbose N (0..5)
  -c, --config PATH
        ini file
  -h, --help
        print this help and exit
"""

OPTS = _options.parse_help(HELP)
BIN = "/opt/pgvalet"


def args(config=None, **kw):
    return _options.build_args(BIN, OPTS, config, **kw)


def test_parse_help():
    assert list(OPTS) == ["upstream", "port", "pool-mode", "pool-size", "debug-skip-invalidation",
                          "tls", "daemon", "verbose", "config", "help"]
    assert OPTS["verbose"] == _options.Option("verbose", "v", "N")
    assert OPTS["pool-mode"].choices == ("session", "transaction")
    assert OPTS["daemon"].metavar is None and OPTS["pool-size"].choices == ()


def test_real_binary_options():
    opts = _options.binary_options(pgvalet.find_binary())
    for name in ("upstream", "port", "pool-size", "pool-mode", "verbose", "cache-size"):
        assert name in opts
    assert opts["pool-size"].metavar == "N"
    assert _options.binary_options(pgvalet.find_binary()) is opts  # cached


def test_snake_and_kebab_case_and_types():
    assert args({"pool_size": 50, "pool-mode": "session"}) == [
        "--pool-size", "50", "--pool-mode", "session"]
    assert args({"debug_skip_invalidation": True, "tls": False}) == [
        "--debug-skip-invalidation", "1", "--tls", "off"]
    assert args({"daemon": True}) == ["--daemon"]
    assert args({"daemon": False, "pool_size": None}) == []
    assert args({"pool_size": timedelta(seconds=1.5)}) == ["--pool-size", "1500ms"]
    assert args({"pool_size": Path("/x")}) == ["--pool-size", "/x"]
    assert args({"pool_size": -1}) == ["--pool-size", "-1"]


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        args({"pool_sise": 5})
    msg = str(err.value)
    assert "'pool_sise'" in msg
    assert "pool_size, tls, verbose" in msg
    assert "upstream" not in msg and "help" not in msg and "config" not in msg.split(":")[-1]


@pytest.mark.parametrize("key", ["upstream", "port", "config", "help"])
def test_reserved_keys(key):
    with pytest.raises(ValueError, match="not allowed"):
        args({key: "x"})


def test_bad_values():
    with pytest.raises(ValueError, match="twice"):
        args({"pool_size": 1, "pool-size": 2})
    with pytest.raises(TypeError, match="switch"):
        args({"daemon": "yes"})
    with pytest.raises(TypeError, match="list"):
        args({"pool_size": [1]})


def test_mode_log_level_dashboard_map_onto_options():
    opts = dict(OPTS, **_options.parse_help("  --mode M\n  --dashboard-port N\n"))
    assert _options.build_args(BIN, opts, None, mode="optimize", log_level="debug",
                               dashboard_port=7933) == [
        "--mode", "optimize", "--verbose", "1", "--dashboard-port", "7933"]
    assert args(log_level=3) == ["--verbose", "3"]
    assert args(log_level="TRACE") == ["--verbose", "2"]
    assert args(log_level="info") == ["--verbose", "0"]
    with pytest.raises(ValueError, match="both set --verbose"):
        args({"verbose": 1}, log_level=2)
    with pytest.raises(ValueError, match="log_level 'warning'"):
        args(log_level="warning")


def test_missing_options_say_so():
    with pytest.raises(ValueError, match=r"\(/opt/pgvalet\) has no --mode option .*optimizer.*"
                                         r"its settings are: .*pool_size"):
        args(mode="optimize")
    with pytest.raises(ValueError, match="no --dashboard-port option"):
        args(dashboard_port=7933)
    with pytest.raises(ValueError, match="no --verbose option"):
        _options.build_args(BIN, {"pool-size": OPTS["pool-size"]}, None, log_level=1)


def test_binary_from_env(monkeypatch, tmp_path):
    real = pgvalet.find_binary()
    monkeypatch.setenv("PGVALET_BINARY", real)
    assert pgvalet.find_binary() == real
    monkeypatch.setenv("PGVALET_BINARY", str(tmp_path / "nope"))
    with pytest.raises(pgvalet.ProxyError, match="PGVALET_BINARY=.*nope is not an executable"):
        pgvalet.find_binary()


def test_binary_search_order(monkeypatch):
    monkeypatch.delenv("PGVALET_BINARY", raising=False)
    root = Path(pgvalet.__file__).resolve().parents[2]
    if (Path(pgvalet.__file__).parent / "bin" / "pgvalet").exists():
        pytest.skip("a binary is shipped inside the package")
    assert pgvalet.find_binary() == str(root / "build" / "pgvalet")


def test_binary_not_found_lists_where_it_looked(monkeypatch):
    from pgvalet import _process
    monkeypatch.delenv("PGVALET_BINARY", raising=False)
    monkeypatch.setattr(_process, "_PACKAGE_DIR", Path("/nonexistent/python/pgvalet"))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pgvalet.ProxyError) as err:
        pgvalet.find_binary()
    msg = str(err.value)
    for where in ("$PGVALET_BINARY", "/nonexistent/python/pgvalet/bin/pgvalet",
                  "/nonexistent/build/pgvalet", "on PATH"):
        assert where in msg


def test_help_failure_is_reported(tmp_path):
    fake = tmp_path / "pgvalet"
    fake.write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(RuntimeError, match="exit status 3.*broken"):
        _options.binary_options(str(fake))
    assert os.access(fake, os.X_OK)
