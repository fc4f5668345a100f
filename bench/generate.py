"""Benchmark data: ``python -m bench.generate --users N [--database DSN]``.

N users (ids 1..N), 100 segments, 3-7 memberships per user (5 on average; 10% of them with
an expiry one to twelve months ahead), and one ``add`` history event per membership at
its ``added_at``, spread over the previous calendar month. Everything is written with
COPY (FK triggers off, secondary indexes dropped and rebuilt), then VACUUM ANALYZE.

Reusable: a ``bench_meta`` table records what was generated; when it says N users and
the users table holds them, the generator only removes what earlier benchmark runs left
behind (``reset``) and exits.
"""

from __future__ import annotations

import argparse
import io
import random
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg2
import psycopg2.extensions
import psycopg2.sql

from bench.common import RUN_PREFIX, bench_dsn, connect, dbname, dsn_params, progress
from models import months, partitions

SEGMENTS = 100
SEED = 20261126
CHUNK_USERS = 20_000
# The probe month: the same 1,000,000 events at every N (500,000 users each added to
# and removed from one segment), two months before the generated one. Its CSV time
# shows whether a month's report depends on the volume of the other months.
PROBE_USERS = 500_000
PROBE_MONTHS_BACK = 2


class _Stream(io.RawIOBase):
    """A file-like object COPY reads from, filled lazily by a generator of text chunks."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            try:
                self._buf += next(self._chunks).encode()
            except StopIteration:
                break
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def readline(self, size: int = -1) -> bytes:  # psycopg2 only calls read(); kept for io
        return self.read(size)


def ensure_database(dsn: str) -> None:
    """Create the database if missing, then apply the service's migrations to it."""
    from models.infra.db import db
    from scripts.procs import migrated_database

    progress(f"database {dsn_params(dsn).get('dbname', 'postgres')}: migrating")
    migrated_database(dsn)
    db.close_all()


def read_meta(cur) -> dict[str, str]:
    cur.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text)")
    cur.execute("SELECT key, value FROM bench_meta")
    return dict(cur.fetchall())


def _progress_chunks(label: str, n: int, chunks: Iterator[tuple[int, str]]) -> Iterator[str]:
    started = time.monotonic()
    for done, text in chunks:
        rate = done / max(time.monotonic() - started, 1e-6)
        progress(f"{label}: {done:,}/{n:,} users ({100 * done / n:.0f}%, {rate:,.0f}/s)", end="")
        yield text
    progress(f"{label}: {n:,} users in {time.monotonic() - started:.1f}s")


def _users(n: int, created: str) -> Iterator[tuple[int, str]]:
    for lo in range(1, n + 1, CHUNK_USERS * 5):
        hi = min(lo + CHUNK_USERS * 5, n + 1)
        yield hi - 1, "".join(f"{u}\t{created}\n" for u in range(lo, hi))


def _memberships(n: int, seg_ids: list[int], month_start: datetime, now: datetime, history: bool):
    """Both COPY streams come from the same seeded sequence, so history matches exactly."""
    rng = random.Random(SEED)
    month_secs = int(
        ((month_start + timedelta(days=32)).replace(day=1) - month_start).total_seconds()
    )
    base = month_start.timestamp()
    now_ts = now.timestamp()
    sample, rand, randint = rng.sample, rng.random, rng.randint
    for lo in range(1, n + 1, CHUNK_USERS):
        hi = min(lo + CHUNK_USERS, n + 1)
        out = []
        for u in range(lo, hi):
            for sid in sample(seg_ids, randint(3, 7)):
                at = datetime.fromtimestamp(base + rand() * month_secs, UTC).isoformat()
                if rand() < 0.1:
                    exp = datetime.fromtimestamp(now_ts + randint(30, 365) * 86400, UTC)
                    expires = exp.isoformat()
                else:
                    expires = "\\N"
                if history:
                    out.append(f"{u}\t{sid}\tadd\tmanual\t{at}\n")
                else:
                    out.append(f"{u}\t{sid}\tmanual\t{at}\t{expires}\n")
        yield hi - 1, "".join(out)


