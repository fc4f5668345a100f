"""Users: creation, with the auto segments a new user falls into.

The rule "a new user joins every live auto segment whose bucket it falls in" is
``_join_auto_segments``, run by ``create_user`` (POST /users) and ``create_users`` (an
import with create_users=true). The advisory lock below keeps it exact while segments
change: no assignment job misses a user created as it starts.
"""

from __future__ import annotations

from models.errors import Conflict
from models.events import change_with_events
from models.infra.db import db, reader, unit_of_work
from models.infra.replica import replica_read
from models.tables import Operation, Reason, User

# Serialises auto segment creation / percent changes (exclusive) against user creation
# (shared). Any constant works; it only has to be the same in every process.
AUTO_SEGMENTS_LOCK = 5_120_447_903

# Plain SQL on this write path, like a manual change's (models/memberships.py).
_CREATE = """INSERT INTO users (id) SELECT unnest(%s::bigint[]) ORDER BY 1
              ON CONFLICT DO NOTHING RETURNING id"""
_JOIN_AUTO = """INSERT INTO memberships (user_id, segment_id, source)
                SELECT u, s.id, 'auto' FROM unnest(%(users)s::bigint[]) u
                JOIN segments s ON s.deleted_at IS NULL AND s.auto_percent > 0
                 AND segment_bucket(s.salt, u) < (s.auto_percent * 100)::int
                RETURNING user_id, segment_id, %(reason)s AS reason,
                          clock_timestamp() AS at, true AS event"""
_JOINED_NAMES = (
    "SELECT s.name FROM changed JOIN segments s ON s.id = changed.segment_id "
    'ORDER BY s.name COLLATE "C"'
)


def hold_auto_segments_shared() -> None:
    """Taken by user creation: shared with other creations."""
    db.execute_sql("SELECT pg_advisory_xact_lock_shared(%s)", (AUTO_SEGMENTS_LOCK,))


def hold_auto_segments_exclusive() -> None:
    """Taken by auto segment creation, percent changes and deletion."""
    db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (AUTO_SEGMENTS_LOCK,))


def _join_auto_segments(users: list[int]) -> list[str]:
    """Add the new ``users`` to every live auto segment whose bucket each falls in, with
    their events. Returns the names of the segments joined, sorted."""
    rows = change_with_events(
        _JOIN_AUTO,
        {"users": users, "reason": Reason.AUTO.value},
        Operation.ADD,
        result=_JOINED_NAMES,
    )
    return [name for (name,) in rows]


def create_users(ids: list[int]) -> list[int]:
    """Create those of ``ids`` that do not exist yet, each in its auto segments; inside
    the caller's unit of work. Returns the ids created."""
    # Shared with other user creations, exclusive against auto segment creation and
    # percent changes: either these users are committed before such a job scans the
    # users, or this transaction sees the segment's new percentage. No user is missed.
    hold_auto_segments_shared()
    created = [row[0] for row in db.execute_sql(_CREATE, (ids,)).fetchall()]
    if created:
        _join_auto_segments(created)
    return created


@unit_of_work
def create_user(user_id: int) -> list[str]:
    """Create the user and add it to every live auto segment whose bucket it falls in.

    Returns the names of those segments, sorted.
    """
    hold_auto_segments_shared()  # see create_users
    if not db.execute_sql(_CREATE, ([user_id],)).fetchall():
        raise Conflict(f"user {user_id} already exists", id=user_id)
    return _join_auto_segments([user_id])


@replica_read
def user_exists(user_id: int) -> bool:
    return User.select().where(User.id == user_id).exists(reader())
