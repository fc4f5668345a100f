"""Imports hardening: an upload stages its ids under an upload id of its own (no job row
and no lock on anything shared while the client sends), as batches of distinct ids
(one row each, no per-id index to maintain while the client waits); its job moves them
into import_staging, each id once per upload. The job names its upload in its params. An
idempotency key remembers the staged count."""

SCHEMA = """
ALTER TABLE import_staging DROP CONSTRAINT import_staging_job_id_fkey;
ALTER TABLE import_staging RENAME COLUMN job_id TO upload_id;
DELETE FROM import_staging a USING import_staging b
    WHERE a.upload_id = b.upload_id AND a.user_id = b.user_id AND a.ctid > b.ctid;
DROP INDEX import_staging_job_user_idx;
ALTER TABLE import_staging ADD PRIMARY KEY (upload_id, user_id);
-- Jobs recorded before this migration staged under their own id.
CREATE SEQUENCE import_upload_ids;
SELECT setval('import_upload_ids', (SELECT coalesce(max(id), 0) + 1 FROM jobs));
UPDATE jobs SET params = params || jsonb_build_object('upload', id) WHERE kind = 'import';
CREATE TABLE import_upload_batches (
    upload_id  bigint NOT NULL,
    batch      integer NOT NULL,
    ids        bigint[] NOT NULL,  -- distinct within the batch
    PRIMARY KEY (upload_id, batch)
);
ALTER TABLE import_keys ADD COLUMN ids bigint;
UPDATE import_keys k SET ids = j.total FROM jobs j WHERE j.id = k.job_id;
"""


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql(SCHEMA)


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql(
        """ALTER TABLE import_keys DROP COLUMN ids;
        DROP TABLE import_upload_batches;
        DROP SEQUENCE import_upload_ids;
        ALTER TABLE import_staging DROP CONSTRAINT import_staging_pkey;
        CREATE INDEX import_staging_job_user_idx ON import_staging (upload_id, user_id);
        UPDATE import_staging s SET upload_id = j.id FROM jobs j
            WHERE j.kind = 'import' AND (j.params->>'upload')::bigint = s.upload_id;
        DELETE FROM import_staging s
            WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = s.upload_id);
        ALTER TABLE import_staging RENAME COLUMN upload_id TO job_id;
        ALTER TABLE import_staging ADD CONSTRAINT import_staging_job_id_fkey
            FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE;
        UPDATE jobs SET params = params - 'upload' WHERE kind = 'import';
        """
    )
