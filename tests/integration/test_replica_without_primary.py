"""The replica lag check with the primary gone (a failover in progress): a standby that
has replayed all it received goes on serving reads (docs/decisions/0085)."""

from __future__ import annotations

import os

from models.infra.db import replica
from models.infra.replica import LagMonitor, Side, router
from models.infra.settings import load_settings
from tests.conftest import TEST_DB


def test_with_the_primary_gone_a_caught_up_replica_serves_the_reads(streaming_pair):
    env = {
        **os.environ,
        "DATABASE_DSN": streaming_pair.dsn("primary", TEST_DB),
        "DATABASE_REPLICA_DSN": streaming_pair.dsn("replica", TEST_DB),
    }
    settings = load_settings(env)
    router.configure(settings.replica_max_lag_ms)
    monitor = LagMonitor(settings)
    try:
        assert monitor.check().lag_ms is not None
        streaming_pair.stop_primary()
        try:
            check = monitor.check()
            status = router.status()
        finally:
            streaming_pair.start_primary()
        assert check.lag_ms == 0.0 and "primary unreachable" in check.note
        assert status.serving is Side.REPLICA and status.reason == check.note
        assert router.reads_from() is replica
        # Back with a primary: measured against it again.
        assert monitor.check().note is None
    finally:
        monitor.stop()
        router.configure(None)
