"""The import body parsers under pathological input: what a client sends may cost the
event loop no more than time linear in its size. Each shape is timed against an ordinary
list of ids of the same size, parsed the same way in the same run (a ratio, so a busy
machine moves both), and must give the same answers as a line-by-line reading."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import Invalid
from web.upload_parsers import JsonIds, LineIds

CHUNK = 64 * 1024
SIZE = 8 * 1024 * 1024


def parse(parser, body: bytes) -> list[int]:
    ids: list[bytes] = []
    for at in range(0, len(body), CHUNK):
        ids += parser.feed(body[at : at + CHUNK])
    return [int(i) for i in ids + parser.end()]


def seconds(parser, body: bytes) -> float:
    started = time.process_time()
    with contextlib.suppress(Invalid):
        parse(parser, body)
    return time.process_time() - started


def ordinary(size: int) -> bytes:
    line = b"1234567\n"
    return line * (size // len(line))


PATHOLOGICAL = {
    "json: a run of spaces between two ids": (
        JsonIds,
        b'{"ids":[1,' + b" " * SIZE + b"2]}",
    ),
    "json: a run of newlines before the opening": (JsonIds, b"\n" * SIZE + b'{"ids":[1]}'),
    "json: deep nesting": (JsonIds, b"[" * SIZE),
    "json: a long number": (JsonIds, b'{"ids":[' + b"1" * SIZE + b"]}"),
    "json: a long string": (JsonIds, b'{"ids":["' + b"a" * SIZE + b'"]}'),
    "json: many tiny items": (JsonIds, b'{"ids":[' + b"1," * (SIZE // 2) + b"1]}"),
    "lines: many empty lines": (LineIds, b"\n" * SIZE + b"1\n"),
    "lines: many CRLF blank lines": (LineIds, b" \r\n" * (SIZE // 3) + b"1\n"),
    "lines: a run of spaces": (LineIds, b"1\n" + b" " * SIZE + b"\n2\n"),
    "lines: many tiny lines": (LineIds, b"1\n" * (SIZE // 2)),
    "lines: many headers": (LineIds, b"user_id\n" * (SIZE // 8)),
    "lines: a long number": (LineIds, b"1" * SIZE),
}


@pytest.mark.parametrize("shape", PATHOLOGICAL)
def test_pathological_bodies_cost_about_what_an_ordinary_list_costs(shape):
    parser, body = PATHOLOGICAL[shape]
    floor = seconds(LineIds(), ordinary(len(body)))
    spent = seconds(parser(), body)
    # Quadratic here was 40 s for 16 MiB; linear is within a small factor of the floor.
    assert spent < 4 * floor + 0.2, (shape, spent, floor)


def test_fast_and_slow_readings_agree_on_a_mixed_list():
    body = b"\xef\xbb\xbfuser_id\r\n\r\n 12 \r\n7\t\n\n" + b"5\n" * 100_000 + b"9"
    ids = parse(LineIds(), body)
    assert ids[:2] == [12, 7] and ids[-1] == 9 and len(ids) == 100_003


def test_a_header_counts_only_as_the_first_line_with_text():
    with pytest.raises(Invalid) as raised:
        parse(LineIds(), b"\n1\nuser_id\n")
    assert raised.value.details == {"line": 3}


def test_the_largest_id_is_read_and_one_more_is_refused():
    top = b"9223372036854775807"
    assert parse(LineIds(), b"1\n" + top + b"\n8999999999999999999\n") == [
        1,
        2**63 - 1,
        8999999999999999999,
    ]
    assert parse(JsonIds(), b'{"ids": [1, ' + top + b", 2]}") == [1, 2**63 - 1, 2]
    with pytest.raises(Invalid, match="line 2"):
        parse(LineIds(), b"1\n9223372036854775808\n")


@pytest.mark.parametrize(
    "body, item",
    [
        (b'{"ids": [1, 2, 9223372036854775808]}', 3),
        (b'{"ids": [1, 2, 03]}', 3),
        (b'{"ids": [1,,2]}', 2),
    ],
)
def test_json_names_the_bad_item(body, item):
    with pytest.raises(Invalid, match=f"item {item}"):
        parse(JsonIds(), body)


chunks = st.integers(1, 50)
ids_lists = st.lists(st.integers(1, 2**63 - 1), min_size=1, max_size=200)
spaces = st.sampled_from([b"", b" ", b"\t", b"\r\n", b"\n", b"  \n "])


@settings(max_examples=200, deadline=None)
@given(ids=ids_lists, gap=spaces, chunk=st.integers(1, 50))
def test_json_reads_any_spacing_in_any_chunking(ids, gap, chunk):
    body = b"{" + gap + b'"ids"' + gap + b":[" + (b"," + gap).join(b"%d" % i for i in ids)
    body += gap + b"]" + gap + b"}"
    parser = JsonIds()
    got = [i for at in range(0, len(body), chunk) for i in parser.feed(body[at : at + chunk])]
    assert [int(i) for i in got + parser.end()] == ids


@settings(max_examples=200, deadline=None)
@given(
    ids=ids_lists, eol=st.sampled_from([b"\n", b"\r\n", b" \n", b"\n\n"]), chunk=st.integers(1, 50)
)
def test_lines_read_any_line_ends_in_any_chunking(ids, eol, chunk):
    body = eol.join(b"%d" % i for i in ids)
    parser = LineIds()
    got = [i for at in range(0, len(body), chunk) for i in parser.feed(body[at : at + chunk])]
    assert [int(i) for i in got + parser.end()] == ids
