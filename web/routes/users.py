"""/users: create a user, change its segments, read them."""

from __future__ import annotations

from litestar import Controller, delete, get, patch, post
from litestar.params import JSONBody

from models import memberships, reads, users
from models.errors import NotFound
from web.routes import params
from web.schemas import (
    ERRORS,
    SegmentChanges,
    SegmentChangesResult,
    UserCreate,
    UserLookup,
    UserLookupResult,
    UserSegments,
    UserSegmentsAdd,
    UserSegmentsRemove,
)


class UserController(Controller):
    path = "/users"
    tags = ["users"]

    @post("/", status_code=201, sync_to_thread=True, responses=ERRORS, summary="Create a user")
    def create(self, data: JSONBody[UserCreate]) -> UserSegments:
        """201 with the auto segments the new user fell into; 409 if the id exists."""
        return UserSegments(id=data.id, segments=users.create_user(data.id))

    @patch("/", sync_to_thread=True, responses=ERRORS, summary="Add segments to a user")
    def add_segments(self, data: JSONBody[UserSegmentsAdd]) -> UserSegments:
        """All or nothing; re-adding a held segment only resets its expiry."""
        added, _ = memberships.change_memberships(
            data.id, add=data.segments, active_time=data.active_time
        )
        return UserSegments(id=data.id, segments=added)

    @delete(
        "/",
        status_code=200,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Remove segments from a user",
    )
    def remove_segments(self, data: JSONBody[UserSegmentsRemove]) -> UserSegments:
        """Returns the segments actually removed."""
        _, removed = memberships.change_memberships(data.id, remove=data.segments)
        return UserSegments(id=data.id, segments=removed)

    # In the event loop, not on a thread: one prepared primary-key read is shorter than
    # the thread hop (README Decisions: a slow database stalls this process's loop).
    @get("/{user_id:str}", sync_to_thread=False, responses=ERRORS, summary="A user's live segments")
    def read(self, user_id: params.UserIdPath) -> UserSegments:
        uid = params.user_id(user_id)
        names = reads.user_segments_in_loop(uid)
        if names is None:
            raise NotFound.user(uid)
        return UserSegments(id=uid, segments=names)

    @post(
        "/lookup",
        status_code=200,
        sync_to_thread=True,
        responses=ERRORS,
        summary="The live segments of up to 1000 users",
    )
    def lookup(self, data: JSONBody[UserLookup]) -> UserLookupResult:
        """Known users in ascending id order; unknown ids listed apart. One round trip."""
        wanted = sorted(set(data.ids))
        found = reads.users_segments(wanted)
        known = {u.id for u in found}
        return UserLookupResult(
            users=[UserSegments(id=u.id, segments=u.segments) for u in found],
            unknown=[uid for uid in wanted if uid not in known],
        )

    @post(
        "/{user_id:str}/segments",
        status_code=200,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Add and remove segments atomically",
    )
    def change(
        self, user_id: params.UserIdPath, data: JSONBody[SegmentChanges]
    ) -> SegmentChangesResult:
        uid = params.user_id(user_id)
        added, removed = memberships.change_memberships(
            uid, add=data.add, remove=data.remove, active_time=data.active_time
        )
        return SegmentChangesResult(id=uid, added=added, removed=removed)
