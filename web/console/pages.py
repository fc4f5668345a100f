"""The console's pages (GET): overview, a user, a segment, the delete confirmation, and
the job progress the pages' script polls."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

from litestar import Request, Response
from litestar.params import PathParameter
from litestar.response import Redirect, Stream, Template

from models import console, layers, memberships, schedules, segments
from models.errors import Invalid, NotFound
from models.tables import JobState
from web.console.format import colours, members_chart, progress_label, spans
from web.methods import get_and_head
from web.routes import params
from web.routes.history import user_report
from web.routes.segments import members_export

MEMBERS_PAGE = 25
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


def page(request: Request, name: str, status: int = 200, **context: object) -> Template:
    """A console page: ``name`` in web/console/templates with the layout's context."""
    sessions = request.app.state.console_sessions
    return Template(
        template_name=name,
        status_code=status,
        context={"open_mode": not sessions.required, "path": request.url.path, **context},
    )


def error_page(request: Request, status: int, message: str, **context: object) -> Template:
    return page(
        request, "error.html", status, code=status, message=message, title="Error", **context
    )


def _month(raw: str | None) -> tuple[int, int]:
    if not raw:
        now = datetime.now(UTC)
        return now.year, now.month
    found = _MONTH.fullmatch(raw)
    if not found or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1970:
        raise Invalid(f"month must be written YYYY-MM, e.g. 2026-11 (got {raw[:20]!r})")
    return int(found[1]), int(found[2])


def _neighbours(year: int, month: int) -> tuple[str, str]:
    before = (year, month - 1) if month > 1 else (year - 1, 12)
    after = (year, month + 1) if month < 12 else (year + 1, 1)
    return f"{before[0]:04d}-{before[1]:02d}", f"{after[0]:04d}-{after[1]:02d}"


@get_and_head("/", sync_to_thread=True)
def overview(request: Request, deleted: params.OptionalText = None) -> Template:
    return page(
        request,
        "overview.html",
        segments=segments.list_segments(),
        in_flight=console.jobs_in_flight(),
        finished=console.recent_jobs(JobState.DONE, 8),
        failures=console.recent_jobs(JobState.FAILED, 20),
        deleted=deleted,
        title="Overview",
    )


@get_and_head("/users", sync_to_thread=True)
def find_user(request: Request, id: params.Text = "") -> Redirect:
    """The search box: a GET form, answered with the user's page."""
    wanted = id.strip()
    if not wanted:
        raise Invalid("enter a user id to look up")
    return Redirect(f"/console/users/{params.user_id(wanted)}", status_code=303)


@get_and_head("/users/{user_id:str}", sync_to_thread=True)
def user(
    request: Request, user_id: params.UserIdPath, month: params.OptionalText = None
) -> Template:
    uid = params.user_id(user_id)
    held = memberships.user_memberships(uid)
    if held is None:
        raise NotFound.user(uid)
    year, mon = _month(month)
    previous, following = _neighbours(year, mon)
    return page(
        request,
        "user.html",
        user_id=uid,
        memberships=held,
        timeline=console.user_timeline(uid, year, mon),
        timeline_limit=console.TIMELINE_LIMIT,
        month=f"{year:04d}-{mon:02d}",
        month_name=date(year, mon, 1).strftime("%B %Y"),
        year=year,
        month_number=mon,
        previous=previous,
        following=following,
        now=datetime.now(UTC),
        title=f"User {uid}",
    )


@get_and_head("/segments/{name:str}", sync_to_thread=True)
def segment(request: Request, name: params.NamePath, after: params.After = "0") -> Template:
    name = params.segment_name(name)
    view = segments.get_segment(name)
    start = params.after(after)
    members = console.segment_member_page(name, start, MEMBERS_PAGE)
    points = console.member_series(name, view.members or 0)
    layer = layers.get_layer(view.layer) if view.layer else None
    return page(
        request,
        "segment.html",
        segment=view,
        members=members,
        after=start,
        next_after=members[-1].user_id if len(members) == MEMBERS_PAGE else None,
        chart=members_chart(points),
        jobs=console.segment_jobs(name),
        import_key=f"console-{secrets.token_hex(12)}",
        title=f"Segment {name}",
        now=datetime.now(UTC),
        layer=layer,
        layer_spans=spans(layer) if layer else [],
        ranges=next((s.ranges for s in layer.segments if s.segment == name), []) if layer else [],
        colours=colours(layer) if layer else {},
        schedule=schedules.get_schedule(name),
    )


@get_and_head("/segments/{name:str}/delete", sync_to_thread=True)
def confirm_delete(request: Request, name: params.NamePath) -> Template:
    view = segments.get_segment(params.segment_name(name))
    return page(request, "delete.html", segment=view, title=f"Delete {view.name}?")


@get_and_head("/jobs/{job_id:str}", sync_to_thread=True)
def job_progress(job_id: params.JobIdPath) -> Response:
    """What a progress bar needs; the pages' script polls it (the session cookie
    authorises it, unlike /jobs/{id}, which wants the bearer token)."""
    jid = params.job_id(job_id)
    job = console.job_view(jid)
    if job is None:
        raise NotFound(f"job {jid} not found", id=jid)
    return Response(
        {
            "id": job.id,
            "state": job.state,
            "done": job.done,
            "total": job.total,
            "error": job.error,
            "label": progress_label(job.done, job.total),
            "result": job.result,
        }
    )


@get_and_head("/users/{user_id:str}/history.csv", sync_to_thread=True)
def user_history_csv(user_id: params.UserIdPath, year: params.Year, month: params.Month) -> Stream:
    """The API's history report (GET /users/{id}/history), under the console's login."""
    return user_report(user_id, year, month)


@get_and_head("/segments/{name:str}/users.csv", sync_to_thread=True)
def segment_members_csv(name: params.NamePath) -> Stream:
    """The API's export (GET /segments/{name}/users.csv), under the console's login."""
    return members_export(params.segment_name(name))


@get_and_head("/{rest:path}", sync_to_thread=False)
def unknown_page(rest: Annotated[Path, PathParameter()]) -> None:
    """Any other path under /console: a 404 page rather than the API's JSON."""
    raise NotFound(f"there is no console page {str(rest)[:100]!r}")


PAGES = [
    overview,
    find_user,
    user,
    user_history_csv,
    segment,
    segment_members_csv,
    confirm_delete,
    job_progress,
    unknown_page,
]
