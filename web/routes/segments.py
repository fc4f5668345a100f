"""/segments: create, delete, change the percentage, list, read, page members."""

from __future__ import annotations

from decimal import Decimal

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody

from models import segments
from web.routes import params
from web.schemas import (
    Segment,
    SegmentCreate,
    SegmentList,
    SegmentMembers,
    SegmentPercent,
    SegmentRef,
)
from workers.actors import enqueue_job

MAX_PAGE = 10_000


def _segment(view: dict, job_id: int | None = None) -> Segment:
    pct: Decimal = view["auto_percent"]
    return Segment(
        segment=view["segment"],
        auto_percent=int(pct) if pct == pct.to_integral_value() else float(pct),
        created_at=view["created_at"],
        members=view.get("members"),
        job_id=job_id,
    )


def _started(view: dict, job_id: int | None) -> Segment:
    # The job row is committed by now; a failed send leaves it for the re-enqueue pass.
    if job_id is not None:
        enqueue_job(job_id)
    return _segment(view, job_id)


class SegmentController(Controller):
    path = "/segments"
    tags = ["segments"]

    @post("/", status_code=201, sync_to_thread=True, summary="Create a segment")
    def create(self, data: JSONBody[SegmentCreate]) -> Segment:
        """With auto_percent > 0 the response carries the id of the assignment job."""
        return _started(*segments.create_segment(data.segment, data.percent))

    @delete("/", status_code=200, sync_to_thread=True, summary="Delete a segment")
    def remove(self, data: JSONBody[SegmentRef]) -> Segment:
        """The segment vanishes from every read at once; a job removes its memberships."""
        return _started(*segments.delete_segment(data.segment))

    @patch("/", sync_to_thread=True, summary="Change a segment's auto percentage")
    def change_percent(self, data: JSONBody[SegmentPercent]) -> Segment:
        return _started(*segments.change_percent(data.segment, data.percent))

    @get("/", sync_to_thread=True, summary="Live segments with member counts")
    def list(self) -> SegmentList:
        return SegmentList(segments=[_segment(v) for v in segments.list_segments()])

    @get("/{name:str}", sync_to_thread=True, summary="One segment")
    def read(self, name: FromPath[str]) -> Segment:
        return _segment(segments.get_segment(params.segment_name(name)))

    @get("/{name:str}/users", sync_to_thread=True, summary="A page of a segment's members")
    def members(
        self,
        name: FromPath[str],
        after: FromQuery[str | None] = None,
        limit: FromQuery[str | None] = None,
    ) -> SegmentMembers:
        """Keyset pagination: pass the previous page's next_after as after."""
        size = params.bounded_int("limit", limit, 1, MAX_PAGE, default=1000)
        start = params.bounded_int("after", after, 0, params.MAX_USER_ID, default=0)
        ids = segments.segment_members(params.segment_name(name), start, size)
        return SegmentMembers(
            segment=name, users=ids, next_after=ids[-1] if len(ids) == size else None
        )
