"""Migration 005 on a big history, and the plan of a month's CSV report after it:
``python -m bench.history_partitions --events 2000000 [--months 24] [--database DSN]``.

Creates the database (default ``segments_partitions_bench``; dropped first, and again at
the end unless ``--keep``), migrates it up to 004, writes ``--events`` events spread
evenly over the last ``--months`` months (100,000 users, 100 segments), then times
``apply_migrations()`` (005 alone) and prints EXPLAIN ANALYZE of the report's first batch
for the previous month.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

import psycopg2.extensions
import psycopg2.sql
from peewee_migrate import Router

from bench.common import connect, dsn_params, progress
from models import history
from models.infra.db import db, fetchall, init_db
from models.infra.migrate import MIGRATIONS_DIR, apply_migrations
from models.infra.settings import load_settings
from models.months import add_months, month_bounds, month_of

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=segments_partitions_bench"
USERS = 100_000

POPULATE = """
INSERT INTO users (id) SELECT generate_series(1, %(users)s);
INSERT INTO segments (name, salt) SELECT 'S' || g, md5(g::text) FROM generate_series(1, 100) g;
INSERT INTO history (user_id, segment_id, operation, reason, at)
SELECT 1 + g %% %(users)s, 1 + g %% 100, CASE WHEN g %% 2 = 0 THEN 'add' ELSE 'remove' END,
       'manual', %(since)s::timestamptz + (now() - %(since)s::timestamptz) * g / %(events)s
FROM generate_series(0, %(events)s - 1) g;
"""


def _admin(dsn: str, statement: str) -> None:
    # Not ``with conn``: psycopg2 opens a transaction there, even in autocommit.
    conn = connect(psycopg2.extensions.make_dsn(**{**dsn_params(dsn), "dbname": "postgres"}))
    name = psycopg2.sql.Identifier(dsn_params(dsn)["dbname"])
    conn.cursor().execute(psycopg2.sql.SQL(statement).format(name))
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--database", default=DEFAULT_DSN)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    dsn = args.database

    _admin(dsn, "DROP DATABASE IF EXISTS {} WITH (FORCE)")
    _admin(dsn, "CREATE DATABASE {}")
    init_db(load_settings({**os.environ, "DATABASE_DSN": dsn}))
    with db.connection_context():
        Router(db, migrate_dir=MIGRATIONS_DIR, ignore=["basemodel"]).run("004_webhooks")
    this_month = month_of(datetime.now(UTC).date())
    since = add_months(this_month, -args.months)
    started = time.monotonic()
    conn = connect(dsn)
    cur = conn.cursor()
    cur.execute(POPULATE, {"users": USERS, "events": args.events, "since": since.isoformat()})
    cur.execute("VACUUM ANALYZE history")
    conn.close()
    progress(f"{args.events:,} events since {since} in {time.monotonic() - started:.1f}s")

    started = time.monotonic()
    applied = apply_migrations()
    took = time.monotonic() - started
    progress(f"{', '.join(applied)}: {args.events:,} events in {took:.1f}s")
    previous = add_months(this_month, -1)
    start, end = month_bounds(previous.year, previous.month)
    with db.connection_context():
        plan = fetchall(
            f"EXPLAIN (ANALYZE, BUFFERS) {history.BATCH_SQL}",
            history.batch_params(None, start, end),
        )
        partitions = fetchall(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'history'::regclass"
        )[0][0]
    print(f"migration 005: {args.events:,} events, {partitions} partitions, {took:.1f} s")
    print(f"EXPLAIN (ANALYZE, BUFFERS) of GET /history?year={previous.year}&month={previous.month}")
    print("\n".join(r[0] for r in plan))
    db.close_all()
    if not args.keep:
        _admin(dsn, "DROP DATABASE IF EXISTS {} WITH (FORCE)")


if __name__ == "__main__":
    main()
