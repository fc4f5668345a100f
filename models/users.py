"""Users: creation, with the auto segments a new user falls into.

The rule "a new user joins every live auto segment whose bucket it falls in" (a layer's
segment: whose buckets hold the user's bucket in the layer) is written once, in SQL
(``_JOIN_AUTO``), for one user (``create_user``, POST /users) and for many
(``create_users``, an import with create_users=true). The advisory lock below keeps
the rule exact while segments change: no assignment job misses a user created as it
starts.
"""

from __future__ import annotations

from models.buckets import threshold_sql
from models.errors import Conflict
from models.events import change_with_events
from models.infra.db import db, reader, unit_of_work
from models.infra.replica import replica_read
from models.tables import Operation, Reason, User

# Serialises auto segment creation / percent changes (exclusive) against user creation
# (shared). Any constant works; it only has to be the same in every process.
AUTO_SEGMENTS_LOCK = 5_120_447_903

# Plain SQL on this write path, like a manual change's (models/memberships.py).
_CREATE_ONE = "INSERT INTO users (id) VALUES (%s) ON CONFLICT DO NOTHING RETURNING id"
_CREATE_MANY = """INSERT INTO users (id) SELECT unnest(%s::bigint[]) ORDER BY 1
              ON CONFLICT DO NOTHING RETURNING id"""

# The new-user rule, written once: the auto segments new users fall in. A plain segment
# by its own bucket and percent, a layer's segment when it owns the user's bucket in the
# layer (one per layer at most).
_JOIN_AUTO = f"""
    INSERT INTO memberships (user_id, segment_id, source)
    SELECT u, s.id, 'auto' FROM unnest(%(users)s::bigint[]) u
    JOIN segments s ON s.deleted_at IS NULL AND s.layer_id IS NULL AND s.auto_percent > 0
     AND segment_bucket(s.salt, u) < {threshold_sql("s.auto_percent")}
    UNION ALL
    SELECT u, lb.segment_id, 'auto' FROM unnest(%(users)s::bigint[]) u
    JOIN layers l ON l.deleted_at IS NULL
    JOIN layer_buckets lb ON lb.layer_id = l.id AND lb.bucket = segment_bucket(l.salt, u)
     AND lb.segment_id IS NOT NULL
    ORDER BY 1, 2
    RETURNING user_id, segment_id, %(reason)s AS reason, clock_timestamp() AS at, true AS event"""


def hold_auto_segments_shared() -> None:
    """Taken by user creation: shared with other creations."""
    db.execute_sql("SELECT pg_advisory_xact_lock_shared(%s)", (AUTO_SEGMENTS_LOCK,))


def hold_auto_segments_exclusive() -> None:
    """Taken by auto segment creation, percent changes and deletion."""
    db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (AUTO_SEGMENTS_LOCK,))


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


def create_users(ids: list[int]) -> list[int]:
    """Create those of ``ids`` that do not exist yet, each in its auto segments; inside
    the caller's unit of work. Returns the ids created."""
    # Shared with other user creations, exclusive against auto segment creation and
    # percent changes: either these users are committed before such a job scans the
    # users, or this transaction sees the segment's new percentage. No user is missed.
    hold_auto_segments_shared()
    created = [row[0] for row in db.execute_sql(_CREATE_MANY, (ids,)).fetchall()]
    if created:
        join_auto_segments(created)
    return created


@unit_of_work
def create_user(user_id: int) -> list[str]:
    """Create the user and add it to every live auto segment whose bucket it falls in.

    Returns the names of those segments, sorted.
    """
    hold_auto_segments_shared()  # see create_users
    if db.execute_sql(_CREATE_ONE, (user_id,)).fetchone() is None:
        raise Conflict(f"user {user_id} already exists", id=user_id)
    return join_auto_segments([user_id])


@replica_read
def user_exists(user_id: int) -> bool:
    return User.select().where(User.id == user_id).exists(reader())
