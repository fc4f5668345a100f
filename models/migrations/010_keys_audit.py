"""API keys with scopes, the audit trail, and who caused each change (docs/keys.md).

Who caused a change travels in the transaction-local setting ``segments.actor``; every
actor column defaults to it, or to ``system`` when it is unset (the TTL sweep). Events,
memberships and jobs written before this migration get ``unknown`` (nobody recorded who
made them), except TTL removals, which the system made (docs/decisions/0063).
"""

ACTOR = "coalesce(nullif(current_setting('segments.actor', true), ''), 'system')"

SCHEMA = f"""
CREATE TABLE api_keys (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    scope         text NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    prefix        text NOT NULL,
    hash          text NOT NULL UNIQUE,  -- hex SHA-256 of the whole key
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    rotated_at    timestamptz  -- replaced by a new key; works until expires_at (the grace)
);
-- One current key per name (case and spaces aside): a rotated or revoked key frees it.
CREATE UNIQUE INDEX api_keys_current_name ON api_keys (lower(name))
    WHERE revoked_at IS NULL AND rotated_at IS NULL;

-- Bumped by every change to a key: web processes poll it to reload their key cache.
CREATE TABLE api_keys_version (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    version  bigint NOT NULL
);
INSERT INTO api_keys_version VALUES (true, 1);

CREATE TABLE audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL DEFAULT {ACTOR},
    action      text NOT NULL,
    target      text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{{}}',
    request_id  text
);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_action ON audit (action, id);

-- A constant default first: existing rows get it without a rewrite.
ALTER TABLE history ADD COLUMN actor text NOT NULL DEFAULT 'unknown';
ALTER TABLE history ALTER COLUMN actor SET DEFAULT {ACTOR};
UPDATE history SET actor = 'system' WHERE reason = 'ttl';
ALTER TABLE memberships ADD COLUMN added_by text NOT NULL DEFAULT 'unknown';
ALTER TABLE memberships ALTER COLUMN added_by SET DEFAULT {ACTOR};
ALTER TABLE jobs ADD COLUMN actor text NOT NULL DEFAULT 'unknown';
ALTER TABLE jobs ALTER COLUMN actor SET DEFAULT {ACTOR};

-- A console session belongs to the key that logged in (NULL: API_TOKEN, the root);
-- revoking the key ends its sessions.
ALTER TABLE console_sessions
    ADD COLUMN key_id bigint REFERENCES api_keys (id) ON DELETE CASCADE;
"""


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql(SCHEMA)


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql(
        """ALTER TABLE console_sessions DROP COLUMN key_id;
           ALTER TABLE jobs DROP COLUMN actor;
           ALTER TABLE memberships DROP COLUMN added_by;
           ALTER TABLE history DROP COLUMN actor;
           DROP TABLE audit, api_keys_version, api_keys;"""
    )