def reset(dsn: str) -> None:
    """Remove what benchmark runs add: users above N, BENCHRUN_ segments with their rows,
    history written after generation."""
    conn = connect(dsn)
    with conn.cursor() as cur:
        meta = read_meta(cur)
        if "users" not in meta:
            return
        n, max_hist = int(meta["users"]), int(meta["history_max_id"])
        cur.execute(
            "SELECT coalesce(array_agg(id), '{}') FROM segments WHERE name LIKE %s",
            (RUN_PREFIX + "%",),
        )
        segs = cur.fetchone()[0]
        cur.execute("DELETE FROM history WHERE id > %s OR user_id > %s", (max_hist, n))
        cur.execute("DELETE FROM memberships WHERE segment_id = ANY(%s) OR user_id > %s", (segs, n))
        cur.execute(
            "DELETE FROM segment_opt_outs WHERE segment_id = ANY(%s) OR user_id > %s", (segs, n)
        )
        cur.execute("DELETE FROM jobs WHERE segment_id = ANY(%s)", (segs,))
        cur.execute("DELETE FROM segments WHERE id = ANY(%s)", (segs,))
        cur.execute("DELETE FROM users WHERE id > %s", (n,))
        if cur.rowcount or segs:
            # history too: an earlier run's millions of deleted events would otherwise
            # leave their autovacuum to the next run.
            cur.execute(
                "VACUUM (ANALYZE) users, memberships, segment_opt_outs, segments, jobs, history"
            )
    conn.close()


def generate(dsn: str, n: int, force: bool = False) -> dict[str, str]:
    ensure_database(dsn)
    conn = connect(dsn)
    cur = conn.cursor()
    meta = read_meta(cur)
    if not force and meta.get("users") == str(n):
        cur.execute("SELECT count(*) FROM users WHERE id <= %s", (n,))
        if cur.fetchone()[0] == n:
            progress(f"database {dbname(dsn)} already holds {n:,} users: reusing it")
            conn.close()
            reset(dsn)
            return ensure_probe_month(dsn)

    started = time.monotonic()
    now = datetime.now(UTC).replace(microsecond=0)
    month_start = (now.replace(day=1) - timedelta(days=1)).replace(
        day=1, hour=0, minute=0, second=0
    )
    progress(f"generating {n:,} users into {dbname(dsn)} (history in {month_start:%Y-%m})")
    cur.execute(
        "TRUNCATE history, jobs, segment_opt_outs, memberships, segments, users, "
        "bench_meta RESTART IDENTITY CASCADE"
    )
    # Secondary indexes are rebuilt after the load (much faster than row by row).
    cur.execute(
        """SELECT indexname, indexdef FROM pg_indexes
           WHERE tablename IN ('memberships', 'history') AND schemaname = 'public'
             AND indexname NOT IN (SELECT conname FROM pg_constraint)"""
    )
    indexes = cur.fetchall()
    for name, _ in indexes:
        cur.execute(psycopg2.sql.SQL("DROP INDEX {}").format(psycopg2.sql.Identifier(name)))
    # Its own partition (history is partitioned by month), not the default: the CSV step
    # then reads one month's partition as a real deployment does.
    partitions.create_month(month_start.date())
    cur.execute("SET session_replication_role = replica")  # no FK trigger per COPY row
    rng = random.Random(SEED)
    cur.executemany(
        "INSERT INTO segments (name, salt, auto_percent, created_at) VALUES (%s, %s, 0, %s)",
        [
            (f"BENCH_SEG_{i:03d}", f"{rng.getrandbits(64):016x}", month_start)
            for i in range(SEGMENTS)
        ],
    )
    cur.execute("SELECT id FROM segments ORDER BY id")
    seg_ids = [r[0] for r in cur.fetchall()]
    created = month_start.isoformat()
    cur.copy_expert(
        "COPY users (id, created_at) FROM STDIN",
        _Stream(_progress_chunks("users", n, _users(n, created))),
        size=1 << 20,
    )
    cur.copy_expert(
        "COPY memberships (user_id, segment_id, source, added_at, expires_at) FROM STDIN",
        _Stream(
            _progress_chunks("memberships", n, _memberships(n, seg_ids, month_start, now, False))
        ),
        size=1 << 20,
    )
    cur.copy_expert(
        "COPY history (user_id, segment_id, operation, reason, at) FROM STDIN",
        _Stream(_progress_chunks("history", n, _memberships(n, seg_ids, month_start, now, True))),
        size=1 << 20,
    )
    cur.execute("SET session_replication_role = DEFAULT")
    for name, definition in indexes:
        t = time.monotonic()
        cur.execute("SET maintenance_work_mem = '512MB'")
        # pg_indexes writes a partitioned table's index "ON ONLY": that would build the
        # parent's index alone, and none on its partitions.
        cur.execute(definition.replace(" ON ONLY ", " ON "))
        progress(f"index {name} rebuilt in {time.monotonic() - t:.1f}s")
    t = time.monotonic()
    cur.execute("VACUUM (ANALYZE) users, segments, memberships, history")
    progress(f"vacuum analyze in {time.monotonic() - t:.1f}s")
    cur.execute("SELECT count(*), coalesce(max(id), 0) FROM history")
    hist_rows, hist_max = cur.fetchone()
    cur.execute("SELECT count(*) FROM memberships")
    mem_rows = cur.fetchone()[0]
    meta = {
        "users": str(n),
        "memberships": str(mem_rows),
        "history_rows": str(hist_rows),
        "history_max_id": str(hist_max),
        "month": f"{month_start:%Y-%m}",
        "generated_at": now.isoformat(),
        "seconds": f"{time.monotonic() - started:.1f}",
    }
    cur.executemany("INSERT INTO bench_meta VALUES (%s, %s)", list(meta.items()))
    conn.close()
    progress(
        f"done: {n:,} users, {mem_rows:,} memberships, {hist_rows:,} history rows "
        f"in {time.monotonic() - started:.0f}s"
    )
    return ensure_probe_month(dsn)


