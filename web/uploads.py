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

_ID = re.compile(rb"[1-9][0-9]{0,18}")
MAX_LINE = 64  # bytes; an id is at most 19 digits, so a longer line is not one


def _user_id(raw: bytes, unit: str, number: int) -> int:
    """``raw`` as a user id; else a 400 naming the line (or item) ``number``."""
    if _ID.fullmatch(raw) and int(raw) <= MAX_USER_ID:
        return int(raw)
    shown = raw[:40].decode("ascii", "replace")
    raise Invalid(
        f"{unit} {number}: {shown!r} is not a user id (digits, no leading zero, "
        f"1 to {MAX_USER_ID})",
        **{unit: number},
    )


class LineIds:
    """One id per line."""

    def __init__(self) -> None:
        self.rest = b""
        self.line = 0
        self.count = 0
        self.header = False  # the optional header line was read: another is a 400

    def feed(self, chunk: bytes) -> list[int]:
        *lines, self.rest = (self.rest + chunk).split(b"\n")
        if len(self.rest) > MAX_LINE:
            self._parse(self.rest)  # raises: far too long for an id
        return [i for i in map(self._parse, lines) if i is not None]

    def end(self) -> list[int]:
        last, self.rest = self.rest, b""
        return [] if last == b"" else [i for i in [self._parse(last)] if i is not None]

    def _parse(self, raw: bytes) -> int | None:
        self.line += 1
        if self.line == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a spreadsheet's UTF-8 mark
        text = raw.removesuffix(b"\r").strip(b" \t")
        if not text:
            return None
        if text == b"user_id" and self.count == 0 and not self.header:
            self.header = True
            return None
        self.count += 1
        return _user_id(text, "line", self.line)


# JSON tokens: punctuation, a string, a number (any JSON number, judged afterwards).
_TOKEN = re.compile(
    rb'[ \t\r\n]*(?:([{}\[\]:,])|("(?:[^"\\]|\\.)*")|(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?))'
)
_OPENING = [b"{", b'"ids"', b":", b"["]


class JsonIds:
    """``{"ids": [1, 2, 3]}`` and nothing else, read token by token."""

    def __init__(self) -> None:
        self.rest = b""
        self.opened = 0  # how many tokens of the opening are read
        self.state = "opening"  # then: first, value, next, closed, done
        self.count = 0

    def feed(self, chunk: bytes) -> list[int]:
        return self._tokens(self.rest + chunk, final=False)

    def end(self) -> list[int]:
        ids = self._tokens(self.rest, final=True)
        if self.state != "done":
            raise Invalid('the body must be a JSON object {"ids": [user ids]}, complete')
        return ids

    def _bad(self, what: bytes) -> Invalid:
        shown = what[:40].decode("utf-8", "replace")
        where = f"item {self.count + 1}" if self.state in ("first", "next") else "the body"
        return Invalid(f'{where}: unexpected {shown!r}; expected {{"ids": [user ids]}}')

    def _tokens(self, data: bytes, final: bool) -> list[int]:
        ids: list[int] = []
        pos = 0
        while True:
            match = _TOKEN.match(data, pos)
            # A number that reaches the end of the data may go on in the next chunk.
            if match is None or (match.group(3) and match.end() == len(data) and not final):
                break
            pos = match.end()
            self._take(match.group(1) or match.group(2) or match.group(3), match.group(3), ids)
        self.rest = data[pos:]
        left = self.rest.strip()
        if len(left) > MAX_LINE or (final and left):
            raise self._bad(left)
        return ids

    def _take(self, token: bytes, number: bytes | None, ids: list[int]) -> None:
        if self.state == "opening":
            if token != _OPENING[self.opened]:
                raise self._bad(token)
            self.opened += 1
            self.state = "first" if self.opened == len(_OPENING) else "opening"
        elif number and self.state in ("first", "next"):
            ids.append(_user_id(number, "item", self.count + 1))
            self.count += 1
            self.state = "value"
        elif token == b"," and self.state == "value":
            self.state = "next"
        elif token == b"]" and self.state in ("first", "value"):
            self.state = "closed"
        elif token == b"}" and self.state == "closed":
            self.state = "done"
        else:
            raise self._bad(token)


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
