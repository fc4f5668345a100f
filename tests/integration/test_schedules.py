"""Scheduled segment changes: the API's rules, and running due steps exactly once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from models import schedules
from tests.integration.jobs import run_unfinished_jobs


def at(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def make_due(sql) -> None:
    """Every pending step's time comes (kept in order)."""
    sql.execute("UPDATE schedule_steps SET at = now() - interval '1 hour' + id * interval '1 s'")


def run_all() -> list[schedules.Ran]:
    ran = []
    while (step := schedules.run_due_step()) is not None:
        ran.append(step)
    return ran


def test_put_get_delete_schedule(client, sql):
    client.post("/segments", json={"segment": "A", "auto_percent": 5})
    steps = [
        {"at": at(10), "auto_percent": 10},
        {"at": at(20), "auto_percent": 50.5},
        {"at": at(30), "delete": True},
    ]
    r = client.put("/segments/A/schedule", json={"steps": steps})
    assert r.status_code == 200, r.text
    body = client.get("/segments/A/schedule").json()
    assert body["segment"] == "A"
    assert [(s.get("auto_percent"), s.get("delete"), s["state"]) for s in body["steps"]] == [
        (10, None, "pending"),
        (50.5, None, "pending"),
        (None, True, "pending"),
    ]
    r = client.put("/segments/A/schedule", json={"steps": steps[1:2]})  # replaces
    assert len(r.json()["steps"]) == 1
    assert client.delete("/segments/A/schedule").json()["steps"] == []
    assert client.get("/segments/NOPE/schedule").status_code == 404


def test_bad_schedules_are_400s_that_change_nothing(client, sql):
    client.post("/segments", json={"segment": "A"})
    good = {"steps": [{"at": at(10), "auto_percent": 10}]}
    client.put("/segments/A/schedule", json=good)
    bad = {
        "in the past": [{"at": at(-1), "auto_percent": 1}],
        "out of order": [{"at": at(20), "auto_percent": 1}, {"at": at(10), "auto_percent": 2}],
        "same time": [{"at": at(20), "auto_percent": 1}, {"at": at(20), "auto_percent": 2}][:1] * 2,
        "no zone": [{"at": at(10)[:-1], "auto_percent": 1}],
        "both": [{"at": at(10), "auto_percent": 1, "delete": True}],
        "neither": [{"at": at(10)}],
        "delete false": [{"at": at(10), "delete": False}],
        "delete not last": [{"at": at(10), "delete": True}, {"at": at(20), "auto_percent": 1}],
        "no steps": [],
        "101 steps": [{"at": at(10 + i), "auto_percent": 1} for i in range(101)],
        "three decimals": [{"at": at(10), "auto_percent": 1.125}],
        "over 100": [{"at": at(10), "auto_percent": 101}],
        "typo": [{"at": at(10), "auto_precent": 1}],
        "not a date": [{"at": "2030-02-30T10:00:00Z", "auto_percent": 1}],
    }
    for what, steps in bad.items():
        r = client.put("/segments/A/schedule", json={"steps": steps})
        assert r.status_code == 400, (what, r.text)
        assert r.json()["error"], what
    assert len(client.get("/segments/A/schedule").json()["steps"]) == 1
    r = client.put("/segments/NOPE/schedule", json=good)
    assert r.status_code == 404


def test_a_ramp_runs_in_order_and_a_step_that_cannot_run_fails_alone(client, sql):
    client.post("/layers", json={"layer": "L"})
    client.post("/segments", json={"segment": "A", "layer": "L", "auto_percent": 10})
    client.post("/segments", json={"segment": "B", "layer": "L", "auto_percent": 40})
    steps = [
        {"at": at(10), "auto_percent": 20},
        {"at": at(20), "auto_percent": 70},  # 40% free by then: fails
        {"at": at(30), "auto_percent": 50},
    ]
    client.put("/segments/A/schedule", json={"steps": steps})
    make_due(sql)
    ran = run_all()
    assert [r.state for r in ran] == ["done", "failed", "done"]
    body = client.get("/segments/A/schedule").json()["steps"]
    assert [s["state"] for s in body] == ["done", "failed", "done"]
    assert "40% free" in body[1]["error"] and body[1]["job_id"] is None
    assert body[0]["job_id"] and body[2]["job_id"]
    assert client.get("/segments/A").json()["auto_percent"] == 50
    run_unfinished_jobs()
    assert run_all() == []  # exactly once


def test_a_step_records_who_set_it(client, sql):
    """The actor of the schedule's transaction (segments.actor), else system; the
    runner makes it the actor of the step's change."""
    client.post("/segments", json={"segment": "A"})
    sql.execute("SELECT set_config('segments.actor', 'key:ops', false)")
    step = (
        "INSERT INTO schedule_steps (segment_id, at, auto_percent) "
        "SELECT id, now(), %s FROM segments"
    )
    sql.execute(step, (1,))
    sql.execute("SELECT set_config('segments.actor', '', false)")
    sql.execute(step, (2,))
    sql.execute("SELECT actor FROM schedule_steps ORDER BY id")
    assert sql.fetchall() == [("key:ops",), ("system",)]
    assert [r.state for r in run_all()] == ["done", "done"]


def test_deleting_the_segment_cancels_its_pending_steps(client, sql):
    client.post("/segments", json={"segment": "A"})
    client.put("/segments/A/schedule", json={"steps": [{"at": at(10), "auto_percent": 10}]})
    client.request("DELETE", "/segments", json={"segment": "A"})
    make_due(sql)
    assert run_all() == []
    sql.execute("SELECT count(*) FROM schedule_steps")
    assert sql.fetchone() == (0,)
    # A delete step deletes the segment and is itself done.
    client.post("/segments", json={"segment": "A"})
    client.put(
        "/segments/A/schedule",
        json={"steps": [{"at": at(10), "auto_percent": 3}, {"at": at(20), "delete": True}]},
    )
    make_due(sql)
    assert [r.state for r in run_all()] == ["done", "done"]
    assert client.get("/segments/A").status_code == 404


def test_two_runners_run_each_step_once(client, sql):
    for name in ("A", "B", "C", "D"):
        client.post("/segments", json={"segment": name})
        steps = [{"at": at(10 + i), "auto_percent": 10 + i} for i in range(5)]
        client.put(f"/segments/{name}/schedule", json={"steps": steps})
    make_due(sql)
    results: list[list] = [[], [], []]
    barrier = threading.Barrier(3)

    def runner(i: int) -> None:
        barrier.wait(10)
        results[i] = run_all()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [r.step_id for rs in results for r in rs]
    assert sorted(ids) == list(range(1, 21))
    sql.execute("SELECT count(*) FROM jobs")
    assert sql.fetchone() == (20,)
    sql.execute("SELECT name, auto_percent FROM segments ORDER BY name")
    assert [float(p) for _, p in sql.fetchall()] == [14.0] * 4
