from datetime import date

import pytest

from models.errors import Gone
from models.history import check_kept
from models.months import add_months
from models.partitions import kept_from, partition_name


def test_months_add_across_years():
    assert add_months(date(2026, 11, 1), 2) == date(2027, 1, 1)
    assert add_months(date(2026, 1, 1), -1) == date(2025, 12, 1)
    assert add_months(date(2026, 3, 1), -27) == date(2023, 12, 1)


def test_retention_keeps_the_current_month_and_n_before_it():
    assert kept_from(date(2026, 9, 30), None) is None
    assert kept_from(date(2026, 9, 30), 6) == date(2026, 3, 1)
    assert kept_from(date(2026, 9, 1), 1) == date(2026, 8, 1)
    assert kept_from(date(2027, 1, 15), 12) == date(2026, 1, 1)


def test_a_month_before_retention_is_gone_with_the_setting_named():
    today = date(2026, 9, 12)
    check_kept(2026, 3, 6, today)
    check_kept(1999, 1, None, today)
    with pytest.raises(Gone) as info:
        check_kept(2026, 2, 6, today)
    assert info.value.message == "history before 2026-03 is not kept: HISTORY_RETENTION_MONTHS=6"


def test_partition_names_sort_as_their_months():
    assert partition_name(date(2026, 3, 1)) == "history_2026_03"
    assert partition_name(date(990, 12, 1)) == "history_0990_12"
