"""Users, segments, memberships, history, opt-outs and jobs."""

# The bucket rule of models/buckets.py, for bulk work in SQL. A SQL-language IMMUTABLE
# function is inlined by the planner, so it costs no more than writing the expression out.
SCHEMA = """
CREATE FUNCTION segment_bucket(salt text, user_id bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT mod(('x' || substr(md5(salt || ':' || user_id::text), 1, 8))::bit(32)::bigint,
               10000)::integer
$$;

CREATE TABLE users (
    id          bigint PRIMARY KEY CHECK (id > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE segments (
    id            serial PRIMARY KEY,
    name          varchar(64) NOT NULL CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    salt          text NOT NULL,
    auto_percent  numeric(5, 2) NOT NULL DEFAULT 0
                  CHECK (auto_percent >= 0 AND auto_percent <= 100),
    created_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
CREATE UNIQUE INDEX segments_live_name_key ON segments (name) WHERE deleted_at IS NULL;

CREATE TABLE memberships (
    user_id     bigint NOT NULL REFERENCES users (id),
    segment_id  integer NOT NULL REFERENCES segments (id),
    source      text NOT NULL CHECK (source IN ('manual', 'auto')),
    added_at    timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    PRIMARY KEY (user_id, segment_id)
);
CREATE INDEX memberships_segment_user_idx ON memberships (segment_id, user_id);
CREATE INDEX memberships_expires_at_idx ON memberships (expires_at)
    WHERE expires_at IS NOT NULL;

CREATE TABLE segment_opt_outs (
    segment_id  integer NOT NULL REFERENCES segments (id),
    user_id     bigint NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, user_id)
);

CREATE TABLE history (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id),
    segment_id  integer NOT NULL REFERENCES segments (id),
    operation   text NOT NULL CHECK (operation IN ('add', 'remove')),
    reason      text NOT NULL
                CHECK (reason IN ('manual', 'auto', 'ttl', 'segment_deleted', 'percent_change')),
    at          timestamptz NOT NULL
);
CREATE INDEX history_user_at_idx ON history (user_id, at, id);
CREATE INDEX history_at_idx ON history (at, id);

CREATE TABLE jobs (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL
                 CHECK (kind IN ('assign_auto', 'shrink_auto', 'cleanup_segment')),
    segment_id   integer NOT NULL REFERENCES segments (id),
    params       jsonb NOT NULL DEFAULT '{}',
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'done', 'failed')),
    done         bigint NOT NULL DEFAULT 0,
    total        bigint,
    checkpoint   bigint NOT NULL DEFAULT 0,
    error        text,
    attempts     integer NOT NULL DEFAULT 0,
    lease_owner  text,
    lease_until  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_unfinished_idx ON jobs (updated_at) WHERE state IN ('queued', 'running');
"""


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql(SCHEMA)


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql(
        "DROP TABLE jobs, history, segment_opt_outs, memberships, segments, users;"
        "DROP FUNCTION segment_bucket(text, bigint);"
    )
