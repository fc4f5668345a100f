"""Every error becomes JSON ``{"status", "error", "details"}``; nothing internal leaks."""

from __future__ import annotations

import logging

import peewee
import psycopg2
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from playhouse.pool import MaxConnectionsExceeded

from models.errors import Conflict, DomainError, Gone, Invalid, NotFound
from models.infra.db import db

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
# The server is going away or is not the primary: connection exceptions (08), shutting
# down or starting up (57P), a standby refusing a write (25006, read_only_sql_transaction).
UNAVAILABLE = ("08", "57P", "25006")
# A client may retry once the new primary is up; a Patroni failover takes about 10 s.
RETRY_AFTER = {"Retry-After": "1"}
OUT_OF_REACH = (
    peewee.OperationalError,
    peewee.InterfaceError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    MaxConnectionsExceeded,
)


def unavailable(exc: Exception) -> bool:
    """Whether ``exc`` says the database is out of reach (or too busy: a timeout) rather
    than the statement wrong."""
    orig = getattr(exc, "orig", exc)  # peewee wraps the driver's error
    if isinstance(orig, OUT_OF_REACH):
        return True
    code = getattr(orig, "pgcode", None)
    if code is not None:
        return code.startswith(UNAVAILABLE)
    # No SQLSTATE: libpq's own error, i.e. the connection (a lost one can surface as a
    # plain DatabaseError: an SSL record, libpq's "no message").
    return type(orig) in (psycopg2.DatabaseError, peewee.DatabaseError)


def on_database_error(request: Request, exc: Exception) -> Response:
    # peewee wraps the driver's error (in .orig); the hot read raises the driver's own.
    if getattr(getattr(exc, "orig", exc), "pgcode", None) in RETRYABLE:
        return error_response(503, "concurrent update, retry the request", headers=RETRY_AFTER)
    if not unavailable(exc):
        return on_unexpected(request, exc)
    # One dead connection usually means the server restarted, failed over or dropped
    # them all: drop the idle ones too, so each does not cost a client a failed request.
    db.close_idle()
    log.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return error_response(503, "database unavailable, retry later", headers=RETRY_AFTER)


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
    peewee.DatabaseError: on_database_error,
    peewee.InterfaceError: on_database_error,
    psycopg2.Error: on_database_error,
    MaxConnectionsExceeded: on_database_error,
    Exception: on_unexpected,
}
