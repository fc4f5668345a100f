"""Read routing against a real streaming replica (the ``streaming_pair`` fixture), in
this process: the lag check is run step by step (``LagMonitor.check``) so the routing
between two checks is known."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextvars import copy_context

import psycopg2
import pytest

from models import memberships, reads, segments, users
from models.infra.db import begin_read_your_writes, db, replica
from models.infra.replica import LagMonitor, Side, router
from models.infra.settings import load_settings
from tests.conftest import STUB_BROKER, TEST_DB
from workers.boot import bootstrap

pytestmark = pytest.mark.slow

MAX_LAG_MS = 500


def _cursor(dsn: str):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn.cursor()


@pytest.fixture
def on_pair(request: pytest.FixtureRequest, streaming_pair) -> Iterator[LagMonitor]:
    """This process booted on the pair; a lag monitor whose checks the test runs. The
    largest lag allowed is MAX_LAG_MS unless the test passes another (indirect)."""
    settings = dataclasses.replace(
        load_settings(),
        database_dsn=streaming_pair.dsn("primary", TEST_DB),
        database_replica_dsn=streaming_pair.dsn("replica", TEST_DB),
        replica_max_lag_ms=getattr(request, "param", MAX_LAG_MS),
    )
    bootstrap(settings, STUB_BROKER)
    router.configure(settings.replica_max_lag_ms)
    monitor = LagMonitor(settings)
    yield monitor
    monitor.stop()
    router.configure(None)
    bootstrap(load_settings(), STUB_BROKER)


def _in_request(fn, *args):
    """``fn`` in a request of its own, as web/middleware.py scopes one."""

    def run():
        begin_read_your_writes()
        return fn(*args)

    return copy_context().run(run)


def _caught_up(monitor: LagMonitor) -> None:
    deadline = time.monotonic() + 10
    while monitor.check().lag_ms != 0:
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.05)


def test_a_request_reads_its_own_write_while_others_read_the_replica(on_pair, streaming_pair):
    uid = 7_100_001
    segments.create_segment("RYW_A", 0)
    users.create_user(uid)
    _caught_up(on_pair)
    # Idle since: the replica's last replayed commit grows old, its lag stays 0.
    time.sleep(MAX_LAG_MS * 2 / 1000)
    assert on_pair.check().lag_ms == 0 and router.reads_from() is replica

    standby = _cursor(streaming_pair.dsn("replica", TEST_DB))
    standby.execute("SELECT pg_wal_replay_pause()")
    try:

        def write_then_read():
            memberships.change_memberships(uid, add=["RYW_A"])
            return reads.user_segments(uid)

        assert _in_request(write_then_read) == ["RYW_A"]
        # Another request, before the next check, reads the replica: replay is paused.
        assert _in_request(reads.user_segments, uid) == []
        assert _in_request(memberships.user_memberships, uid) == []

        time.sleep(MAX_LAG_MS * 1.5 / 1000)
        check = on_pair.check()
        assert check.lag_ms > MAX_LAG_MS and router.reads_from() is db
        status = router.status()
        assert status.serving is Side.PRIMARY and "> REPLICA_MAX_LAG_MS" in status.reason
        assert _in_request(reads.user_segments, uid) == ["RYW_A"]
    finally:
        standby.execute("SELECT pg_wal_replay_resume()")
        standby.connection.close()

    _caught_up(on_pair)
    assert router.status().serving is Side.REPLICA
    assert _in_request(reads.users_segments, [uid])[0].segments == ["RYW_A"]


# Stopping the replica takes longer than MAX_LAG_MS: allow more, so the last check
# still routes to the replica when it is gone.
@pytest.mark.parametrize("on_pair", [60_000], indirect=True)
def test_a_read_the_replica_fails_runs_on_the_primary(on_pair, streaming_pair):
    uid = 7_100_002
    users.create_user(uid)
    _caught_up(on_pair)
    streaming_pair.stop_replica()
    try:
        # Routed to the replica by the last check; the read fails there, then succeeds
        # on the primary, and the primary serves until the next check.
        assert router.reads_from() is replica
        assert users.user_exists(uid)
        assert router.reads_from() is db
        assert "read failed" in router.status().reason
        check = on_pair.check()
        assert check.lag_ms is None and "replica unreachable" in check.problem
        assert reads.user_segments(uid) == []
    finally:
        streaming_pair.start_replica()
    _caught_up(on_pair)
    assert router.reads_from() is replica and reads.user_segments(uid) == []
