"""The one-id-per-line reader of imports: the optional header is one line."""

from __future__ import annotations

import pytest

from models.errors import Invalid
from web.upload_parsers import LineIds


def test_one_header_line_is_taken():
    parser = LineIds()
    assert parser.feed(b"\xef\xbb\xbfuser_id\r\n1\r\n2\n") == [b"1", b"2"]
    assert parser.end() == []


@pytest.mark.parametrize(
    "body", [b"user_id\nuser_id\n1\n", b"user_id\n\nuser_id\n", b"1\nuser_id\n"]
)
def test_a_repeated_or_late_header_is_a_400(body):
    with pytest.raises(Invalid, match="'user_id' is not a user id"):
        LineIds().feed(body)
