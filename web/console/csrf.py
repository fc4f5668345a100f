"""CSRF protection for the console's forms: Litestar's double-submit middleware, mounted
on the /console router only, so the JSON API (bearer tokens, no cookies) never sees it.

Forms carry the token in the hidden field ``_csrf_token`` (the template's
``csrf_input``); a POST without it, or with a token that does not match the cookie, is a
403 page.
"""

from __future__ import annotations

from litestar.config.csrf import CSRFConfig
from litestar.exceptions import ClientException
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import Message, Receive, Scope, Send

from web.console.session import PATH, derive_key

COOKIE = "segments_console_csrf"
# Without API_TOKEN the console is open to anyone who can reach it, so the key guards no
# credential; what stops a foreign page from posting a form is that it can neither read
# nor send the SameSite=Strict cookie. A fixed key keeps tokens valid across processes
# and restarts (README, Decisions).
OPEN_MODE_KEY = "segments-console-open-mode"


class ConsoleCSRFMiddleware(CSRFMiddleware):
    """Litestar's middleware, except that a page view with a cookie signed by another
    key (API_TOKEN changed) gets a fresh cookie instead of a 403 on every later form,
    and that the cookie is Secure over https, like the session's (Litestar's setting
    for it is fixed, not per request)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _url_encoded(scope):
            receive = _bounded(receive, URL_ENCODED_MAX)
        if scope["type"] == "http" and scope["method"] in self.config.safe_methods:
            scope["headers"] = [
                (name, self._without_stale_cookie(value) if name == b"cookie" else value)
                for name, value in scope["headers"]
            ]
        if scope["type"] == "http" and scope.get("scheme") == "https":
            send = self._secure_cookie(send)
        await super().__call__(scope, receive, send)

    def _secure_cookie(self, send: Send) -> Send:
        prefix = f"{self.config.cookie_name}=".encode()

        async def secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (name, value + b"; Secure")
                    if name.lower() == b"set-cookie"
                    and value.startswith(prefix)
                    and b"secure" not in value.lower()
                    else (name, value)
                    for name, value in message.get("headers", [])
                ]
            await send(message)

        return secure

    def _without_stale_cookie(self, header: bytes) -> bytes:
        prefix = f"{self.config.cookie_name}="
        kept = []
        for part in header.decode("latin-1").split(";"):
            value = part.strip()
            if value.startswith(prefix) and self._decode_csrf_token(value[len(prefix) :]) is None:
                continue
            kept.append(part)
        return ";".join(kept).encode("latin-1")


# A url-encoded form is parsed whole (and its escapes split: ~40 bytes of memory per
# byte) before any handler runs, here to find the token. The console's own forms are
# small, and its import form is multipart, whose file part is spooled to disk.
URL_ENCODED_MAX = 1024 * 1024


def _url_encoded(scope: Scope) -> bool:
    return any(
        name == b"content-type" and value.lower().startswith(b"application/x-www-form-urlencoded")
        for name, value in scope["headers"]
    )


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive``, refusing a body over ``limit`` bytes with a 413."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise ClientException(
                "a url-encoded form is limited to 1 MiB: send a list of ids as a file",
                status_code=413,
            )
        return message

    return bounded


def csrf_middleware(api_token: str | None) -> DefineMiddleware:
    secret = derive_key(api_token, "csrf").hex() if api_token else OPEN_MODE_KEY
    config = CSRFConfig(
        secret=secret,
        cookie_name=COOKIE,
        cookie_path=PATH,
        cookie_httponly=True,
        cookie_samesite="strict",
        header_name="x-csrf-token",
    )
    return DefineMiddleware(ConsoleCSRFMiddleware, config=config)
