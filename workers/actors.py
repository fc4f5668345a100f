"""The actors. Each is small: the work itself lives in ``models``."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

import dramatiq
from redis.exceptions import RedisError

from models import jobs, memberships
from models.chunking import ChunkSizer
from workers.broker import settings

log = logging.getLogger("workers.actors")

HOUR_MS = 3_600_000


@dramatiq.actor(queue_name="jobs", max_retries=3, min_backoff=1_000, time_limit=6 * HOUR_MS)
def run_job(job_id: int) -> None:
    """Claim the job and advance it batch by batch until it is finished."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not jobs.claim_job(job_id, owner, settings.job_lease_seconds):
        return  # finished, or another worker holds a live lease: a duplicate message
    started = time.monotonic()
    # Batches sized by time (JOB_CHUNK_TIME_MS), starting from BATCH_SIZE rows.
    sizer = ChunkSizer(settings.job_chunk_time, settings.batch_size)
    try:
        while True:
            batch_started = time.monotonic()
            finished = jobs.advance_job(job_id, owner, sizer.size, settings.job_lease_seconds)
            sizer.record(time.monotonic() - batch_started)
            if finished is None:
                log.warning("job %s: lease lost, another worker resumes it", job_id)
                return
            if finished:
                log.info("job %s done in %.1fs", job_id, time.monotonic() - started)
                return
            # Leave the database some room for the readers between two batches.
            time.sleep(settings.job_batch_pause)
    except Exception as exc:
        # Clients read the job's error: a kind, not driver text that may name hosts.
        state = jobs.release_job(job_id, owner, f"batch failed ({type(exc).__name__})")
        log.exception("job %s failed a batch; now %s", job_id, state)
        if state == "queued":
            raise  # Dramatiq retries with backoff; the job resumes from its checkpoint


@dramatiq.actor(queue_name="periodic", max_retries=0, time_limit=10 * 60_000)
def sweep_expired() -> None:
    """Remove expired memberships, batch after batch, until none is left."""
    total = 0
    while True:
        removed = memberships.expire_memberships(settings.sweep_batch_size)
        total += removed
        if removed < settings.sweep_batch_size:
            break
    if total:
        log.info("ttl sweep removed %d memberships", total)


@dramatiq.actor(queue_name="periodic", max_retries=0, time_limit=60_000)
def requeue_stale_jobs() -> None:
    """Re-send jobs whose message was lost: Redis was down at commit, or a worker died."""
    for job_id in jobs.stale_jobs(settings.requeue_interval):
        enqueue_job(job_id)


def enqueue_job(job_id: int) -> bool:
    """Send the job's message, after the transaction that recorded the job committed.

    A failure is logged, not raised: the row stays queued and requeue_stale_jobs
    delivers it once Redis is back.
    """
    try:
        run_job.send(job_id)
    except (RedisError, OSError, dramatiq.errors.BrokerConnectionError) as exc:
        log.warning("job %s recorded but not sent (%s); it will be re-sent", job_id, exc)
        return False
    return True
