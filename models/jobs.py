"""Durable bulk jobs: a row per job, written in the transaction that needs the work.

The row is the truth; a broker message only says "look at job N". Delivery is at least
once, so a job is claimed with a lease, advanced one batch per transaction (the batch
and its checkpoint commit together), and resumed from the checkpoint by whoever holds
the lease next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peewee import SQL, Case, fn

from models import imports, job_batches, outbox
from models.infra.db import db, read_only, unit_of_work
from models.job_batches import BatchResult
from models.tables import Job, JobKind, JobState, Membership, User

# The one retry budget: a job fails for good after this many claims. The actor's own
# Dramatiq retries are derived from it (workers/actors.py).
MAX_ATTEMPTS = 5

# One batch of a job: (the job's row, locked; batch size) -> what it did.
Batch = Callable[[Job, int], BatchResult]
BATCHES: dict[JobKind, Batch] = {
    JobKind.ASSIGN_AUTO: job_batches.assign_batch,
    JobKind.SHRINK_AUTO: job_batches.shrink_batch,
    JobKind.CLEANUP_SEGMENT: job_batches.cleanup_batch,
    JobKind.IMPORT: imports.import_batch,
}
SAMPLE = 100  # unknown ids a job's result keeps
# A finished job that went over this many users or members refreshes the statistics of
# memberships: the next job and every read then plan on what is there now.
ANALYZE_AFTER = 10_000
UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class JobStats:
    by_kind_state: list[tuple[str, str, int, float]]  # kind, state, count, run seconds
    queue_lag_seconds: float


def _total(kind: JobKind, segment_id: int, job_id: int):
    """How much work the job has, as a subquery evaluated when it is first claimed."""
    if kind is JobKind.ASSIGN_AUTO:
        return User.select(fn.COUNT(SQL("*")))
    if kind is JobKind.IMPORT:  # counted when the upload commits
        return Job.select(Job.total).where(Job.id == job_id)
    return Membership.select(fn.COUNT(SQL("*"))).where(Membership.segment == segment_id)


def _lease(seconds: float):
    return SQL("now() + make_interval(secs => %s)", (seconds,))


def create_job(kind: JobKind, segment_id: int, params: dict[str, Any]) -> int:
    """Record a job; call inside the transaction of the change that needs it. Its message
    is sent once that transaction commits (models/outbox.py): callers send nothing."""
    (job_id,) = db.execute_sql(
        outbox.INSERT_JOB, outbox.job_row(kind, segment_id, params)
    ).fetchone()
    outbox.job_recorded(job_id)
    return job_id


@read_only
def get_job(job_id: int) -> Job | None:
    return Job.get_or_none(Job.id == job_id)


def _earlier_import():
    """An unfinished import of the job's segment recorded before it: the job waits."""
    Earlier = Job.alias("earlier")
    return fn.EXISTS(
        Earlier.select(SQL("1")).where(
            Earlier.kind == JobKind.IMPORT.value,
            Earlier.segment == Job.segment,
            Earlier.id < Job.id,
            Earlier.state.in_(UNFINISHED),
        )
    )


@unit_of_work
def claim_job(job_id: int, owner: str, lease_seconds: int) -> bool:
    """Take the lease of a queued job, or of a running one whose holder went silent. An
    import waits while an earlier import of its segment is unfinished (next_import)."""
    claimable = (
        (Job.state == JobState.QUEUED)
        | ((Job.state == JobState.RUNNING) & (Job.lease_until < fn.now()))
    ) & ~((Job.kind == JobKind.IMPORT.value) & _earlier_import())
    claimed = list(
        Job.update(
            state=JobState.RUNNING.value,
            lease_owner=owner,
            lease_until=_lease(lease_seconds),
            attempts=Job.attempts + 1,
            started_at=fn.COALESCE(Job.started_at, fn.now()),
            updated_at=fn.now(),
        )
        .where(Job.id == job_id, claimable)
        .returning(Job.kind, Job.segment, Job.total)
        .execute()
    )
    if not claimed:
        return False
    (job,) = claimed
    if job.total is None:
        total = _total(JobKind(job.kind), job.segment_id, job_id)
        Job.update(total=total).where(Job.id == job_id).execute()
    return True


