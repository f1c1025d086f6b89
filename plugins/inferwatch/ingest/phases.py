"""Where ingest's time goes: wall seconds per step, summed over a run's chunks.

The ingest report carries them (``phase_seconds``) and the ingest task logs them, so that a run
at any scale says what bounds it (``benchmarks/bench_ingest.py --profile`` prints them beside
the floor). Timing a step costs two clock reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Phases:
    """Seconds per named step; ``with phases("step"): ...`` adds the block's wall time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()  # the fetch pool's threads add to it too

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def rounded(self) -> dict[str, float]:
        return {name: round(value, 3) for name, value in self.seconds.items()}
