"""Run bulk jobs in-process through the real actor: Dramatiq's StubBroker and Worker.

Nothing here sends a job's message: the code under test does (models/outbox.py), and
``run_job`` fails when it did not."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import dramatiq
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker

from models import jobs, outbox
from models.imports import ImportOptions
from models.infra.db import db
from models.infra.settings import activate, active
from models.tables import Job
from models.uploads import Upload


@contextmanager
def batch_size(size: int | None):
    """Run the block's jobs with batches of ``size`` (the setting BATCH_SIZE)."""
    before = active()
    if size is not None:
        activate(dataclasses.replace(before, batch_size=size))
    try:
        yield
    finally:
        activate(before)


def drain(batch: int | None = None, queue: str = "jobs") -> None:
    """Start a Dramatiq worker, let it process every message queued so far on ``queue``,
    stop it. No worker runs in between, so a test can arrange a job's state before it
    runs."""
    # The batch size is set before the worker starts: its thread reads the settings as
    # soon as it takes a message, often before start() has even returned.
    broker = booted_broker()
    with batch_size(batch):
        worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=1)
        # (Worker.pause() would do, but a paused consumer waits 3 s before it resumes.)
        worker.start()
        added = broker.middleware[-1]
        try:
            broker.join(queue, fail_fast=True, timeout=120_000)
        finally:
            worker.stop()
            # Each Worker adds a middleware of its own to the broker; take it back.
            broker.middleware.remove(added)


def booted_broker() -> StubBroker:
    broker = dramatiq.broker.global_broker
    assert isinstance(broker, StubBroker), "in-process tests run on Dramatiq's StubBroker"
    return broker


def sent_jobs() -> list[int]:
    """The jobs whose messages wait on the "jobs" queue, in the order they were sent."""
    queue = booted_broker().queues.get("jobs")
    return [Message.decode(raw).args[0] for raw in (queue.queue if queue else [])]


def run_job(job_id: int, batch: int | None = None) -> Job:
    """Run the queue dry, after checking that the code under test sent the job's message.
    Returns the job's row."""
    assert job_id in sent_jobs(), f"job {job_id} was recorded but its message never sent"
    drain(batch)
    job = jobs.get_job(job_id)
    assert job is not None
    return job


def resend_job(job_id: int, batch: int | None = None) -> Job:
    """Send the job's message again, as the re-send pass does (a duplicate is harmless by
    design), and run it."""
    assert outbox.send_job(job_id)
    return run_job(job_id, batch)


def run_unfinished_jobs(batch: int | None = None) -> None:
    """Run every unfinished job, after checking that each one's message was sent."""
    unsent = set(jobs.stale_jobs(-1)) - set(sent_jobs())
    assert not unsent, f"jobs recorded but their messages never sent: {sorted(unsent)}"
    drain(batch)
    # A job the drain left unfinished (a claim refused, a lease lost) is a harness fault:
    # say so here, instead of as a model mismatch steps later.
    with db.connection_context():
        left = [j.id for j in Job.select(Job.id).where(Job.state.in_(jobs.UNFINISHED))]
    assert not left, f"jobs left unfinished by the drain: {left}"


def start_import(segment: str, ids: list[int], options: ImportOptions | None = None) -> int:
    """Stage ``ids`` for ``segment`` as an upload does and record the import job (its
    message is sent by the upload's commit); the job's id."""
    upload = Upload(segment, options or ImportOptions(), None)
    try:
        upload.start(active().import_max_uploads_total)
        upload.add({str(i).encode() for i in ids})
        return upload.commit().job_id
    finally:
        upload.close()
