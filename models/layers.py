"""Layers: segments that never share a user, each owning some of the layer's buckets.

A layer has 10,000 buckets and a salt; a user's bucket in it is ``buckets.bucket(salt,
id)``. A segment of the layer owns ``auto_percent * 100`` buckets, taken never-used ones
first (ascending), then released ones, longest released first (ties ascending); lowering
gives back the most recently taken. Its auto members are exactly the users whose bucket
it owns. Taking and giving back run with the layer row locked, so ranks never collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from peewee import fn

from models import audit
from models.buckets import BUCKETS, bucket, new_salt
from models.errors import Conflict, NotFound
from models.infra.db import db, fetchall, fetchone, reader, unit_of_work
from models.infra.replica import replica_read
from models.tables import Layer


@dataclass(frozen=True)
class LayerSegment:
    segment: str
    auto_percent: float
    ranges: list[list[int]]  # owned buckets as half-open [start, end) ranges, ascending


@dataclass(frozen=True)
class LayerView:
    name: str
    salt: str
    created_at: datetime
    allocated: int
    free: int
    segments: list[LayerSegment] = field(default_factory=list)
    never_used: list[list[int]] = field(default_factory=list)  # free ranges never taken
    released: list[list[int]] = field(default_factory=list)  # free ranges given back


@dataclass(frozen=True)
class LayerUser:
    """Why a user is or is not in a segment of the layer."""

    layer: str
    id: int
    bucket: int
    segment: str | None  # the layer's segment the user holds
    source: str | None
    bucket_owner: str | None  # the segment that owns the user's bucket (auto members)


@dataclass(frozen=True)
class Taken:
    """The ranks of one take: the segment's buckets with a rank in [low, high]."""

    low: int
    high: int


def _live(name: str):
    return Layer.select().where(Layer.name == name, Layer.deleted_at.is_null())


@unit_of_work
def create_layer(name: str) -> LayerView:
    created = list(
        Layer.insert(name=name, salt=new_salt())
        .on_conflict(
            conflict_target=[Layer.name],
            conflict_where=Layer.deleted_at.is_null(),
            action="IGNORE",
        )
        .returning(Layer)
        .execute()
    )
    if not created:
        raise Conflict(f"layer {name} already exists", layer=name)
    (layer,) = created
    db.execute_sql(
        "INSERT INTO layer_buckets (layer_id, bucket) SELECT %s, generate_series(0, %s)",
        (layer.id, BUCKETS - 1),
    )
    audit.record("layer.create", name, {"after": {"salt_set": True, "buckets": BUCKETS}})
    return LayerView(layer.name, layer.salt, layer.created_at, 0, BUCKETS)


@unit_of_work
def delete_layer(name: str) -> None:
    layer = _live(name).for_update().first()
    if layer is None:
        raise NotFound(f"layer {name} not found", layer=name)
    held = [
        n
        for (n,) in db.execute_sql(
            "SELECT name FROM segments WHERE layer_id = %s AND deleted_at IS NULL ORDER BY name",
            (layer.id,),
        ).fetchall()
    ]
    if held:
        raise Conflict(
            f"layer {name} still holds live segments: {', '.join(held)}; delete them first",
            layer=name,
            segments=held,
        )
    Layer.update(deleted_at=fn.now()).where(Layer.id == layer.id).execute()
    audit.record("layer.delete", name, {"before": {"created_at": layer.created_at.isoformat()}})


def lock_layer(name: str | None = None, layer_id: int | None = None) -> Layer:
    """The live layer's row (by name, or by id), locked for a take or a release."""
    query = Layer.select().where(Layer.id == layer_id) if layer_id else _live(name)
    layer = query.for_update().first()
    if layer is None:
        raise NotFound(f"layer {name} not found", layer=name)
    return layer


def _free(layer_id: int) -> int:
    return db.execute_sql(
        "SELECT count(*) FROM layer_buckets WHERE layer_id = %s AND segment_id IS NULL",
        (layer_id,),
    ).fetchone()[0]


def take(layer: Layer, segment_id: int, segment: str, count: int) -> Taken | None:
    """Give the segment ``count`` more buckets, in the spec's order (the layer row is
    locked by the caller). 409 naming the free percent if there are too few."""
    if count <= 0:
        return None
    free = _free(layer.id)
    if free < count:
        raise Conflict(
            f"layer {layer.name} has {free / 100:g}% free ({free} buckets); "
            f"{segment} needs {count / 100:g}% more",
            layer=layer.name,
            free_percent=free / 100,
            needed_percent=count / 100,
        )
    low = layer.last_rank + 1
    db.execute_sql(
        """WITH chosen AS (
               SELECT bucket, row_number() OVER (ORDER BY released_rank NULLS FIRST, bucket) AS n
               FROM layer_buckets WHERE layer_id = %(layer)s AND segment_id IS NULL
               ORDER BY released_rank NULLS FIRST, bucket LIMIT %(count)s)
           UPDATE layer_buckets lb
           SET segment_id = %(segment)s, taken_rank = %(low)s + c.n - 1, released_rank = NULL
           FROM chosen c WHERE lb.layer_id = %(layer)s AND lb.bucket = c.bucket""",
        {"layer": layer.id, "count": count, "segment": segment_id, "low": low},
    )
    _advance(layer, low + count - 1)
    return Taken(low, low + count - 1)


