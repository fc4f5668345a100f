"""History partitioned by month: declarative RANGE partitions on `at`, one per UTC month,
named history_YYYY_MM (models/partitions.py keeps making them), and history_default for
any event outside them, so no insert ever fails.

The rows are copied, not attached: the old table holds every month, and attached whole it
would be one partition that neither a month's report could prune to nor retention drop.
Copying first and indexing after keeps the copy fast; the ids, their sequence and each
event's txid (the webhook feed's order) are kept as they were. Partitions are made for
every month that holds events, up to the current month and the next two; later events
(clock skew, hand-made rows) go to the default. The primary key must hold the partition
key: it is (id, at). Ids stay unique because they all come from one sequence.

Everything runs in the migration's transaction: a failure leaves the old table as it
was. A history that is already partitioned is left alone.
"""

COLUMNS = "id, user_id, segment_id, operation, reason, at, txid"

# TimeZone UTC: month arithmetic and date_trunc on timestamptz follow the session's zone,
# and a month is a UTC month (the CSV report's).
SCHEMA = f"""
SET LOCAL TIME ZONE 'UTC';
DO $$
DECLARE
    month timestamptz;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'history'::regclass) = 'p' THEN
        RETURN;
    END IF;
    ALTER TABLE history RENAME TO history_unpartitioned;
    ALTER TABLE history_unpartitioned DROP CONSTRAINT history_pkey;
    DROP INDEX history_user_at_idx, history_at_idx, history_feed_idx;

    CREATE TABLE history (
        id          bigint NOT NULL DEFAULT nextval('history_id_seq'),
        user_id     bigint NOT NULL,
        segment_id  integer NOT NULL,
        operation   text NOT NULL
                    CONSTRAINT history_operation_check CHECK (operation IN ('add', 'remove')),
        reason      text NOT NULL
                    CONSTRAINT history_reason_check CHECK (reason IN ('manual', 'auto', 'ttl',
                        'segment_deleted', 'percent_change', 'import')),
        at          timestamptz NOT NULL,
        txid        xid8 DEFAULT pg_current_xact_id()
    ) PARTITION BY RANGE (at);
    ALTER SEQUENCE history_id_seq OWNED BY history.id;
    CREATE TABLE history_default PARTITION OF history DEFAULT;

    FOR month IN
        SELECT DISTINCT date_trunc('month', at) FROM history_unpartitioned
        WHERE at >= '0001-01-01' AND at < date_trunc('month', now()) + interval '3 months'
        UNION
        SELECT generate_series(date_trunc('month', now()),
                               date_trunc('month', now()) + interval '2 months',
                               interval '1 month')
    LOOP
        -- quote_* rather than format(): psycopg2 would read a percent sign as a parameter.
        EXECUTE 'CREATE TABLE ' || quote_ident('history_' || to_char(month, 'YYYY_MM'))
            || ' PARTITION OF history FOR VALUES FROM (' || quote_literal(month)
            || ') TO (' || quote_literal(month + interval '1 month') || ')';
    END LOOP;

    INSERT INTO history ({COLUMNS}) SELECT {COLUMNS} FROM history_unpartitioned;
    DROP TABLE history_unpartitioned;

    -- Built once over the copied rows, on every partition, rather than row by row.
    ALTER TABLE history ADD CONSTRAINT history_pkey PRIMARY KEY (id, at),
        ADD CONSTRAINT history_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
        ADD CONSTRAINT history_segment_id_fkey
            FOREIGN KEY (segment_id) REFERENCES segments (id);
    CREATE INDEX history_user_at_idx ON history (user_id, at, id);
    CREATE INDEX history_at_idx ON history (at, id);
    CREATE INDEX history_feed_idx ON history ((coalesce(txid, '0'::xid8)), id);
END
$$;
-- Statistics for the new partitions now, not whenever autovacuum comes by: a report
-- run at once plans on them.
ANALYZE history;
"""

ROLLBACK = f"""
ALTER TABLE history RENAME TO history_partitioned;
CREATE TABLE history (LIKE history_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER SEQUENCE history_id_seq OWNED BY history.id;
INSERT INTO history ({COLUMNS}) SELECT {COLUMNS} FROM history_partitioned;
DROP TABLE history_partitioned;
ALTER TABLE history ADD CONSTRAINT history_pkey PRIMARY KEY (id),
    ADD CONSTRAINT history_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    ADD CONSTRAINT history_segment_id_fkey FOREIGN KEY (segment_id) REFERENCES segments (id);
CREATE INDEX history_user_at_idx ON history (user_id, at, id);
CREATE INDEX history_at_idx ON history (at, id);
CREATE INDEX history_feed_idx ON history ((coalesce(txid, '0'::xid8)), id);
"""


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql(SCHEMA)


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql(ROLLBACK)