def ensure_probe_month(dsn: str) -> dict[str, str]:
    """Add the probe month's events once (databases generated before it existed get it
    on their next reuse); the generated history's last id moves past them, so ``reset``
    keeps them. One transaction: the events and the note that they exist."""
    conn = connect(dsn, autocommit=False)
    with conn.cursor() as cur:
        meta = read_meta(cur)
        if "probe_month" not in meta:
            year, month = (int(x) for x in meta["month"].split("-"))
            probe = months.add_months(date(year, month, 1), -PROBE_MONTHS_BACK)
            start = f"{probe:%Y-%m}-01 UTC"
            probe_users = min(PROBE_USERS, int(meta["users"]))
            progress(f"probe month {probe:%Y-%m}: {2 * probe_users:,} events")
            # Its own partition first: in the default, the scheduler's first tick would
            # move them under a lock on history.
            partitions.create_month(probe)
            # Each user's add and remove, half a day apart, at a time spread over the
            # month's first 27 days; the segment is drawn from the user id.
            cur.execute(
                """INSERT INTO history (user_id, segment_id, operation, reason, at)
                   SELECT u, s.ids[1 + u %% array_length(s.ids, 1)], op.name, 'manual',
                          %(start)s::timestamptz
                            + (u %% 27) * interval '1 day' + (u %% 86400) * interval '1 second'
                            + op.shift
                   FROM generate_series(1, %(users)s) AS u,
                        (SELECT array_agg(id ORDER BY id) AS ids FROM segments
                         WHERE name LIKE 'BENCH_SEG_%%') AS s,
                        (VALUES ('add', interval '0'), ('remove', interval '12 hours'))
                          AS op (name, shift)""",
                {"start": start, "users": probe_users},
            )
            cur.execute("SELECT count(*), max(id) FROM history")
            rows, max_id = cur.fetchone()
            meta.update(
                probe_month=f"{probe:%Y-%m}",
                probe_rows=str(2 * probe_users),
                history_rows=str(rows),
                history_max_id=str(max_id),
            )
            cur.execute("DELETE FROM bench_meta")
            cur.executemany("INSERT INTO bench_meta VALUES (%s, %s)", list(meta.items()))
            cur.execute("ANALYZE history")
    conn.commit()
    conn.close()
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument(
        "--database",
        help="libpq DSN (default: BENCH_DATABASE_DSN or "
        "the dedicated segments_bench database, created if missing)",
    )
    ap.add_argument("--force", action="store_true", help="regenerate even if present")
    args = ap.parse_args()
    generate(bench_dsn(args.database), args.users, args.force)


if __name__ == "__main__":
    main()
