"""Layers of mutually exclusive segments, and scheduled segment changes.

Exclusivity is the database's: every membership carries its segment's layer (filled by a
trigger, whoever writes the row) and a partial unique index allows one row per user per
layer. Rows of a deleted segment or expired ones still count until they are removed, so
whoever needs the slot removes them first (models/layers.py).
"""

SCHEMA = """
CREATE TABLE layers (
    id          serial PRIMARY KEY,
    name        varchar(64) COLLATE "C" NOT NULL CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    salt        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    -- The last rank given to a take or a release of its buckets (the row is locked for it).
    last_rank   bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX layers_live_name_key ON layers (name) WHERE deleted_at IS NULL;

-- One row per bucket. Free: segment_id NULL; never used: released_rank NULL too.
-- taken_rank orders the takes (a lowering gives back the highest first); released_rank
-- orders the releases (the lowest is taken first). Both come from layers.last_rank.
CREATE TABLE layer_buckets (
    layer_id       integer NOT NULL REFERENCES layers (id),
    bucket         smallint NOT NULL CHECK (bucket >= 0 AND bucket < 10000),
    segment_id     integer REFERENCES segments (id),
    taken_rank     bigint,
    released_rank  bigint,
    PRIMARY KEY (layer_id, bucket),
    CHECK ((segment_id IS NULL) = (taken_rank IS NULL))
);
CREATE INDEX layer_buckets_segment_idx ON layer_buckets (segment_id, taken_rank)
    WHERE segment_id IS NOT NULL;

ALTER TABLE segments ADD COLUMN layer_id integer REFERENCES layers (id);

ALTER TABLE memberships ADD COLUMN layer_id integer;
CREATE FUNCTION membership_layer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.layer_id := (SELECT layer_id FROM segments WHERE id = NEW.segment_id);
    RETURN NEW;
END $$;
CREATE TRIGGER memberships_layer BEFORE INSERT OR UPDATE OF segment_id, layer_id
    ON memberships FOR EACH ROW EXECUTE FUNCTION membership_layer();
CREATE UNIQUE INDEX memberships_one_per_layer ON memberships (user_id, layer_id)
    WHERE layer_id IS NOT NULL;

ALTER TABLE history DROP CONSTRAINT history_reason_check,
    ADD CONSTRAINT history_reason_check CHECK (reason IN ('manual', 'auto', 'ttl',
        'segment_deleted', 'percent_change', 'import', 'layer_move'));

CREATE TABLE schedule_steps (
    id            bigserial PRIMARY KEY,
    segment_id    integer NOT NULL REFERENCES segments (id),
    at            timestamptz NOT NULL,
    auto_percent  numeric(5, 2) CHECK (auto_percent >= 0 AND auto_percent <= 100),
    delete        boolean NOT NULL DEFAULT false,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'done', 'failed')),
    job_id        bigint REFERENCES jobs (id),
    error         text,
    actor         text NOT NULL
                  DEFAULT coalesce(nullif(current_setting('segments.actor', true), ''), 'system'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    ran_at        timestamptz,
    CHECK ((auto_percent IS NULL) = delete)
);
CREATE INDEX schedule_steps_due_idx ON schedule_steps (at) WHERE state = 'pending';
CREATE INDEX schedule_steps_segment_idx ON schedule_steps (segment_id, at);
"""


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql(SCHEMA)


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql(
        """DROP TABLE schedule_steps;
        DELETE FROM history WHERE reason = 'layer_move';
        ALTER TABLE history DROP CONSTRAINT history_reason_check,
            ADD CONSTRAINT history_reason_check CHECK (reason IN ('manual', 'auto', 'ttl',
                'segment_deleted', 'percent_change', 'import'));
        DROP INDEX memberships_one_per_layer;
        DROP TRIGGER memberships_layer ON memberships;
        DROP FUNCTION membership_layer();
        ALTER TABLE memberships DROP COLUMN layer_id;
        ALTER TABLE segments DROP COLUMN layer_id;
        DROP TABLE layer_buckets, layers;
        """
    )
