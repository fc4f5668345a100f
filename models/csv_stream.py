"""CSV reports streamed in flat memory: a header, then one chunk of lines per keyset
batch. Each batch's lines are built and joined in SQL (one value crosses the wire per
batch, not one per row), and each batch borrows its own connection, so a slow client
never holds one between batches. The history report and the members export use it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def utc_stamp(column: str) -> str:
    """SQL for a timestamptz column as a CSV cell: ISO 8601 in UTC, whole seconds."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


def keyset_lines(
    header: str, batch: Callable[[Any], tuple[str, int, Any]], size: int, first: Any = None
) -> Iterator[str]:
    """Yields ``header``, then each batch's text. ``batch(after)`` returns (up to
    ``size`` lines as one text, how many, the last line's key); the first batch gets
    ``first``. A batch shorter than ``size`` is the last."""
    yield header
    after = first
    while True:
        text, count, after = batch(after)
        if count:
            yield text
        if count < size:
            return
