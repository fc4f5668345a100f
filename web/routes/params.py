"""Path and query parameters, declared once with their OpenAPI description.

Ids and names in the path are taken as strings and parsed here, so a bad one ("abc",
"0", 2^63) gets the same clear 400 as a bad body, not a routing 404; their documented
schema still says what is accepted. Query integers are validated by Litestar.
"""

from __future__ import annotations

import re
from typing import Annotated

from litestar.params import PathParameter, QueryParameter

from models.errors import Invalid
from web.schemas import MAX_USER_ID, NAME_PATTERN

_DIGITS = re.compile(r"[0-9]{1,19}")
_NAME = re.compile(NAME_PATTERN)
_ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_USER_ID}

UserIdPath = Annotated[str, PathParameter(description="user id", schema_extra=_ID_SCHEMA)]
JobIdPath = Annotated[str, PathParameter(description="job id", schema_extra=_ID_SCHEMA)]
NamePath = Annotated[
    str, PathParameter(description="segment name", schema_extra={"pattern": NAME_PATTERN})
]
Year = Annotated[int, QueryParameter(ge=1970, le=9999, description="UTC year")]
Month = Annotated[int, QueryParameter(ge=1, le=12, description="UTC month, 1-12")]
After = Annotated[int, QueryParameter(ge=0, le=MAX_USER_ID, description="last user id seen")]
Limit = Annotated[int, QueryParameter(ge=1, le=10_000, description="page size")]


def _positive_id(what: str, raw: str) -> int:
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_USER_ID:
        raise Invalid(f"{what} must be an integer from 1 to {MAX_USER_ID}", id=raw[:100])
    return int(raw)


def user_id(raw: str) -> int:
    return _positive_id("user id", raw)


def job_id(raw: str) -> int:
    return _positive_id("job id", raw)


def segment_name(raw: str) -> str:
    if not _NAME.match(raw):
        raise Invalid(
            "segment name must be 1-64 characters of A-Z a-z 0-9 _ - .", segment=raw[:100]
        )
    return raw
