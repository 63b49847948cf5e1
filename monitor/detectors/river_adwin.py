"""The one place that drives river's ADWIN through private names, behind a version check.

river's ``ADWIN.update`` is a Python wrapper around a compiled helper
(``_helper.update`` returns whether the value caused a change) plus a deferred
reset (``_drift_detected``, ``_reset()``): a change flagged by one update resets
the whole window at the next one. Calling the helper directly, iterating in C,
halves the per-input cost, which is paid per input and per monitored feature.
Those names are private and have changed between releases (the helper became
compiled code in 0.22), so:

* :data:`FAST` is true only for the river releases in :data:`CHECKED` (checked
  at import against ``river.__version__``, and that the names exist);
* every other release takes the public API (``update`` then ``drift_detected``),
  which gives the same detections, more slowly;
* ``tests/test_river_adwin.py`` fails on any river outside :data:`CHECKED`, so an
  upgrade is a decision: re-run it (it holds both paths to the same changes on
  the same stream), then add the release here and move the bound in
  ``pyproject.toml``.

:func:`changes` is the whole interface: feed inputs in order, get the indices of
those that river reports as a change, with river's own reset semantics.

>>> from river import drift
>>> det = drift.ADWIN(delta=0.002)
>>> list(changes(det, [0.0] * 1_000 + [1.0] * 200))
[1023]
>>> list(changes(det, [1.0] * 10, fast=False)) == list(changes(drift.ADWIN(), [1.0] * 10))
True
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import compress, count
from typing import Any

import river
from river import drift as river_drift

#: river releases (major, minor) whose ADWIN internals :func:`changes` was checked against.
CHECKED: frozenset[tuple[int, int]] = frozenset({(0, 26)})


def _release(version: str) -> tuple[int, int] | None:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


RIVER_RELEASE = _release(river.__version__)
_PROBE = river_drift.ADWIN()
#: Whether :func:`changes` drives the compiled helper directly (see the module docstring).
FAST: bool = (
    RIVER_RELEASE in CHECKED
    and hasattr(getattr(_PROBE, "_helper", None), "update")
    and isinstance(getattr(_PROBE, "_drift_detected", None), bool)
    and callable(getattr(_PROBE, "_reset", None))
)
del _PROBE


def changes(det: Any, inputs: list[float], *, fast: bool | None = None) -> Iterator[int]:
    """Feed ``inputs`` to the river ADWIN ``det`` in order; yield the index of each input
    river reports as a change, before the reset that follows it.

    Exactly river's ``update`` semantics: a change found on input ``i`` resets the
    window before input ``i + 1``, or, on the last input, at the next call. A caller
    may read ``det.width`` and ``det.estimation`` (the window ADWIN kept) when an
    index is yielded. ``fast`` forces a path (tests); by default :data:`FAST`.
    """
    if not inputs:
        return
    if not (FAST if fast is None else fast):
        update = det.update
        for i, value in enumerate(inputs):
            update(value)
            if det.drift_detected:
                yield i
        return
    if det._drift_detected:  # river's deferred reset after a change on a previous call
        det._reset()
    start, last = 0, len(inputs) - 1
    while start <= last:
        # compress() pulls from map() one input at a time and stops at the first change.
        i = next(compress(count(start), map(det._helper.update, inputs[start:])), None)
        if i is None:
            return
        yield i
        if i < last:
            det._reset()
            start = i + 1
        else:
            det._drift_detected = True  # reset on the next input, as river does
            return


__all__ = ["CHECKED", "FAST", "RIVER_RELEASE", "changes"]
