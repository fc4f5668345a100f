"""The hot reads: the segments of one user, or of many, as other services ask for them
on their own hot path.

Each statement is prepared once per pooled connection (``Pool.prepare_on_connect``) and
run with ``EXECUTE``: with psycopg2's simple protocol, planning costs about as much as
the query itself (docs/benchmarks.md). Names sort in byte order (``COLLATE "C"``), as
Python sorts them, whatever the database's collation.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.infra.db import DISCONNECTED, Pool, connection_lost, db, fetchall, fetchone, replica
from models.infra.replica import REPLICA_FAILED, replica_read, router
from models.tables import Membership

_NAMES = f"""ARRAY(SELECT s.name FROM memberships m
                   JOIN segments s ON s.id = m.segment_id
                   WHERE m.user_id = u.id AND {Membership.LIVE_SQL}
                   ORDER BY s.name COLLATE "C")"""

LOOP_STATEMENT_TIMEOUT_MS = 2000

# name -> statement, for PREPARE on every new connection (``prepare_hot_reads``).
STATEMENTS = {
    "read_user_segments(bigint)": f"SELECT {_NAMES} FROM users u WHERE u.id = $1",
    # One pass over the memberships of every listed user, grouped, rather than the
    # single read's subquery once per user: about a quarter less database time for 100
    # ids (docs/benchmarks.md).
    "read_users_segments(bigint[])": f"""
        SELECT u.id, coalesce(g.names, '{{}}')
        FROM users u
        LEFT JOIN (SELECT m.user_id, array_agg(s.name ORDER BY s.name COLLATE "C") AS names
                   FROM memberships m JOIN segments s ON s.id = m.segment_id
                   WHERE m.user_id = ANY($1) AND {Membership.LIVE_SQL}
                   GROUP BY m.user_id) g ON g.user_id = u.id
        WHERE u.id = ANY($1) ORDER BY u.id""",
}


def prepare_hot_reads() -> None:
    """Every connection of the primary's and the replica's pools prepares the hot reads
    (once per physical connection). Called by the boot of every process."""
    for pool in (db, replica):
        pool.prepare_on_connect(STATEMENTS)


@dataclass(frozen=True)
class UserSegments:
    id: int
    segments: list[str]


def _user_segments(user_id: int) -> list[str] | None:
    row = fetchone("EXECUTE read_user_segments(%s)", (user_id,))
    return None if row is None else row[0]


user_segments = replica_read(_user_segments)
user_segments.__doc__ = "The user's live segment names, sorted; ``None`` for an unknown user."


class OffLoop(Exception):
    """The loop's kept connection was lost: connecting anew could block the loop for a
    connect timeout per unreachable host (a frozen or vanished primary), so the read goes
    to a thread instead (``user_segments_off_loop``) until one succeeds there."""


class _Loop:
    __slots__ = ("lost",)

    def __init__(self) -> None:
        self.lost = False


_loop = _Loop()


def user_segments_in_loop(user_id: int) -> list[str] | None:
    """``user_segments`` for the event loop's thread, which serves it all the time: the
    thread keeps a pooled connection open between requests instead of a checkout and a
    return per request, one to each side reads go to (models/infra/replica.py). The pool holds
    one connection spare for it (web/app.py). Raises OffLoop while the database is out
    of reach: the caller reads with ``user_segments_off_loop`` on a thread."""
    if _loop.lost:
        raise OffLoop
    if router.reads_from() is replica:
        try:
            return _kept_read(replica, user_id)
        except REPLICA_FAILED as exc:
            router.failed(exc)
    return _kept_read(db, user_id)


def user_segments_off_loop(user_id: int) -> list[str] | None:
    """``user_segments`` on a thread, while the loop's kept connection is lost; once it
    succeeds, the loop reads (and reconnects) itself again."""
    names = user_segments(user_id)
    _loop.lost = False
    return names


def _kept_read(pool: Pool, user_id: int) -> list[str] | None:
    try:
        return _execute_kept(pool, user_id)
    except DISCONNECTED:
        # Dropped by the server since the last read (a restart, a failover), or cut by
        # the watchdog (models/infra/watchdog.py): give it back, close the idle ones that died
        # with it, and read on a thread until the database answers there. A connect
        # that failed (the pool stays closed) is the same: the next could block too.
        if not (pool.is_closed() or connection_lost(pool)):
            raise
    pool.close()
    pool.close_idle()
    _loop.lost = True
    raise OffLoop


def _execute_kept(pool: Pool, user_id: int) -> list[str] | None:
    if pool.is_closed() or pool.connection().closed:
        if not pool.is_closed():
            pool.close()  # dropped by the server: back to the pool, which discards it
        pool.connect()
        # A read stuck in the database stalls every request of this process: bound it.
        pool.execute_sql(f"SET statement_timeout = {LOOP_STATEMENT_TIMEOUT_MS}")
    # The driver's cursor directly: peewee's execute_sql costs ~5 us more per call, and
    # this connection is in autocommit with nothing of peewee's state to keep.
    with pool.connection().cursor() as cur:
        cur.execute("EXECUTE read_user_segments(%s)", (user_id,))
        row = cur.fetchone()
    return None if row is None else row[0]


@replica_read
def users_segments(user_ids: list[int]) -> list[UserSegments]:
    """The known users among ``user_ids`` with their live segments, ascending id, in one
    round trip."""
    rows = fetchall("EXECUTE read_users_segments(%s::bigint[])", (user_ids,))
    return [UserSegments(uid, names) for uid, names in rows]
