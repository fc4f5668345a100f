"""Users: creation, with the auto segments a new user falls into."""

from __future__ import annotations

from models.buckets import falls_in
from models.db import execute, fetchall, fetchone, read_only, unit_of_work
from models.errors import Conflict
from models.segments import hold_auto_segments_shared
from models.tables import User


@unit_of_work
def create_user(user_id: int) -> list[str]:
    """Create the user and add it to every live auto segment whose bucket it falls in.

    Returns the names of those segments, sorted.
    """
    # Shared with other user creations, exclusive against auto segment creation and
    # percent changes: either this user is committed before such a job scans the users,
    # or this transaction sees the segment's new percentage. No user is ever missed.
    hold_auto_segments_shared()
    if (
        fetchone(
            "INSERT INTO users (id) VALUES (%s) ON CONFLICT DO NOTHING RETURNING id", (user_id,)
        )
        is None
    ):
        raise Conflict(f"user {user_id} already exists", id=user_id)
    auto = fetchall(
        "SELECT id, name, salt, auto_percent FROM segments "
        "WHERE deleted_at IS NULL AND auto_percent > 0"
    )
    chosen = sorted((name, sid) for sid, name, salt, pct in auto if falls_in(salt, user_id, pct))
    if chosen:
        execute(
            """WITH added AS (
                   INSERT INTO memberships (user_id, segment_id, source)
                   SELECT %(user)s, unnest(%(ids)s::int[]), 'auto'
                   RETURNING segment_id
               )
               INSERT INTO history (user_id, segment_id, operation, reason, at)
               SELECT %(user)s, segment_id, 'add', 'auto', clock_timestamp() FROM added""",
            {"user": user_id, "ids": [sid for _, sid in chosen]},
        )
    return [name for name, _ in chosen]


@read_only
def user_exists(user_id: int) -> bool:
    return User.select().where(User.id == user_id).exists()
