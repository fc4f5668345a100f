"""Month arithmetic, in one place: a month is the date of its first day; its bounds are
UTC instants. History's reports, its partitions and retention, and the console's month
pages all count months with these."""

from __future__ import annotations

from datetime import UTC, date, datetime


def add_months(month: date, n: int) -> date:
    """The first day of the month ``n`` months after ``month``'s (before, if negative)."""
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def month_of(day: date) -> date:
    return date(day.year, day.month, 1)


def month_start(month: date) -> datetime:
    """The first instant of ``month``, UTC."""
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """The half-open UTC interval [first day 00:00, first day of next month 00:00)."""
    first = date(year, month, 1)
    if (year, month) == (9999, 12):  # the next month is past what datetime can hold
        return month_start(first), datetime.max.replace(tzinfo=UTC)
    return month_start(first), month_start(add_months(first, 1))
