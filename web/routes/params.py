"""Path and query parameters, declared once with their OpenAPI description.

Ids, names and query integers are taken as strings and parsed here, so a bad one ("abc",
"0", 2^63, "1.0", "1e1", "+11", "011") gets the same clear 400 as a bad body, not a
routing 404 or a lenient conversion; their documented schema still says what is
accepted. An integer is written as JSON writes it: decimal digits, no sign, no leading
zero, no fraction or exponent.
"""

from __future__ import annotations

import re
from typing import Annotated

from litestar.params import PathParameter, QueryParameter

from models.errors import Invalid
from web.schemas import MAX_USER_ID, NAME_PATTERN

_INTEGER = re.compile(r"0|[1-9][0-9]{0,18}")  # 19 digits bound the int() of hostile input
_NAME = re.compile(NAME_PATTERN)


def _integer_schema(low: int, high: int, **extra: object) -> dict:
    # Integers, not the floats Litestar writes for ge/le (9.223372036854776e+18).
    return {"type": "integer", "minimum": low, "maximum": high, **extra}


UserIdPath = Annotated[
    str, PathParameter(description="user id", schema_extra=_integer_schema(1, MAX_USER_ID))
]
JobIdPath = Annotated[
    str, PathParameter(description="job id", schema_extra=_integer_schema(1, MAX_USER_ID))
]
IdPath = Annotated[
    str, PathParameter(description="id", schema_extra=_integer_schema(1, MAX_USER_ID))
]
NamePath = Annotated[
    str, PathParameter(description="segment name", schema_extra={"pattern": NAME_PATTERN})
]
Year = Annotated[
    str, QueryParameter(description="UTC year", schema_extra=_integer_schema(1970, 9999))
]
Month = Annotated[
    str, QueryParameter(description="UTC month, 1-12", schema_extra=_integer_schema(1, 12))
]
After = Annotated[
    str,
    QueryParameter(
        description="last user id seen", schema_extra=_integer_schema(0, MAX_USER_ID, default=0)
    ),
]
Limit = Annotated[
    str,
    QueryParameter(description="page size", schema_extra=_integer_schema(1, 10_000, default=1000)),
]


Text = Annotated[str, QueryParameter()]  # a form field, checked by its handler
OptionalText = Annotated[str | None, QueryParameter()]

Action = Annotated[
    str,
    QueryParameter(
        description="add the listed users, or remove them",
        schema_extra={"enum": ["add", "remove"], "default": "add"},
    ),
]
ActiveTime = Annotated[
    str | None,
    QueryParameter(
        description="seconds until the added memberships expire (action=add only)",
        schema_extra=_integer_schema(1, 10 * 365 * 86400),
    ),
]
Mode = Annotated[
    str,
    QueryParameter(
        description="merge: change only the listed users; replace: the list becomes the "
        "segment's whole set of manual/import members (auto members stay)",
        schema_extra={"enum": ["merge", "replace"], "default": "merge"},
    ),
]
CreateUsers = Annotated[
    str,
    QueryParameter(
        description="create unknown users (with their auto segments) instead of skipping them",
        schema_extra={"enum": ["true", "false"], "default": "false"},
    ),
]
WithActor = Annotated[
    str,
    QueryParameter(
        description="true: a sixth column, actor (who caused each event)",
        schema_extra={"enum": ["true", "false"], "default": "false"},
    ),
]

Move = Annotated[
    str,
    QueryParameter(
        description="users holding another segment of the layer are moved (reason "
        "layer_move) instead of skipped and counted as conflicts",
        schema_extra={"enum": ["true", "false"], "default": "false"},
    ),
]
LayerPath = Annotated[
    str, PathParameter(description="layer name", schema_extra={"pattern": NAME_PATTERN})
]


def choice(what: str, raw: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise Invalid(f"{what} must be one of: {', '.join(allowed)}", **{what: raw[:100]})
    return raw


def integer(what: str, raw: str, low: int, high: int, key: str | None = None) -> int:
    """``raw`` as an int in [low, high]; else a 400 whose details name it under ``key``."""
    if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise Invalid(
            f"{what} must be an integer from {low} to {high}, written without sign, "
            "leading zeros, fraction or exponent",
            **{key or what: raw[:100]},
        )
    return int(raw)


def user_id(raw: str) -> int:
    return integer("user id", raw, 1, MAX_USER_ID, key="id")


def job_id(raw: str) -> int:
    return integer("job id", raw, 1, MAX_USER_ID, key="id")


def year(raw: str) -> int:
    return integer("year", raw, 1970, 9999)


def month(raw: str) -> int:
    return integer("month", raw, 1, 12)


def after(raw: str) -> int:
    return integer("after", raw, 0, MAX_USER_ID)


def limit(raw: str) -> int:
    return integer("limit", raw, 1, 10_000)


def segment_name(raw: str, what: str = "segment") -> str:
    if not _NAME.match(raw):
        raise Invalid(
            f'{what} name must be 1-64 characters of A-Z a-z 0-9 _ - ., not "." or ".."',
            **{what: raw[:100]},
        )
    return raw


def layer_name(raw: str) -> str:
    return segment_name(raw, "layer")
