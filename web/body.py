"""Strict JSON bodies.

Litestar converts bodies leniently (``"1"`` becomes ``1``). The spec wants anything but a
real integer id rejected, so each body is first decoded strictly against the handler's
own schema; Litestar's lenient pass then only sees bodies that are already valid.
"""

from __future__ import annotations

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException


async def decode_body_strictly(request: Request) -> None:
    field = request.route_handler.parsed_fn_signature.parameters.get("data")
    if field is None:
        return
    body = await request.body()
    try:
        msgspec.json.decode(body, type=field.annotation, strict=True)
    except msgspec.ValidationError as exc:
        raise ValidationException(extra=[{"message": str(exc)}]) from None
    except msgspec.DecodeError:
        problem = {"message": "request body must be a JSON object"}
        raise ValidationException(extra=[problem]) from None
