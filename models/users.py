"""Users: creation, with the auto segments a new user falls into."""

from __future__ import annotations

from models.db import db, reader, unit_of_work
from models.errors import Conflict
from models.events import change_with_events
from models.replica import replica_read
from models.tables import Operation, Reason, User

# Serialises auto segment creation / percent changes (exclusive, models/segments.py)
# against user creation (shared). Any constant works; it only has to be the same in
# every process.
AUTO_SEGMENTS_LOCK = 5_120_447_903


def hold_auto_segments_shared() -> None:
    db.execute_sql("SELECT pg_advisory_xact_lock_shared(%s)", (AUTO_SEGMENTS_LOCK,))


def hold_auto_segments_exclusive() -> None:
    db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (AUTO_SEGMENTS_LOCK,))


# Plain SQL on this write path, like a manual change's (models/memberships.py).
_CREATE = "INSERT INTO users (id) VALUES (%s) ON CONFLICT DO NOTHING RETURNING id"

# The auto segments new users fall in: a plain segment by its own bucket and percent, a
# layer's segment when it owns the user's bucket in the layer (one per layer at most).
_JOIN_AUTO = """
    INSERT INTO memberships (user_id, segment_id, source)
    SELECT u, s.id, 'auto' FROM unnest(%(users)s::bigint[]) u
    JOIN segments s ON s.deleted_at IS NULL AND s.layer_id IS NULL AND s.auto_percent > 0
     AND segment_bucket(s.salt, u) < (s.auto_percent * 100)::int
    UNION ALL
    SELECT u, lb.segment_id, 'auto' FROM unnest(%(users)s::bigint[]) u
    JOIN layers l ON l.deleted_at IS NULL
    JOIN layer_buckets lb ON lb.layer_id = l.id AND lb.bucket = segment_bucket(l.salt, u)
     AND lb.segment_id IS NOT NULL
    ORDER BY 1, 2
    RETURNING user_id, segment_id, %(reason)s AS reason, clock_timestamp() AS at, true AS event"""


def join_auto_segments(user_ids: list[int]) -> list[str]:
    """Add just-created users to the auto segments they fall in, with their events.
    Returns the segments' names, sorted (for one user: its segments). The caller holds
    ``hold_auto_segments_shared``, so no percent or bucket changes meanwhile."""
    (names,) = change_with_events(
        _JOIN_AUTO,
        {"users": user_ids, "reason": Reason.AUTO.value},
        Operation.ADD,
        result="""SELECT coalesce(array_agg(s.name ORDER BY s.name COLLATE "C"), '{}')
                  FROM changed c JOIN segments s ON s.id = c.segment_id""",
    )
    return names[0]


@unit_of_work
def create_user(user_id: int) -> list[str]:
    """Create the user and add it to every live auto segment whose bucket it falls in.

    Returns the names of those segments, sorted.
    """
    # Shared with other user creations, exclusive against auto segment creation and
    # percent changes: either this user is committed before such a job scans the users,
    # or this transaction sees the segment's new percentage. No user is ever missed.
    hold_auto_segments_shared()
    if db.execute_sql(_CREATE, (user_id,)).fetchone() is None:
        raise Conflict(f"user {user_id} already exists", id=user_id)
    return join_auto_segments([user_id])


@replica_read
def user_exists(user_id: int) -> bool:
    return User.select().where(User.id == user_id).exists(reader())
