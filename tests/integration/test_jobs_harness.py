"""The in-process job runner itself (tests/integration/jobs.py): a test that asks for a
batch size gets it, so the multi-batch paths it means to cover really run."""

from __future__ import annotations

import os
import threading
import time

import psycopg2

from tests.integration.auto_segments import add_users, create_auto, members, segment
from tests.integration.jobs import run_job


def test_drain_runs_the_job_in_batches_of_the_size_asked_for(client, sql):
    """The first batch, of one user, commits while user 3 is locked; one batch of the
    default size (1000) would wait on user 3 and commit nobody until then. (Later
    batches grow by time, JOB_CHUNK_TIME_MS: the second, of two, waits on user 3.)"""
    add_users(sql, 1, 3)
    job_id = create_auto(client, "BATCHED", 100)
    seg_id, _ = segment(sql, "BATCHED")
    holder = psycopg2.connect(os.environ["DATABASE_DSN"])
    with holder.cursor() as cur:
        cur.execute("SELECT 1 FROM users WHERE id = 3 FOR UPDATE")
    runner = threading.Thread(target=run_job, args=(job_id,), kwargs={"batch": 1})
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while members(sql, seg_id) != {1} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert members(sql, seg_id) == {1}
    finally:
        holder.rollback()
        holder.close()
        runner.join(30)
    assert members(sql, seg_id) == {1, 2, 3}
