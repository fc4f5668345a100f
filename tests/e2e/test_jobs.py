"""Bulk jobs on the real processes, on Redis and on RabbitMQ (the ``broker`` fixtures):
concurrent users, a killed worker, the broker down, TTL."""

from __future__ import annotations

import calendar
import random
import signal
import threading
import time

import httpx
import pytest

from models.verify import verify
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e


def segment_row(sql, name: str) -> tuple[int, str]:
    sql.execute("SELECT id, salt FROM segments WHERE name = %s AND deleted_at IS NULL", (name,))
    return sql.fetchone()


def bucket_rule_violations(sql, segment_id: int, percent: float) -> tuple[int, int]:
    """(users in the bucket range but not members, members outside it)."""
    sql.execute(
        """SELECT count(*) FILTER (WHERE inside AND NOT member),
                  count(*) FILTER (WHERE member AND NOT inside)
           FROM (SELECT segment_bucket(s.salt, u.id) < %(t)s AS inside,
                        m.user_id IS NOT NULL AS member
                 FROM users u CROSS JOIN segments s
                 LEFT JOIN memberships m ON m.user_id = u.id AND m.segment_id = s.id
                 WHERE s.id = %(s)s) x""",
        {"s": segment_id, "t": round(percent * 100)},
    )
    return sql.fetchone()


def events_per_member(sql, segment_id: int) -> tuple[int, int, int]:
    """(members, add events, members without exactly one add event)."""
    sql.execute(
        """SELECT (SELECT count(*) FROM memberships WHERE segment_id = %(s)s),
                  (SELECT count(*) FROM history WHERE segment_id = %(s)s),
                  (SELECT count(*) FROM memberships m WHERE m.segment_id = %(s)s
                     AND (SELECT count(*) FROM history h WHERE h.segment_id = m.segment_id
                          AND h.user_id = m.user_id AND h.operation = 'add'
                          AND h.reason = 'auto') <> 1)""",
        {"s": segment_id},
    )
    return sql.fetchone()


