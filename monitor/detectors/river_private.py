"""The one place that touches river's private names (ADWIN, Page-Hinkley), behind a version check.

river's ``ADWIN.update`` is a Python wrapper around a compiled helper
(``_helper.update`` returns whether the value caused a change) plus a deferred
reset (``_drift_detected``, ``_reset()``): a change flagged by one update resets
the whole window at the next one. Calling the helper directly, iterating in C,
halves the per-input cost, which is paid per input and per monitored feature.
Those names are private and have changed between releases (the helper became
compiled code in 0.22), so:

* :func:`fast` is true only for the river releases in :data:`CHECKED` (checked
  against ``river.__version__``, and that the names exist, on first use);
* every other release takes the public API (``update`` then ``drift_detected``),
  which gives the same detections, more slowly;
* ``tests/test_river_private.py`` fails on any river outside :data:`CHECKED`, so an
  upgrade is a decision: re-run it (it holds both paths to the same changes on
  the same stream), then add the release here and move the bound in
  ``pyproject.toml``.

:func:`changes` feeds inputs in order and yields the indices of those that river
reports as a change, with river's own reset semantics. :func:`engine_state` and
:func:`load_engine_state` save and restore the compiled helper's state in river's
own byte encoding (its ``__getstate__``/``__setstate__``; no pickle), so that a
restored detector detects exactly what the uninterrupted one would have; they too
work only on the checked releases.

Nothing here imports ``river.drift`` at import time: that package loads
``river.drift.datasets``, hence scikit-learn and pandas (about 1.5 s and 150 MB),
and most commands (and a service whose models run no stream detector) never
build an ADWIN. :func:`fast` and :func:`state_io` probe river's ADWIN on their
first call, which comes with the first detector built.

>>> from river import drift
>>> det = drift.ADWIN(delta=0.002)
>>> list(changes(det, [0.0] * 1_000 + [1.0] * 200))
[1023]
>>> list(changes(det, [1.0] * 10, fast=False)) == list(changes(drift.ADWIN(), [1.0] * 10))
True
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from itertools import compress, count
from typing import Any

import river

#: river releases (major, minor) whose ADWIN internals :func:`changes` was checked against.
CHECKED: frozenset[tuple[int, int]] = frozenset({(0, 26)})


def _release(version: str) -> tuple[int, int] | None:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


RIVER_RELEASE = _release(river.__version__)


@cache
def _probe() -> tuple[bool, bool]:
    """(:func:`fast`, :func:`state_io`), from one ADWIN of this river build."""
    from river import drift as river_drift  # see the module docstring: not at import

    probe = river_drift.ADWIN()
    helper = getattr(probe, "_helper", None)
    flag = RIVER_RELEASE in CHECKED and isinstance(getattr(probe, "_drift_detected", None), bool)
    fast = flag and hasattr(helper, "update") and callable(getattr(probe, "_reset", None))
    state_io = (
        flag
        and callable(getattr(helper, "__getstate__", None))
        and callable(getattr(helper, "__setstate__", None))
    )
    return bool(fast), bool(state_io)


def fast() -> bool:
    """Whether :func:`changes` drives the compiled helper directly (see the module docstring)."""
    return _probe()[0]


def state_io() -> bool:
    """Whether :func:`engine_state` / :func:`load_engine_state` can save and restore the
    compiled helper (checked releases whose helper has river's state protocol)."""
    return _probe()[1]


#: Page-Hinkley's state: a few floats, and its running mean (``_x_mean``).
_PH_FLOATS = ("_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease")


def page_hinkley_state(det: Any) -> dict[str, float]:
    """river's Page-Hinkley ``det`` as the floats that make up its state."""
    if RIVER_RELEASE not in CHECKED:
        raise EngineStateUnavailable(f"river {river.__version__}: Page-Hinkley state not readable")
    out = {name: float(getattr(det, name)) for name in _PH_FLOATS}
    out["mean_n"] = float(det._x_mean.n)
    out["mean"] = float(det._x_mean.get())
    return out


def load_page_hinkley_state(det: Any, values: dict[str, float], drift_detected: bool) -> None:
    """Put a state of :func:`page_hinkley_state` (same river release) into the fresh ``det``."""
    if RIVER_RELEASE not in CHECKED:
        raise EngineStateUnavailable(f"river {river.__version__}: Page-Hinkley state not readable")
    for name in _PH_FLOATS:
        setattr(det, name, float(values[name]))
    det._x_mean.n = float(values["mean_n"])
    det._x_mean._mean = float(values["mean"])
    det._drift_detected = drift_detected


class EngineStateUnavailable(RuntimeError):
    """This river release is not one whose ADWIN state :mod:`river_private` can read."""


def engine_state(det: Any) -> tuple[bytes, bool]:
    """The compiled helper's state (river's bytes) and the pending-reset flag of ``det``."""
    if not state_io():
        raise EngineStateUnavailable(f"river {river.__version__}: ADWIN state not readable")
    return bytes(det._helper.__getstate__()), bool(det._drift_detected)


def load_engine_state(det: Any, data: bytes, drift_detected: bool) -> None:
    """Put a state of :func:`engine_state` (same river release) into the fresh ADWIN ``det``.

    river's compiled core may panic (a ``BaseException``) on bytes it cannot read;
    the caller treats any exception as "not restorable".
    """
    if not state_io():
        raise EngineStateUnavailable(f"river {river.__version__}: ADWIN state not readable")
    det._helper.__setstate__(data)
    det._drift_detected = drift_detected


def changes(det: Any, inputs: list[float], *, fast: bool | None = None) -> Iterator[int]:
    """Feed ``inputs`` to the river ADWIN ``det`` in order; yield the index of each input
    river reports as a change, before the reset that follows it.

    Exactly river's ``update`` semantics: a change found on input ``i`` resets the
    window before input ``i + 1``, or, on the last input, at the next call. A caller
    may read ``det.width`` and ``det.estimation`` (the window ADWIN kept) when an
    index is yielded. ``fast`` forces a path (tests); by default :func:`fast`.
    """
    if not inputs:
        return
    if not (_probe()[0] if fast is None else fast):  # the parameter hides fast()
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


__all__ = [
    "CHECKED",
    "RIVER_RELEASE",
    "EngineStateUnavailable",
    "changes",
    "engine_state",
    "fast",
    "load_engine_state",
    "load_page_hinkley_state",
    "page_hinkley_state",
    "state_io",
]