def give_back(layer: Layer, segment_id: int, count: int | None) -> None:
    """Release the segment's ``count`` most recently taken buckets (all when None); they
    share one release rank, so they are taken again together, ascending. A taken bucket
    has no release rank: free with none means never used."""
    rank = layer.last_rank + 1
    db.execute_sql(
        """UPDATE layer_buckets SET segment_id = NULL, taken_rank = NULL, released_rank = %(rank)s
           WHERE layer_id = %(layer)s AND bucket IN (
               SELECT bucket FROM layer_buckets WHERE segment_id = %(segment)s
               ORDER BY taken_rank DESC LIMIT %(count)s)""",
        {"layer": layer.id, "segment": segment_id, "count": count, "rank": rank},
    )
    _advance(layer, rank)


def _advance(layer: Layer, rank: int) -> None:
    Layer.update(last_rank=rank).where(Layer.id == layer.id).execute()
    layer.last_rank = rank


# Runs of consecutive buckets with one owner (or free kind), as half-open ranges.
_RANGES = """
    SELECT owner, kind, min(bucket), max(bucket) + 1 FROM (
        SELECT bucket, s.name AS owner,
               CASE WHEN lb.segment_id IS NOT NULL THEN 'taken'
                    WHEN lb.released_rank IS NULL THEN 'never_used' ELSE 'released' END AS kind,
               bucket - row_number() OVER (
                   PARTITION BY lb.segment_id, lb.released_rank IS NULL ORDER BY bucket) AS run
        FROM layer_buckets lb LEFT JOIN segments s ON s.id = lb.segment_id
        WHERE lb.layer_id = %s) b
    GROUP BY owner, kind, run ORDER BY 3"""


def _view(layer: Layer) -> LayerView:
    ranges: dict[str, list[list[int]]] = {}
    free: dict[str, list[list[int]]] = {"never_used": [], "released": []}
    for owner, kind, start, end in fetchall(_RANGES, (layer.id,)):
        (ranges.setdefault(owner, []) if owner else free[kind]).append([start, end])
    percents = dict(
        fetchall(
            "SELECT name, auto_percent FROM segments WHERE layer_id = %s AND deleted_at IS NULL",
            (layer.id,),
        )
    )
    segments = [
        LayerSegment(name, float(percents.get(name, 0)), ranges.get(name, []))
        for name in sorted(set(ranges) | set(percents))
    ]
    allocated = sum(end - start for r in ranges.values() for start, end in r)
    return LayerView(
        layer.name,
        layer.salt,
        layer.created_at,
        allocated,
        BUCKETS - allocated,
        segments,
        free["never_used"],
        free["released"],
    )


@replica_read
def get_layer(name: str) -> LayerView:
    layer = _live(name).first(reader())
    if layer is None:
        raise NotFound(f"layer {name} not found", layer=name)
    return _view(layer)


@replica_read
def list_layers() -> list[LayerView]:
    return [_view(layer) for layer in _live_all()]


def _live_all():
    return Layer.select().where(Layer.deleted_at.is_null()).order_by(Layer.name).bind(reader())


@replica_read
def layer_user(name: str, user_id: int) -> LayerUser:
    layer = _live(name).first(reader())
    if layer is None:
        raise NotFound(f"layer {name} not found", layer=name)
    if fetchone("SELECT 1 FROM users WHERE id = %s", (user_id,)) is None:
        raise NotFound.user(user_id)
    b = bucket(layer.salt, user_id)
    held = fetchone(
        """SELECT s.name, m.source FROM memberships m JOIN segments s ON s.id = m.segment_id
           WHERE m.user_id = %s AND m.layer_id = %s AND s.deleted_at IS NULL
             AND (m.expires_at IS NULL OR m.expires_at > now())""",
        (user_id, layer.id),
    )
    owner = fetchone(
        """SELECT s.name FROM layer_buckets lb JOIN segments s ON s.id = lb.segment_id
           WHERE lb.layer_id = %s AND lb.bucket = %s""",
        (layer.id, b),
    )
    return LayerUser(layer.name, user_id, b, held and held[0], held and held[1], owner and owner[0])
