"""Deterministic event sampling, for models hotter than one core.

``sample: {rate: 0.1}`` keeps an event when the first 8 bytes of the BLAKE2b
digest of its ``event_id`` (UTF-8, lone surrogates passed through), read as a
big-endian integer, are below ``rate * 2**64``. The decision depends on the id
alone: a replay, a restart, another instance and the label of an event all
decide the same way, so labels join to exactly the predictions that were kept.
The digest spreads ids evenly whatever their shape (UUIDs, counters, ...).

>>> s = Sampler(0.5)
>>> s.keeps("event-1"), s.keeps("event-1"), s.keeps("event-2")
(True, True, False)
>>> Sampler(1.0).kept(["a", "b"]) is None  # rate 1: everything, no hashing
True
"""

from __future__ import annotations

from hashlib import blake2b

_SPACE = 1 << 64


class Sampler:
    """Keeps a deterministic ``rate`` share of events, chosen by their id."""

    __slots__ = ("_limit", "rate")

    def __init__(self, rate: float) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"sample rate must be in (0, 1], got {rate!r}")
        self.rate = rate
        self._limit = min(_SPACE, int(rate * _SPACE))

    @property
    def everything(self) -> bool:
        return self._limit >= _SPACE

    def keeps(self, event_id: str) -> bool:
        """Whether the event with this id is in the sample."""
        if self._limit >= _SPACE:
            return True
        data = event_id.encode("utf-8", "surrogatepass")
        return int.from_bytes(blake2b(data, digest_size=8).digest(), "big") < self._limit

    def kept(self, event_ids: list[str]) -> list[int] | None:
        """Indices of the sampled events, ascending; None when every event is kept."""
        if self._limit >= _SPACE:
            return None
        keeps = self.keeps
        out = [i for i, e in enumerate(event_ids) if keeps(e)]
        return None if len(out) == len(event_ids) else out
