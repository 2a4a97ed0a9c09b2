"""Counting dropped inputs and throttling the warnings about them.

A camera at 30 Hz sending malformed frames must not flood the log, yet the first problem of each
kind must be reported at once and the counts must stay visible. Throttling is per input (image,
depth, instruction, ...), not per call site as rclpy's throttle is, so a flood of bad images
cannot hide a bad instruction.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable


class DropCounter:
    """Counts drops per input and says when a warning about that input is due."""

    def __init__(self, throttle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.throttle_s = throttle_s
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._last_warned: dict[str, float] = {}
        self._lock = threading.Lock()

    def drop(self, source: str, reason: str) -> str | None:
        """Count one dropped `source` input; return the warning to log now, or None while throttled."""
        with self._lock:
            self._counts[source] += 1
            now = self._clock()
            last = self._last_warned.get(source)
            if last is not None and now - last < self.throttle_s:
                return None
            self._last_warned[source] = now
            return f"dropped {source}: {reason} ({self._counts[source]} {source} input(s) dropped so far)"

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
