"""A database made as `make run` makes it has a partitioned history, and the Procfile's
scheduler and worker keep its months: ahead made, past retention dropped."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest

from models.months import add_months, month_of
from models.partitions import partition_name
from scripts.procs import migrated_database
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e

CURRENT = month_of(datetime.now(UTC).date())


def _tables(cur) -> set[str]:
    cur.execute(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'history'::regclass"""
    )
    return {r[0] for r in cur.fetchall()}


def test_fresh_database_has_partitioned_history_kept_by_the_scheduler(scratch_dsn, tmp_path: Path):
    migrated_database(scratch_dsn)
    conn = psycopg2.connect(scratch_dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(
        """SELECT partstrat, a.attname FROM pg_partitioned_table p
           JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
           WHERE p.partrelid = 'history'::regclass"""
    )
    assert cur.fetchone() == ("r", "at")
    ahead = {partition_name(add_months(CURRENT, n)) for n in range(3)}
    assert _tables(cur) == ahead | {"history_default"}

    # A month ahead missing, and one older than retention: the scheduler's first tick
    # has the worker make the one and drop the other.
    old = partition_name(add_months(CURRENT, -3))
    cur.execute(f"DROP TABLE {partition_name(add_months(CURRENT, 2))}")
    cur.execute(
        f"""CREATE TABLE {old} PARTITION OF history FOR VALUES
            FROM ('{add_months(CURRENT, -3)} 00:00+00') TO ('{add_months(CURRENT, -2)} 00:00+00')"""
    )
    stack = Stack(tmp_path, DATABASE_DSN=scratch_dsn, HISTORY_RETENTION_MONTHS="2")
    # The worker says what it did: the month ahead made, the one past retention dropped.
    said = (
        f"created ['{add_months(CURRENT, 2):%Y-%m}'] (0 events moved from the default), "
        f"dropped ['{add_months(CURRENT, -3):%Y-%m}']"
    )
    try:
        stack.start("worker")
        stack.start("scheduler")
        wait_for(lambda: said in stack.log("worker"), 60, "the worker's maintenance")
        assert _tables(cur) == ahead | {"history_default"}
    finally:
        stack.close()
        conn.close()
