"""Bulk: the auto_percent=10 assignment job against one INSERT ... SELECT, alone and under
reads (read p99 against idle), for each JOB_CHUNK_TIME_MS asked for; the TTL sweep
against one DELETE ... RETURNING."""

from __future__ import annotations

import os
import time

from bench.common import RUN_PREFIX, connect, progress

ASSIGN_FLOOR = """WITH seg AS (SELECT id, salt FROM segments WHERE id = {seg}),
    added AS (
        INSERT INTO memberships (user_id, segment_id, source)
        SELECT u.id, seg.id, 'auto' FROM users u CROSS JOIN seg
        WHERE segment_bucket(seg.salt, u.id) < 1000
          AND NOT EXISTS (SELECT 1 FROM segment_opt_outs o
                          WHERE o.segment_id = seg.id AND o.user_id = u.id)
        ON CONFLICT DO NOTHING
        RETURNING user_id, segment_id)
    INSERT INTO history (user_id, segment_id, operation, reason, at)
    SELECT user_id, segment_id, 'add', 'auto', now() FROM added"""

TTL_FLOOR = """WITH gone AS (
        DELETE FROM memberships WHERE expires_at <= now()
        RETURNING user_id, segment_id, expires_at)
    INSERT INTO history (user_id, segment_id, operation, reason, at)
    SELECT user_id, segment_id, 'remove', 'ttl', expires_at FROM gone"""


def run(b) -> tuple[dict, list[str]]:
    out: dict = {}
    (seg,) = b.sql(
        "INSERT INTO segments (name, salt, auto_percent) "
        "VALUES (%s, md5(random()::text), 10) RETURNING id",
        (f"{RUN_PREFIX}FLOOR_AUTO10",),
    )[0]
    progress("bulk: auto_percent=10 floor (one INSERT ... SELECT in psql)")
    out["assign_floor_s"] = b.psql_timed(ASSIGN_FLOOR.format(seg=seg))
    out["assign_floor_members"] = b.sql(
        "SELECT count(*) FROM memberships WHERE segment_id = %s", (seg,)
    )[0][0]
    chunk_times = [x for x in b.args.chunk_times.split(",") if x] or [""]
    out["chunk_times"] = {}
    for ms in chunk_times:
        if ms:  # a worker with this chunk time; "" keeps the default one
            b.stop("worker")
            b.start("worker", JOB_CHUNK_TIME_MS=ms)
        out["chunk_times"][ms or "default"] = assign_pair(b, ms or "default", out)
    if chunk_times != [""]:
        b.stop("worker")
        b.start("worker")
    # The first (or only) entry is the one the summary keys report, as before.
    first = next(iter(out["chunk_times"].values()))
    out.update({k: v for k, v in first.items() if not isinstance(v, dict)})
    out["reads_during_job_c8"] = first["reads_during_job_c8"]
    out["reads_idle_c8"] = first["reads_idle_c8"]
    out.update(ttl(b))
    return out, rows(out)


def assign_pair(b, label: str, out: dict) -> dict:
    """The job alone (against the floor), then again under reads at 8 connections."""
    progress(f"bulk: auto_percent=10 job, JOB_CHUNK_TIME_MS={label}, idle")
    job = assign_job(b, f"{RUN_PREFIX}AUTO10_{label}")
    res = {f"assign_job_{k}": v for k, v in job.items()}
    res["assign_ratio"] = round(job["s"] / out["assign_floor_s"], 2)
    # Idle p99 just before, as the baseline of this pair: on a shared machine the load
    # drifts between pairs more than the job moves the tail.
    progress(f"bulk: idle read latency before the next job, 8 connections ({label})")
    res["reads_idle_c8"] = b.load.run(b.url, 8, b.seconds, "reads.lua", [str(b.users)])
    progress(f"bulk: the same job again, reads at 8 connections meanwhile ({label})")
    finish = b.load.start(b.url, 8, "reads.lua", [str(b.users)])
    time.sleep(1)
    job = assign_job(b, f"{RUN_PREFIX}AUTO10_{label}_UNDER_READS")
    res["reads_during_job_c8"] = finish()
    res["assign_under_reads_s"] = job["s"]
    res["read_p99_ratio_during_job"] = round(
        res["reads_during_job_c8"]["p99_ms"] / res["reads_idle_c8"]["p99_ms"], 2
    )
    return res


