"""Every error becomes JSON ``{"status", "error", "details"}``; nothing internal leaks."""

from __future__ import annotations

import logging

import peewee
import psycopg2
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from playhouse.pool import MaxConnectionsExceeded

from models.db import db
from models.errors import Conflict, DomainError, Gone, Invalid, NotFound

log = logging.getLogger("web.errors")


def error_response(
    status: int, message: str, details: dict | None = None, headers: dict | None = None
) -> Response:
    body = {"status": status, "error": message}
    if details:
        body["details"] = details
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def _validation_details(exc: ValidationException) -> dict | None:
    extra = exc.extra if isinstance(exc.extra, list) else []
    messages = [
        f"{e['key']}: {e['message']}" if e.get("key") else e["message"]
        for e in extra
        if isinstance(e, dict) and e.get("message")
    ]
    return {"problems": messages} if messages else None


def on_http_error(request: Request, exc: HTTPException) -> Response:
    if isinstance(exc, ValidationException):
        details = _validation_details(exc)
        problems = (details or {}).get("problems")
        message = problems[0] if problems else (exc.detail or "invalid request")
        return error_response(400, message, details)
    status = exc.status_code
    if status >= 500:
        log.error("http error %s on %s %s: %s", status, request.method, request.url.path, exc)
        return error_response(status, "internal error")
    # Keep the exception's headers: Allow on a 405, WWW-Authenticate on a 401.
    return error_response(status, exc.detail or "request rejected", headers=exc.headers)


_DOMAIN_STATUS = {NotFound: 404, Conflict: 409, Invalid: 400, Gone: 410}


def on_domain_error(request: Request, exc: DomainError) -> Response:
    return error_response(_DOMAIN_STATUS[type(exc)], exc.message, exc.details or None)


RETRYABLE = {"40001", "40P01"}  # serialization failure, deadlock: the server is fine


def on_database_unavailable(request: Request, exc: Exception) -> Response:
    # peewee wraps the driver's error (in .orig); the hot read raises the driver's own.
    if getattr(getattr(exc, "orig", exc), "pgcode", None) in RETRYABLE:
        return error_response(503, "concurrent update, retry the request")
    # One dead connection usually means the server restarted or dropped them all: drop
    # the idle ones too, so each does not cost a client a failed request of its own.
    db.close_idle()
    log.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return error_response(503, "database unavailable, retry later")


def on_integrity_error(request: Request, exc: peewee.IntegrityError) -> Response:
    """A concurrent change won the layer's one slot for this user (the unique index of
    migration 009 is the last word); anything else is a bug."""
    diag = getattr(getattr(exc, "orig", None), "diag", None)
    if getattr(diag, "constraint_name", None) == "memberships_one_per_layer":
        return error_response(
            409, "the user holds another segment of this layer (a concurrent change); retry"
        )
    return on_unexpected(request, exc)


def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error")


# A HEAD request's error keeps its status and headers and loses its body in the app-wide
# middleware (web/middleware.py), like every HEAD answer.
EXCEPTION_HANDLERS = {
    HTTPException: on_http_error,
    DomainError: on_domain_error,
    peewee.IntegrityError: on_integrity_error,
    peewee.OperationalError: on_database_unavailable,
    peewee.InterfaceError: on_database_unavailable,
    psycopg2.OperationalError: on_database_unavailable,
    psycopg2.InterfaceError: on_database_unavailable,
    MaxConnectionsExceeded: on_database_unavailable,
    Exception: on_unexpected,
}
