"""CSV history reports: one user's, or everyone's, for a month."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Controller
from litestar.response import Stream

from models import history, users
from models.errors import NotFound
from models.infra.settings import active
from web.auth import READ, SCOPE
from web.downloads import csv_download
from web.methods import get_and_head
from web.routes import params
from web.schemas import HISTORY_ERRORS


def history_report(
    user_id: int | None, y: int, m: int, filename: str, actor: str = "false"
) -> Stream:
    with_actor = params.choice("actor", actor, ("true", "false")) == "true"
    history.check_kept(y, m, active().history_retention_months, datetime.now(UTC).date())
    return csv_download(
        history.history_csv(user_id, y, m, with_actor), f"{filename}-{y}-{m:02d}.csv"
    )


def user_report(user_id: str, year: str, month: str, actor: str = "false") -> Stream:
    """One user's month (the raw parameters checked here); 404 for an unknown user."""
    uid = params.user_id(user_id)
    y, m = params.year(year), params.month(month)
    if not users.user_exists(uid):
        raise NotFound.user(uid)
    return history_report(uid, y, m, f"history-user-{uid}", actor)


class HistoryController(Controller):
    tags = ["history"]

    @get_and_head(
        "/users/{user_id:str}/history",
        sync_to_thread=True,
        responses=HISTORY_ERRORS,
        media_type="text/csv",
        summary="One user's membership history as CSV",
        opt={SCOPE: READ},
    )
    def user_history(
        self,
        user_id: params.UserIdPath,
        year: params.Year,
        month: params.Month,
        actor: params.WithActor = "false",
    ) -> Stream:
        return user_report(user_id, year, month, actor)

    @get_and_head(
        "/history",
        sync_to_thread=True,
        responses=HISTORY_ERRORS,
        media_type="text/csv",
        summary="Everyone's membership history as CSV",
        opt={SCOPE: READ},
    )
    def all_history(
        self, year: params.Year, month: params.Month, actor: params.WithActor = "false"
    ) -> Stream:
        return history_report(None, params.year(year), params.month(month), "history", actor)
