"""Durable bulk jobs: a row per job, written in the transaction that needs the work.

The row is the truth; a broker message only says "look at job N". Delivery is at least
once, so a job is claimed with a lease, advanced one batch per transaction (the batch
and its checkpoint commit together), and resumed from the checkpoint by whoever holds
the lease next.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models import job_batches
from models.db import execute, fetchall, fetchdict, fetchone, read_only, unit_of_work
from models.tables import Job

MAX_ATTEMPTS = 5

# kind -> (count of the work at start, one batch: (segment_id, params, checkpoint, size)
#          -> (new checkpoint, units done, finished))
Batch = Callable[[int, dict, int, int], tuple[int, int, bool]]
KINDS: dict[str, tuple[str, Batch]] = {
    "assign_auto": ("SELECT count(*) FROM users", job_batches.assign_batch),
    "shrink_auto": (
        "SELECT count(*) FROM memberships WHERE segment_id = %(segment)s",
        job_batches.shrink_batch,
    ),
    "cleanup_segment": (
        "SELECT count(*) FROM memberships WHERE segment_id = %(segment)s",
        job_batches.cleanup_batch,
    ),
}

_COLUMNS = (
    "id, kind, segment_id, params, state, done, total, error, attempts, "
    "created_at, started_at, finished_at"
)


def create_job(kind: str, segment_id: int, params: dict[str, Any]) -> int:
    """Record a job; call inside the transaction of the change that needs it."""
    return Job.insert(kind=kind, segment=segment_id, params=params).execute()


@read_only
def get_job(job_id: int) -> dict | None:
    return fetchdict(f"SELECT {_COLUMNS} FROM jobs WHERE id = %s", (job_id,))


@unit_of_work
def claim_job(job_id: int, owner: str, lease_seconds: int) -> bool:
    """Take the lease of a queued job, or of a running one whose holder went silent."""
    row = fetchone(
        """UPDATE jobs SET state = 'running', lease_owner = %(owner)s,
                  lease_until = now() + make_interval(secs => %(lease)s),
                  attempts = attempts + 1, started_at = coalesce(started_at, now()),
                  updated_at = now()
           WHERE id = %(id)s
             AND (state = 'queued' OR (state = 'running' AND lease_until < now()))
           RETURNING kind, segment_id, total""",
        {"id": job_id, "owner": owner, "lease": lease_seconds},
    )
    if row is None:
        return False
    kind, segment_id, total = row
    if total is None:
        count_sql = KINDS[kind][0]
        execute(
            f"UPDATE jobs SET total = ({count_sql}) WHERE id = %(id)s",
            {"id": job_id, "segment": segment_id},
        )
    return True


@unit_of_work
def advance_job(job_id: int, owner: str, batch_size: int, lease_seconds: int) -> bool | None:
    """Run one batch and commit it with the checkpoint. True when the job is finished,
    False when more remains, None when this worker no longer holds the lease."""
    row = fetchone(
        """SELECT kind, segment_id, params, checkpoint FROM jobs
           WHERE id = %s AND state = 'running' AND lease_owner = %s FOR UPDATE""",
        (job_id, owner),
    )
    if row is None:
        return None
    kind, segment_id, params, checkpoint = row
    checkpoint, units, finished = KINDS[kind][1](segment_id, params, checkpoint, batch_size)
    execute(
        """UPDATE jobs SET checkpoint = %(checkpoint)s, done = done + %(units)s,
                  lease_until = now() + make_interval(secs => %(lease)s), updated_at = now(),
                  state = CASE WHEN %(finished)s THEN 'done' ELSE state END,
                  finished_at = CASE WHEN %(finished)s THEN now() END,
                  total = CASE WHEN %(finished)s THEN greatest(total, done + %(units)s)
                               ELSE total END,
                  lease_owner = CASE WHEN %(finished)s THEN NULL ELSE lease_owner END,
                  error = CASE WHEN %(finished)s THEN NULL ELSE error END
           WHERE id = %(id)s""",
        {
            "id": job_id,
            "checkpoint": checkpoint,
            "units": units,
            "lease": lease_seconds,
            "finished": finished,
        },
    )
    return finished


@unit_of_work
def release_job(job_id: int, owner: str, error: str) -> str:
    """Give the lease back after a failed batch: queued for a retry, or failed for good
    after MAX_ATTEMPTS. Returns the new state."""
    row = fetchone(
        """UPDATE jobs SET error = %(error)s, lease_owner = NULL, lease_until = NULL,
                  updated_at = now(),
                  state = CASE WHEN attempts >= %(max)s THEN 'failed' ELSE 'queued' END,
                  finished_at = CASE WHEN attempts >= %(max)s THEN now() END
           WHERE id = %(id)s AND lease_owner = %(owner)s
           RETURNING state""",
        {"id": job_id, "owner": owner, "error": error[:2000], "max": MAX_ATTEMPTS},
    )
    return row[0] if row else "lost"


@unit_of_work
def stale_jobs(queued_for_seconds: float, limit: int = 100) -> list[int]:
    """Jobs whose message was lost (never sent, Redis down, worker died). Marks them as
    re-sent now, so the next pass does not send them again at once."""
    rows = fetchall(
        """UPDATE jobs SET updated_at = now()
           WHERE id IN (
               SELECT id FROM jobs
               WHERE (state = 'queued'
                      AND updated_at < now() - make_interval(secs => %(age)s))
                  OR (state = 'running' AND lease_until < now())
               ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
           RETURNING id""",
        {"age": queued_for_seconds, "limit": limit},
    )
    return [r[0] for r in rows]


@read_only
def job_stats() -> dict:
    """Counts and run time by (kind, state), and the age of the oldest queued job."""
    rows = fetchall(
        """SELECT kind, state, count(*),
                  coalesce(sum(extract(epoch FROM finished_at - started_at)), 0)
           FROM jobs GROUP BY kind, state"""
    )
    lag = fetchone(
        "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM jobs "
        "WHERE state = 'queued'"
    )
    return {"by_kind_state": rows, "queue_lag_seconds": float(lag[0])}
