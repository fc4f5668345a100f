"""The Procfile's processes, over HTTP: the seed flow end to end."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.e2e


def test_seed_flow_over_http(stack):
    http = stack.http
    assert http.post("/segments", json={"segment": "AVITO_VOICE_MESSAGES"}).status_code == 201
    assert http.post("/users", json={"id": 1000}).status_code == 201
    r = http.patch("/users", json={"id": 1000, "segments": ["AVITO_VOICE_MESSAGES"]})
    assert r.json() == {"id": 1000, "segments": ["AVITO_VOICE_MESSAGES"]}
    assert http.get("/users/1000").json() == {"id": 1000, "segments": ["AVITO_VOICE_MESSAGES"]}
    now = time.gmtime()
    csv = http.get(f"/users/1000/history?year={now.tm_year}&month={now.tm_mon}")
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0] == "user_id;segment;operation;timestamp;reason"
    assert lines[1].startswith("1000;AVITO_VOICE_MESSAGES;add;")
    assert lines[1].endswith(";manual")


def test_auto_segment_job_runs_on_the_worker(broker, make_stack, sql):
    stack = make_stack("web", "worker", "scheduler", **broker)
    ready = stack.http.get("/ready").json()
    kind = "rabbitmq" if broker["BROKER_URL"].startswith("amqp") else "redis"
    assert ready["checks"]["broker"] == "ok" and ready["broker"] == kind, ready
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 2000) g")
    r = stack.http.post("/segments", json={"segment": "AUTO", "auto_percent": 30})
    assert r.status_code == 201, r.text
    job = stack.wait_job(r.json()["job_id"])
    assert job["state"] == "done" and job["done"] == job["total"] == 2000
    members = stack.http.get("/segments/AUTO").json()["members"]
    assert 450 < members < 750
