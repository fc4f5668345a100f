"""The app factory: every route, error handler and hook is wired here."""

from __future__ import annotations

import anyio.to_thread
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from models.db import db, init_db
from models.logs import configure_logging
from models.settings import Settings, load_settings
from web.body import decode_body_strictly
from web.errors import EXCEPTION_HANDLERS
from web.routes.health import health, ready
from web.routes.history import HistoryController
from web.routes.jobs import read_job
from web.routes.segments import SegmentController
from web.routes.users import UserController


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings)
    init_db(settings)

    def size_thread_pool() -> None:
        # Sync handlers run on anyio's worker threads; more threads than pooled
        # connections would only queue inside the pool.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.db_pool_size

    return Litestar(
        route_handlers=[
            UserController,
            SegmentController,
            HistoryController,
            read_job,
            health,
            ready,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=decode_body_strictly,
        on_startup=[size_thread_pool],
        on_shutdown=[db.close_all],
        openapi_config=OpenAPIConfig(
            title="User segmentation service",
            version="1.0.0",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/"), ScalarRenderPlugin(path="/scalar")],
        ),
    )
