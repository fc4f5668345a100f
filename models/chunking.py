"""Batch sizes chosen by time, not rows, as pt-online-schema-change's ``--chunk-time``
does: each batch of a bulk job should hold its locks and a core for about the same short
time, whatever the rows cost on this machine, at this moment.

Pure: the caller times each batch and reports it; nothing here touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# One batch may grow the next at most this much: a batch that ran fast because it found
# little to do (a sparse range) must not launch a huge one.
MAX_GROWTH = 2.0
# Weight of the newest batch in the smoothed rate (rows per second) used to grow.
SMOOTHING = 0.5


@dataclass
class ChunkSizer:
    """``size`` is the next batch's row count; ``record`` tells how long the last took."""

    target_seconds: float
    size: int
    low: int = 1
    high: int = 1_000_000
    _rate: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.size = self._clamp(self.size)

    def record(self, seconds: float) -> int:
        """The last batch of ``size`` rows took ``seconds``; returns the next size."""
        rate = self.size / max(seconds, 1e-6)
        self._rate = rate if self._rate is None else SMOOTHING * rate + (1 - SMOOTHING) * self._rate
        # Down at once, up smoothly: a slow batch (a lock wait, a busy core) is what the
        # readers feel, so the next one is small right away.
        wanted = min(rate, self._rate) * self.target_seconds
        self.size = self._clamp(min(wanted, self.size * MAX_GROWTH))
        return self.size

    def _clamp(self, size: float) -> int:
        return int(max(self.low, min(self.high, size)))
