"""Layers against their floors, in one run on one database (issue 20, item 6):

- the assignment job of a layered 10% segment against one INSERT ... SELECT doing the
  same (the layered floor), next to the plain segment's job and floor;
- an import of every user id into a layered segment against the same import into a
  plain segment.

The jobs run in this process through the worker's own actor function
(``workers.actors.run_job``), batch by batch as a worker runs them.

    python -m bench.layers --users 1000000 [--database DSN]

The database (default ``segments_bench_layers``) is created if missing, migrated, and
emptied first: never point it at data you keep.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import psycopg2
from dramatiq.brokers.stub import StubBroker

from bench.common import connect, dbname, dsn_params, load_note, progress
from models import imports, layers, segments, uploads
from models.infra.migrate import apply_migrations
from models.infra.settings import load_settings
from workers import actors
from workers.boot import bootstrap

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=segments_bench_layers"

# One statement doing what an assignment job does, events included.
FLOORS = {
    "plain": """WITH seg AS (SELECT id, salt FROM segments WHERE name = 'FLOOR_PLAIN'),
        added AS (
            INSERT INTO memberships (user_id, segment_id, source)
            SELECT u.id, seg.id, 'auto' FROM users u CROSS JOIN seg
            WHERE segment_bucket(seg.salt, u.id) < 1000
            ON CONFLICT DO NOTHING RETURNING user_id, segment_id)
        INSERT INTO history (user_id, segment_id, operation, reason, at)
        SELECT user_id, segment_id, 'add', 'auto', now() FROM added""",
    "layered": """WITH seg AS (SELECT s.id, l.salt FROM segments s JOIN layers l
                                ON l.id = s.layer_id WHERE s.name = 'FLOOR_LAYERED'),
        owned AS (SELECT bucket FROM layer_buckets WHERE segment_id = (
                      SELECT id FROM segments WHERE name = 'FLOOR_LAYERED')),
        added AS (
            INSERT INTO memberships (user_id, segment_id, source)
            SELECT u.id, seg.id, 'auto' FROM users u CROSS JOIN seg
            WHERE segment_bucket(seg.salt, u.id) IN (SELECT bucket FROM owned)
            ON CONFLICT DO NOTHING RETURNING user_id, segment_id)
        INSERT INTO history (user_id, segment_id, operation, reason, at)
        SELECT user_id, segment_id, 'add', 'auto', now() FROM added""",
}


def prepare(dsn: str, users: int) -> None:
    params = dsn_params(dsn)
    admin = connect(psycopg2.extensions.make_dsn(**{**params, "dbname": "postgres"}))
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname(dsn),))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{dbname(dsn)}"')
    admin.close()
    settings = dataclasses.replace(load_settings(), database_dsn=dsn, batch_size=5000)
    bootstrap(settings, StubBroker())
    apply_migrations()
    conn = connect(dsn)
    with conn.cursor() as cur:
        cur.execute(
            "TRUNCATE schedule_steps, layer_buckets, layers, import_keys, import_staging, "
            "history, jobs, segment_opt_outs, memberships, segments, users CASCADE"
        )
        cur.execute("INSERT INTO users (id) SELECT generate_series(1, %s)", (users,))
        cur.execute("VACUUM ANALYZE users")
    conn.close()


def timed(fn, *args) -> float:
    started = time.monotonic()
    fn(*args)
    return round(time.monotonic() - started, 2)


def floor(dsn: str, kind: str) -> float:
    conn = connect(dsn)
    with conn.cursor() as cur:
        seconds = timed(cur.execute, FLOORS[kind])
    conn.close()
    return seconds


def imported(name: str, users: int) -> float:
    upload = uploads.Upload(name, imports.ImportOptions(), None)
    try:
        upload.start(slots=1)
        for first in range(1, users + 1, 50_000):  # the web tier's batches: 50,000 ids
            upload.add({b"%d" % i for i in range(first, min(first + 50_000, users + 1))})
        job_id = upload.commit().job_id
    finally:
        upload.close()
    return timed(actors.run_job, job_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--database", default=DEFAULT_DSN)
    args = parser.parse_args()
    progress(f"preparing {args.users} users")
    prepare(args.database, args.users)
    layers.create_layer("BENCH")
    layers.create_layer("BENCH_IMPORT")  # its own layer: no sibling, no conflict
    out: dict = {"users": args.users, "load_before": load_note()}
    for kind, layer in (("plain", None), ("layered", "BENCH")):
        progress(f"assignment floor, {kind}")
        segments.create_segment(f"FLOOR_{kind.upper()}", 10, layer)
        out[f"assign_floor_{kind}_s"] = floor(args.database, kind)
        progress(f"assignment job, {kind}")
        job = segments.create_segment(f"JOB_{kind.upper()}", 10, layer).job_id
        out[f"assign_job_{kind}_s"] = timed(actors.run_job, job)
        out[f"assign_ratio_{kind}"] = round(
            out[f"assign_job_{kind}_s"] / out[f"assign_floor_{kind}_s"], 2
        )
    for kind, layer in (("plain", None), ("layered", "BENCH_IMPORT")):
        progress(f"import of {args.users} ids, {kind}")
        segments.create_segment(f"IMPORT_{kind.upper()}", 0, layer)
        out[f"import_{kind}_s"] = imported(f"IMPORT_{kind.upper()}", args.users)
    out["import_ratio_layered_to_plain"] = round(out["import_layered_s"] / out["import_plain_s"], 2)
    out["load_after"] = load_note()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
