"""The read replica (DATABASE_REPLICA_DSN): how far behind it is, and where reads go.

Each web process runs a ``LagMonitor`` thread that measures the replica's lag every
REPLICA_MAX_LAG_MS / 4 (at most every 200 ms) on two connections of its own; a read asks
``router.reads_from()``, which answers from memory. Lag is the age of the oldest write
the replica may be missing, measured against the primary's WAL position so an idle
primary is not mistaken for a lagging replica (README Decisions, "Read replica").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import ParamSpec, TypeVar

import peewee
import psycopg2

from models.infra import watchdog
from models.infra.db import Pool, db, read_on, reading_from, replica, wrote_in_scope
from models.infra.settings import Settings

log = logging.getLogger("models.infra.replica")
P = ParamSpec("P")
R = TypeVar("R")

CHECK_INTERVAL = 0.2  # seconds, at most
# A read that raises one of these on the replica runs again on the primary: the server
# went away, or cancelled the query (a recovery conflict, a statement timeout).
REPLICA_FAILED = (
    peewee.OperationalError,
    peewee.InterfaceError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
)
CHECK_TIMEOUT_MS = 1000
_REPLAYED_ALL = """SELECT pg_is_in_recovery(),
                          pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()"""
# Whether the replica has replayed the WAL the primary had written now, and one check
# ago; and how long ago the last transaction it replayed committed on the primary.
_REPLICA_LAG = """SELECT pg_is_in_recovery(),
                         pg_last_wal_replay_lsn() >= %(now)s::pg_lsn,
                         pg_last_wal_replay_lsn() >= %(before)s::pg_lsn,
                         1000 * extract(epoch FROM now() - pg_last_xact_replay_timestamp())"""


class Side(StrEnum):
    PRIMARY = "primary"
    REPLICA = "replica"


@dataclass(frozen=True)
class Check:
    """One measurement: the lag, or why there is none; ``at`` is a monotonic time;
    ``note`` replaces the lag in the status's reason when the lag was not measured."""

    lag_ms: float | None
    problem: str | None
    at: float
    note: str | None = None


@dataclass(frozen=True)
class ReplicaStatus:
    configured: bool
    serving: Side
    reason: str
    lag_ms: float | None


class Router:
    """Where this process's reads go: the replica while its last measured lag, plus the
    time since that measurement, is at most REPLICA_MAX_LAG_MS; else the primary."""

    def __init__(self) -> None:
        self.max_lag_ms = 0.0
        self.configured = False
        self._check: Check | None = None

    def configure(self, max_lag_ms: float | None) -> None:
        self.configured = max_lag_ms is not None
        self.max_lag_ms = max_lag_ms or 0.0
        self._check = None

    def record(self, check: Check) -> None:
        self._check = check  # one reference swap: readers on other threads need no lock

    def failed(self, exc: BaseException) -> None:
        """A read on the replica failed: the primary serves until the next check."""
        log.warning("read on the replica failed, using the primary: %s", type(exc).__name__)
        self.record(Check(None, f"read failed: {type(exc).__name__}", time.monotonic()))

    def reads_from(self) -> Pool:
        check = self._check
        if check is None or check.lag_ms is None:
            return db
        return replica if _lag_now(check) <= self.max_lag_ms else db

    def status(self) -> ReplicaStatus:
        if not self.configured:
            return ReplicaStatus(False, Side.PRIMARY, "no replica configured", None)
        check = self._check
        if check is None:
            return ReplicaStatus(True, Side.PRIMARY, "replica not checked yet", None)
        if check.lag_ms is None:
            return ReplicaStatus(True, Side.PRIMARY, check.problem or "lag unknown", None)
        # One reading of the clock for both the lag and the side, so they agree.
        lag_now = _lag_now(check)
        lag = round(lag_now, 1)
        if check.note is not None:
            return ReplicaStatus(True, Side.REPLICA, check.note, lag)
        if lag_now <= self.max_lag_ms:
            reason = f"lag {lag:g} ms <= REPLICA_MAX_LAG_MS {self.max_lag_ms:g}"
            return ReplicaStatus(True, Side.REPLICA, reason, lag)
        reason = f"lag {lag:g} ms > REPLICA_MAX_LAG_MS {self.max_lag_ms:g}"
        return ReplicaStatus(True, Side.PRIMARY, reason, lag)


def _lag_now(check: Check) -> float:
    """The lag the check measured plus the time since: the replica can only be further
    behind now."""
    return check.lag_ms + (time.monotonic() - check.at) * 1000


router = Router()


