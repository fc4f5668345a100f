"""HEAD wherever GET, and a true Allow header.

RFC 9110 (9.3.2): a server answers HEAD wherever it answers GET, with the same status and
headers and no body. Litestar routes HEAD only to handlers that declare it, and its own
OPTIONS answer lists the methods of just one handler when several serve a path; both are
put right here.
"""

from __future__ import annotations

import re

from litestar import HttpMethod, Request, Response, route
from litestar.handlers import HTTPRouteHandler

from web.auth import READ, SCOPE

_TYPED = re.compile(r"\{(\w+):\w+\}")


def get_and_head(path: str, **kwargs: object) -> HTTPRouteHandler:
    """Like ``@get``, and HEAD runs the same handler (its headers, Content-Length of
    the GET body included); the app-wide middleware (web/middleware.py) drops the body,
    so no route pays for a middleware layer of its own."""
    return route(path, http_method=[HttpMethod.GET, HttpMethod.HEAD], **kwargs)


def allow(request: Request) -> Response:
    """204 with every method the request's path answers (for an OPTIONS handler)."""
    # The route's template ("/segments/{name}/users"); the method map writes the
    # parameters' types into its keys ("{name:str}").
    path = request.scope.get("path_template") or request.scope["path"].rstrip("/") or "/"
    methods = next(
        (
            handlers.keys()
            for key, handlers in request.app.route_handler_method_map.items()
            if _TYPED.sub(r"{\1}", key) == path
        ),
        (),
    )
    return Response(None, status_code=204, headers={"Allow": ", ".join(sorted(methods))})


def options_handler(path: str = "/") -> HTTPRouteHandler:
    """An explicit OPTIONS handler for one of a controller's paths served by several
    handlers."""

    async def options(self: object, request: Request) -> Response:
        return allow(request)

    # Says only which methods exist: any key may ask.
    return route(path, http_method=HttpMethod.OPTIONS, include_in_schema=False, opt={SCOPE: READ})(
        options
    )
