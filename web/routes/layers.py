"""/layers: create, list, read and delete layers; why a user is or is not in one."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, delete, post
from litestar.params import JSONBody

from models import layers
from models.layers import LayerView
from web.auth import ADMIN, READ, SCOPE
from web.methods import get_and_head, options_handler
from web.routes import params
from web.schemas import ERRORS, SegmentName, Strict

Ranges = list[list[int]]  # half-open [start, end) bucket ranges, ascending


class LayerCreate(Strict):
    layer: SegmentName


class LayerSegment(msgspec.Struct):
    segment: str
    auto_percent: float
    ranges: Ranges


class Layer(msgspec.Struct):
    layer: str
    salt: str
    created_at: datetime
    allocated: int  # buckets owned by segments, of 10,000
    free: int
    segments: list[LayerSegment]
    never_used: Ranges  # free buckets no segment took yet (taken first, ascending)
    released: Ranges  # free buckets given back (taken after, longest released first)


class LayerList(msgspec.Struct):
    layers: list[Layer]


class LayerDeleted(msgspec.Struct):
    layer: str
    deleted: bool


class LayerUser(msgspec.Struct):
    layer: str
    id: int
    bucket: int
    segment: str | None  # the layer's segment the user holds, if any
    source: str | None  # how they hold it: auto, manual or import
    bucket_owner: str | None  # the segment that owns the bucket: its auto members


def _layer(view: LayerView) -> Layer:
    return Layer(
        layer=view.name,
        salt=view.salt,
        created_at=view.created_at,
        allocated=view.allocated,
        free=view.free,
        segments=[
            LayerSegment(s.segment, _percent(s.auto_percent), s.ranges) for s in view.segments
        ],
        never_used=view.never_used,
        released=view.released,
    )


def _percent(value: float) -> float:
    return int(value) if value == int(value) else value


class LayerController(Controller):
    path = "/layers"
    tags = ["layers"]
    options = options_handler()
    item_options = options_handler("/{name:str}")  # GET and DELETE share it

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Create a layer",
        opt={SCOPE: ADMIN},
    )
    def create(self, data: JSONBody[LayerCreate]) -> Layer:
        """10,000 buckets and a random salt; its segments never share a user."""
        return _layer(layers.create_layer(data.layer))

    @get_and_head(
        "/", sync_to_thread=True, responses=ERRORS, summary="Live layers", opt={SCOPE: READ}
    )
    def list(self) -> LayerList:
        return LayerList(layers=[_layer(v) for v in layers.list_layers()])

    @get_and_head(
        "/{name:str}",
        sync_to_thread=True,
        responses=ERRORS,
        summary="A layer with each segment's bucket ranges",
        opt={SCOPE: READ},
    )
    def read(self, name: params.LayerPath) -> Layer:
        return _layer(layers.get_layer(params.layer_name(name)))

    @delete(
        "/{name:str}",
        status_code=200,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Delete a layer (409 while it holds a live segment)",
        opt={SCOPE: ADMIN},
    )
    def remove(self, name: params.LayerPath) -> LayerDeleted:
        layers.delete_layer(params.layer_name(name))
        return LayerDeleted(layer=name, deleted=True)

    @get_and_head(
        "/{name:str}/users/{user_id:str}",
        sync_to_thread=True,
        responses=ERRORS,
        summary="A user's bucket in the layer and the segment it holds there",
        opt={SCOPE: READ},
    )
    def user(self, name: params.LayerPath, user_id: params.UserIdPath) -> LayerUser:
        found = layers.layer_user(params.layer_name(name), params.user_id(user_id))
        return LayerUser(**vars(found))
