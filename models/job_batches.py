"""The batches of the bulk jobs: assign by bucket, shrink by bucket, clean up a deleted
segment. Each runs inside the job's transaction (models/jobs.py)."""

from __future__ import annotations

from typing import NamedTuple

from models.buckets import threshold_sql
from models.events import change_with_events
from models.infra.db import db, walk_in_key_order
from models.layer_members import clear_slots
from models.memberships import remove_ended
from models.tables import Job, Operation, Reason


class BatchResult(NamedTuple):
    checkpoint: int  # the job resumes after this id
    done: int  # units of work done, for progress
    finished: bool
    phase: int = 0  # the pass the job continues in
    counts: dict[str, int] | None = None  # added to the job's result
    unknown: list[int] | None = None  # ids a batch did not find, for the result's sample
    error: str | None = None  # set when finished: the job failed for this reason
    conflicted: list[int] | None = None  # ids it skipped: they hold a sibling in the layer


# The segment row is share-locked for the batch: a percent change or delete waits for
# the batch to commit, and the batch sees the current percent (never assigns above it).
# A layered segment's users are bucketed with the layer's salt.
_SEGMENT = f"""seg AS (SELECT s.id, coalesce(l.salt, s.salt) AS salt, s.layer_id,
                             {threshold_sql("s.auto_percent")} AS threshold
                      FROM segments s LEFT JOIN layers l ON l.id = s.layer_id
                      WHERE s.id = %(segment)s AND s.deleted_at IS NULL FOR SHARE OF s), """

# Whether a user's bucket is one the job adds: a range of a plain segment's buckets, or
# (a layer's segment) the buckets it took in one take and still owns.
_ASSIGNS = {
    False: """int4range(%(low)s, greatest(%(low)s, least(%(high)s, seg.threshold)))
              @> segment_bucket(seg.salt, b.id)""",
    True: """segment_bucket(seg.salt, b.id) IN (
                 SELECT bucket FROM layer_buckets WHERE segment_id = %(segment)s
                   AND taken_rank BETWEEN %(low_rank)s AND %(high_rank)s)""",
}
# Whether an auto member's bucket is no longer the segment's.
_SHRINKS = {
    False: "segment_bucket(seg.salt, m.user_id) >= greatest(%(low)s, seg.threshold)",
    True: """segment_bucket(seg.salt, m.user_id) NOT IN (
                 SELECT bucket FROM layer_buckets WHERE segment_id = %(segment)s)""",
}

# (last id scanned, count scanned, segment still live) of the batch's scan.
_PROGRESS = """SELECT (SELECT max({key}) FROM batch), (SELECT count(*) FROM batch),
                     EXISTS (SELECT 1 FROM seg)"""


def _progress(rows: list[tuple], after: int, size: int) -> BatchResult:
    last, scanned, live = rows[0]
    if not live or last is None:
        return BatchResult(after, scanned if live else 0, True)
    return BatchResult(last, scanned, scanned < size)


