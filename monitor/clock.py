"""The clock seam.

Everything that needs "now" takes a :class:`Clock` (or a ``now`` argument in the
pure core), so tests advance time explicitly instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock seconds since the epoch (``time()``) and a monotonic reading (``monotonic()``)."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to; for tests.

    >>> c = ManualClock(100.0)
    >>> c.advance(5)
    >>> c.time(), c.monotonic()
    (105.0, 105.0)
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += float(seconds)

    def set(self, now: float) -> None:
        self._now = float(now)
