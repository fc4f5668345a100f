"""Run bulk jobs in-process through the real actor: Dramatiq's StubBroker and Worker."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import dramatiq

from models import jobs
from models.db import db
from models.settings import activate, active
from models.tables import Job
from tests.conftest import STUB_BROKER
from workers.actors import enqueue_job


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
    with batch_size(batch):
        worker = dramatiq.Worker(STUB_BROKER, worker_timeout=20, worker_threads=1)
        # (Worker.pause() would do, but a paused consumer waits 3 s before it resumes.)
        worker.start()
        added = STUB_BROKER.middleware[-1]
        try:
            STUB_BROKER.join(queue, fail_fast=True, timeout=120_000)
        finally:
            worker.stop()
            # Each Worker adds a middleware of its own to the broker; take it back.
            STUB_BROKER.middleware.remove(added)


def run_job(job_id: int, batch: int | None = None) -> Job:
    """Send the job's message (again: a duplicate is harmless by design) and run the
    queue dry. Returns the job's row."""
    assert enqueue_job(job_id)
    drain(batch)
    job = jobs.get_job(job_id)
    assert job is not None
    return job


def run_unfinished_jobs(batch: int | None = None) -> None:
    """Send every unfinished job, as the scheduler's re-enqueue pass does, and run them."""
    for job_id in jobs.stale_jobs(-1):
        assert enqueue_job(job_id)
    drain(batch)
    # A job the drain left unfinished (a claim refused, a lease lost) is a harness fault:
    # say so here, instead of as a model mismatch steps later.
    with db.connection_context():
        left = [j.id for j in Job.select(Job.id).where(Job.state.in_(jobs.UNFINISHED))]
    assert not left, f"jobs left unfinished by the drain: {left}"
