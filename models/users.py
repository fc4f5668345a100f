"""Users: creation, with the auto segments a new user falls into."""

from __future__ import annotations

from models.buckets import falls_in
from models.db import db, reader, unit_of_work
from models.errors import Conflict
from models.events import change_with_events
from models.replica import replica_read
from models.segments import hold_auto_segments_shared
from models.tables import Operation, Reason, User

# Plain SQL on this write path, like a manual change's (models/memberships.py).
_CREATE = "INSERT INTO users (id) VALUES (%s) ON CONFLICT DO NOTHING RETURNING id"
_AUTO_SEGMENTS = """SELECT id, name, salt, auto_percent FROM segments
                    WHERE deleted_at IS NULL AND auto_percent > 0"""


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
    auto = db.execute_sql(_AUTO_SEGMENTS).fetchall()
    chosen = sorted((name, sid) for sid, name, salt, pct in auto if falls_in(salt, user_id, pct))
    if chosen:
        change_with_events(
            """INSERT INTO memberships (user_id, segment_id, source)
               SELECT %(user)s, unnest(%(ids)s::int[]), 'auto'
               RETURNING user_id, segment_id, %(reason)s AS reason,
                         clock_timestamp() AS at, true AS event""",
            {"user": user_id, "ids": [sid for _, sid in chosen], "reason": Reason.AUTO.value},
            Operation.ADD,
        )
    return [name for name, _ in chosen]


@replica_read
def user_exists(user_id: int) -> bool:
    return User.select().where(User.id == user_id).exists(reader())
