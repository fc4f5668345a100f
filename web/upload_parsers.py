"""Reading an import's list of user ids as it streams in, chunk by chunk, so the web
process never holds the whole list. Two formats: one id per line (``text/csv``,
``text/plain``; an optional ``user_id`` header, blank lines and CRLF tolerated) and JSON
``{"ids": [...]}``. Ids are written as the rest of the API writes them: digits, no sign,
no leading zero, 1..2^63-1. The first bad one is a 400 naming its line (or item). An
id is returned as its digits (bytes): written without a leading zero, equal ids are
equal text, so repeats collapse and the database converts them, with no int() here.

Each costs time linear in what the client sends, whatever its shape: a chunk is read
by one regular expression without backtracking (possessive quantifiers) where it can
be, and line by line (or token by token) only to name a problem; nothing left over from
a chunk is longer than an id.
"""

from __future__ import annotations

import re

from models.errors import Invalid
from web.schemas import MAX_USER_ID

_ID = re.compile(rb"[1-9][0-9]{0,18}")
MAX_LINE = 64  # bytes; an id is at most 19 digits, so a longer line is not one


def _user_id(raw: bytes, unit: str, number: int) -> bytes:
    """``raw`` if it is a user id; else a 400 naming the line (or item) ``number``."""
    if _ID.fullmatch(raw) and int(raw) <= MAX_USER_ID:
        return raw
    shown = raw[:40].decode("ascii", "replace")
    raise Invalid(
        f"{unit} {number}: {shown!r} is not a user id (digits, no leading zero, "
        f"1 to {MAX_USER_ID})",
        **{unit: number},
    )


# Whole lines of blanks and ids (no header, no mark, nothing to report): one pass in C.
# An id surely in range: up to 18 digits, or 19 beginning 1-8 (2^63-1 is 9223...); one
# of 19 digits beginning with 9 sends its chunk to the line-by-line reading.
_SURE_ID = rb"(?>[1-8][0-9]{18}|[1-9][0-9]{0,17}+)"
_LINES = re.compile(rb"(?:[ \t]*+(?:" + _SURE_ID + rb"[ \t]*+)?\r?\n)*+")


def _fast_ids(block: bytes, pattern: re.Pattern) -> list[bytes] | None:
    """The ids of ``block`` if ``pattern`` reads all of it; else None (read it item by
    item, to name the problem)."""
    if not pattern.fullmatch(block):
        return None
    return block.replace(b",", b" ").split()


class LineIds:
    """One id per line."""

    def __init__(self) -> None:
        self.rest = b""
        self.line = 0
        self.count = 0
        self.text_seen = False  # a header is only the first line with text

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self.rest + chunk
        cut = data.rfind(b"\n") + 1
        block, self.rest = data[:cut], data[cut:]
        if len(self.rest) > MAX_LINE:
            self.line += block.count(b"\n")
            self._parse(self.rest)  # raises: far too long for an id
        ids = _fast_ids(block, _LINES)
        if ids is None:
            return [i for i in map(self._parse, block.split(b"\n")[:-1]) if i is not None]
        self.line += block.count(b"\n")
        self.count += len(ids)
        self.text_seen = self.text_seen or bool(ids)
        return ids

    def end(self) -> list[bytes]:
        last, self.rest = self.rest, b""
        return [] if last == b"" else [i for i in [self._parse(last)] if i is not None]

    def _parse(self, raw: bytes) -> bytes | None:
        self.line += 1
        if self.line == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a spreadsheet's UTF-8 mark
        text = raw.removesuffix(b"\r").strip(b" \t")
        if not text:
            return None
        header = not self.text_seen and text == b"user_id"
        self.text_seen = True
        if header:
            return None
        self.count += 1
        return _user_id(text, "line", self.line)


# JSON tokens: punctuation, a string, a number (any JSON number, judged afterwards).
_TOKEN = re.compile(
    rb'[ \t\r\n]*+(?:([{}\[\]:,])|("(?:[^"\\]++|\\.)*+")'
    rb"|(-?[0-9]++(?:\.[0-9]++)?+(?:[eE][+-]?[0-9]++)?+))"
)
# Items followed by their commas, read in one pass where they are plain ids.
_ITEMS = re.compile(rb"(?:[ \t\r\n]*+" + _SURE_ID + rb"[ \t\r\n]*+,)++")
_OPENING = [b"{", b'"ids"', b":", b"["]


class JsonIds:
    """``{"ids": [1, 2, 3]}`` and nothing else, read token by token."""

    def __init__(self) -> None:
        self.rest = b""
        self.opened = 0  # how many tokens of the opening are read
        self.state = "opening"  # then: first, value, next, closed, done
        self.count = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._tokens(self.rest + chunk, final=False)

    def end(self) -> list[bytes]:
        ids = self._tokens(self.rest, final=True)
        if self.state != "done":
            raise Invalid('the body must be a JSON object {"ids": [user ids]}, complete')
        return ids

    def _bad(self, what: bytes) -> Invalid:
        shown = what[:40].decode("utf-8", "replace")
        where = f"item {self.count + 1}" if self.state in ("first", "next") else "the body"
        return Invalid(f'{where}: unexpected {shown!r}; expected {{"ids": [user ids]}}')

    def _tokens(self, data: bytes, final: bool) -> list[bytes]:
        ids: list[bytes] = []
        pos = 0
        while True:
            if self.state in ("first", "next") and (end := self._items(data, pos, ids)):
                pos = end
                continue
            match = _TOKEN.match(data, pos)
            # A number that reaches the end of the data may go on in the next chunk.
            if match is None or (match.group(3) and match.end() == len(data) and not final):
                break
            pos = match.end()
            self._take(match.group(1) or match.group(2) or match.group(3), match.group(3), ids)
        # Blanks between tokens are not kept: a run of them is read once, not per chunk.
        self.rest = data[pos:].lstrip(b" \t\r\n")
        if len(self.rest) > MAX_LINE or (final and self.rest):
            raise self._bad(self.rest)
        return ids

    def _items(self, data: bytes, pos: int, ids: list[bytes]) -> int:
        """Plain ids with their commas from ``pos`` on, read in one pass into ``ids``:
        where they end, or 0 when there are none (or one to report)."""
        run = _ITEMS.match(data, pos)
        items = run and _fast_ids(run.group(), _ITEMS)
        if not items:
            return 0
        ids += items
        self.count += len(items)
        self.state = "next"
        return run.end()

    def _take(self, token: bytes, number: bytes | None, ids: list[bytes]) -> None:
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
