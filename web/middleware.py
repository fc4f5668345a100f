"""Per-request context, in one pass on the hot path: a request id (taken from
X-Request-ID or made up) echoed in the response and set for every log record, the
request-duration histogram by route template and status, and, when ACCESS_LOG is on,
one access log line."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Histogram

from models.logs import request_id

access_log = logging.getLogger("web.access")
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
# Made-up ids: a random per-process prefix and a counter; unique, and far cheaper on
# the hot path than uuid4.
_PREFIX = os.urandom(6).hex()
_counter = itertools.count(1)

REQUESTS = Histogram(
    "segments_http_request_duration_seconds",
    "HTTP requests by method, route template and status (the _count is the request count)",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def request_context(access_log_enabled: bool):
    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            given = dict(scope["headers"]).get(b"x-request-id", b"")
            rid = given.decode() if _SAFE_ID.match(given) else f"{_PREFIX}-{next(_counter):x}"
            token = request_id.set(rid)
            started = time.perf_counter()
            status = 500

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = message.get("headers", [])
                    message["headers"] = [*headers, (b"x-request-id", rid.encode())]
                await send(message)

            try:
                await app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                # The route template, not the raw path: series stay bounded whatever
                # ids clients send; unmatched paths share one label.
                route = scope.get("path_template", "unmatched")
                REQUESTS.labels(scope["method"], route, str(status)).observe(seconds)
                if access_log_enabled:
                    access_log.info(
                        "%s %s %s",
                        scope["method"],
                        scope["path"],
                        status,
                        extra={"status": status, "ms": round(seconds * 1000, 2)},
                    )
                request_id.reset(token)

        return middleware

    return wrap
