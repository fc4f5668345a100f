"""Send-after-commit: recording a job sends its message once the transaction that
recorded it commits, whoever called; a rollback sends nothing (models/outbox.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models import jobs, outbox, segments
from models.infra.db import db, unit_of_work
from models.tables import Job
from tests.integration.jobs import run_job, sent_jobs
from workers.actors import enqueue_job


def test_a_job_recorded_by_a_model_function_is_sent_after_its_commit(clean_db, stub_broker):
    view = segments.create_segment("SENT", Decimal(10))  # no web, no enqueue call
    assert sent_jobs() == [view.job_id]
    assert run_job(view.job_id).state == "done"


def test_nothing_is_sent_before_the_commit_and_nothing_after_a_rollback(clean_db, stub_broker):
    seen_inside: list[list[int]] = []

    @unit_of_work
    def create_then_fail() -> None:
        segments.create_segment("ROLLED_BACK", Decimal(10))  # a nested unit of work
        seen_inside.append(sent_jobs())
        raise RuntimeError("the change fails after recording its job")

    with pytest.raises(RuntimeError):
        create_then_fail()
    assert seen_inside == [[]] and sent_jobs() == []
    with db.connection_context():
        assert Job.select().count() == 0


def test_a_nested_unit_of_work_sends_when_the_outermost_commits(clean_db, stub_broker):
    seen_inside: list[list[int]] = []

    @unit_of_work
    def two_segments() -> list[int | None]:
        first = segments.create_segment("FIRST", Decimal(5))
        seen_inside.append(sent_jobs())
        return [first.job_id, segments.create_segment("SECOND", Decimal(5)).job_id]

    ids = two_segments()
    assert seen_inside == [[]] and sent_jobs() == ids


def test_inside_a_bare_transaction_the_send_waits_for_its_commit(clean_db, stub_broker):
    with db.connection_context():
        with db.atomic():
            view = segments.create_segment("BARE", Decimal(5))
            assert sent_jobs() == []
        assert sent_jobs() == [view.job_id]
    assert jobs.get_job(view.job_id).state == "queued"


def test_with_no_broker_connected_the_job_waits_for_the_resend_pass(clean_db, stub_broker):
    outbox.connect(None)
    try:
        view = segments.create_segment("UNSENT", Decimal(5))
    finally:
        outbox.connect(enqueue_job)
    assert sent_jobs() == []
    assert view.job_id in jobs.stale_jobs(-1)
