"""The services the integration and e2e tests run on, started only for them.

``tests/unit`` needs none: its tests run with no PostgreSQL, Redis or RabbitMQ. The
conftest of ``tests/integration`` and of ``tests/e2e`` calls ``start`` when pytest first
collects from them, so a run of the unit tests alone starts nothing.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import psycopg2.extensions
import pytest

from tests.conftest import SERVER_DSN, STUB_BROKER, TEST_DB

TEST_REDIS_DB = 15


def _run_dsn(server_dsn: str) -> str:
    params = psycopg2.extensions.parse_dsn(server_dsn)
    params["dbname"] = TEST_DB
    return psycopg2.extensions.make_dsn(**params)


def _run_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        # Not urlunsplit: it would drop the empty authority and write "unix:/path".
        return f"unix://{parts.path}?db={TEST_REDIS_DB}"
    return urlunsplit(parts._replace(path=f"/{TEST_REDIS_DB}"))


def start(config: pytest.Config) -> None:
    """PostgreSQL and Redis: the ones named by DATABASE_DSN / REDIS_URL, else the local
    defaults, else embedded ones (scripts/devservices.py); a fresh database of the run's
    own, migrated; this process booted on it with the StubBroker. Once per run."""
    if os.environ.get("SEGMENTS_TEST_READY"):
        return
    from scripts.devservices import ensure_services

    # Stacks run on the test Redis unless a test asks for RabbitMQ (tests/brokers.py).
    os.environ.pop("BROKER_URL", None)
    services = ensure_services(prefer_local=True)
    config.stash[SERVER_DSN] = services["DATABASE_DSN"]
    os.environ["DATABASE_DSN"] = _run_dsn(services["DATABASE_DSN"])
    os.environ["REDIS_URL"] = _run_redis_url(services["REDIS_URL"])
    os.environ["QUEUE_NAMESPACE"] = TEST_DB
    os.environ.setdefault("BATCH_SIZE", "1000")
    os.environ["SEGMENTS_TEST_READY"] = "1"

    from models.infra.settings import load_settings
    from scripts.procs import migrated_database
    from workers.boot import bootstrap

    migrated_database(os.environ["DATABASE_DSN"], fresh=True)
    # In-process code sends to Dramatiq's StubBroker and runs actors with its Worker
    # (tests/integration/jobs.py); the e2e tests run real workers on real Redis.
    bootstrap(load_settings(), STUB_BROKER)


def missing(reason: str) -> None:
    """A service or binary a test needs is not here: skip the test, but fail it under
    CI=true, where everything must be installed (a skipped test proves nothing)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(reason)
