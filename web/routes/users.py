"""/users: create a user, change its segments, read them."""

from __future__ import annotations

import anyio.to_thread
from litestar import Controller, delete, patch, post
from litestar.params import JSONBody

from models import memberships, reads, users
from models.errors import NotFound
from web.auth import READ, SCOPE, WRITE
from web.methods import get_and_head, options_handler
from web.routes import params
from web.schemas import (
    ERRORS,
    MembershipDetail,
    SegmentChanges,
    SegmentChangesResult,
    UserCreate,
    UserLookup,
    UserLookupResult,
    UserMemberships,
    UserSegments,
    UserSegmentsAdd,
    UserSegmentsRemove,
)


class UserController(Controller):
    path = "/users"
    tags = ["users"]
    options = options_handler()

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Create a user",
        opt={SCOPE: WRITE},
    )
    def create(self, data: JSONBody[UserCreate]) -> UserSegments:
        """201 with the auto segments the new user fell into; 409 if the id exists."""
        return UserSegments(id=data.id, segments=users.create_user(data.id))

    @patch(
        "/",
        sync_to_thread=True,
        responses=ERRORS,
        summary="Add segments to a user",
        opt={SCOPE: WRITE},
    )
    def add_segments(self, data: JSONBody[UserSegmentsAdd]) -> UserSegments:
        """All or nothing; re-adding a held segment only resets its expiry."""
        change = memberships.change_memberships(
            data.id, add=data.segments, active_time=data.active_time, move=data.move
        )
        return UserSegments(id=data.id, segments=change.added)

    @delete(
        "/",
        status_code=200,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Remove segments from a user",
        opt={SCOPE: WRITE},
    )
    def remove_segments(self, data: JSONBody[UserSegmentsRemove]) -> UserSegments:
        """Returns the segments actually removed."""
        change = memberships.change_memberships(data.id, remove=data.segments)
        return UserSegments(id=data.id, segments=change.removed)

    # In the event loop, not on a thread: one prepared primary-key read is shorter than
    # the thread hop (README Decisions: a slow database stalls this process's loop).
    # While the database is out of reach the read goes to a thread (reads.OffLoop).
    @get_and_head(
        "/{user_id:str}", responses=ERRORS, summary="A user's live segments", opt={SCOPE: READ}
    )
    async def read(self, user_id: params.UserIdPath) -> UserSegments:
        uid = params.user_id(user_id)
        try:
            names = reads.user_segments_in_loop(uid)
        except reads.OffLoop:
            names = await anyio.to_thread.run_sync(reads.user_segments_off_loop, uid)
        if names is None:
            raise NotFound.user(uid)
        return UserSegments(id=uid, segments=names)

    @get_and_head(
        "/{user_id:str}/memberships",
        sync_to_thread=True,
        responses=ERRORS,
        summary="A user's live memberships with source, added and expiry times",
        opt={SCOPE: READ},
    )
    def memberships(self, user_id: params.UserIdPath) -> UserMemberships:
        uid = params.user_id(user_id)
        found = memberships.user_memberships(uid)
        if found is None:
            raise NotFound.user(uid)
        return UserMemberships(id=uid, memberships=[MembershipDetail(**vars(m)) for m in found])

    @post(
        "/lookup",
        status_code=200,
        sync_to_thread=True,
        responses=ERRORS,
        summary="The live segments of up to 1000 users",
        opt={SCOPE: READ},
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
        opt={SCOPE: WRITE},
    )
    def change(
        self, user_id: params.UserIdPath, data: JSONBody[SegmentChanges]
    ) -> SegmentChangesResult:
        uid = params.user_id(user_id)
        change = memberships.change_memberships(
            uid, add=data.add, remove=data.remove, active_time=data.active_time, move=data.move
        )
        return SegmentChangesResult(id=uid, added=change.added, removed=change.removed)