def test_users_created_while_the_assignment_job_runs_are_never_missed(broker, make_stack, sql):
    # 200k users with even ids; new users take odd ids below and above the job's
    # checkpoint, and ids above every existing one.
    sql.execute("INSERT INTO users (id) SELECT 2 * g FROM generate_series(1, 200000) g")
    stack = make_stack("web", "worker", "scheduler", BATCH_SIZE="2000", **broker)

    r = stack.http.post("/segments", json={"segment": "HALF", "auto_percent": 50})
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    seg_id, _ = segment_row(sql, "HALF")

    done = threading.Event()
    created: list[tuple[int, float, list[str]]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def create_users(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=stack.url, timeout=30) as http:
            for i in range(600):
                if done.is_set():
                    return
                uid = 2 * rng.randrange(0, 200_000) + 1 if i % 3 else 400_000 + seed * 1000 + i
                r = http.post("/users", json={"id": uid})
                if r.status_code == 409:
                    continue
                if r.status_code != 201:
                    errors.append(f"{uid}: {r.status_code} {r.text}")
                    return
                with lock:
                    created.append((uid, time.monotonic(), r.json()["segments"]))

    wait_for(lambda: stack.http.get(f"/jobs/{job_id}").json()["done"] > 0, 30, "job start")
    threads = [threading.Thread(target=create_users, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    job = stack.wait_job(job_id, timeout=60)
    finished = time.monotonic()
    done.set()
    for t in threads:
        t.join(30)

    assert errors == []
    assert job["state"] == "done", job
    during = [uid for uid, at, _ in created if at < finished]
    assert len([u for u in during if u % 2]) >= 20, "too few odd-id users created mid-job"
    assert len([u for u in during if u > 400_000]) >= 10, "too few high-id users mid-job"

    assert bucket_rule_violations(sql, seg_id, 50) == (0, 0)
    members, add_events, wrong = events_per_member(sql, seg_id)
    assert wrong == 0 and add_events == members
    assert 95_000 < members < 106_000
    # Every response named exactly the segment membership the user ended up with.
    sql.execute(
        "SELECT user_id FROM memberships WHERE segment_id = %s AND user_id = ANY(%s)",
        (seg_id, [uid for uid, _, _ in created]),
    )
    in_segment = {row[0] for row in sql.fetchall()}
    assert {uid for uid, _, segs in created if segs == ["HALF"]} == in_segment


def test_worker_killed_mid_job_another_worker_finishes_it_exactly_once(broker, make_stack, sql):
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 300000) g")
    stack = make_stack("web", "worker", "scheduler", BATCH_SIZE="2000", **broker)

    r = stack.http.post("/segments", json={"segment": "KILL", "auto_percent": 37.5})
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    seg_id, _ = segment_row(sql, "KILL")

    def mid_job():
        job = stack.http.get(f"/jobs/{job_id}").json()
        return job if job["total"] and 0 < job["done"] < job["total"] // 2 else None

    wait_for(mid_job, 30, "the job to be part-way", interval=0.01)
    stack.stop("worker", signal.SIGKILL)
    killed_at = stack.http.get(f"/jobs/{job_id}").json()
    assert killed_at["state"] == "running", killed_at
    assert 0 < killed_at["done"] < killed_at["total"] == 300_000
    time.sleep(0.5)
    # Nobody works on it now: the progress stands still.
    assert stack.http.get(f"/jobs/{job_id}").json()["done"] == killed_at["done"]

    stack.start("worker")
    job = stack.wait_job(job_id, timeout=60)
    assert job["state"] == "done", job
    assert job["done"] == job["total"] == 300_000
    assert job["attempts"] >= 2

    assert bucket_rule_violations(sql, seg_id, 37.5) == (0, 0)
    members, add_events, wrong = events_per_member(sql, seg_id)
    assert wrong == 0 and add_events == members
    assert 108_000 < members < 117_000
    assert verify()["ok"]


def test_segment_deleted_while_its_assignment_runs(broker, make_stack, sql):
    """The deletion waits for the batch in flight and is stamped after it: every member
    gets exactly one remove (segment_deleted) after its add, and none is left."""
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 100000) g")
    stack = make_stack("web", "worker", "scheduler", BATCH_SIZE="2000", **broker)
    r = stack.http.post("/segments", json={"segment": "GONE", "auto_percent": 50})
    job_id = r.json()["job_id"]
    seg_id, _ = segment_row(sql, "GONE")

    def part_way():
        job = stack.http.get(f"/jobs/{job_id}").json()
        return job if 0 < job["done"] < 50_000 else None

    wait_for(part_way, 30, "the job to be part-way", interval=0.01)
    gone = stack.http.request("DELETE", "/segments", json={"segment": "GONE"})
    assert gone.status_code == 200
    assert stack.wait_job(job_id)["state"] == "done"
    assert stack.wait_job(gone.json()["job_id"])["state"] == "done"
    sql.execute("SELECT count(*) FROM memberships WHERE segment_id = %s", (seg_id,))
    assert sql.fetchone()[0] == 0
    sql.execute(
        "SELECT count(*) FILTER (WHERE operation = 'add'), "
        "count(*) FILTER (WHERE reason = 'segment_deleted') FROM history WHERE segment_id = %s",
        (seg_id,),
    )
    adds, removes = sql.fetchone()
    assert 0 < adds == removes < 50_000
    assert verify()["ok"]


def test_segment_created_while_the_broker_is_down_is_assigned_once_it_is_back(
    broker_outage, make_stack, sql
):
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 3000) g")
    stack = make_stack("web", "worker", "scheduler", **broker_outage.env)
    assert stack.http.get("/ready").status_code == 200

    broker_outage.stop()
    started = time.monotonic()
    r = stack.http.post("/segments", json={"segment": "OFFLINE", "auto_percent": 20})
    assert r.status_code == 201, r.text
    assert time.monotonic() - started < 5
    job_id = r.json()["job_id"]
    assert isinstance(job_id, int)
    seg_id, _ = segment_row(sql, "OFFLINE")

    ready = stack.http.get("/ready")
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["broker"].startswith("down")
    time.sleep(2)  # several scheduler ticks: nothing can deliver the job
    job = stack.http.get(f"/jobs/{job_id}").json()
    assert job["state"] == "queued" and job["done"] == 0, job
    # The segment is readable at once, with no members yet.
    assert stack.http.get("/segments/OFFLINE").json()["members"] == 0

    broker_outage.start()
    job = stack.wait_job(job_id, timeout=45)
    assert job["state"] == "done" and job["done"] == job["total"] == 3000, job
    assert stack.http.get("/ready").status_code == 200
    assert bucket_rule_violations(sql, seg_id, 20) == (0, 0)
    members, add_events, wrong = events_per_member(sql, seg_id)
    assert wrong == 0 and add_events == members > 450


