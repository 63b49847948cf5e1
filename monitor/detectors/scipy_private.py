"""The one place that uses a private name of scipy, behind a version check.

``ks_2samp(method="exact")`` counts lattice paths for unequal sample sizes with
a compiled routine, ``scipy.stats._stats_pythran._compute_outer_prob_inside_method``.
scipy has no public function for that null distribution (``scipy.stats.kstwo``
is the one-sample one), and calling ``ks_2samp`` itself would sort and merge
both samples again at every evaluation, which :mod:`monitor.detectors.ks`
exists to avoid. So the private routine is used, here only.

At import the installed scipy is checked against the versions this was tested
with (``SCIPY_TESTED``, the same bound as in ``pyproject.toml``). Outside them,
or when the name has moved, :data:`outer_prob_inside` is ``None`` and the KS
detector falls back, as scipy does when its exact count fails, to the
asymptotic p-value; ``tests/test_detectors.py`` fails loudly in that case, so an
upgrade is a decision, not a surprise. Only ``method: auto`` uses it; the
default ``kolmogorov`` does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import scipy

log = logging.getLogger(__name__)

#: ``[low, high)`` as (major, minor): keep in step with ``scipy`` in pyproject.toml.
SCIPY_TESTED = ((1, 11), (1, 18))


def _scipy_version() -> tuple[int, int]:
    major, minor = scipy.__version__.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def _load() -> Callable[[int, int, int, int], float] | None:
    low, high = SCIPY_TESTED
    if not low <= _scipy_version() < high:
        log.warning(
            "scipy %s is outside the tested range %s.%s to below %s.%s: the KS exact "
            "p-value for unequal sizes falls back to the asymptotic one",
            scipy.__version__,
            *low,
            *high,
        )
        return None
    try:
        from scipy.stats._stats_pythran import _compute_outer_prob_inside_method
    except ImportError:  # pragma: no cover - depends on the scipy build
        log.warning("scipy %s has no compiled KS path count", scipy.__version__)
        return None
    return _compute_outer_prob_inside_method


#: P(D >= h / lcm) for sizes m, n with gcd g (scipy's exact count), or None; see above.
outer_prob_inside: Callable[[int, int, int, int], float] | None = _load()

__all__ = ["SCIPY_TESTED", "outer_prob_inside"]
