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

from models import audit, console, history, layers, memberships, schedules, segments
from models.errors import Invalid, NotFound
from models.infra.settings import active
from models.months import add_months
from models.partitions import kept_from
from models.tables import JobKind, JobState, Scope
from web.console.format import colours, members_chart, progress_label, spans
from web.console.session import CONSOLE_SCOPE
from web.methods import get_and_head
from web.routes import params
from web.routes.audit import action_filter
from web.routes.history import user_report
from web.routes.segments import members_export

MEMBERS_PAGE = 25
AUDIT_PAGE = 100
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
FIRST_MONTH, LAST_MONTH = date(1970, 1, 1), date(9999, 12, 1)


def page(request: Request, name: str, status: int = 200, **context: object) -> Template:
    """A console page: ``name`` in web/console/templates with the layout's context."""
    sessions = request.app.state.console_sessions
    caller = request.scope.get("state", {}).get("caller")
    return Template(
        template_name=name,
        status_code=status,
        context={
            "open_mode": not sessions.required,
            "path": request.url.path,
            "caller": caller,
            # A page shows only the forms its viewer's key may send.
            "can_write": caller is not None and caller.scope.allows(Scope.WRITE),
            "can_admin": caller is not None and caller.scope.allows(Scope.ADMIN),
            **context,
        },
    )


def error_page(request: Request, status: int, message: str, **context: object) -> Template:
    return page(
        request, "error.html", status, code=status, message=message, title="Error", **context
    )


def _month(raw: str | None) -> date:
    """The month asked for (this month when none); 410 for one retention dropped."""
    today = datetime.now(UTC).date()
    if not raw:
        return today.replace(day=1)
    found = _MONTH.fullmatch(raw)
    if not found or not 1 <= int(found[2]) <= 12 or int(found[1]) < FIRST_MONTH.year:
        raise Invalid(f"month must be written YYYY-MM, e.g. 2026-11 (got {raw[:20]!r})")
    history.check_kept(int(found[1]), int(found[2]), active().history_retention_months, today)
    return date(int(found[1]), int(found[2]), 1)


def _neighbours(month: date) -> tuple[str | None, str | None]:
    """The months before and after, where there is one to show: none before what
    retention keeps or 1970-01, none after 9999-12."""
    kept = kept_from(datetime.now(UTC).date(), active().history_retention_months)
    first = max(FIRST_MONTH, kept or FIRST_MONTH)
    before = add_months(month, -1) if month > first else None
    after = add_months(month, 1) if month < LAST_MONTH else None
    return tuple(f"{m:%Y-%m}" if m else None for m in (before, after))


def _deleted_segment(raw: str | None) -> str | None:
    """The segment a deletion's cleanup job (``?deleted=<job id>``) is for, if it is one."""
    if not raw or not raw.isdigit() or len(raw) > 18:
        return None
    job = console.job_view(int(raw))
    if job is None or job.kind != JobKind.CLEANUP_SEGMENT or job.segment_live:
        return None
    return job.segment


@get_and_head("/", sync_to_thread=True)
def overview(request: Request, deleted: params.OptionalText = None) -> Template:
    return page(
        request,
        "overview.html",
        segments=segments.list_segments(),
        in_flight=console.jobs_in_flight(),
        finished=console.recent_jobs(JobState.DONE, 8),
        failures=console.recent_jobs(JobState.FAILED, 20),
        deleted=_deleted_segment(deleted),
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
    shown = _month(month)
    previous, following = _neighbours(shown)
    return page(
        request,
        "user.html",
        user_id=uid,
        memberships=held,
        timeline=console.user_timeline(uid, shown.year, shown.month),
        timeline_limit=console.TIMELINE_LIMIT,
        month=f"{shown:%Y-%m}",
        month_name=shown.strftime("%B %Y"),
        year=shown.year,
        month_number=shown.month,
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


@get_and_head("/segments/{name:str}/delete", sync_to_thread=True, opt={CONSOLE_SCOPE: Scope.ADMIN})
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


@get_and_head("/audit", sync_to_thread=True, opt={CONSOLE_SCOPE: Scope.ADMIN})
def audit_page(
    request: Request,
    after: params.After = "0",
    actor: params.OptionalText = None,
    action: params.OptionalText = None,
) -> Template:
    """The audit trail, AUDIT_PAGE entries at a time, filtered by actor and action."""
    start = params.after(after)
    found = audit.entries(start, AUDIT_PAGE, actor or None, action_filter(action))
    return page(
        request,
        "audit.html",
        entries=found,
        actions=audit.ACTIONS,
        actor=actor or "",
        action=action or "",
        next_after=found[-1].id if len(found) == AUDIT_PAGE else None,
        title="Audit",
    )


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
    audit_page,
    unknown_page,
]
