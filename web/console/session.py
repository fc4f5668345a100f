"""The console's login: with API_TOKEN set, a person gives the token or an API key once
and keeps a signed session cookie; the session acts with that key's scope and ends
when the key is revoked or expires (docs/keys.md).

The cookie is ``<expiry>.<nonce>.<HMAC-SHA256 of both>``, keyed by a key derived from
API_TOKEN, and the session lasts while its nonce has a row in ``console_sessions``
(models/console.py). The signature is checked first, so a forged cookie costs no
database read; the row makes logging out final, for a copy of the cookie too, and lets
a person end every session at once. A restart, or another web process, keeps everyone
logged in; changing API_TOKEN logs everyone out (README, Decisions). The cookie is
HttpOnly, SameSite=Strict, and Secure when the request came over https (the app trusts
no proxy headers, so the scheme is the connection's). It opens the console and lets its
holder read the API docs (GET /docs...); every other API route still wants a bearer
key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime

from anyio import to_thread
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import PermissionDeniedException
from litestar.types import ASGIApp, Receive, Send
from litestar.types import Scope as Scope_

from models import console
from models.infra.db import set_actor
from models.tables import Scope
from web.auth import OPEN_CALLER, ROOT, Authenticator, Caller

COOKIE = "segments_console"
PATH = "/console"
DOCS = "/docs"
OPEN = "console_open"  # handler opt: no session needed (login page, static files)
CONSOLE_SCOPE = "console_scope"  # handler opt: the scope a page or form needs


class LoginRequired(Exception):
    """No valid session: the console sends the person to the login page."""


def derive_key(token: str, purpose: str) -> bytes:
    """A key for one purpose, derived from API_TOKEN (HMAC as a KDF)."""
    return hmac.new(token.encode(), f"segments-console/{purpose}".encode(), hashlib.sha256).digest()


class Sessions:
    def __init__(self, auth: Authenticator, lifetime_seconds: int) -> None:
        self.auth = auth
        self.token = auth.token
        self.lifetime = lifetime_seconds
        self.key = derive_key(auth.token, "session") if auth.token else b""

    @property
    def required(self) -> bool:
        return self.token is not None

    def _mac(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        body = f"{int(time.time()) + self.lifetime}.{secrets.token_hex(8)}"
        return f"{body}.{self._mac(body)}"

    def _nonce(self, value: str | None) -> str | None:
        """The nonce of a cookie signed here and not past its expiry; else None."""
        if not value or value.count(".") != 2:
            return None
        body, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        expires, _, nonce = body.partition(".")
        return nonce if expires.isdigit() and int(expires) > time.time() else None

    async def holder(self, value: str | None) -> Caller | None:
        """Who the cookie's session belongs to: signed here, not expired, not ended, its
        key not revoked. Everyone (anonymous) in open mode."""
        if not self.required:
            return OPEN_CALLER
        nonce = self._nonce(value)
        if nonce is None:
            return None
        held = await to_thread.run_sync(console.session_holder, nonce)
        if held is None:
            return None
        actor = ROOT if held.key_id is None else f"key:{held.name}"
        return Caller(actor, Scope(held.scope), held.key_id)

    def cookie(self, request: Request, value: str, max_age: int) -> Cookie:
        return Cookie(
            key=COOKIE,
            value=value,
            path="/",  # the console and the docs pages
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    async def log_in(self, request: Request, response: Response, caller: Caller) -> Response:
        value = self.issue()
        expires, nonce, _ = value.split(".")
        until = datetime.fromtimestamp(int(expires), UTC)
        set_actor(caller.actor)
        await to_thread.run_sync(console.start_session, nonce, until, caller.key_id)
        response.set_cookie(self.cookie(request, value, self.lifetime))
        return response

    async def log_out(self, request: Request, response: Response) -> Response:
        nonce = self._nonce(request.cookies.get(COOKIE))
        if nonce is not None:
            await to_thread.run_sync(console.end_session, nonce)
        response.set_cookie(self.cookie(request, "", 0))
        return response

    async def log_out_everywhere(self, request: Request, response: Response) -> Response:
        await to_thread.run_sync(console.end_all_sessions)
        response.set_cookie(self.cookie(request, "", 0))
        return response

    async def opens_docs(self, connection: ASGIConnection) -> bool:
        """A person logged in to the console may read the API docs in the same browser."""
        path = connection.scope["path"]
        return (
            (path == DOCS or path.startswith(f"{DOCS}/"))
            and connection.scope["method"] in ("GET", "HEAD")
            and await self.holder(connection.cookies.get(COOKIE)) is not None
        )

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """The console's first check, before its CSRF middleware reads a form: a
        request without a session never gets its body (up to 64 MiB) read, nor one
        whose key lacks the scope the page or form needs (CONSOLE_SCOPE)."""

        async def require_session(scope: Scope_, receive: Receive, send: Send) -> None:
            handler = scope["route_handler"]
            if not handler.opt.get(OPEN):
                caller = await self.holder(ASGIConnection(scope).cookies.get(COOKIE))
                if caller is None:
                    raise LoginRequired
                needed = Scope(handler.opt.get(CONSOLE_SCOPE, Scope.ADMIN))
                if not caller.scope.allows(needed):
                    raise PermissionDeniedException(
                        f"this needs the {needed.value!r} scope; "
                        f"{caller.actor} has {caller.scope.value!r}"
                    )
                set_actor(caller.actor)
                scope.setdefault("state", {})["caller"] = caller
            await app(scope, receive, send)

        return require_session
