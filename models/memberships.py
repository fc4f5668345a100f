"""Who is in which segment: reads, manual changes and system removals.

Every change writes its history event in the same statement (``models/events.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from peewee import JOIN

from models import layer_members
from models.errors import Invalid, NotFound
from models.events import change_with_events
from models.infra.db import db, reader, unit_of_work, walk_in_key_order
from models.infra.replica import replica_read
from models.tables import Layer, Membership, Operation, Reason, Segment, User

# The one rule for a membership removed by the system rather than by a person: it ended
# at whichever came first, its expiry or its segment's deletion. ``doomed`` (a CTE the
# caller passes) selects the (user_id, segment_id) pairs to remove, already row-locked.
# ``doomed`` carries its segment's deletion time, materialized: joined to segments in
# the DELETE itself, the planner carried segment_id = s.id over to the membership scan
# and, without statistics, read every member of the segment for each doomed row.
_DOOMED = """locked AS ({doomed_sql}),
doomed AS MATERIALIZED (SELECT l.user_id, l.segment_id, s.deleted_at
                        FROM locked l JOIN segments s ON s.id = l.segment_id), """
_END = """
    DELETE FROM memberships m USING doomed d
    WHERE m.user_id = d.user_id AND m.segment_id = d.segment_id
    RETURNING m.user_id, m.segment_id,
        CASE WHEN d.deleted_at IS NOT NULL
                  AND (m.expires_at IS NULL OR d.deleted_at < m.expires_at)
             THEN 'segment_deleted' ELSE 'ttl' END AS reason,
        LEAST(m.expires_at, d.deleted_at) AS at, true AS event
