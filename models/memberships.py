"""Who is in which segment: reads, manual changes and system removals.

Every statement that changes a membership feeds its RETURNING rows into the history
insert of the same statement, so one state change writes exactly one event, atomically.
Event times come from clock_timestamp(), taken after the row lock is held, not from
now() (the transaction's start): two transactions racing on one membership then get
event times in the order their changes took effect.
"""

from __future__ import annotations

from collections.abc import Iterable

from models.db import execute, fetchall, fetchone, unit_of_work
from models.errors import Invalid, NotFound

# A membership is live when its segment is live and it has not expired; reads filter on
# this, so an expired membership disappears at once, swept or not.
LIVE = "s.deleted_at IS NULL AND (m.expires_at IS NULL OR m.expires_at > now())"

# The one rule for a membership removed by the system rather than by a person: it ended
# at whichever came first, its expiry or its segment's deletion. ``{doomed}`` selects the
# (user_id, segment_id) pairs to remove, already row-locked.
_REMOVE_ENDED = """
WITH doomed AS ({doomed}),
gone AS (
    DELETE FROM memberships m USING doomed d
    WHERE m.user_id = d.user_id AND m.segment_id = d.segment_id
    RETURNING m.user_id, m.segment_id, m.expires_at
),
events AS (
    INSERT INTO history (user_id, segment_id, operation, reason, at)
    SELECT g.user_id, g.segment_id, 'remove',
           CASE WHEN s.deleted_at IS NOT NULL
                     AND (g.expires_at IS NULL OR s.deleted_at < g.expires_at)
                THEN 'segment_deleted' ELSE 'ttl' END,
           LEAST(g.expires_at, s.deleted_at)
    FROM gone g JOIN segments s ON s.id = g.segment_id
    RETURNING 1
)
SELECT count(*) FROM events
"""


def remove_ended(doomed_sql: str, params: dict) -> int:
    """Remove the memberships ``doomed_sql`` selects; one ttl/segment_deleted event each."""
    row = fetchone(_REMOVE_ENDED.format(doomed=doomed_sql), params)
    return row[0] if row else 0


@unit_of_work
def expire_memberships(batch_size: int) -> int:
    """One batch of the TTL sweep. SKIP LOCKED lets sweepers run side by side, and a row
    deleted by one is never returned to another, so no event is written twice."""
    return remove_ended(
        """SELECT user_id, segment_id FROM memberships
           WHERE expires_at <= now()
           ORDER BY expires_at LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED""",
        {"limit": batch_size},
    )


def _lock_user(user_id: int) -> None:
    """Changes to one user's memberships run one at a time: no lock-order deadlock
    between two requests for the same user, and a bulk batch (which share-locks its
    users) never acts on a snapshot older than a manual change."""
    if fetchone("SELECT 1 FROM users WHERE id = %s FOR NO KEY UPDATE", (user_id,)) is None:
        raise NotFound.user(user_id)


def _lock_live_segments(names: list[str]) -> dict[str, int]:
    """Ids of the named live segments, share-locked so a concurrent delete or percent
    change waits for this transaction. Raises NotFound naming every unknown one."""
    rows = fetchall(
        "SELECT name, id FROM segments WHERE deleted_at IS NULL AND name = ANY(%s) "
        "ORDER BY id FOR SHARE",
        (names,),
    )
    found = dict(rows)
    unknown = sorted(set(names) - found.keys())
    if unknown:
        raise NotFound(f"unknown segments: {', '.join(unknown)}", segments=unknown)
    return found


def _add(user_id: int, segment_ids: list[int], active_time: int | None) -> None:
    # Re-adding a held segment keeps the row (no event) but takes this request's expiry;
    # a person adding it makes it 'manual', so a percent decrease will not remove it.
    execute(
        """WITH upserted AS (
               INSERT INTO memberships AS m (user_id, segment_id, source, added_at)
               SELECT %(user)s, segment_id, 'manual', clock_timestamp()
               FROM unnest(%(ids)s::int[]) AS segment_id ORDER BY segment_id
               ON CONFLICT (user_id, segment_id) DO UPDATE
                   SET expires_at = NULL, source = 'manual'
               RETURNING m.segment_id, (xmax = 0) AS inserted
           ),
           events AS (
               INSERT INTO history (user_id, segment_id, operation, reason, at)
               SELECT %(user)s, segment_id, 'add', 'manual', clock_timestamp()
               FROM upserted WHERE inserted
           )
           SELECT segment_id FROM upserted""",
        {"user": user_id, "ids": segment_ids},
    )
    if active_time is not None:
        # Read the clock only now, after the add events: an expiry never precedes its add.
        execute(
            "UPDATE memberships SET expires_at = clock_timestamp() + make_interval(secs => %s) "
            "WHERE user_id = %s AND segment_id = ANY(%s)",
            (active_time, user_id, segment_ids),
        )
    # Memberships first, opt-outs second, in every path: one lock order.
    execute(
        "DELETE FROM segment_opt_outs WHERE user_id = %s AND segment_id = ANY(%s)",
        (user_id, segment_ids),
    )


def _remove(user_id: int, segment_ids: list[int]) -> list[int]:
    rows = fetchall(
        """WITH gone AS (
               DELETE FROM memberships
               WHERE user_id = %(user)s AND segment_id = ANY(%(ids)s)
               RETURNING segment_id
           ),
           events AS (
               INSERT INTO history (user_id, segment_id, operation, reason, at)
               SELECT %(user)s, segment_id, 'remove', 'manual', clock_timestamp() FROM gone
           )
           SELECT segment_id FROM gone""",
        {"user": user_id, "ids": segment_ids},
    )
    execute(
        "INSERT INTO segment_opt_outs (segment_id, user_id) "
        "SELECT unnest(%s::int[]), %s ORDER BY 1 ON CONFLICT DO NOTHING",
        (segment_ids, user_id),
    )
    return [r[0] for r in rows]


@unit_of_work
def change_memberships(
    user_id: int,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    active_time: int | None = None,
) -> tuple[list[str], list[str]]:
    """Add and remove segments for one user, all or nothing.

    Returns (segments held from this request, segments actually removed), names sorted.
    """
    add, remove = sorted(set(add)), sorted(set(remove))
    both = sorted(set(add) & set(remove))
    if both:
        raise Invalid("a segment cannot be both added and removed", segments=both)
    _lock_user(user_id)
    ids = _lock_live_segments(add + remove)
    touched = [ids[n] for n in add + remove]
    # A membership that expired but was not swept yet ended at its expiry: record that
    # now, so a re-add below is a new membership with an event of its own.
    remove_ended(
        """SELECT user_id, segment_id FROM memberships
           WHERE user_id = %(user)s AND segment_id = ANY(%(ids)s) AND expires_at <= now()
           FOR UPDATE""",
        {"user": user_id, "ids": touched},
    )
    if add:
        _add(user_id, [ids[n] for n in add], active_time)
    removed_ids = set(_remove(user_id, [ids[n] for n in remove])) if remove else set()
    return add, [n for n in remove if ids[n] in removed_ids]
