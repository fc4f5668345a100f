"""What every tier shares: the run's names, the StubBroker, the database fixtures.

The services themselves (real PostgreSQL and Redis) are started by tests/services.py for
the integration and e2e tests only; the unit tests run with none. Tests get a database
of their own, created fresh for the run, and a Redis database number of their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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
SERVER_DSN = pytest.StashKey[str]()
STUB_BROKER = StubBroker()


def _admin(server_dsn: str, *statements: str) -> None:
    conn = psycopg2.connect(server_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def pytest_unconfigure(config: pytest.Config) -> None:
    server_dsn = config.stash.get(SERVER_DSN, None)
    if server_dsn:
        from models.infra.db import db

        db.close_all()
        _admin(server_dsn, f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")
        import redis

        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        keys = list(client.scan_iter(f"*{TEST_DB}*"))  # the soak prefixes its own
        if keys:
            client.delete(*keys)


TABLES = (
    "webhooks, import_keys, import_staging, import_upload_batches, history, jobs, "
    "segment_opt_outs, memberships, segments, users, console_sessions, audit, api_keys, "
    "schedule_steps, layer_buckets, layers"
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
    from models.infra.settings import load_settings
    from workers.boot import bootstrap

    bootstrap(load_settings(), STUB_BROKER)
    server_sql.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def stub_broker() -> Iterator[StubBroker]:
    """A StubBroker of the test's own, the process's broker for the test: what the code
    under test sends waits on its queues (``stub_broker.queues["jobs"]``) until the test
    runs it (tests/integration/jobs.py)."""
    import dramatiq

    from workers.broker import declare_actors

    broker = StubBroker()
    declare_actors(broker)
    dramatiq.set_broker(broker)
    yield broker
    dramatiq.set_broker(STUB_BROKER)


def empty_tables(cur: psycopg2.extensions.cursor) -> None:
    """What ``TRUNCATE`` of TABLES with ``RESTART IDENTITY`` does, in one round trip and
    about a tenth of the time on tables this small (TRUNCATE makes new files for every
    table and index: 200-400 ms a test). Foreign keys are not checked while it runs
    (session_replication_role), so the order of TABLES does not matter."""
    cur.execute(
        "DO $$ DECLARE seq text; BEGIN "
        "SET LOCAL session_replication_role = replica; "
        + "".join(f"DELETE FROM {table}; " for table in TABLES.split(", "))
        + "FOR seq IN SELECT oid::regclass::text FROM pg_class WHERE relkind = 'S' "
        "AND relname <> 'migratehistory_id_seq' LOOP "
        "EXECUTE format('ALTER SEQUENCE %s RESTART', seq); END LOOP; END $$"
    )


@pytest.fixture
def clean_db(sql) -> None:
    empty_tables(sql)


@pytest.fixture
def app_with():
    """``app_with(**changes)``: the app on the test settings with ``changes``; the
    process boots back to the test settings afterwards."""
    import dataclasses

    from models.infra.settings import load_settings
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
        from tests.services import missing

        missing("no PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) found")
    pair = StreamingPair(bindir)
    try:
        pair.start()
        dsn = pair.create_database(TEST_DB)
        # In a process of its own: migrating here would re-boot this one's pool.
        subprocess.run(
            [sys.executable, "-m", "models.infra.migrate"],
            env={**os.environ, "DATABASE_DSN": dsn},
            check=True,
            capture_output=True,
        )
        yield pair
    finally:
        pair.stop()
