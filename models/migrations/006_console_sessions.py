"""Console sessions kept on the server: a row per session that lasts, so logging out
(the row goes) ends it for good, a copy of its cookie included, and every session can be
ended at once."""

SCHEMA = """
CREATE TABLE console_sessions (
    nonce       text PRIMARY KEY,  -- the random part of the signed cookie
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
"""


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql(SCHEMA)


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql("DROP TABLE console_sessions;")
