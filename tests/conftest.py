"""Test services: real PostgreSQL and Redis.

The ones named by DATABASE_DSN / REDIS_URL, else the local defaults, else embedded ones
(scripts/devservices.py). Tests get a database of their own, created fresh for the run,
and a Redis database number of their own, flushed at start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
import pytest
from dramatiq.brokers.stub import StubBroker
from hypothesis import settings

# CI replays the same generated examples every run, so a landing is never decided by
# a lucky draw; local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Per run, so two test runs on one machine never share (or drop) each other's data.
TEST_DB = f"segments_test_{os.getpid()}"
TEST_REDIS_DB = 15
SERVER_DSN = pytest.StashKey[str]()
STUB_BROKER = StubBroker()


def _test_dsn(server_dsn: str) -> str:
    params = psycopg2.extensions.parse_dsn(server_dsn)
    params["dbname"] = TEST_DB
    return psycopg2.extensions.make_dsn(**params)


def _test_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        # Not urlunsplit: it would drop the empty authority and write "unix:/path".
        return f"unix://{parts.path}?db={TEST_REDIS_DB}"
    return urlunsplit(parts._replace(path=f"/{TEST_REDIS_DB}"))


def _admin(server_dsn: str, *statements: str) -> None:
    conn = psycopg2.connect(server_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def pytest_configure(config: pytest.Config) -> None:
    # Runs before test modules are imported; the environment set here is what the e2e
    # tests' processes inherit.
    if os.environ.get("SEGMENTS_TEST_READY"):
        return
    from scripts.devservices import ensure_services

    # Stacks run on the test Redis unless a test asks for RabbitMQ (tests/e2e/brokers.py).
    os.environ.pop("BROKER_URL", None)
    services = ensure_services(prefer_local=True)
    config.stash[SERVER_DSN] = services["DATABASE_DSN"]
    os.environ["DATABASE_DSN"] = _test_dsn(services["DATABASE_DSN"])
    os.environ["REDIS_URL"] = _test_redis_url(services["REDIS_URL"])
    os.environ["QUEUE_NAMESPACE"] = TEST_DB
    os.environ.setdefault("BATCH_SIZE", "1000")
    os.environ["SEGMENTS_TEST_READY"] = "1"

    from models.settings import load_settings
    from scripts.procs import migrated_database
    from workers.boot import bootstrap

    migrated_database(os.environ["DATABASE_DSN"], fresh=True)
    # In-process code sends to Dramatiq's StubBroker and runs actors with its Worker
    # (tests/integration/jobs.py); the e2e tests run real workers on real Redis.
    bootstrap(load_settings(), STUB_BROKER)


def pytest_unconfigure(config: pytest.Config) -> None:
    server_dsn = config.stash.get(SERVER_DSN, None)
    if server_dsn:
        from models.db import db

        db.close_all()
        _admin(server_dsn, f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")
        import redis

        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        keys = list(client.scan_iter(f"*{TEST_DB}*"))  # the soak prefixes its own
        if keys:
            client.delete(*keys)


TABLES = (
    "webhooks, import_keys, import_staging, history, jobs, segment_opt_outs, memberships, "
    "segments, users, console_sessions, schedule_steps, layer_buckets, layers"
)


@pytest.fixture
def sql() -> Iterator[psycopg2.extensions.cursor]:
    """A raw autocommit cursor on the test database, for arranging and checking rows."""
    conn = psycopg2.connect(os.environ["DATABASE_DSN"])
    conn.autocommit = True
    with conn.cursor() as cur:
        yield cur
    conn.close()


@pytest.fixture
def server_sql(pytestconfig: pytest.Config) -> Iterator[psycopg2.extensions.cursor]:
    """An autocommit cursor on the server's own database, for statements that may not
    run inside the test database (ALTER DATABASE ... ALLOW_CONNECTIONS)."""
    conn = psycopg2.connect(pytestconfig.stash[SERVER_DSN])
    conn.autocommit = True
    with conn.cursor() as cur:
        yield cur
    conn.close()


@pytest.fixture
def scratch_dsn(server_sql) -> Iterator[str]:
    """An empty database of the test's own. A test may point this process's pool at it
    (``init_db``, ``migrated_database``); the process boots back to the test database."""
    name = f"segments_scratch_{os.getpid()}"
    server_sql.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    server_sql.execute(f'CREATE DATABASE "{name}"')
    params = psycopg2.extensions.parse_dsn(os.environ["DATABASE_DSN"])
    yield psycopg2.extensions.make_dsn(**{**params, "dbname": name})
    from models.settings import load_settings
    from workers.boot import bootstrap

    bootstrap(load_settings(), STUB_BROKER)
    server_sql.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def clean_db(sql) -> None:
    sql.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


@pytest.fixture
def app_with():
    """``app_with(**changes)``: the app on the test settings with ``changes``; the
    process boots back to the test settings afterwards."""
    import dataclasses

    from models.settings import load_settings
    from web.app import create_app
    from workers.boot import bootstrap

    def make(**changes):
        return create_app(dataclasses.replace(load_settings(), **changes), broker=STUB_BROKER)

    yield make
    bootstrap(load_settings(), STUB_BROKER)


@pytest.fixture(scope="session")
def streaming_pair(tmp_path_factory: pytest.TempPathFactory):
    """A primary and a streaming replica of it (scripts/pgpair.py) with the test
    database, migrated, on both; its DSNs are ``pair.dsn(side, TEST_DB)``."""
    import subprocess
    import sys

    from scripts.pgpair import StreamingPair, postgres_bin

    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) found")
    pair = StreamingPair(bindir)
    try:
        pair.start()
        dsn = pair.create_database(TEST_DB)
        # In a process of its own: migrating here would re-boot this one's pool.
        subprocess.run(
            [sys.executable, "-m", "models.migrate"],
            env={**os.environ, "DATABASE_DSN": dsn},
            check=True,
            capture_output=True,
        )
        yield pair
    finally:
        pair.stop()
