"""The console's layers: each layer's 10,000 buckets as a bar (owned, never used,
released), a form to create one, and a segment's schedule form."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from urllib.parse import quote

from anyio import to_thread
from litestar import Request, post
from litestar.response import Redirect, Template

from models import layers, schedules
from models.errors import Invalid
from models.tables import Scope
from web.console.format import colours, spans
from web.console.pages import page
from web.console.session import CONSOLE_SCOPE
from web.methods import get_and_head
from web.routes import params


@get_and_head("/layers", sync_to_thread=True)
def layer_list(request: Request) -> Template:
    views = layers.list_layers()
    return page(
        request,
        "layers.html",
        layers=[(v, spans(v), colours(v)) for v in views],
        title="Layers",
    )


@get_and_head("/layers/{name:str}", sync_to_thread=True)
def layer_page(request: Request, name: params.LayerPath) -> Template:
    view = layers.get_layer(params.layer_name(name))
    return page(
        request,
        "layer.html",
        layer=view,
        spans=spans(view),
        colours=colours(view),
        title=f"Layer {name}",
    )


@post("/layers", opt={CONSOLE_SCOPE: Scope.ADMIN})
async def create_layer(request: Request) -> Redirect:
    form = await request.form()
    name = params.layer_name(str(form.get("layer", "")).strip())
    await to_thread.run_sync(layers.create_layer, name)
    return Redirect(f"/console/layers/{quote(name)}", status_code=303)


def parse_steps(text: str) -> list[schedules.Step]:
    """One step a line: an RFC 3339 time with a zone, then a percent or ``delete``."""
    steps = []
    for number, line in enumerate(text.strip().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            at_text, what = parts
            at = datetime.fromisoformat(at_text.upper().replace("Z", "+00:00"))
            if at.tzinfo is None:
                raise ValueError
            percent = None if what == "delete" else Decimal(what)
        except (ValueError, ArithmeticError):
            raise Invalid(
                f"line {number}: write a time with its zone and a percent or 'delete', "
                f"e.g. 2026-12-10T10:00:00Z 20 (got {line[:60]!r})"
            ) from None
        if percent is not None and not (0 <= percent <= 100 and percent == round(percent, 2)):
            raise Invalid(f"line {number}: a percent from 0 to 100, at most two decimals")
        steps.append(schedules.Step(at=at, auto_percent=percent, delete=percent is None))
    return steps


@post("/segments/{name:str}/schedule", opt={CONSOLE_SCOPE: Scope.ADMIN})
async def set_schedule(request: Request, name: params.NamePath) -> Redirect:
    """Replace the pending steps with the form's lines; the clear button drops them."""
    form = await request.form()
    name = params.segment_name(name)
    if form.get("clear"):
        await to_thread.run_sync(schedules.clear_schedule, name)
    else:
        steps = parse_steps(str(form.get("steps", "")))
        await to_thread.run_sync(schedules.set_schedule, name, steps)
    return Redirect(f"/console/segments/{quote(name)}#schedule", status_code=303)


LAYER_PAGES = [layer_list, layer_page]
LAYER_FORMS = [create_layer, set_schedule]
