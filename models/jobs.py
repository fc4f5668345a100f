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

from models import imports, job_batches
from models.db import read_only, unit_of_work
from models.job_batches import BatchResult
from models.tables import ImportStaging, Job, JobKind, JobState, Membership, User

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
UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class JobStats:
    by_kind_state: list[tuple[str, str, int, float]]  # kind, state, count, run seconds
    queue_lag_seconds: float


def _total(kind: JobKind, segment_id: int, job_id: int):
    """How much work the job has, as a subquery evaluated when it is first claimed."""
    if kind is JobKind.ASSIGN_AUTO:
        return User.select(fn.COUNT(SQL("*")))
    if kind is JobKind.IMPORT:  # normally counted when the upload commits
        return ImportStaging.select(fn.COUNT(ImportStaging.user.distinct())).where(
            ImportStaging.job == job_id
        )
    return Membership.select(fn.COUNT(SQL("*"))).where(Membership.segment == segment_id)


def _lease(seconds: float):
    return SQL("now() + make_interval(secs => %s)", (seconds,))


def create_job(kind: JobKind, segment_id: int, params: dict[str, Any]) -> int:
    """Record a job; call inside the transaction of the change that needs it."""
    return Job.insert(kind=kind.value, segment=segment_id, params=params).execute()


@read_only
def get_job(job_id: int) -> Job | None:
    return Job.get_or_none(Job.id == job_id)


@unit_of_work
def claim_job(job_id: int, owner: str, lease_seconds: int) -> bool:
    """Take the lease of a queued job, or of a running one whose holder went silent."""
    claimable = (Job.state == JobState.QUEUED) | (
        (Job.state == JobState.RUNNING) & (Job.lease_until < fn.now())
    )
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
    job = (
        Job.select()
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
        # An import's staged ids are no longer needed (no-op for other kinds).
        ImportStaging.delete().where(ImportStaging.job == job_id).execute()
        changes |= {
            "state": JobState.DONE.value,
            "finished_at": fn.now(),
            "total": max(job.total or 0, done),
            "lease_owner": None,
            "error": None,
        }
    Job.update(changes).where(Job.id == job_id).execute()
    return batch.finished


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
        ImportStaging.delete().where(ImportStaging.job == job_id).execute()
    return released[0].state


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
