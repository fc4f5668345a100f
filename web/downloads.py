"""A CSV report as a download: the models' streamed lines, named for the browser."""

from __future__ import annotations

from collections.abc import Iterator

from litestar.response import Stream


def csv_download(lines: Iterator[str], filename: str) -> Stream:
    """``lines`` streamed as text/csv, saved as ``filename``."""
    return Stream(
        lines,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
