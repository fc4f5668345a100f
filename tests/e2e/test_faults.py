"""Faults under load: PostgreSQL dropping connections or refusing them, web SIGTERM, the
broker (Redis or RabbitMQ) down."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from models.infra.db import db
from models.verify import verify
from tests.conftest import TEST_DB

pytestmark = pytest.mark.e2e


def admin(sql, statement: str) -> None:
    sql.execute(statement.format(db=TEST_DB))


def drop_connections(sql) -> None:
    """Every connection to the test database is killed, this process's pooled ones too."""
    admin(
        sql,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = '{db}' AND pid <> pg_backend_pid()",
    )
    db.close_idle()


def load(url: str, stop: threading.Event, seed: int) -> Counter:
    """Reads and writes on a few users until stopped; counts statuses and bad bodies."""
    seen: Counter = Counter()
    with httpx.Client(base_url=url, timeout=10) as c:
        i = 0
        while not stop.is_set():
            uid = seed * 1000 + i % 20 + 1
            try:
                if i % 3 == 0:
                    r = c.get(f"/users/{uid}")
                elif i % 3 == 1:
                    r = c.patch("/users", json={"id": uid, "segments": ["F1", "F2"]})
                else:
                    r = c.request("DELETE", "/users", json={"id": uid, "segments": ["F1"]})
                seen[r.status_code] += 1
                if r.status_code >= 400 and "error" not in r.json():
                    seen["non_json_error"] += 1
            except httpx.TransportError:
                seen["transport"] += 1
            i += 1
    return seen


def run_load(url: str, during, threads: int = 4) -> Counter:
    stop = threading.Event()
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(load, url, stop, n) for n in range(threads)]
        try:
            during()
        finally:
            stop.set()
        total: Counter = Counter()
        for f in futures:
            total.update(f.result())
    return total


@pytest.fixture
def users(stack):
    for name in ("F1", "F2"):
        stack.http.post("/segments", json={"segment": name})
    for seed in range(4):
        for i in range(20):
            stack.http.post("/users", json={"id": seed * 1000 + i + 1})
    return stack


def test_connections_terminated_under_load_recover_without_restart(users, sql):
    stack = users

    def outages():
        for _ in range(3):
            time.sleep(0.7)
            drop_connections(sql)
        time.sleep(1)

    seen = run_load(stack.url, outages)
    assert seen[200] > 50, seen
    assert set(seen) <= {200, 503}, seen  # a dropped connection is a 503, never a 500
    # The same processes serve again, without a restart.
    assert stack.procs["web"].poll() is None
    assert all(stack.http.get("/users/1").status_code == 200 for _ in range(20))
    assert stack.http.get("/ready").status_code == 200
    # The worker lost its connections too, and still runs a new job.
    r = stack.http.post("/segments", json={"segment": "AFTER", "auto_percent": 50})
    assert stack.wait_job(r.json()["job_id"])["state"] == "done"
    assert verify()["ok"]


def test_reads_after_every_connection_was_dropped_are_served_first_time(users, sql):
    """A restart or failover leaves every web process holding dead connections: its kept
    hot-read connection and its pooled ones. A read finds out on first use and runs once
    more on a new connection, so no client sees the outage after it is over."""
    stack = users

    def read_everything(c: httpx.Client) -> list[int]:
        return [
            c.get("/users/1").status_code,
            c.get("/users/1/memberships").status_code,
            c.post("/users/lookup", json={"ids": [1, 2]}).status_code,
            c.get("/segments").status_code,
        ]

    # New client connections land on either web process: both hold connections open.
    for _ in range(10):
        with httpx.Client(base_url=stack.url, timeout=10) as c:
            assert read_everything(c) == [200] * 4
    drop_connections(sql)
    statuses = []
    for _ in range(10):
        with httpx.Client(base_url=stack.url, timeout=10) as c:
            statuses += read_everything(c)
    assert statuses == [200] * len(statuses), statuses


