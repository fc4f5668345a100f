"""Webhooks: each history event records the transaction that wrote it, so the feed can
deliver only what no running transaction can still precede; and the webhooks with their
delivery state."""

SCHEMA = """
-- NULL for the events written before this migration: all of them committed long ago.
ALTER TABLE history ADD COLUMN txid xid8;
ALTER TABLE history ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
CREATE INDEX history_feed_idx ON history ((coalesce(txid, '0'::xid8)), id);

CREATE TABLE webhooks (
    id                bigserial PRIMARY KEY,
    url               text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2048),
    segments          text[],  -- names; NULL: every segment
    secret            text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- The feed position: events are delivered in (txid, id) order after this pair.
    cursor_txid       xid8 NOT NULL,
    cursor_id         bigint NOT NULL DEFAULT 0,
    delivered         bigint NOT NULL DEFAULT 0,
    last_delivery_at  timestamptz,
    last_error        text,
    failures          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    lease_until       timestamptz
);
"""


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql(SCHEMA)


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql("DROP TABLE webhooks; ALTER TABLE history DROP COLUMN txid;")
