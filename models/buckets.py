"""The auto_percent rule: a user's stable bucket in a segment.

The SQL twin is ``segment_bucket(salt, user_id)`` (migration 001); a test checks they agree.
"""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal

BUCKETS = 10_000


def new_salt() -> str:
    return secrets.token_hex(8)


def bucket(salt: str, user_id: int) -> int:
    return int(hashlib.md5(f"{salt}:{user_id}".encode()).hexdigest()[:8], 16) % BUCKETS


def threshold(auto_percent: Decimal | float | int) -> int:
    """Buckets below this number are in the segment (percent has at most two decimals)."""
    return round(Decimal(str(auto_percent)) * 100)


def threshold_sql(auto_percent: str) -> str:
    """``threshold`` in SQL, of a numeric(5,2) column (two decimals: the product is whole)."""
    return f"({auto_percent} * 100)::int"


def falls_in(salt: str, user_id: int, auto_percent: Decimal | float | int) -> bool:
    return bucket(salt, user_id) < threshold(auto_percent)
