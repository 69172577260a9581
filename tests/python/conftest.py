"""Fixtures for the pgvalet Python package tests.

A throwaway Postgres (scripts/pg-cluster, wal_level logical) per session, with a
`users` table and a role whose name and password need percent-encoding.  After
every test, every proxy this process started is stopped and checked gone.
"""
import os
import signal

import pytest
import sqlalchemy

from pgvtest import ODD_PASSWORD, ODD_USER, Cluster, free_group, proxy_children

import pgvalet  # noqa: E402  (pgvtest puts python/ on sys.path)
from pgvalet import _process  # noqa: E402


def _sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")  # so fixtures stop clusters and proxies


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _sigterm)
    # make test runs this suite once per SQLAlchemy line; a lane that silently
    # imported the other one would test nothing new.
    lane = os.environ.get("PGVALET_TEST_SQLALCHEMY")
    if lane and not (sqlalchemy.__version__ + ".").startswith(lane + "."):
        raise pytest.UsageError(f"PGVALET_TEST_SQLALCHEMY={lane} but SQLAlchemy "
                                f"{sqlalchemy.__version__} was imported from {sqlalchemy.__file__}")


def pytest_report_header(config):
    return f"SQLAlchemy {sqlalchemy.__version__} ({os.path.dirname(sqlalchemy.__file__)})"


@pytest.fixture(scope="session")
def pg():
    cluster = Cluster("logical")
    try:
        cluster.sql("CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL)")
        cluster.sql("INSERT INTO users (email) VALUES ('ann@example.com'), ('bob@example.com'), "
                    "('cy@other.org')")
        cluster.sql(f'CREATE ROLE "{ODD_USER}" LOGIN SUPERUSER REPLICATION PASSWORD %s',
                    ODD_PASSWORD)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_replica():
    """A second cluster with wal_level = replica (pgvalet refuses it by default)."""
    cluster = Cluster("replica")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def port():
    return free_group()


@pytest.fixture(autouse=True)
def no_leftover_proxies():
    yield
    registered = list(_process._registry.values())
    pgvalet.stop()
    assert not proxy_children(), "a pgvalet child outlived pgvalet.stop()"
    assert not any(p.alive() for p in registered)


@pytest.fixture
def users(pg):
    return sorted(r[0] for r in pg.sql("SELECT email FROM users"))
