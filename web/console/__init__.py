"""The support console: server-rendered pages under /console (Jinja templates in
``templates/``, CSS, script and icon in ``static/``, all served by the service).

Everything is wired here: the router with its session guard (session.py), its CSRF
middleware (csrf.py) and its error pages, which show the API's own error messages as
HTML with the same status.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from litestar import Request, Response, Router
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import PermissionDeniedException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from models.tables import Scope
from web.auth import PUBLIC, SCOPE
from web.console.csrf import csrf_middleware
from web.console.format import FILTERS
from web.console.forms import FORMS
from web.console.layers import LAYER_FORMS, LAYER_PAGES
from web.console.pages import PAGES, error_page
from web.console.session import CONSOLE_SCOPE, OPEN, LoginRequired, Sessions

__all__ = ["Sessions", "routers", "template_config"]
from web.errors import EXCEPTION_HANDLERS

HERE = Path(__file__).parent
CSRF_REFUSED = (
    "This form was refused: its security token is missing or does not match. Go back, "
    "reload the page and send the form again."
)


def _on_login_required(request: Request, exc: LoginRequired) -> Response:
    target = request.url.path if request.method in ("GET", "HEAD") else "/console"
    return Redirect(f"/console/login?next={quote(target)}", status_code=303)


def _as_page(json_handler):
    """The API's handler for an error, its answer rendered as a console page."""

    def handler(request: Request, exc: Exception) -> Response:
        answer = json_handler(request, exc)
        message = answer.content.get("error", "request rejected")
        if isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
            message = CSRF_REFUSED
        page = error_page(request, answer.status_code, message)
        page.headers.update(answer.headers)
        return page

    return handler


def template_config() -> TemplateConfig:
    def add_filters(engine: JinjaTemplateEngine) -> None:
        engine.engine.filters.update(FILTERS)

    return TemplateConfig(
        directory=HERE / "templates", engine=JinjaTemplateEngine, engine_callback=add_filters
    )


def routers(sessions: Sessions) -> list[Router]:
    """The console (guarded by its session, not by the API's bearer token) and its
    static files (open: the login page needs its stylesheet too)."""
    handlers = {cls: _as_page(handler) for cls, handler in EXCEPTION_HANDLERS.items()}
    console = Router(
        "/console",
        # Before PAGES: its catch-all 404 page would answer /console/layers otherwise.
        route_handlers=[*LAYER_PAGES, *LAYER_FORMS, *PAGES, *FORMS],
        middleware=[sessions.middleware, csrf_middleware(sessions.token)],
        exception_handlers={**handlers, LoginRequired: _on_login_required},
        # The bearer guard steps aside; the session middleware checks CONSOLE_SCOPE
        # (pages read, unless they say otherwise; each form says what it needs).
        opt={SCOPE: PUBLIC, CONSOLE_SCOPE: Scope.READ},
        include_in_schema=False,
    )
    static = create_static_files_router(
        "/console/static",
        [HERE / "static"],
        name="console-static",
        opt={SCOPE: PUBLIC, OPEN: True},
        cache_control=CacheControlHeader(max_age=3600, public=True),
    )
    return [console, static]
