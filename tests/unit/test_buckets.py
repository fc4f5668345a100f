"""The bucket rule in Python (single users): the formula, thresholds and edges. That SQL
(bulk jobs) agrees with it exactly: tests/integration/test_buckets.py."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models.buckets import bucket, falls_in, new_salt, threshold

MAX_ID = 2**63 - 1


def test_bucket_is_the_documented_formula():
    import hashlib

    for salt, uid in [("abc", 1), ("abc", MAX_ID), (new_salt(), 123456789)]:
        digest = hashlib.md5(f"{salt}:{uid}".encode()).hexdigest()
        assert bucket(salt, uid) == int(digest[:8], 16) % 10_000


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        (0, 0),
        (0.0, 0),
        (Decimal("0"), 0),
        (100, 10_000),
        (Decimal("100.00"), 10_000),
        (12.34, 1234),
        (Decimal("12.34"), 1234),
        ("12.34", 1234),
        (0.01, 1),
        (0.29, 29),  # 0.29 * 100 == 28.999999999999996 as a float
        (33.33, 3333),
        (99.99, 9999),
        (50, 5000),
    ],
)
def test_threshold(percent, expected):
    assert threshold(percent) == expected
    assert isinstance(threshold(percent), int)


def _id_with_bucket(salt: str, wanted: int) -> int:
    for uid in range(1, 2_000_000):
        if bucket(salt, uid) == wanted:
            return uid
    raise AssertionError(f"no id with bucket {wanted}")


def test_falls_in_edges():
    salt = "fixed-salt-for-edges"
    ids = range(1, 20_001)
    assert not any(falls_in(salt, uid, 0) for uid in ids)
    assert not any(falls_in(salt, uid, Decimal("0.00")) for uid in ids)
    assert all(falls_in(salt, uid, 100) for uid in ids)
    assert all(falls_in(salt, uid, Decimal("100.00")) for uid in ids)
    for uid in ids:
        assert falls_in(salt, uid, 12.34) == (bucket(salt, uid) < 1234)

    just_in = _id_with_bucket(salt, 1233)
    on_edge = _id_with_bucket(salt, 1234)
    zero = _id_with_bucket(salt, 0)
    top = _id_with_bucket(salt, 9999)
    assert falls_in(salt, just_in, 12.34) and falls_in(salt, just_in, Decimal("12.34"))
    assert not falls_in(salt, on_edge, 12.34) and not falls_in(salt, on_edge, Decimal("12.34"))
    assert falls_in(salt, on_edge, 12.35)
    assert falls_in(salt, zero, 0.01) and not falls_in(salt, zero, 0)
    assert not falls_in(salt, top, 99.99) and falls_in(salt, top, 100)
