"""Manual adds (with and without move), imports (with and without move), a raise and
new users racing on one layer: the database keeps one membership per user per layer,
and once the jobs are done the invariant checker passes."""

from __future__ import annotations

import os
import random
import threading
import time
from decimal import Decimal

import peewee
import psycopg2

from models import imports, jobs, layers, memberships, segments, users
from models.errors import Conflict
from models.verify import verify
from tests.integration.jobs import run_unfinished_jobs, start_import
from workers import actors

RETRYABLE = (peewee.OperationalError,)  # a deadlock the server broke: the client retries


def retried(fn, *args, **kwargs):
    for _ in range(20):
        try:
            return fn(*args, **kwargs)
        except RETRYABLE:
            continue
    raise AssertionError(f"{fn.__name__} kept failing")


def finish(job_id: int) -> None:
    """The worker's actor, run here until the job ends (a failed batch is retried)."""
    for _ in range(20):
        try:
            actors.run_job(job_id)
        except Exception:  # noqa: BLE001 - released for a retry, like Dramatiq would
            continue
        if jobs.get_job(job_id).state in ("done", "failed"):
            return


def test_racing_writers_keep_one_membership_per_user_per_layer(client, sql):
    sql.execute("INSERT INTO users (id) SELECT generate_series(1, 600)")
    layers.create_layer("L")
    segments.create_segment("A", Decimal(0), "L")
    segments.create_segment("B", Decimal(0), "L")
    segments.create_segment("C", Decimal(20), "L")
    segments.create_segment("D", Decimal(10), "L")
    run_unfinished_jobs()
    import_a = start_import("A", list(range(1, 601)), imports.ImportOptions(move=False))
    import_b = start_import("B", list(range(300, 601)), imports.ImportOptions(move=True))
    barrier = threading.Barrier(5)
    conflicts: list[int] = []

    def manual() -> None:
        barrier.wait(10)
        rng = random.Random(7)
        for user in range(1, 400, 3):
            try:
                retried(
                    memberships.change_memberships,
                    user,
                    add=[rng.choice("ABCD")],
                    move=rng.random() < 0.5,
                )
            except Conflict:
                conflicts.append(user)

    def raise_d() -> None:
        barrier.wait(10)
        view = retried(segments.change_percent, "D", Decimal(45))
        finish(view.job_id)

    def new_users() -> None:
        barrier.wait(10)
        for user in range(601, 801):
            retried(users.create_user, user)

    def run(job_id: int):
        def go() -> None:
            barrier.wait(10)
            finish(job_id)

        return go

    threads = [
        threading.Thread(target=t)
        for t in (manual, raise_d, new_users, run(import_a), run(import_b))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads)
    run_unfinished_jobs()
    sql.execute(
        "SELECT user_id, count(*) FROM memberships WHERE layer_id IS NOT NULL "
        "GROUP BY 1 HAVING count(*) > 1"
    )
    assert sql.fetchall() == []
    sql.execute("SELECT count(*) FROM jobs WHERE state <> 'done'")
    assert sql.fetchone()[0] == 0
    sql.execute("SELECT count(DISTINCT user_id) FROM memberships")
    assert sql.fetchone()[0] > 500  # the writers did write
    report = verify()
    assert report["ok"], report["violations"]
    assert conflicts  # some adds met a sibling and were refused


def test_a_sibling_committed_while_a_manual_add_waits_is_a_409(client, sql):
    """The check in Python sees nothing (the sibling is not committed yet); the unique
    index makes the add wait, then refuses it: 409, and the user keeps the sibling."""
    sql.execute("INSERT INTO users (id) VALUES (1)")
    layers.create_layer("L")
    segments.create_segment("A", Decimal(0), "L")
    segments.create_segment("B", Decimal(0), "L")
    other = psycopg2.connect(os.environ["DATABASE_DSN"])
    with other.cursor() as cur:
        cur.execute(
            "INSERT INTO memberships (user_id, segment_id, source) "
            "SELECT 1, id, 'manual' FROM segments WHERE name = 'B'"
        )
    answer: list = []
    adding = threading.Thread(
        target=lambda: answer.append(client.patch("/users", json={"id": 1, "segments": ["A"]}))
    )
    adding.start()
    wait_for_lock_wait(sql)
    other.commit()
    other.close()
    adding.join(30)
    assert answer[0].status_code == 409, answer[0].text
    sql.execute("SELECT s.name FROM memberships m JOIN segments s ON s.id = m.segment_id")
    assert sql.fetchall() == [("B",)]


def wait_for_lock_wait(sql, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sql.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        if sql.fetchone()[0]:
            return
        time.sleep(0.05)
    raise AssertionError("the add never waited for the uncommitted sibling")
