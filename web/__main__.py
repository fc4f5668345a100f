"""``python -m web``: serve the app on SERVER_HOST (the Procfile's web process)."""

from __future__ import annotations

import sys

import uvicorn

from models.settings import ConfigError, load_settings


def serve(factory: str) -> None:
    """Serve the app that ``factory`` ("module:function") builds, on SERVER_HOST, with
    the production server settings (the benchmark's floor app uses the same)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    uvicorn.run(
        factory,
        factory=True,
        host=settings.server_host,
        port=settings.server_port,
        workers=settings.web_workers,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=20,
    )


def main() -> None:
    serve("web.app:create_app")


if __name__ == "__main__":
    main()
