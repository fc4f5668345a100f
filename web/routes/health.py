"""/health (the process answers) and /ready (its database and broker answer, and where
its reads go).

``checks`` maps each dependency to "ok" or "down: <kind of error>"; the broker's check is
"broker", and ``broker`` says which one is in use. On Redis the check is also under its
old name "redis", for clients written before RabbitMQ could be chosen (README, Decisions).
"""

from __future__ import annotations

import math

from litestar import Response
from litestar.openapi import ResponseSpec

from models.infra.db import db, fetchone
from models.infra.replica import router
from models.infra.settings import BrokerKind, active
from web.auth import PUBLIC, SCOPE
from web.methods import get_and_head
from web.schemas import Readiness, ReplicaReadiness
from workers.broker import ping_broker


@get_and_head("/health", tags=["health"], summary="Liveness", opt={SCOPE: PUBLIC})
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
    opt={SCOPE: PUBLIC},
    responses={503: ResponseSpec(Readiness, description="A dependency does not answer")},
)
def ready() -> Response[Readiness]:
    kind = active().broker_kind
    checks = {"database": _check(_database), "broker": _check(ping_broker)}
    if kind is BrokerKind.REDIS:
        checks["redis"] = checks["broker"]
    ok = all(v == "ok" for v in checks.values())
    status = "ok" if ok else "unavailable"
    body = Readiness(status=status, checks=checks, broker=kind, replica=_replica())
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
