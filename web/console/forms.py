"""The console's forms (POST): each calls the same domain function as the JSON API, then
answers 303 to the page that shows the result (so a reload never posts twice)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal
from urllib.parse import quote

from anyio import to_thread
from litestar import Request, Response, post
from litestar.datastructures import UploadFile
from litestar.response import Redirect, Template

from models import segments
from models.errors import Invalid
from models.tables import Scope
from models.uploads import IdempotencyMismatch, UploadsBusy
from web import uploads
from web.console.pages import error_page, page
from web.console.session import CONSOLE_SCOPE, OPEN
from web.methods import get_and_head
from web.routes import params
from web.routes.segments import import_options

_PERCENT = re.compile(r"(100|[0-9]{1,2})(\.[0-9]{1,2})?")
CHUNK = 64 * 1024


def _field(form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _percent(raw: str) -> Decimal:
    text = raw.strip() or "0"
    if not _PERCENT.fullmatch(text) or Decimal(text) > 100:
        raise Invalid(
            "auto percent must be a number from 0 to 100 with at most two decimals "
            f"(got {raw[:20]!r})"
        )
    return Decimal(text)


@post("/segments", opt={CONSOLE_SCOPE: Scope.ADMIN})
async def create_segment(request: Request) -> Redirect:
    form = await request.form()
    name = params.segment_name(_field(form, "segment"))
    percent = _percent(_field(form, "auto_percent"))
    view = await to_thread.run_sync(segments.create_segment, name, percent)
    return Redirect(f"/console/segments/{quote(view.name)}#jobs", status_code=303)


@post("/segments/{name:str}/percent", opt={CONSOLE_SCOPE: Scope.ADMIN})
async def change_percent(request: Request, name: params.NamePath) -> Redirect:
    form = await request.form()
    percent = _percent(_field(form, "auto_percent"))
    view = await to_thread.run_sync(segments.change_percent, params.segment_name(name), percent)
    return Redirect(f"/console/segments/{quote(view.name)}#jobs", status_code=303)


@post("/segments/{name:str}/delete", opt={CONSOLE_SCOPE: Scope.ADMIN})
async def delete_segment(request: Request, name: params.NamePath) -> Redirect:
    view = await to_thread.run_sync(segments.delete_segment, params.segment_name(name))
    # The page names the segment from the job's row: nothing in the link is echoed.
    return Redirect(f"/console?deleted={view.job_id}", status_code=303)


async def _file_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(CHUNK):
        yield chunk


async def _text_chunks(text: str) -> AsyncIterator[bytes]:
    """The pasted ids in the chunks a request body comes in: read like an upload, the
    list is never copied or split whole."""
    for at in range(0, len(text), CHUNK):
        yield text[at : at + CHUNK].encode()


def _ids_source(form) -> tuple[AsyncIterator[bytes], str]:
    """The uploaded file if one was chosen, else the pasted ids; and the list's format."""
    upload = form.get("file")  # Litestar spools a file part to disk past 1 MiB
    if isinstance(upload, UploadFile) and upload.filename:
        json_file = upload.content_type == "application/json" or upload.filename.endswith(".json")
        return _file_chunks(upload), "application/json" if json_file else "text/plain"
    text = form.get("ids")
    if not isinstance(text, str) or not text.strip():
        raise Invalid("choose a file of user ids or paste some ids, one per line")
    return _text_chunks(text), "text/plain"


@post(
    "/segments/{name:str}/import",
    request_max_body_size=uploads.IMPORT_MAX_BODY,
    opt={CONSOLE_SCOPE: Scope.WRITE},
)
async def import_users(request: Request, name: params.NamePath) -> Response:
    """The import form: a file (multipart) or pasted ids, streamed into the same staged
    import as POST /segments/{name}/users, with the same 64 MiB limit on the request."""
    form = await request.form()
    name = params.segment_name(name)
    options = import_options(
        _field(form, "action") or "add",
        _field(form, "active_time") or None,
        _field(form, "mode") or "merge",
        "true" if _field(form, "create_users") else "false",
        "true" if _field(form, "move") else "false",
    )
    # One key per rendered form: a double click or a resubmitted form starts one job.
    key = uploads.idempotency_key(_field(form, "idempotency_key") or None)
    chunks, media = _ids_source(form)
    try:
        await uploads.receive_chunks(chunks, media, name, options, key)
    except IdempotencyMismatch:
        message = "This form was already sent with another list. Reload the page and try again."
        return error_page(request, 422, message)
    except UploadsBusy:
        busy = error_page(request, 503, "Too many uploads at once. Try again in a few seconds.")
        busy.headers["Retry-After"] = str(uploads.RETRY_AFTER)
        return busy
    return Redirect(f"/console/segments/{quote(name)}#jobs", status_code=303)


def _safe_next(raw: str) -> str:
    # Only a path of the console: never an open redirect to another site.
    return raw if re.fullmatch(r"/console(/[A-Za-z0-9_.\-/%]*)?", raw) else "/console"


@post("/login", opt={OPEN: True})
async def log_in(request: Request) -> Response:
    sessions = request.app.state.console_sessions
    form = await request.form()
    target = _safe_next(_field(form, "next"))
    if not sessions.required:
        return Redirect(target, status_code=303)
    auth = sessions.auth
    address = request.client.host if request.client else "unknown"
    if auth.throttle.blocked(address):
        message = "Too many failed logins from this address. Wait a minute and try again."
        return login_page(request, target, message, status=429)
    caller = await auth.identify(_field(form, "token"))
    if caller is None:
        auth.refuse(address, "console", "/console/login")
        return login_page(request, target, "That token is not right.", status=401)
    return await sessions.log_in(request, Redirect(target, status_code=303), caller)


@post("/logout", opt={OPEN: True})
async def log_out(request: Request) -> Response:
    sessions = request.app.state.console_sessions
    return await sessions.log_out(request, Redirect("/console/login?out=1", status_code=303))


@post("/logout-everywhere", opt={CONSOLE_SCOPE: Scope.ADMIN})
async def log_out_everywhere(request: Request) -> Response:
    """Every console session ends, on every browser (a lost laptop, a person leaving)."""
    sessions = request.app.state.console_sessions
    done = Redirect("/console/login?out=all", status_code=303)
    return await sessions.log_out_everywhere(request, done)


@get_and_head("/login", opt={OPEN: True}, sync_to_thread=False)
def show_login(request: Request, next: params.Text = "/console", out: params.Text = "") -> Response:
    if not request.app.state.console_sessions.required:
        return Redirect("/console", status_code=303)
    notice = {
        "1": "You are logged out.",
        "all": "Every console session has ended, on every browser. Log in again to go on.",
    }.get(out)
    return login_page(request, _safe_next(next), notice=notice)


def login_page(
    request: Request,
    target: str,
    error: str | None = None,
    status: int = 200,
    notice: str | None = None,
) -> Template:
    return page(
        request, "login.html", status, next=target, error=error, notice=notice, title="Log in"
    )


FORMS = [
    show_login,
    create_segment,
    change_percent,
    delete_segment,
    import_users,
    log_in,
    log_out,
    log_out_everywhere,
]
