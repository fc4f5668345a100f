"""The monthly partitions of ``history`` (migration 005): made ahead, dropped past retention.

A partition holds one UTC month, ``[first day 00:00, first day of next month 00:00)``,
and is named ``history_YYYY_MM``; ``history_default`` takes any event no partition
covers, so an insert never fails for want of one. ``maintain`` runs on every scheduler
tick: it makes the current month and the next ``MONTHS_AHEAD``, and any earlier month
retention keeps that has events waiting in the default (written while the scheduler was
down). So the default only holds events further ahead, or older than retention; it is
outside retention itself. With retention, whole months older than it are detached and
dropped, never deleted row by row.

PostgreSQL refuses to create a partition while the default holds rows of its range, so
such a month is made in one transaction that locks ``history``, moves those rows into a
temporary table, creates the partition and inserts them back, ids and txids unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

import peewee
import psycopg2.errors

from models.infra.db import db, fetchall, unit_of_work
from models.months import add_months, month_of, month_start

log = logging.getLogger("models.partitions")

MONTHS_AHEAD = 2
PARTITION_NAME = re.compile(r"^history_(\d{4})_(\d{2})$")
DEFAULT_PARTITION = "history_default"
FIRST_MONTH = date(1, 1, 1)  # a partition's name holds a four-digit year
# Any constant: maintainers running at once take turns, so none creates a month twice.
MAINTENANCE_LOCK = 7_301_985_552
# A partition change needs an exclusive lock on history; waiting behind a long report
# would queue every insert behind it. Give up instead: the next tick tries again.
LOCK_TIMEOUT = "2s"

COLUMNS = "id, user_id, segment_id, operation, reason, at, txid, actor"


def kept_from(today: date, retention_months: int | None) -> date | None:
    """The first month retention keeps (None: all). The current month and the
    ``retention_months`` before it are kept, so an event is kept at least that long."""
    if retention_months is None:
        return None
    return add_months(month_of(today), -retention_months)


def partition_name(month: date) -> str:
    return f"history_{month.year:04d}_{month.month:02d}"


@dataclass
class Maintenance:
    created: list[date] = field(default_factory=list)
    moved: int = 0  # events moved out of the default into the months created
    dropped: list[date] = field(default_factory=list)


def monthly_partitions() -> list[date]:
    """The months that have a partition, oldest first."""
    rows = fetchall(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'history'::regclass"""
    )
    months = [PARTITION_NAME.match(name) for (name,) in rows]
    return sorted(date(int(m[1]), int(m[2]), 1) for m in months if m)


def _months_waiting_in_default(low: date, last: date) -> list[date]:
    """The months from ``low`` to ``last`` with events in the default."""
    rows = fetchall(
        f"""SELECT DISTINCT date_trunc('month', at AT TIME ZONE 'UTC')::date
            FROM {DEFAULT_PARTITION} WHERE at >= %s AND at < %s""",
        (month_start(low), month_start(add_months(last, 1))),
    )
    return [r[0] for r in rows]


def _lock() -> None:
    db.execute_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (MAINTENANCE_LOCK,))


@unit_of_work
def create_month(month: date) -> int | None:
    """Create ``month``'s partition, moving its events out of the default; returns how
    many moved, or None when it already existed."""
    _lock()
    if month in monthly_partitions():
        return None
    start, end = month_start(month), month_start(add_months(month, 1))
    # The lock CREATE ... PARTITION OF takes anyway, taken before the move so no insert
    # can land in the default between the move and the creation.
    db.execute_sql("LOCK TABLE history IN ACCESS EXCLUSIVE MODE")
    moved = db.execute_sql(
        f"""CREATE TEMPORARY TABLE history_moving ON COMMIT DROP AS
            WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE at >= %s AND at < %s
                           RETURNING {COLUMNS})
            SELECT * FROM moved""",
        (start, end),
    ).rowcount
    db.execute_sql(
        f"CREATE TABLE {partition_name(month)} PARTITION OF history FOR VALUES FROM (%s) TO (%s)",
        (start, end),
    )
    db.execute_sql(f"INSERT INTO history ({COLUMNS}) SELECT {COLUMNS} FROM history_moving")
    return moved


@unit_of_work
def drop_month(month: date) -> bool:
    """Detach and drop ``month``'s partition; False when there was none."""
    _lock()
    if month not in monthly_partitions():
        return False
    name = partition_name(month)
    db.execute_sql(f"ALTER TABLE history DETACH PARTITION {name}")
    db.execute_sql(f"DROP TABLE {name}")
    return True


R = TypeVar("R")


def _unless_busy(change: Callable[[date], R], month: date) -> R | None:
    """``change(month)``, or None when history stayed locked past LOCK_TIMEOUT."""
    try:
        return change(month)
    except peewee.OperationalError as exc:
        if not isinstance(getattr(exc, "orig", None), psycopg2.errors.LockNotAvailable):
            raise
        log.warning("history busy: %s of %s left to the next tick", change.__name__, month)
        return None


def _months_to_create(today: date, keep_from: date | None) -> list[date]:
    current = month_of(today)
    ahead = [add_months(current, n) for n in range(MONTHS_AHEAD + 1)]
    with db.connection_context():
        existing = monthly_partitions()
        waiting = _months_waiting_in_default(keep_from or FIRST_MONTH, ahead[-1])
    return sorted(set(ahead + waiting) - set(existing))


def maintain(today: date, retention_months: int | None) -> Maintenance:
    """Make the months ahead (and those with events waiting in the default); drop the
    months retention no longer keeps. Cheap when there is nothing to do: a catalog read
    and an index probe of the (usually empty) default."""
    done = Maintenance()
    keep_from = kept_from(today, retention_months)
    for month in _months_to_create(today, keep_from):
        moved = _unless_busy(create_month, month)
        if moved is not None:
            done.created.append(month)
            done.moved += moved
    if keep_from is not None:
        with db.connection_context():
            expired = [m for m in monthly_partitions() if m < keep_from]
        done.dropped = [m for m in expired if _unless_busy(drop_month, m)]
    return done
