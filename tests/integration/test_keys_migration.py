"""Migration 010 gives what was written before it a sensible actor: TTL removals are
the system's, every other event, membership and job is 'unknown' (nobody recorded who)."""

from __future__ import annotations

import os

import psycopg2
from peewee_migrate import Router

from models.infra.db import db, init_db
from models.infra.migrate import MIGRATIONS_DIR, apply_migrations
from models.infra.settings import load_settings

MIGRATION = "010_keys_audit"
BEFORE = max(p.stem for p in MIGRATIONS_DIR.glob("[0-9]*.py") if p.stem < MIGRATION)

POPULATE = """
INSERT INTO users (id) VALUES (1), (2);
INSERT INTO segments (name, salt) VALUES ('A', 'a');
INSERT INTO memberships (user_id, segment_id, source, added_at)
SELECT 1, id, 'manual', now() FROM segments;
INSERT INTO history (user_id, segment_id, operation, reason, at)
SELECT u, s.id, op, reason, now() FROM segments s, (VALUES
    (1, 'add', 'manual'), (2, 'add', 'auto'), (2, 'remove', 'ttl')) AS v(u, op, reason);
INSERT INTO jobs (kind, segment_id, params) SELECT 'cleanup_segment', id, '{}' FROM segments;
"""


def test_existing_rows_get_a_sensible_actor(scratch_dsn):
    init_db(load_settings({**os.environ, "DATABASE_DSN": scratch_dsn}))
    with db.connection_context():
        Router(db, migrate_dir=MIGRATIONS_DIR, ignore=["basemodel"]).run(BEFORE)
    conn = psycopg2.connect(scratch_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(POPULATE)
        assert MIGRATION in apply_migrations()
        cur.execute("SELECT reason, actor FROM history ORDER BY id")
        assert cur.fetchall() == [("manual", "unknown"), ("auto", "unknown"), ("ttl", "system")]
        cur.execute("SELECT added_by FROM memberships UNION ALL SELECT actor FROM jobs")
        assert cur.fetchall() == [("unknown",), ("unknown",)]
        # From now on the default is the session's actor, else the system.
        cur.execute(
            """INSERT INTO history (user_id, segment_id, operation, reason, at)
               SELECT 1, id, 'remove', 'ttl', now() FROM segments RETURNING actor"""
        )
        assert cur.fetchone()[0] == "system"
        cur.execute("BEGIN; SELECT set_config('segments.actor', 'key:x', true)")
        cur.execute(
            """INSERT INTO history (user_id, segment_id, operation, reason, at)
               SELECT 1, id, 'add', 'manual', now() FROM segments RETURNING actor"""
        )
        assert cur.fetchone()[0] == "key:x"
        cur.execute("COMMIT")
    conn.close()
