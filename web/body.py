"""Strict JSON bodies.

Litestar converts bodies leniently (``"1"`` becomes ``1``), and msgspec alone stops at the
first problem, lets a repeated key win silently and reads ``99.999999999`` as a float. So
each body is first parsed here: UTF-8, JSON with no repeated key, every fractional number
as the exact ``Decimal`` its text says. Then msgspec checks it strictly against the
handler's own schema; when that fails, each field is checked on its own, so one 400 names
every problem. Litestar's lenient pass then only sees bodies that are already valid.
"""

from __future__ import annotations

import functools
import json
import re
import typing
from decimal import Decimal, InvalidOperation

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException

from web.schemas import SEGMENT_WORDS

NOT_JSON = "request body must be a JSON object"
SHOWN_KEY = 64  # characters of an offending key echoed back in the message


class _RepeatedKey(ValueError):
    pass


def shown(key: str) -> str:
    """A key as it can be quoted in a message: short, and valid UTF-8 even when the client
    sent a lone surrogate escape (which would not encode in the response)."""
    return key[:SHOWN_KEY].encode("utf-8", "backslashreplace").decode("utf-8")


def _object(pairs: list[tuple[str, object]]) -> dict:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        raise _RepeatedKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return document


def _not_a_number(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")  # json accepts NaN and Infinity by default


def _reject(*problems: str) -> typing.NoReturn:
    raise ValidationException(extra=[{"message": p} for p in problems])


def parse(body: bytes) -> object:
    """The body as Python values; a 400 for anything that is not strict UTF-8 JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _reject("request body must be UTF-8")
    try:
        return json.loads(
            text, object_pairs_hook=_object, parse_float=Decimal, parse_constant=_not_a_number
        )
    except _RepeatedKey as exc:
        _reject(f"key `{shown(exc.args[0])}` appears more than once")
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than json handles
        _reject(NOT_JSON)


def _decimals_allowed(annotation: object) -> int | None:
    """A number field's ``Meta(extra={"decimals": n})``: the most decimals its text may have."""
    for meta in typing.get_args(annotation)[1:]:
        if isinstance(meta, msgspec.Meta) and meta.extra and "decimals" in meta.extra:
            return meta.extra["decimals"]
    return None


@functools.cache
def _fields(
    struct: type[msgspec.Struct],
) -> dict[str, tuple[msgspec.structs.FieldInfo, int | None]]:
    # Cached: msgspec.structs.fields takes ~0.1 ms, longer than checking a whole body.
    return {f.encode_name: (f, _decimals_allowed(f.type)) for f in msgspec.structs.fields(struct)}


def _inexact(name: str, decimals: int | None, value: object) -> str | None:
    if decimals is None or not isinstance(value, Decimal):
        return None
    try:
        exact = value == value.quantize(Decimal(1).scaleb(-decimals))
    except InvalidOperation:  # more digits than the context holds: not exact either
        exact = False
    return None if exact else f"Expected a number with at most {decimals} decimals - at `$.{name}`"


# A pattern mismatch in words, by field: msgspec would print the regular expression.
_PATTERN_WORDS = {
    "segment": SEGMENT_WORDS,
    "segments": SEGMENT_WORDS,
    "add": SEGMENT_WORDS,
    "remove": SEGMENT_WORDS,
    "layer": SEGMENT_WORDS.replace("segment", "layer"),
    "steps": "an RFC 3339 time with a zone (Z or +hh:mm), e.g. 2026-12-10T10:00:00Z",
    "url": "an http:// or https:// URL of at most 2048 characters, without user:password",
    "secret": "16-200 printable ASCII characters, no spaces",
}
_REGEX = re.compile(r"Expected `str` matching regex '[^']*'")


def _in_words(name: str, message: str) -> str:
    words = _PATTERN_WORDS.get(name)
    return _REGEX.sub(f"Expected {words}", message) if words else message


def _invalid(name: str, annotation: object, value: object) -> str | None:
    try:
        msgspec.convert(value, annotation, strict=True)
    except msgspec.ValidationError as exc:
        message = _in_words(name, str(exc))
        if " - at `$" in message:  # a problem inside the field, e.g. one list item
            return message.replace(" - at `$", f" - at `$.{name}", 1)
        return f"{message} - at `$.{name}`"
    return None


def _field_problems(struct: type[msgspec.Struct], document: dict) -> list[str]:
    fields = _fields(struct)
    found = [f"unknown field `{shown(key)}`" for key in document if key not in fields]
    for name, (field, decimals) in fields.items():
        if name not in document:
            if field.required:
                found.append(f"Object missing required field `{name}`")
        elif problem := (
            _invalid(name, field.type, document[name]) or _inexact(name, decimals, document[name])
        ):
            found.append(problem)
    return found


def problems(struct: type[msgspec.Struct], document: object) -> list[str]:
    """Every unknown, missing and invalid field of ``document``; when each field is valid,
    the struct's own rules across fields."""
    if not isinstance(document, dict):
        return [NOT_JSON]
    try:
        msgspec.convert(document, struct, strict=True)
    except msgspec.ValidationError as exc:
        # Only a bad body pays for checking each field on its own; msgspec names only
        # the first problem, or a rule across fields when every field is valid.
        return _field_problems(struct, document) or [str(exc)]
    found = (
        _inexact(name, decimals, document.get(name))
        for name, (_, decimals) in _fields(struct).items()
    )
    return [problem for problem in found if problem]


async def decode_body_strictly(request: Request) -> None:
    field = request.route_handler.parsed_fn_signature.parameters.get("data")
    if field is None:
        return
    document = parse(await request.body())
    try:
        found = problems(field.annotation, document)
    except UnicodeEncodeError:  # msgspec meets a key like "\ud800", which json.loads allows
        _reject("request body must be UTF-8: it escapes a lone surrogate")
    if found:
        _reject(*found)
