"""A job's row is its message's outbox entry: recording a job registers its message, sent
once the recording transaction commits. A send that fails, or never happens (the process
died, no broker connected), leaves the row queued for the workers' re-send pass
(``jobs.stale_jobs``), so the message is delivered at least once.

The sender is the worker's ``enqueue_job``, connected at boot (workers/boot.py): models
import neither web nor workers.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from models.infra.db import after_commit

log = logging.getLogger("models.outbox")

_sender: Callable[[int], bool] | None = None

# The job insert, the one statement that records a job: on the unit of work's connection
# (models.jobs.create_job) or on an upload's own (models.imports.Upload).
INSERT_JOB = "INSERT INTO jobs (kind, segment_id, params) VALUES (%s, %s, %s) RETURNING id"


def job_row(kind: StrEnum, segment_id: int, params: dict[str, Any]) -> tuple:
    """INSERT_JOB's parameters."""
    return (kind.value, segment_id, json.dumps(params))


def connect(sender: Callable[[int], bool] | None) -> None:
    """Send job messages with ``sender(job_id) -> sent``; None: send none."""
    global _sender
    _sender = sender


def job_recorded(job_id: int) -> None:
    """Send job ``job_id``'s message once the current transaction commits."""
    after_commit(functools.partial(send_job, job_id))


def send_job(job_id: int) -> bool:
    """Send the message of a job whose row is committed. False when it was not sent."""
    if _sender is None:
        log.warning("job %s recorded with no broker connected; the re-send pass sends it", job_id)
        return False
    return _sender(job_id)