def replica_read(fn: Callable[P, R]) -> Callable[P, R]:
    """``read_only`` for a read the replica may serve: on the side ``router`` names,
    and on the primary inside a read-your-writes scope that wrote (it reads its own
    writes: ``begin_read_your_writes``) or while the caller already holds a primary
    connection. A read the replica fails (it went away between two checks) runs again
    on the primary; one on a dead primary connection runs again on a new one
    (``read_on``). Reads only: ``fn`` may run twice."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if db.is_closed() and not wrote_in_scope() and router.reads_from() is replica:
            try:
                with reading_from(replica):
                    return fn(*args, **kwargs)
            except REPLICA_FAILED as exc:
                router.failed(exc)
        return read_on(db, fn, *args, **kwargs)

    return wrapper


class LagMonitor:
    """The thread that measures the replica's lag and records it in ``router``;
    ``on_check`` gets the status after each check (web/metrics.py exports it)."""

    def __init__(
        self, settings: Settings, on_check: Callable[[ReplicaStatus], None] | None = None
    ) -> None:
        self.primary_params = _monitor_params(settings.connect_params())
        self.replica_params = _monitor_params(settings.replica_connect_params() or {})
        self.interval = min(CHECK_INTERVAL, settings.replica_max_lag_ms / 4000)
        self.on_check = on_check
        self._conns: dict[str, psycopg2.extensions.connection] = {}
        self._before: tuple[str, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for conn in self._conns.values():
            conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # keep checking; reads fall back to the primary meanwhile
                log.exception("replica lag check failed")
            self._stop.wait(self.interval)

    def check(self) -> Check:
        was_down = router.reads_from() is db
        try:
            check = self._measure()
        except psycopg2.OperationalError as exc:
            check = Check(None, str(exc), time.monotonic())
        router.record(check)
        status = router.status()
        if was_down != (status.serving is Side.PRIMARY):
            log.warning("reads now go to the %s: %s", status.serving.value, status.reason)
        if was_down and status.serving is Side.REPLICA:
            # Back after an outage: pooled connections from before it are dead.
            replica.close_idle()
        if self.on_check is not None:
            self.on_check(status)
        return check

    def _measure(self) -> Check:
        try:
            with self._cursor("primary", self.primary_params) as cur:
                cur.execute("SELECT pg_current_wal_lsn()::text")
                (lsn,) = cur.fetchone()
        except psycopg2.OperationalError:
            return self._without_primary()
        at = time.monotonic()
        before_lsn, before_at = self._before or (lsn, at)
        self._before = (lsn, at)
        with self._cursor("replica", self.replica_params) as cur:
            cur.execute(_REPLICA_LAG, {"now": lsn, "before": before_lsn})
            standby, caught_up, caught_up_before, since_replay_ms = cur.fetchone()
        if not standby:
            return Check(None, "not a standby: pg_is_in_recovery() is false", at)
        if caught_up:
            return Check(0.0, None, at)
        # Behind: no staler than its last replayed commit, nor than the WAL it had
        # replayed at the previous check (the missing WAL is younger than that check).
        lag = math.inf if since_replay_ms is None else float(since_replay_ms)
        if caught_up_before:
            lag = min(lag, (at - before_at) * 1000)
        return Check(lag, None, at)

    def _without_primary(self) -> Check:
        """The primary is out of reach (a failover): nothing can be acknowledged until a
        new one is promoted, so a standby that has replayed all the WAL it received (in
        synchronous mode: every acknowledged commit) serves reads (docs/failover.md)."""
        with self._cursor("replica", self.replica_params) as cur:
            cur.execute(_REPLAYED_ALL)
            standby, replayed = cur.fetchone()
        self._before = None  # the next check with a primary starts afresh
        if not (standby and replayed):
            raise psycopg2.OperationalError("primary unreachable")
        note = "primary unreachable; the replica has replayed all the WAL it received"
        return Check(0.0, None, time.monotonic(), note)

    @contextlib.contextmanager
    def _cursor(self, side: str, params: dict) -> Iterator[psycopg2.extensions.cursor]:
        conn = self._conns.get(side)
        try:
            if conn is None or conn.closed:
                conn = self._conns[side] = watchdog.connect(params)
                conn.autocommit = True
            with conn.cursor() as cur:
                yield cur
        except psycopg2.Error as exc:
            if conn is not None:
                conn.close()  # the next check connects afresh
            raise psycopg2.OperationalError(f"{side} unreachable: {type(exc).__name__}") from None


def _monitor_params(params: dict[str, str]) -> dict[str, str]:
    options = f"{params.get('options', '')} -c statement_timeout={CHECK_TIMEOUT_MS}"
    return {
        **params,
        "connect_timeout": "2",  # libpq's least
        "application_name": "segments-replica-lag",
        "options": options.strip(),
    }


_monitor: LagMonitor | None = None


def start_monitor(
    settings: Settings, on_check: Callable[[ReplicaStatus], None] | None = None
) -> None:
    """Route this process's reads by the replica's lag (a no-op without a replica)."""
    global _monitor
    stop_monitor()
    if settings.database_replica_dsn is None:
        return
    router.configure(settings.replica_max_lag_ms)
    _monitor = LagMonitor(settings, on_check)
    _monitor.start()


def stop_monitor() -> None:
    global _monitor
    if _monitor is not None:
        _monitor.stop()
        _monitor = None
    router.configure(None)
