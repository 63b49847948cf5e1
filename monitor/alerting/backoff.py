"""Retry delays: capped exponential backoff with optional full jitter (pure, seeded).

"Full jitter" (Brooker, AWS Architecture Blog, 2015) draws the delay
uniformly from ``[0, cap]``, ``cap = min(max, initial * 2**(attempt-1))``:
it spreads the retries of many notifications that failed together, which is
exactly what happens when a receiver comes back from an outage.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number ``attempt`` (1 = first retry).

    >>> b = Backoff(initial=1.0, maximum=8.0, jitter="none")
    >>> [b.delay(a, random.Random(0)) for a in (1, 2, 3, 4, 5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    >>> 0.0 <= Backoff(1.0, 8.0).delay(3, random.Random(0)) <= 4.0
    True
    """

    initial: float
    maximum: float
    jitter: Literal["full", "none"] = "full"

    def cap(self, attempt: int) -> float:
        exponent = min(max(attempt, 1) - 1, 62)  # 2**62 overflows nothing and exceeds any max
        return min(self.maximum, self.initial * float(2**exponent))

    def delay(self, attempt: int, rng: random.Random) -> float:
        cap = self.cap(attempt)
        return rng.uniform(0.0, cap) if self.jitter == "full" else cap


__all__ = ["Backoff"]
