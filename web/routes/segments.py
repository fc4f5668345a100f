"""/segments: create, delete, change the percentage, list, read, page members."""

from __future__ import annotations

from litestar import Controller, Request, Response, delete, patch, post
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody
from litestar.response import Stream

from models import segments
from models.errors import Invalid
from models.imports import Action, ImportOptions, Mode
from models.segments import SegmentView
from models.uploads import IdempotencyMismatch, UploadsBusy
from web import uploads
from web.auth import ADMIN, READ, SCOPE, WRITE
from web.downloads import csv_download
from web.errors import error_response
from web.methods import get_and_head, options_handler
from web.routes import params
from web.schemas import (
    ERRORS,
    Error,
    ImportAccepted,
    Segment,
    SegmentCreate,
    SegmentList,
    SegmentMembers,
    SegmentPercent,
    SegmentRef,
)

IMPORT_PARAMETERS = {"action", "active_time", "mode", "create_users", "move"}


def uploads_busy() -> Response:
    message = "too many uploads at once: retry later"
    return error_response(503, message, headers={"Retry-After": str(uploads.RETRY_AFTER)})


def import_options(action: str, active_time: str | None, mode: str, create: str, move: str):
    options = ImportOptions(
        action=Action(params.choice("action", action, ("add", "remove"))),
        active_time=None
        if active_time is None
        else params.integer("active_time", active_time, 1, 10 * 365 * 86400),
        mode=Mode(params.choice("mode", mode, ("merge", "replace"))),
        create_users=params.choice("create_users", create, ("true", "false")) == "true",
        move=params.choice("move", move, ("true", "false")) == "true",
    )
    if options.action is Action.REMOVE and options.active_time is not None:
        raise Invalid("active_time applies to action=add only")
    if options.action is Action.REMOVE and options.mode is Mode.REPLACE:
        raise Invalid("mode=replace applies to action=add only")
    return options


def _segment(view: SegmentView) -> Segment:
    pct = view.auto_percent
    return Segment(
        segment=view.name,
        auto_percent=int(pct) if pct == pct.to_integral_value() else float(pct),
        created_at=view.created_at,
        members=view.members,
        job_id=view.job_id,
        layer=view.layer,
    )


def members_export(name: str) -> Stream:
    return csv_download(segments.members_csv(name), f"segment-{name}-users.csv")


class SegmentController(Controller):
    path = "/segments"
    tags = ["segments"]
    options = options_handler()
    # GET (a page of members) and POST (an import) share this path.
    members_options = options_handler("/{name:str}/users")

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Create a segment",
        opt={SCOPE: ADMIN},
    )
    def create(self, data: JSONBody[SegmentCreate]) -> Segment:
        """With auto_percent > 0 the response carries the id of the assignment job. With
        a layer it takes auto_percent * 100 of the layer's free buckets (409 if too few)."""
        return _segment(segments.create_segment(data.segment, data.percent, data.layer))

    @delete(
        "/",
        status_code=200,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Delete a segment",
        opt={SCOPE: ADMIN},
    )
    def remove(self, data: JSONBody[SegmentRef]) -> Segment:
        """The segment vanishes from every read at once; a job removes its memberships."""
        return _segment(segments.delete_segment(data.segment))

    @patch(
        "/",
        sync_to_thread=True,
        responses=ERRORS,
        summary="Change a segment's auto percentage",
        opt={SCOPE: ADMIN},
    )
    def change_percent(self, data: JSONBody[SegmentPercent]) -> Segment:
        return _segment(segments.change_percent(data.segment, data.percent))

    @get_and_head(
        "/",
        sync_to_thread=True,
        responses=ERRORS,
        summary="Live segments with member counts",
        opt={SCOPE: READ},
    )
    def list(self) -> SegmentList:
        return SegmentList(segments=[_segment(v) for v in segments.list_segments()])

    @get_and_head(
        "/{name:str}",
        sync_to_thread=True,
        responses=ERRORS,
        summary="One segment",
        opt={SCOPE: READ},
    )
    def read(self, name: params.NamePath) -> Segment:
        return _segment(segments.get_segment(params.segment_name(name)))

    @post(
        "/{name:str}/users",
        status_code=202,
        request_max_body_size=uploads.IMPORT_MAX_BODY,
        responses={
            **ERRORS,
            413: ResponseSpec(Error, description="Body over 64 MiB"),
            415: ResponseSpec(Error, description="Not text/csv, text/plain or JSON"),
            422: ResponseSpec(Error, description="Idempotency-Key reused for another request"),
            503: ResponseSpec(Error, description="Every upload slot is taken: retry later"),
        },
        summary="Import a list of user ids into the segment (a job)",
        opt={SCOPE: WRITE},
    )
    async def import_users(
        self,
        request: Request,
        name: params.NamePath,
        action: params.Action = "add",
        active_time: params.ActiveTime = None,
        mode: params.Mode = "merge",
        create_users: params.CreateUsers = "false",
        move: params.Move = "false",
    ) -> Response[ImportAccepted]:
        """One id per line (text/csv, text/plain) or JSON {"ids": [...]}, up to 64 MiB,
        streamed into the database. 202 with the job; a repeated Idempotency-Key with the
        same segment, options and body answers 200 with the original job and its count,
        and starts nothing."""
        unknown = sorted(set(request.query_params) - IMPORT_PARAMETERS)
        if unknown:
            raise Invalid(f"unknown query parameters: {', '.join(unknown)}", parameters=unknown)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            return error_response(
                415, f"Content-Encoding {encoding!r} is not accepted: send the list uncompressed"
            )
        options = import_options(action, active_time, mode, create_users, move)
        key = uploads.idempotency_key(request.headers.get("idempotency-key"))
        try:
            started = await uploads.receive(request, params.segment_name(name), options, key)
        except uploads.UnsupportedMedia as exc:
            return error_response(
                415,
                f"unsupported content type {exc.media!r}: send "
                "text/csv, text/plain or application/json",
            )
        except IdempotencyMismatch:
            return error_response(
                422, "this Idempotency-Key was used for another request (segment, options or body)"
            )
        except UploadsBusy:
            return uploads_busy()
        body = ImportAccepted(job_id=started.job_id, segment=name, ids=started.ids)
        return Response(body, status_code=200 if started.replayed else 202)

    @get_and_head(
        "/{name:str}/users.csv",
        sync_to_thread=True,
        responses=ERRORS,
        media_type="text/csv",
        summary="A segment's live members as CSV (user_id;source;added_at;expires_at)",
        opt={SCOPE: READ},
    )
    def export(self, name: params.NamePath) -> Stream:
        """Streamed by user id in batches: flat memory whatever the segment's size."""
        return members_export(params.segment_name(name))

    @get_and_head(
        "/{name:str}/users",
        sync_to_thread=True,
        responses=ERRORS,
        summary="A page of a segment's members",
        opt={SCOPE: READ},
    )
    def members(
        self,
        name: params.NamePath,
        after: params.After = "0",
        limit: params.Limit = "1000",
    ) -> SegmentMembers:
        """Keyset pagination: pass the previous page's next_after as after."""
        size = params.limit(limit)
        ids = segments.segment_members(params.segment_name(name), params.after(after), size)
        return SegmentMembers(
            segment=name, users=ids, next_after=ids[-1] if len(ids) == size else None
        )
