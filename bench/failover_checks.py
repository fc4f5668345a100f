"""What bench/failover.py checks after a fault: the jobs finished with the right
counts, every acknowledged write is on the new primary, the TTL sweep caught up, every
history event reached the webhook receiver, and models.verify passes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import psycopg2

from scripts.procs import ROOT

IMPORTED = 10_000  # users 1..IMPORTED are imported into FI
SETTLE = 60.0  # seconds the jobs, the sweep and the deliveries get to finish afterwards


def check(problems: list[str], http: httpx.Client, dsn: str, record, jobs: dict, receiver) -> int:
    """Append every broken promise to ``problems``; the number of acknowledged writes
    the new primary does not have."""
    _check_jobs(problems, http, jobs)
    lost = _lost_writes(dsn, record)
    if lost:
        problems.append(f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost)[:10]}")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(AUTO_COUNTS, ("FA",))
        members, expected = cur.fetchone()
    conn.close()
    if members != expected:
        problems.append(f"FA has {members} members, its buckets hold {expected} users")
    if _wait(lambda: _swept(dsn)) is None:
        problems.append("expired memberships left unswept")
    if _wait(lambda: not _undelivered(dsn, receiver)) is None:
        problems.append(f"events never delivered: {sorted(_undelivered(dsn, receiver))[:10]}")
    env = {**os.environ, "DATABASE_DSN": dsn}
    command = [sys.executable, "-m", "models.verify"]
    verify = subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True)
    if verify.returncode != 0:
        problems.append(f"models.verify failed: {verify.stdout[-2000:]}")
    return len(lost)


def _check_jobs(problems: list[str], http: httpx.Client, jobs: dict) -> None:
    for name, job_id in jobs.items():
        job = _wait(lambda job_id=job_id: _finished(http, job_id))
        if job is None or job["state"] != "done":
            problems.append(f"job {name} did not finish: {job}")
        elif name == "import" and job["result"]["added"] != IMPORTED:
            problems.append(f"import added {job['result']['added']}, not {IMPORTED}")


def _lost_writes(dsn: str, record) -> set[int]:
    """Users whose creation, or whose add to FW, was acknowledged and is not there."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM users WHERE id = ANY(%s)", (sorted(record.created),))
        lost = record.created - {row[0] for row in cur.fetchall()}
        cur.execute(MEMBERS, ("FW", sorted(record.added)))
        lost |= record.added - {row[0] for row in cur.fetchall()}
    conn.close()
    return lost


MEMBERS = """SELECT m.user_id FROM memberships m JOIN segments s ON s.id = m.segment_id
             WHERE s.name = %s AND s.deleted_at IS NULL AND m.user_id = ANY(%s)"""
AUTO_COUNTS = """SELECT (SELECT count(*) FROM memberships m WHERE m.segment_id = s.id),
                        (SELECT count(*) FROM users u
                         WHERE segment_bucket(s.salt, u.id) < s.auto_percent * 100)
                 FROM segments s WHERE s.name = %s AND s.deleted_at IS NULL"""


def _wait(predicate, timeout: float = SETTLE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (httpx.HTTPError, psycopg2.Error):
            value = None
        if value:
            return value
        time.sleep(0.5)
    return None


def _finished(http: httpx.Client, job_id: int) -> dict | None:
    job = http.get(f"/jobs/{job_id}").json()
    return job if job["state"] in ("done", "failed") else None


def _swept(dsn: str) -> bool:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM memberships WHERE expires_at < now() - interval '2s'")
        (left,) = cur.fetchone()
    conn.close()
    return left == 0


def _undelivered(dsn: str, receiver) -> set[int]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM history")
        ids = {row[0] for row in cur.fetchall()}
    conn.close()
    with receiver.lock:
        return ids - receiver.ids