def assign_job(b, name: str) -> dict:
    """POST an auto_percent=10 segment; poll its job until done. Time from POST."""
    t0 = time.perf_counter()
    r = b.http.post("/segments", json={"segment": name, "auto_percent": 10})
    r.raise_for_status()
    job_id = r.json()["job_id"]
    while True:
        job = b.http.get(f"/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            break
        progress(f"bulk: job {job_id} {job['state']} {job['done']:,}/{job['total'] or 0:,}", end="")
        time.sleep(0.2)
    took = round(time.perf_counter() - t0, 3)
    progress(f"bulk: job {job_id} {job['state']} in {took}s")
    started, finished, created, members = b.sql(
        """SELECT extract(epoch FROM j.started_at), extract(epoch FROM j.finished_at),
                  extract(epoch FROM j.created_at),
                  (SELECT count(*) FROM memberships m WHERE m.segment_id = j.segment_id)
           FROM jobs j WHERE j.id = %s""",
        (job_id,),
    )[0]
    return {
        "s": took,
        "state": job["state"],
        "run_s": round(float(finished - started), 3) if finished else None,
        "queue_s": round(float(started - created), 3) if started else None,
        "members": members,
    }


def ttl(b) -> dict:
    """100k expired memberships: the floor first, then the worker's sweep."""
    k = min(100_000, b.users)
    out: dict = {"ttl_rows": k}
    expired_rows(b, f"{RUN_PREFIX}TTL_FLOOR", k)
    progress(f"bulk: TTL floor (one DELETE ... RETURNING -> INSERT history) on {k:,} rows")
    out["ttl_floor_s"] = b.psql_timed(TTL_FLOOR)
    seg = expired_rows(b, f"{RUN_PREFIX}TTL", k)
    progress(f"bulk: TTL sweep of {k:,} rows by the worker (sweep_expired message)")
    out.update(sweep(b, seg, k))
    out["ttl_ratio"] = round(out["ttl_sweep_s"] / out["ttl_floor_s"], 2)
    return out


def expired_rows(b, name: str, k: int) -> int:
    (seg,) = b.sql(
        "INSERT INTO segments (name, salt) VALUES (%s, md5(random()::text)) RETURNING id",
        (name,),
    )[0]
    b.sql(
        """INSERT INTO memberships (user_id, segment_id, source, added_at, expires_at)
           SELECT id, %s, 'manual', now() - interval '2 days',
                  now() - interval '1 day' + id * interval '1 millisecond'
           FROM users WHERE id <= (SELECT id FROM users ORDER BY id OFFSET %s LIMIT 1)
           ORDER BY id""",
        (seg, k - 1),
    )
    b.sql("ANALYZE memberships")
    return seg


def sweep(b, seg: int, k: int) -> dict:
    from models.infra.settings import load_settings
    from workers.actors import send
    from workers.boot import bootstrap

    bootstrap(load_settings({**os.environ, **b.env}))

    conn = connect(b.dsn)
    first = None
    with conn.cursor() as cur:
        t0 = time.perf_counter()
        send("sweep_expired")
        while True:
            cur.execute("SELECT count(*) FROM memberships WHERE segment_id = %s", (seg,))
            left = cur.fetchone()[0]
            if first is None and left < k:
                first = time.perf_counter() - t0
            if left == 0:
                break
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"sweep did not finish: {left} rows left")
            time.sleep(0.05)
        total = time.perf_counter() - t0
    conn.close()
    return {"ttl_sweep_s": round(total, 3), "ttl_first_delete_after_s": round(first or 0, 3)}


def rows(b: dict) -> list[str]:
    lines = []
    for label, r in b["chunk_times"].items():
        lines.append(
            f"| auto_percent=10 job, JOB_CHUNK_TIME_MS={label} (POST → done) | "
            f"{r['assign_job_s']:.2f} s ({r['assign_job_members']:,} members; "
            f"{r['assign_under_reads_s']:.2f} s under reads) | {b['assign_floor_s']:.2f} s "
            f"({b['assign_floor_members']:,}) | {r['assign_ratio']} | ≤ 1.5 |"
        )
        lines.append(
            f"| read p99 c=8 during that job vs idle | {r['reads_during_job_c8']['p99_ms']:.2f} ms"
            f" | {r['reads_idle_c8']['p99_ms']:.2f} ms | {r['read_p99_ratio_during_job']} | ≤ 2 |"
        )
    lines.append(
        f"| TTL sweep of {b['ttl_rows']:,} (send → all gone) | {b['ttl_sweep_s']:.2f} s | "
        f"{b['ttl_floor_s']:.2f} s | {b['ttl_ratio']} | ≤ 1.5 |"
    )
    return lines
