"""Who is calling and what they may do: every route declares the scope it needs in its
``opt`` (``opt={SCOPE: "read"}``; ``PUBLIC`` for /health and /ready), and one guard
checks the bearer credential against it (docs/keys.md has the table).

``API_TOKEN`` is the root (every scope, actor ``root``); API keys are checked against
this process's keyring, with no database round trip. Without ``API_TOKEN`` the service
is open: every caller is ``anonymous`` with every scope.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from anyio import to_thread
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.handlers.base import BaseRouteHandler
from prometheus_client import Counter

from models.errors import Invalid
from models.infra.db import set_actor
from models.keys import KEY_START, LiveKey
from models.tables import Scope
from web.keyring import Keyring
from web.throttle import Throttle

SCOPE = "scope"  # handler opt: the scope a route needs
PUBLIC = "public"  # its value for a route anyone may call
ROOT = "root"
ANONYMOUS = "anonymous"
# Names a key might be put under in a query string, where logs and proxies keep it.
_QUERY_KEY = re.compile(r"(?:^|&)(?:api_?key|key|token|access_token)=|sgk_", re.IGNORECASE)
log = logging.getLogger("web.auth")

FAILURES = Counter(
    "segments_auth_failures_total",
    "Refused credentials by reason (missing, unknown, scope, throttled, query)",
    ["reason"],
)


@dataclass(frozen=True)
class Caller:
    actor: str
    scope: Scope
    key_id: int | None = None  # None: API_TOKEN, or open mode


OPEN_CALLER = Caller(ANONYMOUS, Scope.ADMIN)
ROOT_CALLER = Caller(ROOT, Scope.ADMIN)


def bearer(header: str) -> str:
    """The credential of an ``Authorization: Bearer ...`` header (scheme in any case)."""
    scheme, _, credential = header.strip().partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


class Authenticator:
    """The root token and this process's keyring, and the throttle on failures."""

    def __init__(self, token: str | None, keyring: Keyring | None, throttle: Throttle) -> None:
        self.token = token
        self._token = token.encode() if token else b""
        self.keyring = keyring
        self.throttle = throttle
        self._callers: dict[str, Caller] = {}  # by key hash: one Caller per key, reused

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def known(self, credential: str) -> Caller | None:
        """The caller a credential this process knows belongs to (no database)."""
        if not credential or self.token is None:
            return None
        if hmac.compare_digest(credential.encode(), self._token):
            return ROOT_CALLER
        found = self.keyring.find(credential) if self.keyring else None
        return self._caller(found) if found else None

    def _caller(self, found: LiveKey) -> Caller:
        caller = self._callers.get(found.hash)
        if caller is None:
            caller = self._callers[found.hash] = Caller(found.actor, found.scope, found.id)
        return caller

    async def identify(self, credential: str) -> Caller | None:
        """``known``, or for a key made a moment ago elsewhere, after a version check."""
        caller = self.known(credential)
        if caller is None:
            caller = await self.recheck(credential)
        return caller

    async def recheck(self, credential: str) -> Caller | None:
        """A key this process does not know, once more after checking the version."""
        caller = None
        if credential.startswith(KEY_START) and self.keyring:
            found = await to_thread.run_sync(self.keyring.find_or_recheck, credential)
            caller = self._caller(found) if found else None
        return caller

    def refuse(self, address: str, reason: str, where: str) -> None:
        """Count and log a refused credential (never the credential itself)."""
        FAILURES.labels(reason).inc()
        self.throttle.failed(address)
        log.warning("authentication refused (%s) from %s on %s", reason, address, where)

    def check_throttle(self, address: str) -> None:
        wait = self.throttle.blocked(address)
        if wait:
            FAILURES.labels("throttled").inc()
            raise TooManyRequestsException(
                "too many failed authentications from this address: try again later",
                headers={"Retry-After": str(wait)},
            )


def _authorization(scope) -> str:
    # From the raw headers: building Litestar's Headers costs the hot read more.
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return ""


def _address(connection: ASGIConnection) -> str:
    client = connection.scope.get("client")
    return client[0] if client else "unknown"


def needed_scope(handler: BaseRouteHandler) -> str:
    """The route's declared scope. Litestar's own OPTIONS answers (they only list
    methods) need read; a route that forgot its scope is admin-only, and
    tests/integration/test_scopes.py fails on it first."""
    declared = handler.opt.get(SCOPE)
    if declared is None and getattr(handler, "http_methods", None) == {"OPTIONS"}:
        return Scope.READ.value
    return declared or Scope.ADMIN.value


def access_guard(
    auth: Authenticator, also_allowed: Callable[[ASGIConnection], Awaitable[bool]] | None = None
):
    """The guard of every API route; ``also_allowed`` may open a route without a bearer
    (the console's session, on the docs pages: asked only when the bearer is missing)."""

    async def require_scope(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        needed = needed_scope(handler)
        if needed == PUBLIC:
            return
        if not auth.enabled:
            set_actor(ANONYMOUS)
            return
        scope = connection.scope
        query = scope.get("query_string")
        if query and _QUERY_KEY.search(query.decode("latin-1")):
            FAILURES.labels("query").inc()
            raise Invalid("send the key in the Authorization header, never in the URL")
        address = _address(connection)
        auth.check_throttle(address)
        credential = bearer(_authorization(scope))
        caller = auth.known(credential) or await auth.recheck(credential)
        if caller is None:
            given = bool(_authorization(scope))
            if also_allowed and not given and await also_allowed(connection):
                return
            auth.refuse(address, "unknown" if given else "missing", scope["path"])
            # RFC 6750 (3): a 401 names the scheme the client must use.
            raise NotAuthorizedException(
                "missing, unknown, expired or revoked bearer key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not caller.scope.allows(needed):
            FAILURES.labels("scope").inc()
            raise PermissionDeniedException(
                f"this route needs the {needed!r} scope; {caller.actor} has {caller.scope.value!r}"
            )
        set_actor(caller.actor)

    return require_scope


READ, WRITE, ADMIN = Scope.READ, Scope.WRITE, Scope.ADMIN