def test_database_refusing_connections_gives_fast_503_then_recovers(users, server_sql):
    sql = server_sql
    stack = users
    pids = []

    def outage():
        time.sleep(0.5)
        admin(sql, 'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        drop_connections(sql)
        started = time.monotonic()
        r = stack.http.get("/users/1")
        pids.append((r.status_code, time.monotonic() - started, r.json()))
        ready = stack.http.get("/ready")
        pids.append((ready.status_code, 0, ready.json()))
        time.sleep(2)
        admin(sql, 'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        time.sleep(1.5)

    try:
        seen = run_load(stack.url, outage)
    finally:
        admin(sql, 'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
    (status, seconds, body), (ready_status, _, ready_body) = pids
    assert status == 503 and body["status"] == 503 and seconds < 3, pids
    assert ready_status == 503 and ready_body["checks"]["database"].startswith("down")
    assert seen[503] > 0 and seen[200] > 0 and set(seen) <= {200, 503}, seen
    assert stack.http.get("/users/1").status_code == 200
    assert verify()["ok"]


def test_no_half_written_change_after_faults(users, sql):
    """Every membership has its event and every event its membership state."""
    stack = users

    def chaos():
        for _ in range(5):
            time.sleep(0.3)
            drop_connections(sql)

    run_load(stack.url, chaos, threads=6)
    report = verify()
    assert report["ok"], report
    assert report["events"] > 0


def test_web_sigterm_lets_in_flight_requests_finish(stack, sql):
    stack.http.post("/segments", json={"segment": "BIG"})
    stack.http.post("/users", json={"id": 1})
    sql.execute(
        """INSERT INTO history (user_id, segment_id, operation, reason, at)
           SELECT 1, (SELECT id FROM segments), 'add', 'manual',
                  '2024-03-01'::timestamptz + g * interval '1 millisecond'
           FROM generate_series(1, 300000) g"""
    )
    results = {}
    streaming = threading.Event()

    def download():
        with (
            httpx.Client(base_url=stack.url, timeout=60) as c,
            c.stream("GET", "/history?year=2024&month=3") as r,
        ):
            results["status"] = r.status_code
            lines = 0
            for chunk in r.iter_text():
                lines += chunk.count("\n")
                streaming.set()
                time.sleep(0.02)  # a slow client: the response is in flight for seconds
            results["lines"] = lines

    t = threading.Thread(target=download)
    t.start()
    assert streaming.wait(30)
    web = stack.procs["web"].popen
    web.send_signal(signal.SIGTERM)
    t.join(60)
    assert results == {"status": 200, "lines": 300001}
    # uvicorn re-raises the signal once its graceful shutdown is complete.
    assert web.wait(30) in (0, -signal.SIGTERM)
    # New connections are refused once it stopped.
    with pytest.raises(httpx.TransportError):
        httpx.get(stack.url + "/health", timeout=2)


def test_sigterm_on_idle_web_exits_cleanly(web_only):
    web = web_only.procs["web"].popen
    web.send_signal(signal.SIGTERM)
    assert web.wait(20) in (0, -signal.SIGTERM)


def test_pool_settings_bound_connections(sql, users):
    """Connections to the database stay bounded by the pools of the running processes."""
    run_load(users.url, lambda: time.sleep(2), threads=8)
    sql.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
    # web pool (16) + worker (1 process x 4 threads) + this cursor, with slack.
    assert sql.fetchone()[0] <= 16 + 8 + 1


def test_broker_down_under_load_sync_api_keeps_working(broker_outage, make_stack, sql):
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 4000) g")
    stack = make_stack("web", "worker", "scheduler", **broker_outage.env)
    for name in ("F1", "F2"):
        stack.http.post("/segments", json={"segment": name})
    job_ids = []

    def outage():
        time.sleep(0.5)
        broker_outage.stop()
        ready = stack.http.get("/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"].startswith("down")
        r = stack.http.post("/segments", json={"segment": "LATE", "auto_percent": 25})
        assert r.status_code == 201
        job_ids.append(r.json()["job_id"])
        time.sleep(2)
        assert stack.http.get(f"/jobs/{job_ids[0]}").json()["state"] == "queued"
        broker_outage.start()

    seen = run_load(stack.url, outage)
    assert set(seen) == {200}, seen  # reads and synchronous writes never noticed
    job = stack.wait_job(job_ids[0], timeout=45)
    assert job["state"] == "done" and job["done"] == job["total"]
    assert stack.http.get("/ready").status_code == 200
    assert verify()["ok"]
