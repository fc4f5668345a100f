"""Imports on the real processes, racing manual changes, a percent change and each other;
and a worker killed in the middle of one."""

from __future__ import annotations

import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from models.verify import verify
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e
CSV = {"content-type": "text/csv"}


def ids_body(ids) -> bytes:
    return b"user_id\n" + b"".join(b"%d\n" % i for i in ids)


def test_two_imports_a_percent_change_and_manual_changes_at_once(stack, sql):
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 20000) g")
    assert stack.http.post("/segments", json={"segment": "T"}).status_code == 201
    rng = random.Random(7)
    stop = threading.Event()

    def manual() -> None:
        with httpx.Client(base_url=stack.url, timeout=30) as c:
            while not stop.is_set():
                uid = rng.randint(1, 20000)
                if rng.random() < 0.5:
                    c.patch("/users", json={"id": uid, "segments": ["T"]})
                else:
                    c.request("DELETE", "/users", json={"id": uid, "segments": ["T"]})

    threads = [threading.Thread(target=manual) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        first = stack.http.post("/segments/T/users", content=ids_body(range(1, 15001)), headers=CSV)
        second = stack.http.post(
            "/segments/T/users?mode=replace", content=ids_body(range(5001, 20001)), headers=CSV
        )
        percent = stack.http.patch("/segments", json={"segment": "T", "auto_percent": 30})
        jobs = [first.json()["job_id"], second.json()["job_id"], percent.json()["job_id"]]
        done = [stack.wait_job(j, timeout=180) for j in jobs]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert [j["state"] for j in done] == ["done"] * 3, done
    assert done[0]["result"]["unknown_users"] == 0
    report = verify()
    assert report["ok"], report["violations"]
    # Exactly one event per change the imports report, no more, no fewer (the checker
    # above saw the events alternate per user and segment).
    changes = sum(j["result"]["added"] + j["result"]["removed"] for j in done[:2])
    sql.execute("SELECT count(*) FROM history WHERE reason = 'import'")
    assert sql.fetchone()[0] == changes > 0


def test_import_resumes_after_its_worker_is_killed(stack, sql):
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 60000) g")
    stack.stop("worker")
    stack.http.post("/segments", json={"segment": "K"})
    r = stack.http.post("/segments/K/users", content=ids_body(range(1, 60001)), headers=CSV)
    job_id = r.json()["job_id"]
    stack.start("worker", BATCH_SIZE="500", JOB_BATCH_PAUSE_MS="20")
    wait_for(lambda: stack.http.get(f"/jobs/{job_id}").json()["done"] > 0, 60, "progress")
    stack.stop("worker", signal.SIGKILL)
    time.sleep(0.5)
    stack.start("worker")
    job = stack.wait_job(job_id, timeout=120)
    assert job["state"] == "done" and job["result"]["added"] == 60000, job
    sql.execute("SELECT count(*), count(DISTINCT user_id) FROM history WHERE reason = 'import'")
    assert sql.fetchone() == (60000, 60000)
    assert verify()["ok"]


@contextmanager
def partial_upload(stack, segment: str, parts: int) -> Iterator[tuple[socket.socket, bytes]]:
    """An upload of ``parts`` parts of 100 ids, of which the first is sent: the socket
    and the part, to send more."""
    stack.http.post("/segments", json={"segment": segment})
    part = b"".join(b"%d\n" % i for i in range(1, 101)) * 100
    with socket.create_connection(("127.0.0.1", stack.port)) as s:
        s.sendall(
            b"POST /segments/%s/users HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Content-Length: %d\r\n\r\n" % (segment.encode(), len(part) * parts) + part
        )
        time.sleep(0.5)  # the server has staged what it got so far
        yield s, part


def test_an_upload_cut_off_half_way_records_nothing(web_only, sql):
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 100) g")
    with partial_upload(web_only, "CUT", 10):
        pass
    time.sleep(1.5)
    sql.execute(
        "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM import_staging) "
        "+ (SELECT count(*) FROM import_upload_batches)"
    )
    assert sql.fetchone() == (0, 0)
    assert web_only.http.get("/health").status_code == 200


def test_an_upload_held_open_blocks_no_one(web_only, sql):
    """Issue 18, item 4: the upload's transaction holds nothing another request waits
    for; the segment is deleted meanwhile, so the upload ends 404 and records nothing."""
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 100) g")
    with partial_upload(web_only, "HELD", 2) as (s, part):
        assert "segments_import_uploads 1.0" in web_only.http.get("/metrics").text
        with httpx.Client(base_url=web_only.url, timeout=5) as c:
            assert c.post("/users", json={"id": 1000}).status_code == 201
            assert c.post("/segments", json={"segment": "A", "auto_percent": 5}).status_code == 201
            assert c.patch("/segments", json={"segment": "HELD", "auto_percent": 5}).is_success
            assert c.request("DELETE", "/segments", json={"segment": "HELD"}).is_success
        s.sendall(part)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 404"), answer[:200]
    sql.execute("SELECT count(*) FROM jobs WHERE kind = 'import'")
    assert sql.fetchone()[0] == 0
