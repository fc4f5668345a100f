"""CSV history reports: one user's, or everyone's, for a month."""

from __future__ import annotations

from litestar import Controller, get
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from models import history, users
from models.errors import NotFound
from web.routes import params


def _report(user_id: int | None, year: str | None, month: str | None, filename: str) -> Stream:
    y = params.bounded_int("year", year, 1970, 9999)
    m = params.bounded_int("month", month, 1, 12)
    return Stream(
        history.history_csv(user_id, y, m),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}-{y}-{m:02d}.csv"'},
    )


class HistoryController(Controller):
    tags = ["history"]

    @get(
        "/users/{user_id:str}/history",
        sync_to_thread=True,
        summary="One user's membership history as CSV",
    )
    def user_history(
        self,
        user_id: FromPath[str],
        year: FromQuery[str | None] = None,
        month: FromQuery[str | None] = None,
    ) -> Stream:
        uid = params.user_id(user_id)
        if not users.user_exists(uid):
            raise NotFound(f"user {uid} not found", id=uid)
        return _report(uid, year, month, f"history-user-{uid}")

    @get("/history", sync_to_thread=True, summary="Everyone's membership history as CSV")
    def all_history(
        self, year: FromQuery[str | None] = None, month: FromQuery[str | None] = None
    ) -> Stream:
        return _report(None, year, month, "history")
