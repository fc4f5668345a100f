"""The batches of the bulk jobs: assign by bucket, shrink by bucket, clean up a deleted
segment. Each runs inside the job's transaction (models/jobs.py) and returns
(new checkpoint, units done, finished)."""

from __future__ import annotations

from models.db import fetchall, fetchone
from models.memberships import remove_ended

# The segment row is share-locked for the batch: a percent change or delete waits for
# the batch to commit, and the batch sees the current percent (never assigns above it).
_SEGMENT = """SELECT id, salt, (auto_percent * 100)::int AS threshold FROM segments
              WHERE id = %(segment)s AND deleted_at IS NULL FOR SHARE"""


def _progress(row: tuple, after: int, size: int) -> tuple[int, int, bool]:
    """(last id scanned, count scanned, segment still live) -> the batch's result."""
    last, scanned, live = row
    if not live or last is None:
        return after, scanned if live else 0, True
    return last, scanned, scanned < size


def assign_batch(segment_id: int, params: dict, after: int, size: int) -> tuple[int, int, bool]:
    """Add the next ``size`` users (by id) whose bucket is in [low, high), unless removed
    by hand; one add event per new membership."""
    args = {"segment": segment_id, "after": after, "size": size, **params}
    # Share-lock the batch's users: a manual change of one of them (which holds its user
    # row exclusively) either committed before, so its opt-out is seen below, or waits.
    fetchall(
        "SELECT id FROM users WHERE id > %(after)s ORDER BY id LIMIT %(size)s FOR SHARE",
        args,
    )
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
    row = fetchone(
        f"""WITH seg AS ({_SEGMENT}),
            batch AS (SELECT id FROM users WHERE id > %(after)s ORDER BY id LIMIT %(size)s),
            added AS (
                INSERT INTO memberships (user_id, segment_id, source)
                SELECT b.id, seg.id, 'auto' FROM batch b CROSS JOIN seg
                -- One md5 per user: a range test instead of two comparisons. The
                -- range is empty when the percent was lowered below low meanwhile.
                WHERE int4range(%(low)s, greatest(%(low)s, least(%(high)s, seg.threshold)))
                      @> segment_bucket(seg.salt, b.id)
                  AND NOT EXISTS (SELECT 1 FROM segment_opt_outs o
                                  WHERE o.segment_id = seg.id AND o.user_id = b.id)
                ORDER BY b.id
                ON CONFLICT DO NOTHING
                RETURNING user_id, segment_id
            ),
            events AS (
                INSERT INTO history (user_id, segment_id, operation, reason, at)
                SELECT user_id, segment_id, 'add', %(reason)s, clock_timestamp() FROM added
            )
            SELECT (SELECT max(id) FROM batch), (SELECT count(*) FROM batch),
                   EXISTS (SELECT 1 FROM seg)""",
        args,
    )
    return _progress(row, after, size)


def shrink_batch(segment_id: int, params: dict, after: int, size: int) -> tuple[int, int, bool]:
    """Remove the next ``size`` members' auto memberships whose bucket is at or above the
    new threshold; manual members stay."""
    row = fetchone(
        f"""WITH seg AS ({_SEGMENT}),
            batch AS (SELECT user_id FROM memberships
                      WHERE segment_id = %(segment)s AND user_id > %(after)s
                      ORDER BY user_id LIMIT %(size)s),
            gone AS (
                DELETE FROM memberships m USING batch b, seg
                WHERE m.segment_id = seg.id AND m.user_id = b.user_id AND m.source = 'auto'
                  AND segment_bucket(seg.salt, m.user_id) >= greatest(%(low)s, seg.threshold)
                RETURNING m.user_id, m.segment_id
            ),
            events AS (
                INSERT INTO history (user_id, segment_id, operation, reason, at)
                SELECT user_id, segment_id, 'remove', 'percent_change', clock_timestamp() FROM gone
            )
            SELECT (SELECT max(user_id) FROM batch), (SELECT count(*) FROM batch),
                   EXISTS (SELECT 1 FROM seg)""",
        {"segment": segment_id, "after": after, "size": size, **params},
    )
    return _progress(row, after, size)


def cleanup_batch(segment_id: int, params: dict, after: int, size: int) -> tuple[int, int, bool]:
    """Remove up to ``size`` memberships of a deleted segment, each with the event its
    end deserves (segment_deleted at the deletion, or ttl if it had expired before)."""
    args = {"segment": segment_id, "size": size}
    # FOR UPDATE, not SKIP LOCKED: a row another transaction holds (a sweep) is waited
    # for, then either gone or ours; done means none is left, not a short batch.
    removed = remove_ended(
        """SELECT user_id, segment_id FROM memberships
           WHERE segment_id = %(segment)s ORDER BY user_id LIMIT %(size)s
           FOR UPDATE""",
        args,
    )
    left = fetchone(
        "SELECT EXISTS (SELECT 1 FROM memberships WHERE segment_id = %(segment)s)", args
    )
    return after, removed, not left[0]
