"""How the console writes times, numbers and the members chart. Times are UTC, labelled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from models.buckets import BUCKETS
from models.console import SeriesPoint

_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))


def iso(at: datetime | None) -> str:
    """``2026-11-27T07:10:03Z``: the form the API and the CSV use."""
    return "" if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc(at: datetime | None) -> str:
    """``2026-11-27 07:10 UTC``: for reading."""
    return "" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def relative(at: datetime | None, now: datetime | None = None) -> str:
    """``in 2 days``, ``3 hours ago``: in the largest unit that fits."""
    if at is None:
        return ""
    seconds = (at - (now or datetime.now(UTC))).total_seconds()
    size = abs(seconds)
    if size < 1:
        return "now"
    # To the nearest whole unit: 47 h 59 min is "in 2 days"; the page shows the exact
    # timestamp beside it.
    unit, length = next((u, n) for u, n in _UNITS if size >= n)
    count = round(size / length)
    text = f"{count} {unit}{'' if count == 1 else 's'}"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def number(value: int | None) -> str:
    """Thousands separated by a thin space: 1 234 567."""
    return "" if value is None else f"{value:,}".replace(",", "\u2009")


def decimal(value: Decimal | float) -> str:
    """``12.5``, ``30``: a percentage as it is typed."""
    return f"{Decimal(value):.2f}".rstrip("0").rstrip(".")


def percent(value: Decimal | float | None) -> str:
    return "" if value is None else f"{decimal(value)}\u2009%"


JOB_KINDS = {
    "assign_auto": "auto assignment",
    "shrink_auto": "percent decrease",
    "cleanup_segment": "cleanup after delete",
    "import": "import",
    "layer_move": "moved within its layer",
}
REASONS = {
    "manual": "manual",
    "auto": "auto percent",
    "ttl": "ttl (expired)",
    "segment_deleted": "segment deleted",
    "percent_change": "percent change",
    "import": "import",
}


def progress_label(done: int, total: int | None) -> str:
    if not total:
        return f"{number(done)} done"
    return f"{number(done)} of {number(total)} ({min(100, done * 100 // total)}\u2009%)"


# Owned ranges take a colour by their segment's place in the layer (by name), so no two
# segments of a layer share one until there are more segments than colours.
PALETTE = ["#3b6fd8", "#d8793b", "#2f9d62", "#9d3fb8", "#c43d5a", "#1f9bb0", "#8a7a1d"]


@dataclass(frozen=True)
class Span:
    """One range of the bar: x and width in percent of the bar."""

    start: int
    end: int
    kind: str  # a segment's name, "never_used" or "released"
    colour: str

    @property
    def x(self) -> float:
        return self.start * 100 / BUCKETS

    @property
    def width(self) -> float:
        return (self.end - self.start) * 100 / BUCKETS


def colours(view) -> dict[str, str]:
    return {s.segment: PALETTE[i % len(PALETTE)] for i, s in enumerate(view.segments)}


def spans(view) -> list[Span]:
    colour = colours(view)
    found = [Span(a, b, s.segment, colour[s.segment]) for s in view.segments for a, b in s.ranges]
    found += [Span(a, b, "never_used", "") for a, b in view.never_used]
    found += [Span(a, b, "released", "") for a, b in view.released]
    return sorted(found, key=lambda s: s.start)


FILTERS = {
    "iso": iso,
    "utc": utc,
    "relative": relative,
    "number": number,
    "percent": percent,
    "decimal": decimal,
    "job_kind": lambda kind: JOB_KINDS.get(kind, kind),
    "reason": lambda reason: REASONS.get(reason, reason),
}


@dataclass(frozen=True)
class Chart:
    """An SVG line chart's geometry, for the template to draw."""

    width: int
    height: int
    line: str  # the polyline's points
    area: str  # the same, closed along the bottom, for the fill
    low: int
    high: int
    start: datetime
    end: datetime
    left: int
    bottom: int


def members_chart(points: list[SeriesPoint], width: int = 720, height: int = 200) -> Chart:
    left, right, top, bottom = 56, 12, 12, height - 28
    start, end = points[0].at, points[-1].at
    span = (end - start).total_seconds() or 1.0
    high = max(max(p.members for p in points), 1)
    low = 0

    def x(at: datetime) -> float:
        return left + (at - start).total_seconds() / span * (width - left - right)

    def y(members: int) -> float:
        return bottom - (members - low) / (high - low) * (bottom - top)

    # A step line: the count holds until the next change.
    coords: list[str] = []
    for prev, point in zip([None, *points], points, strict=False):
        if prev is not None:
            coords.append(f"{x(point.at):.1f},{y(prev.members):.1f}")
        coords.append(f"{x(point.at):.1f},{y(point.members):.1f}")
    line = " ".join(coords)
    area = f"{x(start):.1f},{bottom} {line} {x(end):.1f},{bottom}"
    return Chart(width, height, line, area, low, high, start, end, left, bottom)
