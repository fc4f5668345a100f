"""Webhooks on the real processes: signed ordered batches, nothing skipped when
transactions commit out of id order, isolation of a failing receiver, safety. Delivery
and backoff run on both brokers."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from itertools import pairwise

import psycopg2
import pytest

from scripts.receiver import Receiver
from tests.e2e.conftest import BROKERS, on_broker, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def hooked(request, make_stack):
    """A stack with quick webhook ticks, on Redis unless the test names a broker
    (``parametrize("hooked", BROKERS, indirect=True)``), and a maker of receivers."""
    with on_broker(request, getattr(request, "param", "redis")) as broker:
        stack = make_stack("web", "worker", "scheduler", WEBHOOK_INTERVAL="0.2", **broker)
        receivers: list[Receiver] = []

        def receiver() -> Receiver:
            receivers.append(Receiver())
            return receivers[-1]

        yield stack, receiver
        for r in receivers:
            r.close()


def history_ids(sql, after: int = 0, segment: str | None = None) -> list[int]:
    sql.execute(
        "SELECT h.id FROM history h JOIN segments s ON s.id = h.segment_id "
        "WHERE h.id > %s AND (%s::text IS NULL OR s.name = %s) ORDER BY h.id",
        (after, segment, segment),
    )
    return [r[0] for r in sql.fetchall()]


@pytest.mark.parametrize("hooked", BROKERS, indirect=True)
def test_signed_batches_of_every_change_after_creation(hooked, sql):
    stack, receiver = hooked
    http = stack.http
    for name in ("A", "B"):
        http.post("/segments", json={"segment": name})
    http.post("/users", json={"id": 1})
    http.patch("/users", json={"id": 1, "segments": ["A"]})  # before the webhook
    before = max(history_ids(sql))
    rec = receiver()
    created = http.post("/webhooks", json={"url": rec.url, "secret": "s" * 20}).json()
    assert created["secret"] == "s" * 20
    only_b = receiver()
    http.post("/webhooks", json={"url": only_b.url, "segments": ["B"]})
    for uid in range(2, 12):
        http.post("/users", json={"id": uid})
        http.patch("/users", json={"id": uid, "segments": ["A", "B"]})
        http.request("DELETE", "/users", json={"id": uid, "segments": ["A"]})
    expected = history_ids(sql, after=before)
    got = rec.wait_events(len(expected))
    assert [e["id"] for e in got] == expected  # one transaction after another: id order
    assert {e["segment"] for e in got} == {"A", "B"}
    assert got[0].keys() == {"id", "user_id", "segment", "operation", "reason", "at", "actor"}
    assert {e["actor"] for e in got} == {"anonymous"}  # no API_TOKEN: who made them
    assert [e["id"] for e in only_b.wait_events(10)] == history_ids(sql, before, "B")
    for headers, body in rec.posts:
        mac = hmac.new(b"s" * 20, body, hashlib.sha256).hexdigest()
        assert headers["X-Segments-Signature"] == f"sha256={mac}"
        assert headers["X-Segments-Delivery"]
        ids = [e["id"] for e in json.loads(body)["events"]]
        assert ids == sorted(ids) and 1 <= len(ids) <= 1000
    # The cursor moves once the worker has the receiver's answer: a moment after it.
    state = wait_for(
        lambda: (
            (st := http.get(f"/webhooks/{created['id']}").json())["cursor"] == expected[-1] and st
        ),
        10,
        "the cursor to pass the last event",
    )
    assert state["pending"] == 0 and state["delivered"] == len(expected)
    assert "secret" not in state


def test_an_event_committed_after_later_ones_is_not_skipped(hooked, sql):
    stack, receiver = hooked
    http = stack.http
    http.post("/segments", json={"segment": "A"})
    for uid in (1, 2, 3):
        http.post("/users", json={"id": uid})
    rec = receiver()
    http.post("/webhooks", json={"url": rec.url})
    # A change whose transaction takes its event id now and commits last.
    held = psycopg2.connect(stack.env["DATABASE_DSN"])
    with held.cursor() as cur:
        cur.execute(
            """WITH m AS (INSERT INTO memberships (user_id, segment_id, source)
                          SELECT 1, id, 'manual' FROM segments WHERE name = 'A'
                          RETURNING user_id, segment_id)
               INSERT INTO history (user_id, segment_id, operation, reason, at)
               SELECT user_id, segment_id, 'add', 'manual', clock_timestamp() FROM m
               RETURNING id"""
        )
        held_id = cur.fetchone()[0]
    for uid in (2, 3):  # later ids, committed first
        http.patch("/users", json={"id": uid, "segments": ["A"]})
    time.sleep(1.5)  # several delivery rounds
    assert all(e["id"] < held_id for e in rec.events())  # nothing passed the open one
    held.commit()
    held.close()
    got = rec.wait_events(3)
    assert sorted(e["id"] for e in got) == history_ids(sql)  # all, each once
    assert got[0]["id"] == held_id


@pytest.mark.parametrize("hooked", BROKERS, indirect=True)
def test_a_failing_receiver_backs_off_alone_and_then_gets_everything(hooked, sql):
    stack, receiver = hooked
    http = stack.http
    http.post("/segments", json={"segment": "A"})
    down, up = receiver(), receiver()
    down.status = 503
    bad = http.post("/webhooks", json={"url": down.url}).json()
    http.post("/webhooks", json={"url": up.url})
    for uid in range(1, 6):
        http.post("/users", json={"id": uid})
        http.patch("/users", json={"id": uid, "segments": ["A"]})
    assert len(up.wait_events(5)) == 5
    state = wait_for(
        lambda: (s := http.get(f"/webhooks/{bad['id']}").json())["failures"] >= 2 and s,
        20,
        "the failing webhook to back off",
    )
    assert "503" in state["last_error"] and state["pending"] == 5 and state["cursor"] == 0
    down.status = 200
    assert [e["id"] for e in down.wait_events(5, timeout=40)] == history_ids(sql)


def test_deleted_webhook_stops_and_a_new_one_starts_now(hooked, sql):
    stack, receiver = hooked
    http = stack.http
    http.post("/segments", json={"segment": "A"})
    http.post("/users", json={"id": 1})
    old = receiver()
    hook = http.post("/webhooks", json={"url": old.url}).json()
    http.patch("/users", json={"id": 1, "segments": ["A"]})
    old.wait_events(1)
    assert http.delete(f"/webhooks/{hook['id']}").status_code == 200
    assert http.get(f"/webhooks/{hook['id']}").status_code == 404
    new = receiver()
    http.post("/webhooks", json={"url": new.url})
    http.request("DELETE", "/users", json={"id": 1, "segments": ["A"]})
    got = new.wait_events(1)
    time.sleep(1)
    assert [e["operation"] for e in new.events()] == ["remove"] and len(got) == 1
    assert len(old.events()) == 1


def test_private_targets_are_refused_at_delivery_when_asked(make_stack, sql):
    stack = make_stack(
        "web", "worker", "scheduler", WEBHOOK_INTERVAL="0.2", WEBHOOK_DENY_PRIVATE="1"
    )
    rec = Receiver()
    try:
        hook = stack.http.post("/webhooks", json={"url": rec.url}).json()
        stack.http.post("/segments", json={"segment": "A"})
        stack.http.post("/users", json={"id": 1})
        stack.http.patch("/users", json={"id": 1, "segments": ["A"]})
        state = wait_for(
            lambda: (s := stack.http.get(f"/webhooks/{hook['id']}").json())["last_error"] and s,
            20,
            "a refused delivery",
        )
        assert "non-public address" in state["last_error"] and rec.events() == []
    finally:
        rec.close()


def test_receivers_that_never_finish_answering_hold_no_worker_past_the_deadline(make_stack, sql):
    """Receivers that trickle their answer a byte at a time, more of them than the worker
    has threads: each POST is cut off after 5 s in all (a per-read timeout never fires),
    at least one thread stays for jobs, and a healthy receiver still gets its events."""
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(101, 2100) g")
    stack = make_stack("web", "worker", "scheduler", WEBHOOK_INTERVAL="0.2", WORKER_THREADS="2")
    http = stack.http
    http.post("/segments", json={"segment": "A"})
    slow = [Receiver() for _ in range(3)]
    healthy = Receiver()
    try:
        slow_ids = []
        for r in slow:
            r.drip = 60
            slow_ids.append(http.post("/webhooks", json={"url": r.url}).json()["id"])
        http.post("/webhooks", json={"url": healthy.url})
        for uid in range(1, 6):
            http.post("/users", json={"id": uid})
            http.patch("/users", json={"id": uid, "segments": ["A"]})
        wait_for(lambda: any(r.dripping for r in slow), 10, "a slow receiver to be posted to")
        # A job runs meanwhile, on the thread deliveries leave free.
        started = time.monotonic()
        job = http.post("/segments", json={"segment": "J", "auto_percent": 50}).json()
        assert stack.wait_job(job["job_id"], timeout=30)["state"] == "done"
        job_seconds = time.monotonic() - started
        assert len(healthy.wait_events(5, timeout=30)) >= 5
        # Every slow receiver was cut off at the deadline, and backs off alone.
        for hook_id in slow_ids:
            state = wait_for(
                lambda h=hook_id: (s := http.get(f"/webhooks/{h}").json())["failures"] >= 1 and s,
                30,
                "a slow webhook to fail",
            )
            assert "no answer within 5 s" in state["last_error"], state
        assert job_seconds < 15, job_seconds
        # One delivery at a time (WORKER_THREADS - 1): each slow POST began after the one
        # before had held its slot to the deadline (5 s; 3 allows for a slow connect).
        arrivals = sorted(t for r in slow for t in r.arrivals)
        gaps = [round(b - a, 2) for a, b in pairwise(arrivals)]
        assert len(arrivals) >= 3 and min(gaps) > 3, gaps
    finally:
        for r in (*slow, healthy):
            r.close()