"""


# The statements of a manual change, run on every PATCH/DELETE /users: plain SQL, as
# building them with the query builder tripled the web process's CPU per write
# (docs/benchmarks.md, "Writes after the merge").
_LOCK_USER = "SELECT 1 FROM users WHERE id = %s FOR NO KEY UPDATE"
_LOCK_SEGMENTS = """SELECT s.name, s.id, s.layer_id, l.name FROM segments s
                    LEFT JOIN layers l ON l.id = s.layer_id
                    WHERE s.deleted_at IS NULL AND s.name = ANY(%s)
                    ORDER BY s.id FOR SHARE OF s"""
_SET_EXPIRY = """UPDATE memberships SET expires_at = clock_timestamp() + make_interval(secs => %s)
                 WHERE user_id = %s AND segment_id = ANY(%s)"""
# The opt-out rule: a person who removes users from segments opts each pair out of auto
# assignment (job_batches skips them); a person who adds them again clears it. Every
# pair of the two lists (one of them has one element), in (segment, user) order: one
# lock order on the table's primary key.
_OPT_OUT = """INSERT INTO segment_opt_outs (segment_id, user_id)
              SELECT s, u FROM unnest(%s::int[]) s, unnest(%s::bigint[]) u
              ORDER BY s, u ON CONFLICT DO NOTHING"""
_CLEAR_OPT_OUTS = "DELETE FROM segment_opt_outs WHERE segment_id = ANY(%s) AND user_id = ANY(%s)"


def opt_out(segment_ids: list[int], user_ids: list[int]) -> None:
    db.execute_sql(_OPT_OUT, (segment_ids, user_ids))


def clear_opt_outs(segment_ids: list[int], user_ids: list[int]) -> None:
    db.execute_sql(_CLEAR_OPT_OUTS, (segment_ids, user_ids))


@dataclass(frozen=True)
class MembershipView:
    segment: str
    source: str
    added_at: datetime
    expires_at: datetime | None
    added_by: str
    layer: str | None = None


@dataclass(frozen=True)
class MembershipChange:
    """Segments held from a request on (added or kept), and those actually removed."""

    added: list[str]
    removed: list[str]


def remove_ended(doomed_sql: str, params: Mapping[str, Any]) -> int:
    """Remove the memberships ``doomed_sql`` selects; one ttl/segment_deleted event each."""
    before = _DOOMED.format(doomed_sql=doomed_sql)
    rows = change_with_events(_END, params, Operation.REMOVE, before=before)
    return rows[0][0]


@unit_of_work
def expire_memberships(batch_size: int) -> int:
    """One batch of the TTL sweep. SKIP LOCKED lets sweepers run side by side, and a row
    deleted by one is never returned to another, so no event is written twice."""
    walk_in_key_order()
    return remove_ended(
        """SELECT user_id, segment_id FROM memberships
           WHERE expires_at <= now()
           ORDER BY expires_at LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED""",
        {"limit": batch_size},
    )


@replica_read
def user_memberships(user_id: int) -> list[MembershipView] | None:
    """The user's live memberships with their source and times, by segment name;
    ``None`` for an unknown user."""
    if not User.select().where(User.id == user_id).exists(reader()):
        return None
    query = (
        Membership.select(
            Segment.name,
            Membership.source,
            Membership.added_at,
            Membership.expires_at,
            Membership.added_by,
            Layer.name,
        )
        .join(Segment)
        .join(Layer, JOIN.LEFT_OUTER, on=(Layer.id == Segment.layer))
        .where(Membership.user == user_id, Membership.is_live())
        .order_by(Segment.name)
        .bind(reader())
    )
    return [MembershipView(*row) for row in query.tuples()]


def _lock_user(user_id: int) -> None:
    """Changes to one user's memberships run one at a time: no lock-order deadlock
    between two requests for the same user, and a bulk batch (which share-locks its
    users) never acts on a snapshot older than a manual change."""
    if db.execute_sql(_LOCK_USER, (user_id,)).fetchone() is None:
        raise NotFound.user(user_id)


@dataclass(frozen=True)
class LockedSegment:
    id: int
    layer_id: int | None
    layer: str | None


def _lock_live_segments(names: list[str]) -> dict[str, LockedSegment]:
    """The named live segments, share-locked so a concurrent delete or percent change
    waits for this transaction. Raises NotFound naming every unknown one."""
    rows = db.execute_sql(_LOCK_SEGMENTS, (names,)).fetchall()
    found = {name: LockedSegment(*rest) for name, *rest in rows}
    unknown = sorted(set(names) - found.keys())
    if unknown:
        raise NotFound(f"unknown segments: {', '.join(unknown)}", segments=unknown)
    return found


def _add(user_id: int, segment_ids: list[int], active_time: int | None) -> None:
    # Re-adding a held segment keeps the row (no event) but takes this request's expiry;
    # a person adding it makes it 'manual', so a percent decrease will not remove it.
    change_with_events(
        """INSERT INTO memberships AS m (user_id, segment_id, source, added_at)
           SELECT %(user)s, segment_id, 'manual', clock_timestamp()
           FROM unnest(%(ids)s::int[]) AS segment_id ORDER BY segment_id
           ON CONFLICT (user_id, segment_id) DO UPDATE
               SET expires_at = NULL, source = 'manual'
           RETURNING m.user_id, m.segment_id, %(reason)s AS reason,
                     clock_timestamp() AS at, (xmax = 0) AS event""",
        {"user": user_id, "ids": segment_ids, "reason": Reason.MANUAL.value},
        Operation.ADD,
    )
    if active_time is not None:
        # Read the clock only now, after the add events: an expiry never precedes its add.
        db.execute_sql(_SET_EXPIRY, (active_time, user_id, segment_ids))
    # Memberships first, opt-outs second, in every path: one lock order.
    clear_opt_outs(segment_ids, [user_id])


def _remove(user_id: int, segment_ids: list[int]) -> set[int]:
    rows = change_with_events(
        """DELETE FROM memberships WHERE user_id = %(user)s AND segment_id = ANY(%(ids)s)
           RETURNING user_id, segment_id, %(reason)s AS reason,
                     clock_timestamp() AS at, true AS event""",
        {"user": user_id, "ids": segment_ids, "reason": Reason.MANUAL.value},
        Operation.REMOVE,
        result="SELECT segment_id FROM changed",
    )
    # The person's choice outlives the membership: auto assignment leaves them out.
    opt_out(segment_ids, [user_id])
    return {r[0] for r in rows}


@unit_of_work
def change_memberships(
    user_id: int,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    active_time: int | None = None,
    move: bool = False,
) -> MembershipChange:
    """Add and remove segments for one user, all or nothing (names sorted). Adding a
    segment of a layer where the user holds another is a Conflict, unless ``move``."""
    add, remove = sorted(set(add)), sorted(set(remove))
    both = sorted(set(add) & set(remove))
    if both:
        raise Invalid("a segment cannot be both added and removed", segments=both)
    _lock_user(user_id)
    found = _lock_live_segments(add + remove)
    ids = {name: s.id for name, s in found.items()}
    # A membership that expired but was not swept yet ended at its expiry: record that
    # now, so a re-add below is a new membership with an event of its own.
    remove_ended(
        """SELECT user_id, segment_id FROM memberships
           WHERE user_id = %(user)s AND segment_id = ANY(%(ids)s) AND expires_at <= now()
           FOR UPDATE""",
        {"user": user_id, "ids": list(ids.values())},
    )
    removed = _remove(user_id, [ids[n] for n in remove]) if remove else set()
    if add:
        layer_members.make_room(user_id, {n: found[n] for n in add}, move)
        _add(user_id, [ids[n] for n in add], active_time)
    return MembershipChange(added=add, removed=[n for n in remove if ids[n] in removed])
