"""/keys: make, list, read, revoke and rotate API keys (admin only; docs/keys.md)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, delete, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody

from models import keys
from models.errors import Conflict, Invalid
from models.tables import Scope
from web.auth import ADMIN, SCOPE
from web.methods import get_and_head, options_handler
from web.routes import params
from web.schemas import ERRORS, MAX_USER_ID, Strict

KeyName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$(?!\n)",
        description="1-64 characters of A-Z a-z 0-9 _ - ., starting with a letter or digit",
    ),
]
# With its zone: "10:00" alone is a different moment on every server.
ZonedTime = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339, with a zone")]
GraceSeconds = Annotated[int, msgspec.Meta(ge=0, le=30 * 86400, description="0..30 days")]


class KeyCreate(Strict):
    name: KeyName
    scope: Scope
    expires_at: ZonedTime | None = None


class KeyRotate(Strict):
    grace_seconds: GraceSeconds = 3600
    expires_at: ZonedTime | None = None  # the new key's; none when absent


class Key(msgspec.Struct, omit_defaults=True):
    id: int
    name: str
    scope: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    key: str | None = None  # only in the answer that made it


class KeyList(msgspec.Struct):
    keys: list[Key]


def _future(at: datetime | None) -> datetime | None:
    if at is not None and at <= datetime.now(UTC):
        raise Invalid("expires_at must be in the future", expires_at=at.isoformat())
    return at


def _key(view: keys.KeyView) -> Key:
    return Key(**asdict(view))


def _id(raw: str) -> int:
    return params.integer("key id", raw, 1, MAX_USER_ID)


def keys_need_api_token(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Without API_TOKEN every caller is anonymous and may do anything: a key would
    restrict nobody, so making one is refused with the way to turn auth on."""
    if not connection.app.state.auth.enabled:
        raise Conflict(
            "API keys need authentication on: set API_TOKEN (the root credential) and "
            "restart, then make keys with it"
        )


class KeyController(Controller):
    path = "/keys"
    tags = ["keys"]
    guards = [keys_need_api_token]
    opt = {SCOPE: ADMIN}
    options = options_handler()
    item_options = options_handler("/{key_id:str}")

    @post("/", status_code=201, sync_to_thread=True, responses=ERRORS, summary="Make a key")
    def create(self, data: JSONBody[KeyCreate]) -> Key:
        """The key itself is in this answer only; only its hash is stored."""
        return _key(keys.create_key(data.name, data.scope, _future(data.expires_at)))

    @get_and_head("/", sync_to_thread=True, responses=ERRORS, summary="Every key (no secrets)")
    def list(self) -> KeyList:
        return KeyList(keys=[_key(v) for v in keys.list_keys()])

    @get_and_head("/{key_id:str}", sync_to_thread=True, responses=ERRORS, summary="One key")
    def read(self, key_id: params.IdPath) -> Key:
        return _key(keys.get_key(_id(key_id)))

    @delete(
        "/{key_id:str}",
        status_code=200,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Revoke a key: refused everywhere within a second, its console sessions end",
    )
    def revoke(self, key_id: params.IdPath) -> Key:
        return _key(keys.revoke_key(_id(key_id)))

    @post(
        "/{key_id:str}/rotate",
        status_code=201,
        sync_to_thread=True,
        responses=ERRORS,
        summary="A new key with the same name and scope; the old one works for grace_seconds",
    )
    def rotate(self, key_id: params.IdPath, data: JSONBody[KeyRotate]) -> Key:
        """Body ``{}`` for the defaults (an hour's grace, no expiry)."""
        made = keys.rotate_key(_id(key_id), data.grace_seconds, _future(data.expires_at))
        return _key(made)
