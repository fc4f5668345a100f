"""Imports' uploads: a request's list of ids streamed into a staged import
(models/uploads.py), parsed chunk by chunk (web/upload_parsers.py), so the web process
never holds the list: at most FLUSH distinct ids at a time, repeats collapsed before they
reach the database. Uploads at once are capped per process and across all of them
(IMPORT_MAX_UPLOADS, IMPORT_MAX_UPLOADS_TOTAL); beyond the cap a client gets a 503."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from anyio import to_thread
from prometheus_client import Counter, Gauge

from models.errors import Invalid
from models.imports import ImportOptions
from models.infra.settings import active
from models.uploads import ImportStarted, Upload, UploadsBusy
from web.upload_parsers import JsonIds, LineIds

IMPORT_MAX_BODY = 64 * 1024 * 1024
FLUSH = 50_000  # distinct ids per insert: a bounded buffer, whatever the list's size
RETRY_AFTER = 5  # seconds a refused upload is told to wait
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
PARSERS = {"text/csv": LineIds, "text/plain": LineIds, "application/json": JsonIds}

UPLOADS = Gauge(
    "segments_import_uploads",
    "Import uploads being received (each holds a database connection)",
    multiprocess_mode="livesum",
)
REFUSED = Counter(
    "segments_import_uploads_refused",
    "Import uploads answered 503 because every upload slot was taken",
)
_receiving = 0  # this process's uploads; only the event loop's thread changes it


class UnsupportedMedia(Exception):
    def __init__(self, media: str) -> None:
        super().__init__(media)
        self.media = media


def idempotency_key(raw: str | None) -> str | None:
    if raw is not None and not _KEY.fullmatch(raw):
        raise Invalid("Idempotency-Key must be 1-255 printable ASCII characters without spaces")
    return raw


async def receive(request, segment: str, options: ImportOptions, key: str | None) -> ImportStarted:
    """Stream the request's body into a staged import."""
    return await receive_chunks(request.stream(), request.content_type[0], segment, options, key)


async def receive_chunks(
    chunks: AsyncIterator[bytes],
    media: str,
    segment: str,
    options: ImportOptions,
    key: str | None,
) -> ImportStarted:
    """Stream ``chunks`` (a list of ids in the format ``media`` names) into a staged
    import; UploadsBusy when this process or the service has no upload slot free."""
    global _receiving
    if media not in PARSERS:
        raise UnsupportedMedia(media)
    settings = active()
    if _receiving >= settings.import_max_uploads:
        REFUSED.inc()
        raise UploadsBusy()
    _receiving += 1
    UPLOADS.inc()
    try:
        upload = await to_thread.run_sync(Upload, segment, options, key)
        try:
            await to_thread.run_sync(upload.start, settings.import_max_uploads_total)
            return await _stage(chunks, PARSERS[media](), upload)
        finally:
            await to_thread.run_sync(upload.close)
    except UploadsBusy:
        REFUSED.inc()
        raise
    finally:
        _receiving -= 1
        UPLOADS.dec()


async def _stage(chunks: AsyncIterator[bytes], parser: LineIds | JsonIds, upload: Upload):
    """Parse and stage the ids; the blocking database calls run on worker threads."""
    pending: set[bytes] = set()
    async for chunk in chunks:
        upload.feed(chunk)
        pending.update(parser.feed(chunk))
        if len(pending) >= FLUSH:
            await to_thread.run_sync(upload.add, pending)
            pending = set()
    pending.update(parser.end())
    if pending:
        await to_thread.run_sync(upload.add, pending)
    if parser.count == 0:
        raise Invalid("the list of user ids is empty")
    return await to_thread.run_sync(upload.commit)
