"""``python -m web``: serve the app on SERVER_HOST (the Procfile's web process).

granian with one worker process per core (WEB_WORKERS) and uvloop: measured against
uvicorn in docs/benchmarks.md. Its HTTP/1 header read timeout bounds slow-loris
connections (HEADER_READ_TIMEOUT); web/middleware.py bounds the body (BODY_READ_TIMEOUT).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile
from pathlib import Path

from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.log import LogLevels

from models.infra.settings import ConfigError, load_settings

METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def fresh_metrics_dir() -> tuple[Path, bool]:
    """The directory where every web process writes its metrics, emptied, so a restart
    starts from zero as a single process would. Set before any worker imports
    prometheus_client (it reads the variable at import). Returns (dir, made here)."""
    given = os.environ.get(METRICS_DIR)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="segments-metrics-"))
    os.environ[METRICS_DIR] = str(path)
    return path, True


def serve(factory: str) -> None:
    """Serve the app that ``factory`` ("module:function") builds, on SERVER_HOST, with
    the production server settings (the benchmark's floor app uses the same)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    metrics_dir, made = fresh_metrics_dir()
    # Forked workers inherit the parent's SIGTERM handler and ignore a SIGTERM that comes
    # while they load the app, then wait for the kill timeout; spawned ones start with the
    # default handler and just exit.
    multiprocessing.set_start_method("spawn", force=True)
    server = Granian(
        factory,
        factory=True,
        address=settings.server_host,
        port=settings.server_port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        workers=settings.web_workers,
        loop=Loops.uvloop,
        http1_settings=HTTP1Settings(
            header_read_timeout=max(1, round(settings.header_read_timeout * 1000))
        ),
        log_level=LogLevels.warning,
        log_access=False,
        respawn_failed_workers=True,
        workers_kill_timeout=20,
    )
    try:
        server.serve()
    finally:
        if made:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def main() -> None:
    serve("web.app:create_app")


if __name__ == "__main__":
    main()
