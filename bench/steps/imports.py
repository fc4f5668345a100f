"""Imports: N existing ids uploaded to POST /segments/{name}/users (upload, then the job
to done), the web processes' memory during the upload, and reads' p99 while the job
runs; against the floor: COPY of the same ids into a table plus one INSERT ... SELECT of
the memberships and their events, in psql, run twice: alone (the issue's floor), and
under the same reads as the job (the floor for the same CPU share: on 2 cores the reads
take most of both)."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import RssSampler, dbname, progress, psql_args

SEGMENT, FLOOR_SEGMENT = "BENCHRUN_IMPORT", "BENCHRUN_IMPORT_FLOOR"
LOADED_FLOOR_SEGMENT = "BENCHRUN_IMPORT_FLOOR_LOADED"
ALONE_SEGMENT = "BENCHRUN_IMPORT_ALONE"


def _ids_file(n: int) -> Path:
    path = Path(tempfile.mkdtemp(prefix="bench-import-")) / "ids.csv"
    with path.open("w") as f:
        f.write("user_id\n")
        for start in range(1, n + 1, 100_000):
            f.write("".join(f"{i}\n" for i in range(start, min(n, start + 99_999) + 1)))
    return path


def upload(b, path: Path, segment: str) -> tuple[float, str]:
    """POST the file to the segment with curl: the seconds to the answer, and the answer."""
    t0 = time.perf_counter()
    out = subprocess.run(
        ["curl", "-sS", "-XPOST", f"{b.url}/segments/{segment}/users",
         "-H", "Content-Type: text/csv", "--data-binary", f"@{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return time.perf_counter() - t0, out


def _service(b, path: Path, n: int, segment: str = SEGMENT, reads: bool = True) -> dict:
    b.http.post("/segments", json={"segment": segment})
    progress(f"imports: uploading {n:,} ids to {segment}")
    sampler = RssSampler(b.procs["web"].pid)
    t0 = time.perf_counter()
    upload_seconds, out = upload(b, path, segment)
    rss = sampler.stop()
    job_id = int(out.split('"job_id":')[1].split(",")[0])
    progress(f"imports: job running{', reads at 8 connections meanwhile' if reads else ''}")
    finish_reads = b.load.start(b.url, 8, "reads.lua", [str(b.users)]) if reads else dict
    while (job := b.http.get(f"/jobs/{job_id}").json())["state"] not in ("done", "failed"):
        time.sleep(0.2)
    total = time.perf_counter() - t0
    during = finish_reads()
    return {
        "upload_seconds": round(upload_seconds, 2),
        "total_seconds": round(total, 2),
        "job": {k: job[k] for k in ("state", "done", "total", "result")},
        "web_rss_growth_mb": rss,
        "reads_during": during,
    }


def _floor(b, path: Path, segment: str) -> float:
    b.http.post("/segments", json={"segment": segment})
    script = f"""\\timing on
CREATE TEMP TABLE ids (user_id bigint);
\\copy ids FROM '{path}' WITH (FORMAT csv, HEADER true)
WITH seg AS (SELECT id FROM segments WHERE name = '{segment}' AND deleted_at IS NULL),
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


def _loaded_floor(b, path: Path) -> tuple[float, dict]:
    progress("imports: the floor again, under the same reads at 8 connections")
    finish_reads = b.load.start(b.url, 8, "reads.lua", [str(b.users)])
    seconds = _floor(b, path, LOADED_FLOOR_SEGMENT)
    return seconds, finish_reads()


def run(b) -> tuple[dict, list[str]]:
    n = min(b.users, 1_000_000)
    path = _ids_file(n)
    progress("imports: idle read p99 at 8 connections")
    idle = b.load.run(b.url, 8, min(5, b.seconds), "reads.lua", [str(b.users)])
    service = _service(b, path, n)
    alone = _service(b, path, n, ALONE_SEGMENT, reads=False)
    progress("imports: floor (COPY + one INSERT ... SELECT with its events) in psql")
    floor = _floor(b, path, FLOOR_SEGMENT)
    loaded_floor, loaded_reads = _loaded_floor(b, path)
    ratio = round(service["total_seconds"] / floor, 2)
    loaded_ratio = round(service["total_seconds"] / loaded_floor, 2)
    p99_ratio = round(service["reads_during"]["p99_ms"] / idle["p99_ms"], 2)
    loaded_p99_ratio = round(loaded_reads["p99_ms"] / idle["p99_ms"], 2)
    out = {"ids": n, "service": service, "floor_seconds": floor, "ratio": ratio,
           "loaded_floor_seconds": loaded_floor, "loaded_ratio": loaded_ratio,
           "reads_during_loaded_floor": loaded_reads, "loaded_floor_p99_ratio": loaded_p99_ratio,
           "idle_reads": idle, "p99_ratio": p99_ratio, "alone": alone,
           "alone_ratio": round(alone["total_seconds"] / floor, 2)}  # fmt: skip
    rows = [
        f"| import of {n:,} ids, upload + job | {service['upload_seconds']} s upload, "
        f"{service['total_seconds']} s to done, web RSS +{service['web_rss_growth_mb']} MB "
        f"| COPY + INSERT … SELECT: {floor} s | {ratio} | ≤ 1.5, RSS < +50 MB |",
        f"| the same with no reads | {alone['total_seconds']} s to done | {floor} s "
        f"| {out['alone_ratio']} | - |",
        f"| the same, against the floor under the same reads | {service['total_seconds']} s "
        f"| {loaded_floor} s (read p99 meanwhile {loaded_reads['p99_ms']} ms, "
        f"{loaded_p99_ratio}x idle) | {loaded_ratio} | - |",
        f"| read p99 c=8 during the import job vs idle | {service['reads_during']['p99_ms']} ms "
        f"| {idle['p99_ms']} ms | {p99_ratio} | ≤ 2 |",
    ]
    return out, rows
