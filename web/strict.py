"""Every request is read strictly before its handler runs (Litestar's before_request)."""

from __future__ import annotations

from collections import Counter
from urllib.parse import parse_qsl

from litestar import Request
from litestar.exceptions import ValidationException

from web.body import decode_body_strictly, shown


def reject_repeated_parameters(request: Request) -> None:
    """``?month=1&month=2`` is ambiguous (Litestar would silently keep one), so a 400."""
    raw = request.scope.get("query_string", b"")
    if b"&" not in raw:
        return  # one parameter at most: nothing to repeat (the hot path has none)
    query = raw.decode("latin-1")
    counts = Counter(key for key, _ in parse_qsl(query, keep_blank_values=True))
    repeated = sorted(key for key, n in counts.items() if n > 1)
    if repeated:
        raise ValidationException(
            extra=[
                {"message": f"query parameter `{shown(k)}` is given more than once"}
                for k in repeated
            ]
        )


async def check_request(request: Request) -> None:
    reject_repeated_parameters(request)
    await decode_body_strictly(request)
