"""API keys: made, listed, revoked and rotated here; checked by each web process from a
cache it reloads when ``api_keys_version`` moves (web/keyring.py, docs/keys.md).

A key is ``sgk_`` and 43 URL-safe characters (256 random bits). Only its SHA-256 is
stored: a key that random needs no slow hash, as no guess list can reach it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import peewee
from peewee import SQL, fn

from models import audit
from models.errors import Conflict, NotFound
from models.infra.db import db, read_only, unit_of_work
from models.tables import ApiKey, ConsoleSession, Scope

KEY_START = "sgk_"
PREFIX_LENGTH = 12  # "sgk_" and 8 random characters: enough to tell keys apart


@dataclass(frozen=True)
class KeyView:
    id: int
    name: str
    scope: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    key: str | None = None  # the key itself: in the answer that made it, only


@dataclass(frozen=True)
class LiveKey:
    """What a web process needs to check a key without the database."""

    id: int
    name: str
    scope: Scope
    hash: str
    expires_at: float | None  # epoch seconds

    @property
    def actor(self) -> str:
        return f"key:{self.name}"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _view(row: ApiKey, key: str | None = None) -> KeyView:
    return KeyView(
        row.id,
        row.name,
        row.scope,
        row.prefix,
        row.created_at,
        row.expires_at,
        row.last_used_at,
        row.revoked_at,
        key,
    )


def _bump_version() -> None:
    db.execute_sql("UPDATE api_keys_version SET version = version + 1")


def _insert(name: str, scope: Scope, expires_at: datetime | None) -> KeyView:
    key = KEY_START + secrets.token_urlsafe(32)
    try:
        with db.atomic():  # a savepoint: the name's conflict leaves the transaction usable
            row = (
                ApiKey.insert(
                    name=name,
                    scope=scope.value,
                    prefix=key[:PREFIX_LENGTH],
                    hash=digest(key),
                    expires_at=expires_at,
                )
                .returning(ApiKey)
                .execute()
            )
    except peewee.IntegrityError:
        raise Conflict(f"a key named {name!r} exists: revoke or rotate it", name=name) from None
    _bump_version()
    return _view(next(iter(row)), key)


@unit_of_work
def create_key(name: str, scope: Scope, expires_at: datetime | None) -> KeyView:
    made = _insert(name, scope, expires_at)
    details = {"name": name, "scope": scope.value, "prefix": made.prefix}
    audit.record("key.create", f"key:{made.id}", details | {"expires_at": _iso(expires_at)})
    return made


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


@read_only
def list_keys() -> list[KeyView]:
    return [_view(row) for row in ApiKey.select().order_by(ApiKey.id)]


@read_only
def get_key(key_id: int) -> KeyView:
    return _view(_found(key_id))


def _found(key_id: int, lock: bool = False) -> ApiKey:
    query = ApiKey.select().where(ApiKey.id == key_id)
    row = (query.for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"key {key_id} not found", id=key_id)
    return row


def _current(key_id: int, doing: str) -> ApiKey:
    """The key, locked; Conflict when it is revoked or already rotated."""
    row = _found(key_id, lock=True)
    if row.revoked_at is not None:
        raise Conflict(f"key {key_id} is already revoked: it cannot be {doing}", id=key_id)
    if row.rotated_at is not None and doing == "rotated":
        raise Conflict(f"key {key_id} was already rotated: rotate its successor", id=key_id)
    return row


@unit_of_work
def revoke_key(key_id: int) -> KeyView:
    """Refused at once by every web process (within a second), its console sessions end."""
    row = _current(key_id, "revoked")
    ApiKey.update(revoked_at=fn.now()).where(ApiKey.id == key_id).execute()
    ConsoleSession.delete().where(ConsoleSession.key == key_id).execute()
    _bump_version()
    audit.record("key.revoke", f"key:{key_id}", {"name": row.name, "prefix": row.prefix})
    return _view(_found(key_id))


@unit_of_work
def rotate_key(key_id: int, grace_seconds: int, expires_at: datetime | None) -> KeyView:
    """A new key with the same name and scope; the old one works ``grace_seconds`` more
    (or until its own expiry, if sooner)."""
    old = _current(key_id, "rotated")
    grace_end = SQL("now() + make_interval(secs => %s)", (grace_seconds,))
    ApiKey.update(
        rotated_at=fn.now(),
        expires_at=fn.LEAST(fn.COALESCE(ApiKey.expires_at, grace_end), grace_end),
    ).where(ApiKey.id == key_id).execute()
    made = _insert(old.name, Scope(old.scope), expires_at)
    details = {
        "name": old.name,
        "scope": old.scope,
        "before": {"id": old.id, "prefix": old.prefix},
        "after": {"id": made.id, "prefix": made.prefix},
        "grace_seconds": grace_seconds,
    }
    audit.record("key.rotate", f"key:{key_id}", details)
    return made


def key_version(cursor) -> int:
    """The keys' version, on the keyring's own connection."""
    cursor.execute("SELECT version FROM api_keys_version")
    return cursor.fetchone()[0]


# Live keys: not revoked, not expired (a rotated key lives until its grace ends).
LIVE_KEYS_SQL = """
    SELECT id, name, scope, hash, extract(epoch FROM expires_at)
    FROM api_keys
    WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"""


def live_keys(cursor) -> list[LiveKey]:
    cursor.execute(LIVE_KEYS_SQL)
    return [
        LiveKey(i, name, Scope(scope), h, float(exp) if exp is not None else None)
        for i, name, scope, h, exp in cursor.fetchall()
    ]


def record_last_used(cursor, used: dict[int, float]) -> None:
    """Keep the latest use of each key (epoch seconds), in one statement."""
    cursor.execute(
        """UPDATE api_keys k SET last_used_at = greatest(k.last_used_at, to_timestamp(u.at))
           FROM unnest(%s::bigint[], %s::float8[]) AS u(id, at) WHERE k.id = u.id""",
        (list(used), list(used.values())),
    )
