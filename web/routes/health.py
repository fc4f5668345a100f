"""/health (the process answers) and /ready (its database and Redis answer, and where
its reads go)."""

from __future__ import annotations

import math

from litestar import Response
from litestar.openapi import ResponseSpec

from models.db import db, fetchone
from models.replica import router
from web.auth import PUBLIC
from web.methods import get_and_head
from web.schemas import Readiness, ReplicaReadiness
from workers.broker import ping_broker


@get_and_head("/health", tags=["health"], summary="Liveness", opt={PUBLIC: True})
async def health() -> dict:
    return {"status": "ok"}


def _check(probe) -> str:
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return f"down: {type(exc).__name__}"
    return "ok"


def _database() -> None:
    with db.connection_context():
        fetchone("SELECT 1")


@get_and_head(
    "/ready",
    sync_to_thread=True,
    tags=["health"],
    summary="Readiness",
    opt={PUBLIC: True},
    responses={503: ResponseSpec(Readiness, description="A dependency does not answer")},
)
def ready() -> Response[Readiness]:
    checks = {"database": _check(_database), "redis": _check(ping_broker)}
    ok = all(v == "ok" for v in checks.values())
    status = "ok" if ok else "unavailable"
    body = Readiness(status=status, checks=checks, replica=_replica())
    return Response(body, status_code=200 if ok else 503)


def _replica() -> ReplicaReadiness:
    status = router.status()
    lag = status.lag_ms
    return ReplicaReadiness(
        configured=status.configured,
        serving=status.serving.value,
        reason=status.reason,
        lag_ms=None if lag is None or math.isinf(lag) else lag,
    )
