from datetime import UTC, datetime

from models.months import month_bounds


def test_month_is_half_open_utc_interval():
    assert month_bounds(2023, 8) == (
        datetime(2023, 8, 1, tzinfo=UTC),
        datetime(2023, 9, 1, tzinfo=UTC),
    )
    assert month_bounds(2023, 12) == (
        datetime(2023, 12, 1, tzinfo=UTC),
        datetime(2024, 1, 1, tzinfo=UTC),
    )
