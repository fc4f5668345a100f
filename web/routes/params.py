"""Path and query values parsed by hand, so every bad one gets the same clear 400."""

from __future__ import annotations

import re

from models.errors import Invalid
from web.schemas import MAX_USER_ID, NAME_PATTERN

__all__ = ["MAX_USER_ID", "bounded_int", "segment_name", "user_id"]

_DIGITS = re.compile(r"^[0-9]{1,19}$")
_NAME = re.compile(NAME_PATTERN)


def user_id(raw: str) -> int:
    if not _DIGITS.match(raw) or not 1 <= int(raw) <= MAX_USER_ID:
        raise Invalid(f"user id must be an integer from 1 to {MAX_USER_ID}", id=raw[:100])
    return int(raw)


def segment_name(raw: str) -> str:
    if not _NAME.match(raw):
        raise Invalid(
            "segment name must be 1-64 characters of A-Z a-z 0-9 _ - .", segment=raw[:100]
        )
    return raw


def bounded_int(name: str, raw: str | None, low: int, high: int, default: int | None = None) -> int:
    if raw is None or raw == "":
        if default is None:
            raise Invalid(f"query parameter {name} is required", parameter=name)
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw) or not low <= int(raw) <= high:
        raise Invalid(
            f"query parameter {name} must be an integer from {low} to {high}", parameter=name
        )
    return int(raw)
