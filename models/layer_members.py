"""One membership per user per layer: what every writer does before it adds one.

The database enforces the rule (``memberships_one_per_layer``, migration 009): a second
row in a layer is refused whoever writes it. Rows that no longer count for readers still
hold the slot until removed: an expired one not yet swept, one of a deleted segment not
yet cleaned up, and an auto one in a bucket its segment gave back (shrink job pending).
``clear_slots`` ends those first, each with the event its end deserves, so the new
owner of a released bucket gets its users at once. A live sibling is a conflict: the
caller refuses, skips, or moves (``move_out``, reason ``layer_move``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# The module, not its names: models.memberships imports this one.
from models import memberships
from models.errors import Conflict, Invalid
from models.events import change_with_events
from models.infra.db import db
from models.tables import Operation, Reason


@dataclass(frozen=True)
class Sibling:
    user_id: int
    segment_id: int
    segment: str  # the segment of the layer the user holds
    layer: str


def clear_slots(layer_ids: list[int], users: list[int]) -> None:
    """End the users' memberships in these layers that no longer count (see above)."""
    if not layer_ids or not users:
        return
    args = {"layers": layer_ids, "users": users, "reason": Reason.PERCENT_CHANGE.value}
    memberships.remove_ended(
        """SELECT m.user_id, m.segment_id FROM memberships m JOIN segments s ON s.id = m.segment_id
           WHERE m.layer_id = ANY(%(layers)s) AND m.user_id = ANY(%(users)s)
             AND (m.expires_at <= now() OR s.deleted_at IS NOT NULL)
           ORDER BY m.user_id FOR UPDATE OF m""",
        args,
    )
    # Auto members of a bucket their segment gave back: the shrink job would remove them.
    change_with_events(
        """DELETE FROM memberships m USING doomed d
           WHERE m.user_id = d.user_id AND m.segment_id = d.segment_id
           RETURNING m.user_id, m.segment_id, %(reason)s AS reason,
                     clock_timestamp() AS at, true AS event""",
        args,
        Operation.REMOVE,
        before="""doomed AS (
            SELECT m.user_id, m.segment_id FROM memberships m JOIN layers l ON l.id = m.layer_id
            WHERE m.layer_id = ANY(%(layers)s) AND m.user_id = ANY(%(users)s)
              AND m.source = 'auto'
              -- The owner of the user's bucket, looked up by the primary key: a test of
              -- the segment's own buckets was planned as a scan of all of them per member
              -- (md5 each time), and a layer's jobs slowed as it filled (0.8 s to 27 s).
              AND (SELECT lb.segment_id FROM layer_buckets lb
                   WHERE lb.layer_id = m.layer_id AND lb.bucket = segment_bucket(l.salt, m.user_id))
                  IS DISTINCT FROM m.segment_id
            ORDER BY m.user_id FOR UPDATE OF m), """,
    )


class InLayer(Protocol):
    id: int
    layer_id: int | None
    layer: str | None


def make_room(user_id: int, adding: dict[str, InLayer], move: bool) -> None:
    """Before one user is added to ``adding`` (name -> segment): at most one segment per
    layer (400), and none while the user holds a sibling (409 naming both) unless
    ``move``, which removes the sibling first."""
    by_layer: dict[int, list[str]] = {}
    for name, segment in adding.items():
        if segment.layer_id is not None:
            by_layer.setdefault(segment.layer_id, []).append(name)
    for names in by_layer.values():
        if len(names) > 1:
            layer = adding[names[0]].layer
            raise Invalid(
                f"segments {', '.join(names)} are in one layer ({layer}): a user holds one",
                layer=layer,
                segments=names,
            )
    clear_slots(list(by_layer), [user_id])
    found = siblings(list(by_layer), [user_id], [s.id for s in adding.values()])
    if found and not move:
        held = found[0]
        wanted = next(n for n, s in adding.items() if s.layer == held.layer)
        raise Conflict(
            f"user {user_id} holds {held.segment} of layer {held.layer}, so cannot also hold "
            f'{wanted}; send "move": true to move them',
            id=user_id,
            layer=held.layer,
            segment=wanted,
            held=held.segment,
            segments=[wanted, held.segment],
        )
    move_out(found)


@dataclass(frozen=True)
class Room:
    users: list[int]  # those the segment may now take
    conflicted: list[int]  # skipped: they hold a sibling
    moved: int


def make_room_for(segment_id: int, users: list[int], move: bool) -> Room | None:
    """Before many users (row-locked by the caller) join one segment: None when it is in
    no layer; else who may join, who holds a sibling (skipped), and how many moved."""
    layer_id = db.execute_sql(
        "SELECT layer_id FROM segments WHERE id = %s", (segment_id,)
    ).fetchone()[0]
    if layer_id is None:
        return None
    clear_slots([layer_id], users)
    found = siblings([layer_id], users, [segment_id])
    if move:
        move_out(found)
        return Room(users, [], len(found))
    held = {s.user_id for s in found}
    return Room([u for u in users if u not in held], sorted(held), 0)


def siblings(layer_ids: list[int], users: list[int], keep: list[int]) -> list[Sibling]:
    """The users' live memberships in these layers, other than of segments ``keep``."""
    if not layer_ids or not users:
        return []
    rows = db.execute_sql(
        """SELECT m.user_id, m.segment_id, s.name, l.name
           FROM memberships m JOIN segments s ON s.id = m.segment_id
           JOIN layers l ON l.id = m.layer_id
           WHERE m.layer_id = ANY(%s) AND m.user_id = ANY(%s) AND m.segment_id <> ALL(%s)
           ORDER BY m.user_id""",
        (layer_ids, users, keep),
    ).fetchall()
    return [Sibling(*row) for row in rows]


def move_out(found: list[Sibling]) -> None:
    """Remove these memberships with reason layer_move; like a removal by hand, the user
    then stays out of that segment's auto assignment."""
    if not found:
        return
    pairs = {"users": [s.user_id for s in found], "segments": [s.segment_id for s in found]}
    change_with_events(
        """DELETE FROM memberships m USING unnest(%(users)s::bigint[], %(segments)s::int[])
               AS p(user_id, segment_id)
           WHERE m.user_id = p.user_id AND m.segment_id = p.segment_id
           RETURNING m.user_id, m.segment_id, %(reason)s AS reason,
                     clock_timestamp() AS at, true AS event""",
        {**pairs, "reason": Reason.LAYER_MOVE.value},
        Operation.REMOVE,
    )
    db.execute_sql(
        """INSERT INTO segment_opt_outs (segment_id, user_id)
           SELECT s, u FROM unnest(%(segments)s::int[], %(users)s::bigint[]) AS p(s, u)
           ORDER BY s, u ON CONFLICT DO NOTHING""",
        pairs,
    )
