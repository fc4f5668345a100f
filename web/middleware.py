"""Per-request context, in one pass around the whole app (matched routes, 404s and 405s
alike): a request id (taken from X-Request-ID or made up) echoed in the response and set
for every log record, a read-your-writes scope (models/infra/db.py: once the request
has written, its later reads stay on the primary), the request-duration histogram by
route template and status, one access log line when ACCESS_LOG is on, and a bound on
how long the body may take.

A client that hangs up before its body is complete is not a server error: it is logged
at info and counted with status 499 (nginx's "client closed request").
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time

from litestar import MediaType, Request, Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Histogram

from models.infra.db import (
    begin_read_your_writes,
    end_read_your_writes,
    reset_actor,
    set_actor,
)
from models.infra.logs import request_id

access_log = logging.getLogger("web.access")
log = logging.getLogger("web.middleware")
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
# Made-up ids: a random per-process prefix and a counter; unique, and far cheaper on
# the hot path than uuid4.
_PREFIX = os.urandom(6).hex()
_counter = itertools.count(1)
CLIENT_CLOSED = 499

REQUESTS = Histogram(
    "segments_http_request_duration_seconds",
    "HTTP requests by method, route template and status (the _count is the request count)",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# (method, route template, status) -> its histogram series. Bounded: routes are
# templates, unmatched paths share one label, and so do methods HTTP does not define
# (a client may send any token as a method).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_series: dict[tuple[str, str, int], Histogram] = {}


class ClientDisconnected(Exception):
    """The client hung up before its request body was complete."""


class BodyTimeout(Exception):
    """The request body did not arrive within BODY_READ_TIMEOUT."""


def on_client_disconnected(request: Request, exc: ClientDisconnected) -> Response:
    log.info("client disconnected during the body of %s %s", request.method, request.url.path)
    # Nobody reads this response; the status is what the metrics and the log record.
    return Response(b"", status_code=CLIENT_CLOSED)


def on_body_timeout(request: Request, exc: BodyTimeout) -> Response:
    log.info("body of %s %s too slow; 408", request.method, request.url.path)
    body = {"status": 408, "error": "request body not received in time"}
    return Response(
        body, status_code=408, media_type=MediaType.JSON, headers={"Connection": "close"}
    )


EXCEPTION_HANDLERS = {ClientDisconnected: on_client_disconnected, BodyTimeout: on_body_timeout}


def _guarded_receive(receive: Receive, body_timeout: float, state: dict) -> Receive:
    """``receive`` that raises BodyTimeout past the deadline, and ClientDisconnected
    when the client leaves mid-body. Once the body is complete it is ``receive`` again
    (a streaming response listens for the disconnect)."""
    deadline = time.monotonic() + body_timeout

    async def receive_body() -> Message:
        if state["body_done"]:
            return await receive()
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout from None
        if message["type"] == "http.disconnect":
            state["gone"] = True
            raise ClientDisconnected
        if not message.get("more_body", False):
            state["body_done"] = True
        return message

    return receive_body


def request_context(access_log_enabled: bool, body_timeout: float):
    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
            rid = given.decode() if _SAFE_ID.match(given) else f"{_PREFIX}-{next(_counter):x}"
            token = request_id.set(rid)
            writes = begin_read_your_writes()  # a request reads its own writes
            actor = set_actor(None)  # the guard sets who is calling
            started = time.perf_counter()
            status = 500
            state = {"body_done": False, "gone": False}

            head = scope["method"] == "HEAD"

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = message.get("headers", [])
                    message["headers"] = [*headers, (b"x-request-id", rid.encode())]
                elif head:
                    # RFC 9110: a HEAD answer has the GET's headers (Content-Length
                    # included) and no body. One empty final body message instead.
                    if message.get("more_body"):
                        return
                    message = {"type": "http.response.body", "body": b"", "more_body": False}
                if not state["gone"]:
                    await send(message)

            try:
                await app(scope, _guarded_receive(receive, body_timeout, state), send_with_id)
            finally:
                seconds = time.perf_counter() - started
                method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
                key = (method, scope.get("path_template", "unmatched"), status)
                series = _series.get(key)
                if series is None:  # labels() takes a lock and builds a key each call
                    series = _series[key] = REQUESTS.labels(key[0], key[1], str(status))
                series.observe(seconds)
                if access_log_enabled:
                    access_log.info(
                        "%s %s %s",
                        scope["method"],
                        scope["path"],
                        status,
                        extra={"status": status, "ms": round(seconds * 1000, 2)},
                    )
                end_read_your_writes(writes)
                reset_actor(actor)
                request_id.reset(token)

        return middleware

    return wrap
