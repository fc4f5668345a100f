"""The actors: small functions, their Dramatiq options next to them (``ACTORS``). The
work itself lives in ``models``. They are bound to the broker at boot
(workers/broker.py), so importing this module touches nothing."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime

import dramatiq
from redis.exceptions import RedisError

from models import jobs, memberships, partitions, webhooks
from models.chunking import ChunkSizer
from models.infra.settings import active
from workers import delivery

log = logging.getLogger("workers.actors")

HOUR_MS = 3_600_000
MIN_BATCH = 1000


def run_job(job_id: int) -> None:
    """Claim the job and advance it batch by batch until it is finished. Each batch
    borrows a pooled connection for its own transaction only."""
    settings = active()
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not jobs.claim_job(job_id, owner, settings.job_lease_seconds):
        return  # finished, or another worker holds a live lease: a duplicate message
    started = time.monotonic()
    # Batches sized by time (JOB_CHUNK_TIME_MS), starting from BATCH_SIZE rows.
    # Never below MIN_BATCH rows (unless BATCH_SIZE asks for less). Under load a batch's
    # fixed cost (job row, lease, commit, each a round trip waiting for a core) nears
    # the chunk time, and sizing by time alone then shrank an import to 100-row batches
    # at 1,000 ids/s (docs/benchmarks.md).
    sizer = ChunkSizer(
        settings.job_chunk_time, settings.batch_size, low=min(MIN_BATCH, settings.batch_size)
    )
    try:
        while True:
            batch_started = time.monotonic()
            finished = jobs.advance_job(job_id, owner, sizer.size, settings.job_lease_seconds)
            sizer.record(time.monotonic() - batch_started)
            if finished is None:
                log.warning("job %s: lease lost, another worker resumes it", job_id)
                return
            if finished:
                log.info("job %s ended in %.1fs", job_id, time.monotonic() - started)
                break
            # Leave the database some room for the readers between two batches.
            time.sleep(settings.job_batch_pause)
    except Exception as exc:
        # Clients read the job's error: a kind, not driver text that may name hosts.
        state = jobs.release_job(job_id, owner, f"batch failed ({type(exc).__name__})")
        log.exception("job %s failed a batch; now %s", job_id, state)
        if state == "queued":
            raise  # Dramatiq retries with backoff; the job resumes from its checkpoint
        _send_next_import(job_id)
        return
    _send_next_import(job_id)
    # Ended: a failure here is no batch's (a retried message finds the job finished).
    jobs.refresh_statistics(job_id)


def _send_next_import(job_id: int) -> None:
    """An import of the same segment that waited for this job can run now."""
    waiting = jobs.next_import(job_id)
    if waiting is not None:
        enqueue_job(waiting)


def sweep_expired() -> None:
    """Remove expired memberships, batch after batch, until none is left."""
    size = active().sweep_batch_size
    total = 0
    while True:
        removed = memberships.expire_memberships(size)
        total += removed
        if removed < size:
            break
    if total:
        log.info("ttl sweep removed %d memberships", total)


def requeue_stale_jobs() -> None:
    """Re-send jobs whose message was lost: the broker was down at commit, or a worker died."""
    for job_id in jobs.stale_jobs(active().requeue_interval):
        enqueue_job(job_id)


def maintain_history() -> None:
    """Make history's months ahead; drop the months retention no longer keeps."""
    done = partitions.maintain(datetime.now(UTC).date(), active().history_retention_months)
    if done.created or done.dropped:
        log.info(
            "history partitions: created %s (%d events moved from the default), dropped %s",
            [f"{m:%Y-%m}" for m in done.created],
            done.moved,
            [f"{m:%Y-%m}" for m in done.dropped],
        )


def dispatch_webhooks() -> None:
    """Send a delivery for every webhook that is not backing off or being delivered."""
    for webhook_id in webhooks.due_webhooks():
        send(deliver_webhook.__name__, webhook_id)


def deliver_webhook(webhook_id: int) -> None:
    """Deliver a few of the webhook's pending batches (workers/delivery.py); send the
    next message at once if more are pending."""
    if delivery.deliver(webhook_id):  # sent once the slot is free, so it can take it
        send(deliver_webhook.__name__, webhook_id)


# (actor, Dramatiq options). A job's claims are its retry budget (jobs.MAX_ATTEMPTS):
# Dramatiq retries a failed batch until the job itself has used them all.
ACTORS = [
    (
        run_job,
        {
            "queue_name": "jobs",
            "max_retries": jobs.MAX_ATTEMPTS - 1,
            "min_backoff": 1_000,
            "time_limit": 6 * HOUR_MS,
        },
    ),
    (sweep_expired, {"queue_name": "periodic", "max_retries": 0, "time_limit": 10 * 60_000}),
    (requeue_stale_jobs, {"queue_name": "periodic", "max_retries": 0, "time_limit": 60_000}),
    (dispatch_webhooks, {"queue_name": "periodic", "max_retries": 0, "time_limit": 60_000}),
    (maintain_history, {"queue_name": "periodic", "max_retries": 0, "time_limit": 10 * 60_000}),
    # Own queue: receivers' latency never delays jobs; a failure is retried by backoff.
    (deliver_webhook, {"queue_name": "webhooks", "max_retries": 0, "time_limit": 120_000}),
]


def send(actor: str, *args: object) -> None:
    """Send a message to the named actor on the broker the process booted with."""
    # Not dramatiq.get_broker(): unbooted, it would quietly make a RabbitMQ broker.
    if dramatiq.broker.global_broker is None:
        raise RuntimeError("the process is not booted: call workers.boot.bootstrap first")
    dramatiq.broker.global_broker.get_actor(actor).send(*args)


def enqueue_job(job_id: int) -> bool:
    """Send the job's message, after the transaction that recorded the job committed.

    A failure is logged, not raised: the row stays queued and requeue_stale_jobs
    delivers it once the broker is back. (RedisBroker raises redis-py's errors as they
    are; RabbitmqBroker wraps pika's in Dramatiq's ConnectionClosed.)
    """
    try:
        send(run_job.__name__, job_id)
    except (RedisError, OSError, dramatiq.errors.BrokerConnectionError) as exc:
        log.warning("job %s recorded but not sent (%s); it will be re-sent", job_id, exc)
        return False
    return True
