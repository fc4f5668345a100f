"""Reading an import's list of user ids as it streams in, chunk by chunk, so the web
process never holds the whole list. Two formats: one id per line (``text/csv``,
``text/plain``; an optional ``user_id`` header, blank lines and CRLF tolerated) and JSON
``{"ids": [...]}``. Ids are written as the rest of the API writes them: digits, no sign,
no leading zero, 1..2^63-1. The first bad one is a 400 naming its line (or item)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from anyio import to_thread

from models.errors import Invalid
from models.imports import ImportOptions, ImportStarted, Upload
from web.schemas import MAX_USER_ID

IMPORT_MAX_BODY = 64 * 1024 * 1024
FLUSH = 50_000  # ids per COPY: a bounded buffer, whatever the list's size
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
PARSERS = {"text/csv": LineIds, "text/plain": LineIds, "application/json": JsonIds}


def idempotency_key(raw: str | None) -> str | None:
    if raw is not None and not _KEY.fullmatch(raw):
        raise Invalid("Idempotency-Key must be 1-255 printable ASCII characters without spaces")
    return raw


async def receive(request, segment: str, options: ImportOptions, key: str | None) -> ImportStarted:
    """Stream the request's body into a staged import (models.imports.Upload)."""
    return await receive_chunks(request.stream(), request.content_type[0], segment, options, key)


async def receive_chunks(
    chunks: AsyncIterator[bytes],
    media: str,
    segment: str,
    options: ImportOptions,
    key: str | None,
) -> ImportStarted:
    """Stream ``chunks`` (a list of ids in the format ``media`` names) into a staged
    import. The upload's blocking database calls run on worker threads; at most FLUSH
    ids are held."""
    if media not in PARSERS:
        raise UnsupportedMedia(media)
    parser = PARSERS[media]()
    upload = await to_thread.run_sync(Upload, segment, options, key)
    try:
        await to_thread.run_sync(upload.start)
        pending: list[int] = []
        async for chunk in chunks:
            upload.feed(chunk)
            pending += parser.feed(chunk)
            if len(pending) >= FLUSH:
                await to_thread.run_sync(upload.add, pending)
                pending = []
        pending += parser.end()
        if pending:
            await to_thread.run_sync(upload.add, pending)
        if parser.count == 0:
            raise Invalid("the list of user ids is empty")
        return await to_thread.run_sync(upload.commit)
    finally:
        await to_thread.run_sync(upload.close)


class UnsupportedMedia(Exception):
    def __init__(self, media: str) -> None:
        super().__init__(media)
        self.media = media
