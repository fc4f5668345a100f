"""Uploads (issue 18 item 8): how fast an import's body is staged, in MiB/s, for a list
near the 64 MiB limit with repeated ids; against the floor: COPY of the same file through
the bare driver (psycopg2) into a table without an index (an upload writes its batches
without per-id index work, too), every repeat included, in the same run. The upload's
time is to its 202 (staged, counted, the job recorded); the job is then ended by deleting
the segment."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from bench.common import connect, progress
from bench.steps.imports import upload

SEGMENT = "BENCHRUN_UPLOAD"
MIB = 1024 * 1024
SIZE = 63 * MIB  # under the 64 MiB limit, with its header and last line
DISTINCT = 3_000_000  # ids drawn from 1..DISTINCT: most appear about three times


def _ids_file() -> tuple[Path, int]:
    path = Path(tempfile.mkdtemp(prefix="bench-upload-")) / "ids.csv"
    rng = random.Random(18)
    written = 0
    with path.open("wb") as f:
        f.write(b"user_id\n")
        while written < SIZE:
            block = b"".join(b"%d\n" % rng.randint(1, DISTINCT) for _ in range(100_000))
            f.write(block)
            written += len(block)
    return path, path.stat().st_size


def _upload(b, path: Path) -> tuple[float, dict]:
    b.http.post("/segments", json={"segment": SEGMENT})
    seconds, out = upload(b, path, SEGMENT)
    with connect(b.dsn) as conn, conn.cursor() as cur:
        # Right after the answer the ids are in the upload's batches; the job moves them
        # into import_staging (and deletes both when it ends).
        cur.execute(
            "SELECT (SELECT coalesce(sum(cardinality(ids)), 0) FROM import_upload_batches)"
            " + (SELECT count(*) FROM import_staging),"
            " pg_total_relation_size('import_upload_batches')"
            " + pg_total_relation_size('import_staging')"
        )
        rows, size = cur.fetchone()
    b.http.request("DELETE", "/segments", json={"segment": SEGMENT})
    return seconds, {"answer": out[:200], "staged_rows": rows, "staging_mb": size // MIB}


def _floor(b, path: Path) -> float:
    """COPY of the same bytes into a plain table: what the database alone costs."""
    with connect(b.dsn, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE bench_floor_ids (upload_id bigint NOT NULL DEFAULT 1, user_id bigint)"
        )
        t0 = time.perf_counter()
        with path.open("rb") as f:
            cur.copy_expert(
                "COPY bench_floor_ids (user_id) FROM STDIN WITH (FORMAT csv, HEADER true)", f
            )
        conn.commit()
        seconds = time.perf_counter() - t0
        cur.execute("DROP TABLE bench_floor_ids")
        conn.commit()
    return seconds


def run(b) -> tuple[dict, list[str]]:
    progress("uploads: writing ~63 MiB of ids with repeats")
    path, size = _ids_file()
    progress("uploads: POST to 202, then the floor (COPY through psycopg2)")
    seconds, staged = _upload(b, path)
    floor = _floor(b, path)
    mib = size / MIB
    out = {
        "mib": round(mib, 1),
        "upload_seconds": round(seconds, 2),
        "upload_mib_per_s": round(mib / seconds, 1),
        "floor_seconds": round(floor, 2),
        "floor_mib_per_s": round(mib / floor, 1),
        "ratio": round(seconds / floor, 2),
        **staged,
    }
    rows = [
        f"| upload of {mib:.0f} MiB of ids with repeats, to 202 | {out['upload_seconds']} s "
        f"({out['upload_mib_per_s']} MiB/s), {staged['staged_rows']:,} rows staged "
        f"| COPY of every line through psycopg2: {out['floor_seconds']} s "
        f"({out['floor_mib_per_s']} MiB/s) "
        f"| {out['ratio']} | well under the 60 s body timeout |",
    ]
    return out, rows
