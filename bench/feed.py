"""The webhook feed beside unrelated work (issue 18 items 9 and 12):
``python -m bench.feed [--hooks 300] [--seconds 10] [--rounds 3] [--hold 10] [--database DSN]``.

Starts web, worker and scheduler (the Procfile's lines, WEBHOOK_INTERVAL=1) on a
database of its own, created fresh, then measures:

- **Delivery latency**: a membership change, until a local receiver has its event;
  ``--rounds`` times each: with nothing else running (the floor), and made 1 s into a
  ``--hold`` seconds long transaction holding an xid in another database of the server,
  or into an import upload whose body keeps arriving for ``--hold`` seconds.
- **Idle webhooks**: transactions/s of the database (pg_stat_database commits and
  rollbacks) and CPU seconds/s of the worker's process tree over ``--seconds``, with no
  webhook (the floor: the scheduler's own ticks) and with ``--hooks`` webhooks and no
  event.

Prints a JSON report. The other database (``<name>_other``) is dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg2.extensions

from bench.common import connect, dbname, dsn_params, progress
from scripts.procs import Proc, free_port, migrated_database
from scripts.receiver import Receiver

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=segments_feed_bench"
TICKS = os.sysconf("SC_CLK_TCK")
SETTLE = 11  # seconds


def _tree_cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its descendants (the worker forks)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        todo += [int(c) for c in children]
    return total / TICKS


def _latency(http: httpx.Client, receiver: Receiver, uid: int) -> float:
    http.post("/users", json={"id": uid})
    before = len(receiver.events())
    started = time.perf_counter()
    http.patch("/users", json={"id": uid, "segments": ["FEED"]})
    receiver.wait_events(before + 1, timeout=120)
    return time.perf_counter() - started


def _with_database(dsn: str, name: str) -> str:
    return psycopg2.extensions.make_dsn(**{**dsn_params(dsn), "dbname": name})


@contextlib.contextmanager
def _other_database_transaction(other_dsn: str):
    """A transaction holding an xid, open in another database of the same server."""
    conn = connect(other_dsn, autocommit=False)
    try:
        conn.cursor().execute("SELECT pg_current_xact_id()")
        yield
    finally:
        conn.close()


@contextlib.contextmanager
def _upload_in_progress(url: str):
    """An import whose body keeps arriving (a line every 0.5 s) until the block ends."""
    done = threading.Event()

    def body():
        yield b"user_id\n1\n"
        while not done.wait(0.5):
            yield b"1\n"

    def post():
        with httpx.Client(base_url=url, timeout=120) as client:
            client.post(
                "/segments/FEED/users", content=body(), headers={"Content-Type": "text/csv"}
            )

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(30)


def _latency_beside(context, hold: float, http, receiver, uid: int) -> float:
    """Delivery latency of a change made 1 s after ``context`` opened; it stays open
    ``hold`` seconds in all."""

    def holder():
        with context():
            time.sleep(hold)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    time.sleep(1)
    try:
        return _latency(http, receiver, uid)
    finally:
        thread.join()


def _idle_rate(conn, worker: Proc, seconds: float) -> dict:
    def sample():
        with conn.cursor() as cur:
            cur.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
            return cur.fetchone()[0], _tree_cpu_seconds(worker.pid), time.perf_counter()

    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
    x0, c0, t0 = sample()
    time.sleep(seconds)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
    x1, c1, t1 = sample()
    # Our own two sampling statements are among the commits: take them out.
    return {
        "transactions_per_s": round((x1 - x0 - 2) / (t1 - t0), 1),
        "worker_cpu_per_s": round((c1 - c0) / (t1 - t0), 3),
    }


def run(dsn: str, hooks: int, seconds: float, rounds: int, hold: float) -> dict:
    migrated_database(dsn, fresh=True)
    other = f"{dbname(dsn)}_other"
    other_dsn = _with_database(dsn, other)
    admin = connect(_with_database(dsn, "postgres"))
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{other}"')
    admin.cursor().execute(f'CREATE DATABASE "{other}"')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_DSN": dsn,
        "SERVER_HOST": f"127.0.0.1:{port}",
        "QUEUE_NAMESPACE": f"bench-{dbname(dsn)}",
        "WEBHOOK_INTERVAL": "1",
    }
    logdir = Path(tempfile.mkdtemp(prefix="feed-bench-"))
    procs = {name: Proc(name, env, logdir) for name in ("web", "worker", "scheduler")}
    receiver = Receiver()
    conn = connect(dsn)
    report: dict = {"hooks": hooks, "seconds": seconds, "rounds": rounds, "hold": hold}
    try:
        procs["web"].wait_http(url)
        http = httpx.Client(base_url=url, timeout=120)
        http.post("/segments", json={"segment": "FEED"})
        # Backends report their counts to pg_stat_database up to 10 s late when idle:
        # wait that long before each measurement, so setting up is not counted.
        time.sleep(SETTLE)
        progress("feed: idle, no webhook (floor)")
        report["idle_floor"] = _idle_rate(conn, procs["worker"], seconds)
        ids = [
            http.post("/webhooks", json={"url": receiver.url}).json()["id"] for _ in range(hooks)
        ]
        time.sleep(SETTLE)
        progress(f"feed: idle, {hooks} webhooks")
        report["idle_hooks"] = _idle_rate(conn, procs["worker"], seconds)
        for hook in ids[1:]:
            http.delete(f"/webhooks/{hook}")
        uid = iter(range(1, 1_000_000))
        cases = {
            "quiet": contextlib.nullcontext,
            "other_database_transaction": lambda: _other_database_transaction(other_dsn),
            "upload_in_progress": lambda: _upload_in_progress(url),
        }
        for case, context in cases.items():
            progress(f"feed: delivery latency, {case} (held {hold} s)")
            got = [_latency_beside(context, hold, http, receiver, next(uid)) for _ in range(rounds)]
            report[f"latency_{case}_s"] = {
                "median": round(statistics.median(got), 2),
                "max": round(max(got), 2),
            }
        return report
    finally:
        receiver.close()
        conn.close()
        for proc in procs.values():
            proc.stop()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=DEFAULT_DSN)
    parser.add_argument("--hooks", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hold", type=float, default=10, help="seconds each stall is held")
    args = parser.parse_args()
    report = run(args.database, args.hooks, args.seconds, args.rounds, args.hold)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