def assign_batch(job: Job, size: int) -> BatchResult:
    """Add the next ``size`` users (by id) whose bucket is in [low, high), unless removed
    by hand; one add event per new membership."""
    after = job.checkpoint
    args = {"segment": job.segment_id, "after": after, "size": size, **job.params}
    walk_in_key_order()
    layered = "low_rank" in job.params
    # Share-lock the batch's users: a manual change of one of them (which holds its user
    # row exclusively) either committed before, so its opt-out is seen below, or waits.
    batch = db.execute_sql(
        "SELECT id FROM users WHERE id > %(after)s ORDER BY id LIMIT %(size)s FOR SHARE", args
    ).fetchall()
    if layered and batch:
        # Rows that hold a slot of the layer without counting any more make way first.
        clear_slots([_layer_of(job.segment_id)], [user_id for (user_id,) in batch])
    # A membership that expired unswept in this range ended at its expiry: record that
    # first, so the user can be assigned like anyone else instead of being skipped.
    remove_ended(
        """SELECT user_id, segment_id FROM memberships
           WHERE segment_id = %(segment)s AND user_id > %(after)s AND expires_at <= now()
             AND user_id <= (SELECT max(id) FROM (SELECT id FROM users WHERE id > %(after)s
                                                  ORDER BY id LIMIT %(size)s) b)
           FOR UPDATE""",
        args,
    )
    rows = change_with_events(
        f"""INSERT INTO memberships (user_id, segment_id, source)
           SELECT b.id, seg.id, 'auto' FROM batch b CROSS JOIN seg
           -- One md5 per user: a range test instead of two comparisons. The range is
           -- empty when the percent was lowered below low meanwhile. In a layer, a user
           -- holding a sibling hits memberships_one_per_layer: skipped by DO NOTHING.
           WHERE {_ASSIGNS[layered]}
             AND NOT EXISTS (SELECT 1 FROM segment_opt_outs o
                             WHERE o.segment_id = seg.id AND o.user_id = b.id)
           ORDER BY b.id
           ON CONFLICT DO NOTHING
           RETURNING user_id, segment_id, %(reason)s AS reason,
                     clock_timestamp() AS at, true AS event""",
        args,
        Operation.ADD,
        before=_SEGMENT
        + "batch AS (SELECT id FROM users WHERE id > %(after)s ORDER BY id LIMIT %(size)s), ",
        result=_PROGRESS.format(key="id"),
    )
    return _progress(rows, after, size)


def shrink_batch(job: Job, size: int) -> BatchResult:
    """Remove the next ``size`` members' auto memberships whose bucket is at or above the
    new threshold; manual members stay."""
    walk_in_key_order()
    # The batch's key range, not a join to the batch: without statistics the join was
    # planned as a nested loop over every member of the segment, for each batch.
    rows = change_with_events(
        f"""DELETE FROM memberships m USING seg
           WHERE m.segment_id = %(segment)s AND m.user_id > %(after)s
             AND m.user_id <= (SELECT max(user_id) FROM batch) AND m.source = 'auto'
             AND {_SHRINKS[_layer_of(job.segment_id) is not None]}
           RETURNING m.user_id, m.segment_id, %(reason)s AS reason,
                     clock_timestamp() AS at, true AS event""",
        {
            "segment": job.segment_id,
            "after": job.checkpoint,
            "size": size,
            "reason": Reason.PERCENT_CHANGE.value,
            **job.params,
        },
        Operation.REMOVE,
        before=_SEGMENT
        + """batch AS (SELECT user_id FROM memberships
                       WHERE segment_id = %(segment)s AND user_id > %(after)s
                       ORDER BY user_id LIMIT %(size)s), """,
        result=_PROGRESS.format(key="user_id"),
    )
    return _progress(rows, job.checkpoint, size)


def _layer_of(segment_id: int) -> int | None:
    row = db.execute_sql("SELECT layer_id FROM segments WHERE id = %s", (segment_id,)).fetchone()
    return row[0]


def cleanup_batch(job: Job, size: int) -> BatchResult:
    """Remove up to ``size`` memberships of a deleted segment, each with the event its
    end deserves (segment_deleted at the deletion, or ttl if it had expired before)."""
    args = {"segment": job.segment_id, "size": size}
    walk_in_key_order()
    # FOR UPDATE, not SKIP LOCKED: a row another transaction holds (a sweep) is waited
    # for, then either gone or ours; done means none is left, not a short batch.
    removed = remove_ended(
        """SELECT user_id, segment_id FROM memberships
           WHERE segment_id = %(segment)s ORDER BY user_id LIMIT %(size)s
           FOR UPDATE""",
        args,
    )
    left = db.execute_sql(
        "SELECT EXISTS (SELECT 1 FROM memberships WHERE segment_id = %(segment)s)", args
    ).fetchone()[0]
    return BatchResult(job.checkpoint, removed, not left)
