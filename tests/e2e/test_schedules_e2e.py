"""Scheduled steps on real processes: a scheduler killed in the middle of a step, and two
schedulers running side by side, run every step exactly once."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from models.verify import verify
from scripts.procs import Proc, procfile_command
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e


def scheduler(stack, name: str) -> Proc:
    env = {**stack.env, "SCHEDULE_INTERVAL": "0.2"}
    return Proc(name, env, stack.tmp, command=procfile_command("scheduler"))


def step_locked(dsn: str) -> bool:
    """Whether a runner holds the due step (it cannot be locked without waiting)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id FROM schedule_steps WHERE state = 'pending' AND at <= now() "
                "FOR UPDATE SKIP LOCKED"
            )
            free = cur.fetchall()
            cur.execute("SELECT count(*) FROM schedule_steps WHERE state = 'pending'")
            return not free and cur.fetchone()[0] > 0
    finally:
        conn.close()


def test_a_step_survives_its_scheduler_killed_mid_step_and_runs_once(make_stack, sql):
    import os

    dsn = os.environ["DATABASE_DSN"]
    sql.execute("INSERT INTO users (id) SELECT generate_series(1, 2000)")
    stack = make_stack("web", "worker")
    http = stack.http
    assert http.post("/layers", json={"layer": "L"}).status_code == 201
    r = http.post("/segments", json={"segment": "A", "layer": "L", "auto_percent": 0})
    assert r.status_code == 201
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    r = http.put("/segments/A/schedule", json={"steps": [{"at": soon, "auto_percent": 50}]})
    assert r.status_code == 200, r.text
    # Hold the segment's row: the first scheduler claims the step, then waits inside it.
    holder = psycopg2.connect(dsn)
    with holder.cursor() as cur:
        cur.execute("SELECT 1 FROM segments WHERE name = 'A' FOR UPDATE")
    first = scheduler(stack, "scheduler1")
    others: list[Proc] = []
    try:
        wait_for(lambda: step_locked(dsn), 20, "the first scheduler to take the step")
        first.stop(signal.SIGKILL)
        # Two schedulers from now on. The dead one's backend still waits for the row (it
        # notices its client is gone only when it answers); once the row is free it
        # ends, its transaction rolled back, and one of these takes the step.
        others = [scheduler(stack, "scheduler2"), scheduler(stack, "scheduler3")]
        holder.rollback()
        body = wait_for(
            lambda: (
                (s := http.get("/segments/A/schedule").json())["steps"][0]["state"] != "pending"
                and s
            ),
            20,
            "the step to run",
        )
        step = body["steps"][0]
        assert step["state"] == "done", step
        job = stack.wait_job(step["job_id"])
        assert job["state"] == "done"
    finally:
        holder.close()
        for proc in others:
            proc.stop()
    sql.execute("SELECT kind, count(*) FROM jobs GROUP BY kind")
    assert dict(sql.fetchall()) == {"assign_auto": 1}
    sql.execute(
        "SELECT count(*), count(DISTINCT user_id) FROM history h "
        "JOIN segments s ON s.id = h.segment_id WHERE s.name = 'A'"
    )
    events, users = sql.fetchone()
    assert events == users > 0
    assert http.get("/segments/A").json()["auto_percent"] == 50
    report = verify()
    assert report["ok"], report["violations"]


def test_two_schedulers_run_a_ramp_once_each_step(make_stack, sql):
    sql.execute("INSERT INTO users (id) SELECT generate_series(1, 500)")
    stack = make_stack("web", "worker")
    http = stack.http
    base = datetime.now(UTC) + timedelta(seconds=2)
    for name in ("A", "B", "C"):
        http.post("/segments", json={"segment": name, "auto_percent": 1})
        steps = [
            {"at": (base + timedelta(seconds=i * 0.5)).isoformat(), "auto_percent": 10 * (i + 1)}
            for i in range(4)
        ] + [{"at": (base + timedelta(seconds=3)).isoformat(), "delete": True}]
        assert http.put(f"/segments/{name}/schedule", json={"steps": steps}).status_code == 200
    runners = [scheduler(stack, "scheduler1"), scheduler(stack, "scheduler2")]
    try:
        wait_for(
            lambda: http.get("/segments").json()["segments"] == [],
            30,
            "the ramps to end with their deletions",
        )
    finally:
        for proc in runners:
            proc.stop()
    sql.execute("SELECT state, count(*), count(DISTINCT job_id) FROM schedule_steps GROUP BY 1")
    assert sql.fetchall() == [("done", 15, 15)]
    sql.execute("SELECT kind, count(*) FROM jobs GROUP BY kind ORDER BY kind")
    assert sql.fetchall() == [("assign_auto", 15), ("cleanup_segment", 3)]
    wait_for(
        lambda: (
            http.get("/jobs/18").json()["state"] == "done"
            and all(http.get(f"/jobs/{i}").json()["state"] == "done" for i in range(1, 19))
        ),
        30,
        "every job to finish",
    )
    report = verify()
    assert report["ok"], report["violations"]
