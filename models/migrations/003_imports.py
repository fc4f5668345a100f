"""Bulk imports: the `import` source, reason and job kind; a job's phase and result; the
staging table an upload is copied into; idempotency keys."""

SCHEMA = """
ALTER TABLE memberships DROP CONSTRAINT memberships_source_check,
    ADD CONSTRAINT memberships_source_check CHECK (source IN ('manual', 'auto', 'import'));
ALTER TABLE history DROP CONSTRAINT history_reason_check,
    ADD CONSTRAINT history_reason_check CHECK (reason IN
        ('manual', 'auto', 'ttl', 'segment_deleted', 'percent_change', 'import'));
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check,
    ADD CONSTRAINT jobs_kind_check CHECK (kind IN
        ('assign_auto', 'shrink_auto', 'cleanup_segment', 'import')),
    ADD COLUMN phase smallint NOT NULL DEFAULT 0,
    ADD COLUMN result jsonb;

-- One row per uploaded id, written by the upload's own transaction (so a rejected
-- upload leaves none) and deleted when its job ends.
CREATE TABLE import_staging (
    job_id   bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    user_id  bigint NOT NULL
);
CREATE INDEX import_staging_job_user_idx ON import_staging (job_id, user_id);

CREATE TABLE import_keys (
    key          text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    body_sha256  text NOT NULL,
    job_id       bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now()
);
"""


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql(SCHEMA)


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql(
        """DELETE FROM jobs WHERE kind = 'import';
        DROP TABLE import_keys, import_staging;
        ALTER TABLE jobs DROP COLUMN result, DROP COLUMN phase,
            DROP CONSTRAINT jobs_kind_check, ADD CONSTRAINT jobs_kind_check
            CHECK (kind IN ('assign_auto', 'shrink_auto', 'cleanup_segment'));
        """
    )