def test_ttl_expiry_by_the_real_scheduler_and_worker(broker, make_stack, sql):
    stack = make_stack("web", "worker", "scheduler", **broker)
    http = stack.http
    assert http.post("/segments", json={"segment": "BRIEF"}).status_code == 201
    assert http.post("/segments", json={"segment": "STAY"}).status_code == 201
    assert http.post("/users", json={"id": 1000}).status_code == 201
    r = http.patch("/users", json={"id": 1000, "segments": ["BRIEF"], "active_time": 1})
    assert r.json() == {"id": 1000, "segments": ["BRIEF"]}
    r = http.patch("/users", json={"id": 1000, "segments": ["STAY"]})
    assert http.get("/users/1000").json()["segments"] == ["BRIEF", "STAY"]

    time.sleep(3)
    assert http.get("/users/1000").json() == {"id": 1000, "segments": ["STAY"]}

    def swept() -> bool:
        sql.execute(
            "SELECT count(*) FROM memberships m JOIN segments s ON s.id = m.segment_id "
            "WHERE m.user_id = 1000 AND s.name = 'BRIEF'"
        )
        return sql.fetchone()[0] == 0

    wait_for(swept, 10, "the sweep to delete the expired membership")

    sql.execute("SELECT at FROM history WHERE user_id = 1000 AND operation = 'add' ORDER BY id")
    added = sql.fetchone()[0]
    csv = http.get(
        "/users/1000/history", params={"year": added.year, "month": added.month}
    ).text.splitlines()
    assert csv[0] == "user_id;segment;operation;timestamp;reason"
    brief = [line.split(";") for line in csv[1:] if ";BRIEF;" in line]
    assert [(row[2], row[4]) for row in brief] == [("add", "manual"), ("remove", "ttl")]
    add_ts, remove_ts = (time.strptime(row[3], "%Y-%m-%dT%H:%M:%SZ") for row in brief)
    assert calendar.timegm(remove_ts) - calendar.timegm(add_ts) == 1, brief
    stay = [line.split(";") for line in csv[1:] if ";STAY;" in line]
    assert [(row[2], row[4]) for row in stay] == [("add", "manual")]


def test_processes_started_while_the_broker_is_down_run_the_job_once_it_is_up(
    broker_outage, make_stack, sql
):
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 1000) g")
    broker_outage.stop()
    stack = make_stack("web", "worker", "scheduler", **broker_outage.env)
    r = stack.http.post("/segments", json={"segment": "EARLY", "auto_percent": 30})
    assert r.status_code == 201, r.text
    time.sleep(1)
    assert all(stack.procs[name].poll() is None for name in ("web", "worker", "scheduler"))
    broker_outage.start()
    job = stack.wait_job(r.json()["job_id"], timeout=45)
    assert job["state"] == "done" and job["done"] == job["total"] == 1000, job
