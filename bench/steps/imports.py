"""Imports: N existing ids uploaded to POST /segments/{name}/users (upload, then the job
to done), the web processes' memory during the upload, and reads' p99 while the job
runs; against the floor: COPY of the same ids into a table plus one INSERT ... SELECT of
the memberships and their events, in psql."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import RssSampler, dbname, progress, psql_args

SEGMENT, FLOOR_SEGMENT = "BENCHRUN_IMPORT", "BENCHRUN_IMPORT_FLOOR"


def _ids_file(n: int) -> Path:
    path = Path(tempfile.mkdtemp(prefix="bench-import-")) / "ids.csv"
    with path.open("w") as f:
        f.write("user_id\n")
        for start in range(1, n + 1, 100_000):
            f.write("".join(f"{i}\n" for i in range(start, min(n, start + 99_999) + 1)))
    return path


def _service(b, path: Path, n: int) -> dict:
    b.http.post("/segments", json={"segment": SEGMENT})
    progress(f"imports: uploading {n:,} ids")
    sampler = RssSampler(b.procs["web"].pid)
    t0 = time.perf_counter()
    out = subprocess.run(
        ["curl", "-sS", "-XPOST", f"{b.url}/segments/{SEGMENT}/users",
         "-H", "Content-Type: text/csv", "--data-binary", f"@{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    upload = time.perf_counter() - t0
    rss = sampler.stop()
    job_id = int(out.split('"job_id":')[1].split(",")[0])
    progress("imports: job running, reads at 8 connections meanwhile")
    finish_reads = b.load.start(b.url, 8, "reads.lua", [str(b.users)])
    while (job := b.http.get(f"/jobs/{job_id}").json())["state"] not in ("done", "failed"):
        time.sleep(0.2)
    total = time.perf_counter() - t0
    during = finish_reads()
    return {
        "upload_seconds": round(upload, 2),
        "total_seconds": round(total, 2),
        "job": {k: job[k] for k in ("state", "done", "total", "result")},
        "web_rss_growth_mb": rss,
        "reads_during": during,
    }


def _floor(b, path: Path) -> float:
    b.http.post("/segments", json={"segment": FLOOR_SEGMENT})
    progress("imports: floor (COPY + one INSERT ... SELECT with its events) in psql")
    script = f"""\\timing on
CREATE TEMP TABLE ids (user_id bigint);
\\copy ids FROM '{path}' WITH (FORMAT csv, HEADER true)
WITH seg AS (SELECT id FROM segments WHERE name = '{FLOOR_SEGMENT}' AND deleted_at IS NULL),
added AS (INSERT INTO memberships (user_id, segment_id, source)
          SELECT DISTINCT i.user_id, seg.id, 'import' FROM ids i JOIN users u ON u.id = i.user_id
          CROSS JOIN seg ON CONFLICT DO NOTHING RETURNING user_id, segment_id)
INSERT INTO history (user_id, segment_id, operation, reason, at)
SELECT user_id, segment_id, 'add', 'import', clock_timestamp() FROM added;
"""
    cmd = ["psql", *psql_args(b.dsn), "-d", dbname(b.dsn), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    t0 = time.perf_counter()
    subprocess.run(cmd, input=script, capture_output=True, text=True, check=True)
    return round(time.perf_counter() - t0, 2)


def run(b) -> tuple[dict, list[str]]:
    n = min(b.users, 1_000_000)
    path = _ids_file(n)
    progress("imports: idle read p99 at 8 connections")
    idle = b.load.run(b.url, 8, min(5, b.seconds), "reads.lua", [str(b.users)])
    service = _service(b, path, n)
    floor = _floor(b, path)
    ratio = round(service["total_seconds"] / floor, 2)
    p99_ratio = round(service["reads_during"]["p99_ms"] / idle["p99_ms"], 2)
    out = {"ids": n, "service": service, "floor_seconds": floor, "ratio": ratio,
           "idle_reads": idle, "p99_ratio": p99_ratio}  # fmt: skip
    rows = [
        f"| import of {n:,} ids, upload + job | {service['upload_seconds']} s upload, "
        f"{service['total_seconds']} s to done, web RSS +{service['web_rss_growth_mb']} MB "
        f"| COPY + INSERT … SELECT: {floor} s | {ratio} | ≤ 1.5, RSS < +50 MB |",
        f"| read p99 c=8 during the import job vs idle | {service['reads_during']['p99_ms']} ms "
        f"| {idle['p99_ms']} ms | {p99_ratio} | ≤ 2 |",
    ]
    return out, rows