@unit_of_work
def advance_job(job_id: int, owner: str, batch_size: int, lease_seconds: int) -> bool | None:
    """Run one batch and commit it with the checkpoint. True when the job is finished,
    False when more remains, None when this worker no longer holds the lease."""
    # The batch's changes are made for whoever started the job: set in the same
    # statement that locks its row, so it costs no round trip.
    acting = fn.set_config("segments.actor", Job.actor, True).alias("acting")
    job = (
        Job.select(Job, acting)
        .where(Job.id == job_id, Job.state == JobState.RUNNING, Job.lease_owner == owner)
        .for_update()
        .first()
    )
    if job is None:
        return None
    batch = BATCHES[JobKind(job.kind)](job, batch_size)
    done = job.done + batch.done
    changes: dict[str, Any] = {
        "checkpoint": batch.checkpoint,
        "phase": batch.phase,
        "done": done,
        "lease_until": _lease(lease_seconds),
        "updated_at": fn.now(),
    }
    if batch.counts is not None:
        changes["result"] = _add_counts(job.result, batch)
    if batch.finished:
        _drop_staging(job)
        changes |= {
            "state": JobState.FAILED.value if batch.error else JobState.DONE.value,
            "finished_at": fn.now(),
            "total": max(job.total or 0, done),
            "lease_owner": None,
            "error": batch.error,
        }
    Job.update(changes).where(Job.id == job_id).execute()
    return batch.finished


@unit_of_work
def refresh_statistics(job_id: int) -> bool:
    """ANALYZE memberships after a big job (autovacuum's analyze comes only after 10% of
    the table changed, and maybe minutes later). True when it ran."""
    job = Job.get_or_none(Job.id == job_id)
    if job is None or job.done < ANALYZE_AFTER:
        return False
    db.execute_sql("ANALYZE memberships")
    return True


def _add_counts(result: dict | None, batch: BatchResult) -> dict:
    """The job's result with a batch's counts added (the row is locked by the caller)."""
    result = dict(result or {})
    for name, n in (batch.counts or {}).items():
        result[name] = result.get(name, 0) + n
    samples = [("unknown_sample", batch.unknown)]
    if "conflicts" in result:  # an import into a layer's segment
        samples.append(("conflict_sample", batch.conflicted))
    for name, ids in samples:
        result[name] = (result.get(name, []) + (ids or []))[:SAMPLE]
    return result


@unit_of_work
def release_job(job_id: int, owner: str, error: str) -> str:
    """Give the lease back after a failed batch: queued for a retry, or failed for good
    after MAX_ATTEMPTS. Returns the new state ("lost" if another worker holds it)."""
    spent = Job.attempts >= MAX_ATTEMPTS
    released = list(
        Job.update(
            error=error[:2000],
            lease_owner=None,
            lease_until=None,
            updated_at=fn.now(),
            state=Case(None, [(spent, JobState.FAILED.value)], JobState.QUEUED.value),
            finished_at=Case(None, [(spent, fn.now())], None),
        )
        .where(Job.id == job_id, Job.lease_owner == owner)
        .returning(Job.state)
        .execute()
    )
    if not released:
        return "lost"
    if released[0].state == JobState.FAILED:
        _drop_staging(Job.get_by_id(job_id))
    return released[0].state


def _drop_staging(job: Job) -> None:
    """An ended import's staged ids are no longer needed (no-op for other kinds)."""
    if job.kind == JobKind.IMPORT:
        imports.drop_staging(job)


@read_only
def next_import(job_id: int) -> int | None:
    """The import of the same segment that waited for this one (send it when this ends)."""
    ended = Job.select(Job.segment).where(Job.id == job_id, Job.kind == JobKind.IMPORT.value)
    waiting = (
        Job.select(Job.id)
        .where(
            Job.kind == JobKind.IMPORT.value,
            Job.segment.in_(ended),
            Job.id > job_id,
            Job.state == JobState.QUEUED,
        )
        .order_by(Job.id)
        .first()
    )
    return None if waiting is None else waiting.id


@unit_of_work
def stale_jobs(queued_for_seconds: float, limit: int = 100) -> list[int]:
    """Jobs whose message was lost (never sent, broker down, worker died). Marks them as
    re-sent now, so the next pass does not send them again at once."""
    stale = (
        Job.select(Job.id)
        .where(
            (
                (Job.state == JobState.QUEUED)
                & (Job.updated_at < SQL("now() - make_interval(secs => %s)", (queued_for_seconds,)))
            )
            | ((Job.state == JobState.RUNNING) & (Job.lease_until < fn.now()))
        )
        .order_by(Job.id)
        .limit(limit)
        .for_update("FOR UPDATE SKIP LOCKED")
    )
    touched = Job.update(updated_at=fn.now()).where(Job.id.in_(stale)).returning(Job.id)
    return [job.id for job in touched.execute()]


@read_only
def job_stats() -> JobStats:
    """Counts and run time by (kind, state), and the age of the oldest queued job."""
    seconds = fn.COALESCE(fn.SUM(fn.date_part("epoch", Job.finished_at - Job.started_at)), 0)
    rows = (
        Job.select(Job.kind, Job.state, fn.COUNT(SQL("*")), seconds)
        .group_by(Job.kind, Job.state)
        .tuples()
    )
    lag = (
        Job.select(fn.COALESCE(fn.date_part("epoch", fn.now() - fn.MIN(Job.created_at)), 0))
        .where(Job.state == JobState.QUEUED)
        .scalar()
    )
    return JobStats([(k, s, n, float(t)) for k, s, n, t in rows], float(lag))
