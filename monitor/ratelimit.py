"""A logger wrapper that says a repeated thing at most once per interval.

Bad input can arrive at thousands of messages per second; the log should name
the first offending field and then how many more were suppressed, not drown.
"""

from __future__ import annotations

import logging
from typing import Any

from monitor.clock import Clock


class RateLimitedLogger:
    """Logs at most one message per ``per_seconds``; counts what it suppressed."""

    def __init__(self, logger: logging.Logger, *, per_seconds: float, clock: Clock) -> None:
        self._logger = logger
        self._per = per_seconds
        self._clock = clock
        self._next_at = 0.0
        self.suppressed = 0

    def warning(self, msg: str, *args: Any) -> None:
        now = self._clock.monotonic()
        if now < self._next_at:
            self.suppressed += 1
            return
        if self.suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        self._next_at = now + self._per
        self._logger.warning(msg, *args)
