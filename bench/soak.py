"""Soak: a bounded mixed load against the real processes, then the invariant checker.

    python -m bench.soak --duration 300 [--threads 8] [--database DSN]

Starts web, worker and scheduler with the Procfile's command lines on a database of its
own (created fresh unless --reuse), runs reads, adds, removes, TTL adds, user creation
and one auto_percent job for the given time, samples PostgreSQL connections and the RSS
of the web and worker process trees every few seconds, and ends with
``models.verify``. Prints a JSON report; exit status 1 on any 5xx or checker violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.common import connect, dbname, progress
from scripts.procs import Proc, free_port

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=segments_soak sslmode=disable"
SEGMENTS = [f"SOAK_{i}" for i in range(20)]
MAX_REQUESTS = 2_000_000  # a bound on top of the duration, whatever the machine's speed


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants (the worker forks its processes)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return round(total / 1024, 1)


def prepare(dsn: str, users: int, fresh: bool) -> None:
    from scripts.procs import migrated_database

    migrated_database(dsn, fresh=fresh)
    conn = connect(dsn)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO users (id) SELECT g FROM generate_series(1, %s) g ON CONFLICT DO NOTHING",
            (users,),
        )
    conn.close()


def worker_loop(url: str, users: int, stop: threading.Event, seen: Counter, seed: int) -> None:
    rnd = random.Random(seed)
    next_id = users + 1_000_000 * (seed + 1)
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            uid = rnd.randint(1, users)
            names = rnd.sample(SEGMENTS, rnd.randint(1, 3))
            roll = rnd.random()
            try:
                if roll < 0.5:
                    r = c.get(f"/users/{uid}")
                elif roll < 0.65:
                    r = c.patch("/users", json={"id": uid, "segments": names})
                elif roll < 0.75:
                    r = c.patch(
                        "/users",
                        json={"id": uid, "segments": names, "active_time": rnd.randint(1, 5)},
                    )
                elif roll < 0.87:
                    r = c.request("DELETE", "/users", json={"id": uid, "segments": names})
                elif roll < 0.95:
                    next_id += 1
                    r = c.post("/users", json={"id": next_id})
                else:
                    r = c.post(
                        f"/users/{uid}/segments", json={"add": names[:1], "remove": names[1:]}
                    )
                seen[r.status_code] += 1
            except httpx.TransportError:
                seen["transport_error"] += 1


def soak(
    dsn: str, duration: float, threads: int = 8, users: int = 20_000, fresh: bool = True
) -> dict:
    prepare(dsn, users, fresh)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_DSN": dsn,
        "SERVER_HOST": f"127.0.0.1:{port}",
        "QUEUE_NAMESPACE": f"soak-{dbname(dsn)}",
        "SWEEP_INTERVAL": "1",
    }
    logdir = Path(tempfile.mkdtemp(prefix="soak-"))
    procs = {name: Proc(name, env, logdir) for name in ("web", "worker", "scheduler")}
    conn = connect(dsn)
    try:
        procs["web"].wait_http(url)
        http = httpx.Client(base_url=url, timeout=30)
        for name in SEGMENTS:
            http.post("/segments", json={"segment": name})
        samples = []

        def sample() -> dict:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname(dsn),)
                )
                connections = cur.fetchone()[0]
            return {
                "t": round(time.monotonic() - started, 1),
                "connections": connections,
                "web_rss_mb": tree_rss_mb(procs["web"].pid),
                "worker_rss_mb": tree_rss_mb(procs["worker"].pid),
            }

        seen: Counter = Counter()
        stop = threading.Event()
        started = time.monotonic()
        time.sleep(2)  # let the processes settle before the baseline sample
        samples.append(sample())
        loaders = [
            threading.Thread(target=worker_loop, args=(url, users, stop, seen, n))
            for n in range(threads)
        ]
        for t in loaders:
            t.start()
        job = http.post("/segments", json={"segment": "SOAK_AUTO", "auto_percent": 10}).json()
        while time.monotonic() - started < duration and sum(seen.values()) < MAX_REQUESTS:
            time.sleep(min(5, max(0.1, duration - (time.monotonic() - started))))
            samples.append(sample())
            progress(
                f"soak {samples[-1]['t']:.0f}/{duration:.0f}s  "
                f"{sum(seen.values())} requests  {dict(seen)}",
                end="",
            )
        stop.set()
        for t in loaders:
            t.join()
        progress("")
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 120
        while http.get(f"/jobs/{job['job_id']}").json()["state"] not in ("done", "failed"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        job_state = http.get(f"/jobs/{job['job_id']}").json()["state"]
        time.sleep(6)  # the last TTL adds expire and are swept
        samples.append(sample())
        http.close()
    finally:
        for p in procs.values():
            p.stop()
        conn.close()

    from models.verify import verify

    report = verify()
    errors_5xx = sum(n for code, n in seen.items() if isinstance(code, int) and code >= 500)
    return {
        "duration_s": round(elapsed, 1),
        "threads": threads,
        "requests": sum(seen.values()),
        "requests_per_s": round(sum(seen.values()) / elapsed, 1),
        "by_status": {str(k): v for k, v in sorted(seen.items(), key=str)},
        "errors_5xx": errors_5xx,
        "auto_percent_job": job_state,
        "start": samples[0],
        "end": samples[-1],
        "max_connections": max(s["connections"] for s in samples),
        "checker": {
            "ok": report["ok"],
            "violations": report["violations"],
            "memberships": report["memberships"],
            "events": report["events"],
        },
        "logs": str(logdir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--database", default=os.environ.get("SOAK_DATABASE_DSN", DEFAULT_DSN))
    parser.add_argument("--reuse", action="store_true", help="keep the database's contents")
    args = parser.parse_args()
    result = soak(args.database, args.duration, args.threads, args.users, fresh=not args.reuse)
    print(json.dumps(result, indent=2))
    ok = result["errors_5xx"] == 0 and result["checker"]["ok"]
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
