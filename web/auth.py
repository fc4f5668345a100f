"""Optional bearer-token access control (API_TOKEN). /health and /ready stay open, so
orchestrators can probe without the secret."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

PUBLIC = "public"


def token_guard(
    token: str, also_allowed: Callable[[ASGIConnection], Awaitable[bool]] | None = None
):
    """A guard wanting the bearer token, except on public handlers and where
    ``also_allowed`` says yes (the console's session, on the docs pages: asked only
    when the bearer is missing or wrong, as it may read the database)."""
    expected = token.encode()

    async def require_token(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        if handler.opt.get(PUBLIC):
            return
        # RFC 9110 (11.1): the scheme's name is case-insensitive.
        scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
        given = credentials.lstrip(" ").encode() if scheme.lower() == "bearer" else b""
        # Constant-time: the comparison takes as long whatever prefix matches.
        if not hmac.compare_digest(given, expected) and not (
            also_allowed and await also_allowed(connection)
        ):
            # RFC 6750 (3): a 401 names the scheme the client must use.
            raise NotAuthorizedException(
                "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    return require_token
