"""The app factory: every route, error handler and hook is wired here."""

from __future__ import annotations

import logging

import anyio.to_thread
import dramatiq
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from models.infra.db import close_pools
from models.infra.replica import start_monitor, stop_monitor
from models.infra.settings import Settings, load_settings
from web import console, docs, middleware
from web.auth import READ, SCOPE, Authenticator, access_guard
from web.errors import EXCEPTION_HANDLERS
from web.keyring import Keyring
from web.metrics import forget_process, metrics, record_replica, register_job_metrics
from web.openapi import use_msgspec_schemas
from web.routes.audit import read_audit
from web.routes.health import health, ready
from web.routes.history import HistoryController
from web.routes.jobs import read_job
from web.routes.keys import KeyController
from web.routes.layers import LayerController
from web.routes.schedules import ScheduleController
from web.routes.segments import SegmentController
from web.routes.users import UserController
from web.routes.webhooks import WebhookController
from web.strict import check_request
from web.throttle import Throttle
from workers.boot import bootstrap

MAX_BODY = 1024 * 1024
log = logging.getLogger("web.app")


def create_app(settings: Settings | None = None, broker: dramatiq.Broker | None = None) -> Litestar:
    """The app on ``settings`` (default: the environment's), sending jobs to ``broker``
    (default: the one the settings name). Boots the process (workers/boot.py)."""
    settings = bootstrap(settings or load_settings(), broker).settings
    register_job_metrics()

    if settings.api_token:
        log.info("API_TOKEN set: every endpoint but /health and /ready needs a bearer key")
    else:
        log.warning("API_TOKEN not set: the API is open to anyone who can reach it")
    keyring = Keyring(settings) if settings.api_token else None
    auth = Authenticator(settings.api_token, keyring, Throttle())

    def size_thread_pool() -> None:
        # Sync handlers run on anyio's worker threads; more threads than pooled
        # connections would only queue inside the pool. One connection stays for the
        # reads run in the event loop, which must never wait for the pool.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(1, settings.db_pool_size - 1)

    def start_replica_monitor() -> None:
        start_monitor(settings, on_check=record_replica)

    sessions = console.Sessions(auth, round(settings.console_session_hours * 3600))
    app = Litestar(
        route_handlers=[
            *console.routers(sessions),
            *docs.asset_routers(),
            UserController,
            KeyController,
            read_audit,
            WebhookController,
            SegmentController,
            LayerController,
            ScheduleController,
            HistoryController,
            read_job,
            health,
            ready,
            metrics,
        ],
        guards=[access_guard(auth, sessions.opens_docs)],
        request_max_body_size=MAX_BODY,
        exception_handlers={**EXCEPTION_HANDLERS, **middleware.EXCEPTION_HANDLERS},
        logging_config=None,  # models.infra.logs configures logging for every process
        before_request=check_request,
        on_startup=[size_thread_pool, start_replica_monitor, *([keyring.start] if keyring else [])],
        on_shutdown=[
            *([keyring.stop] if keyring else []),
            stop_monitor,
            close_pools,
            forget_process,
        ],
        openapi_config=OpenAPIConfig(
            title="User segmentation service",
            version="1.0.0",
            openapi_router=Router(
                "/docs", route_handlers=[], opt={SCOPE: READ}, include_in_schema=False
            ),
            render_plugins=docs.render_plugins(),
        ),
        template_config=console.template_config(),
        state=State({"console_sessions": sessions, "auth": auth}),
    )
    use_msgspec_schemas(app)
    # Around the whole handler, not as route middleware: unknown routes get a request id
    # and are counted too.
    context = middleware.request_context(settings.access_log, settings.body_read_timeout)
    app.asgi_handler = context(app.asgi_handler)
    return app
