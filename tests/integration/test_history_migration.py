"""Migration 005 turns a populated, unpartitioned history into monthly partitions
without losing, duplicating or changing an event."""

from __future__ import annotations

import importlib.util
import os

import psycopg2
import pytest
from peewee_migrate import Router

from models.infra.db import db, init_db
from models.infra.migrate import MIGRATIONS_DIR, apply_migrations
from models.infra.settings import load_settings

pytestmark = pytest.mark.slow

MIGRATION = "005_history_partitions"
# The migrations after it, applied with it by apply_migrations().
LATER = sorted(p.stem for p in MIGRATIONS_DIR.glob("[0-9]*.py") if p.stem > MIGRATION)

# Events every 37 hours from 2025-01-01 00:00 (a month's first instant) into June 2025,
# a third with no txid (written before migration 004); one at a month's last instant,
# one in 1990, one now, and one in 2090: past every partition made, so in the default.
POPULATE = """
INSERT INTO users (id) SELECT generate_series(1, 50);
INSERT INTO segments (name, salt) VALUES ('A', 'a'), ('B', 'b');
INSERT INTO history (user_id, segment_id, operation, reason, at, txid)
SELECT 1 + g % 50, (SELECT min(id) FROM segments) + g % 2,
       CASE WHEN g % 4 < 2 THEN 'add' ELSE 'remove' END, 'manual',
       '2025-01-01 00:00:00+00'::timestamptz + g * interval '37 hours',
       CASE WHEN g % 3 = 0 THEN NULL ELSE pg_current_xact_id() END
FROM generate_series(0, 99) g;
INSERT INTO history (user_id, segment_id, operation, reason, at)
SELECT 1, min(id), 'add', 'ttl', at::timestamptz FROM segments, (VALUES
    ('2025-01-31 23:59:59.999999+00'), ('1990-03-04 05:06:07+00'), (now()::text),
    ('2090-06-15 12:00:00+00')) AS v(at)
GROUP BY at;
"""
EVENTS = "SELECT id, user_id, segment_id, operation, reason, at, txid::text FROM history"
# Where each event should be: its UTC month's partition, or the default past the
# current month and the next two.
MISPLACED = """
SELECT id, at, tableoid::regclass::text FROM history
WHERE tableoid::regclass::text <> CASE
    WHEN at >= date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months'
    THEN 'history_default'
    ELSE 'history_' || to_char(at AT TIME ZONE 'UTC', 'YYYY_MM') END"""


def _schema_sql() -> str:
    spec = importlib.util.spec_from_file_location(MIGRATION, MIGRATIONS_DIR / f"{MIGRATION}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SCHEMA


@pytest.fixture
def history_at_004(scratch_dsn):
    """A database migrated up to 004 and populated; a cursor on it."""
    init_db(load_settings({**os.environ, "DATABASE_DSN": scratch_dsn}))
    with db.connection_context():
        Router(db, migrate_dir=MIGRATIONS_DIR, ignore=["basemodel"]).run("004_webhooks")
    conn = psycopg2.connect(scratch_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(POPULATE)
        yield cur
    conn.close()


def _state(cur) -> tuple:
    cur.execute(f"{EVENTS} ORDER BY id")
    events = cur.fetchall()
    cur.execute("SELECT last_value FROM history_id_seq")
    return events, cur.fetchone()[0]


def test_populated_history_is_partitioned_without_losing_an_event(history_at_004):
    cur = history_at_004
    events, last_id = _state(cur)
    assert len(events) == 104 and len({e[0] for e in events}) == 104
    cur.execute("SELECT relkind FROM pg_class WHERE relname = 'history'")
    assert cur.fetchone()[0] == "r"

    assert apply_migrations() == [MIGRATION, *LATER]

    cur.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'history'::regclass")
    assert cur.fetchone() is not None
    assert _state(cur) == (events, last_id)  # every row, id, txid, time; the sequence
    cur.execute(MISPLACED)
    assert cur.fetchall() == []
    cur.execute(
        """SELECT tableoid::regclass::text, count(*) FROM history
           GROUP BY 1 HAVING tableoid::regclass::text IN
               ('history_default', 'history_1990_03', 'history_2025_01')"""
    )
    assert dict(cur.fetchall()) == {
        "history_default": 1,
        "history_1990_03": 1,
        "history_2025_01": 22,  # 2025-01-01 00:00 up to 2025-01-31 23:59:59.999999
    }
    # The current month and the next two exist, empty or not.
    cur.execute(
        """SELECT count(*) FROM generate_series(0, 2) n
           WHERE to_regclass('history_' || to_char(
               (now() AT TIME ZONE 'UTC') + n * interval '1 month', 'YYYY_MM')) IS NOT NULL"""
    )
    assert cur.fetchone()[0] == 3
    # The sequence goes on where it was.
    cur.execute(
        """INSERT INTO history (user_id, segment_id, operation, reason, at)
           SELECT 2, min(id), 'add', 'manual', now() FROM segments RETURNING id"""
    )
    assert cur.fetchone()[0] == last_id + 1


def test_every_partition_has_every_index(history_at_004):
    cur = history_at_004
    apply_migrations()
    cur.execute(
        """SELECT c.relname, array_agg(pg_get_indexdef(i.indexrelid) ORDER BY 1)
           FROM pg_inherits p JOIN pg_class c ON c.oid = p.inhrelid
           JOIN pg_index i ON i.indrelid = c.oid
           WHERE p.inhparent = 'history'::regclass GROUP BY c.relname"""
    )
    indexes = dict(cur.fetchall())
    assert len(indexes) >= 5  # 1990-03, Jan-Jun 2025, now and 2 ahead, default
    for name, definitions in indexes.items():
        text = " ".join(definitions)
        assert len(definitions) == 4, (name, definitions)
        assert "(id, at)" in text and "(user_id, at, id)" in text and "(at, id)" in text
        assert "COALESCE(txid, '0'::xid8), id" in text  # the webhook feed's
    cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'history'")
    assert len(cur.fetchall()) == 4


def test_running_the_conversion_again_changes_nothing(history_at_004):
    cur = history_at_004
    apply_migrations()
    events = _state(cur)
    cur.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'history'::regclass")
    partitions = cur.fetchone()[0]
    cur.execute(f"BEGIN; {_schema_sql()} COMMIT;")
    assert _state(cur) == events
    cur.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'history'::regclass")
    assert cur.fetchone()[0] == partitions
    assert apply_migrations() == []


def test_rollback_gives_back_a_plain_table_and_005_applies_again(history_at_004):
    cur = history_at_004
    before = _state(cur)
    apply_migrations()
    with db.connection_context():
        router = Router(db, migrate_dir=MIGRATIONS_DIR, ignore=["basemodel"])
        for _ in range(len(LATER) + 1):  # the later ones first, then 005
            router.rollback()
    cur.execute("SELECT relkind FROM pg_class WHERE relname = 'history'")
    assert cur.fetchone()[0] == "r"
    assert _state(cur) == before
    assert apply_migrations() == [MIGRATION, *LATER]
    assert _state(cur) == before
    cur.execute(MISPLACED)
    assert cur.fetchall() == []
