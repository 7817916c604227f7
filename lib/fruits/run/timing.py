"""Wall-clock time per pipeline stage, for the manifest and the report."""

from __future__ import annotations

import contextlib
import time


class StageTimer:
    """Collects seconds per named stage.

    Examples
    --------
    >>> timer = StageTimer()
    >>> with timer.stage("load"):
    ...     pass
    >>> list(timer.seconds)
    ['load']
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        """Time the ``with`` block and add it to ``name``'s total."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)

    @property
    def total(self) -> float:
        """Sum of all stages."""
        return round(sum(self.seconds.values()), 3)
