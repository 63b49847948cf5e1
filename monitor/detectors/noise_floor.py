"""Noise floors of the distances (PSI, Jensen-Shannon, Wasserstein): how far apart chance
alone puts a window and its reference.

PSI and Jensen-Shannon have no p-value, and a small window is far from its reference by
chance alone: two samples of one distribution, of ``n`` and ``m`` values over ``k`` bins,
are apart by a quadratic form, ``sum (w - r)^2 / r``, of about ``(1/n + 1/m) *
chi2(k - 1)``, plus what the bins the window happens to leave empty add (the quadratic
approximation misses those, and they dominate small windows). Against a 10,000-value
reference with 10 bins, a stationary window of 120 values reached PSI 0.1 in a quarter of
evaluations, one of 200 in 2.4 %, and a feature of 500 rare categories did at 5,000 values
in 96 %; Jensen-Shannon's 0.1 was reached by 70 % of 120-value windows. Every evaluation
of a twenty-feature model paged someone.

So these detectors count as drift only above their noise floor: the distance such a pair
exceeds with probability about ``alpha`` (1e-5, as KS's alpha). Pure functions of the
window's size and the reference's bin counts.

Measured on simulated stationary windows (PSI: 400,000 per case, 10 and 20 quantile bins;
6, 40, skewed and 505 categories; windows of 20 to 5,000 values. Jensen-Shannon: 200,000 per
case, the same and 200 categories): at most 6.5e-5 of windows above PSI's floor and 2.5e-5
above Jensen-Shannon's, against up to 100 % above 0.1 (``tests/test_noise_floor.py``
re-measures a few cases on every run). A floor above 1 puts Jensen-Shannon (at most 1) out
of reach: at that size the window says nothing it could measure.

Wasserstein (in reference standard deviations) has the same problem: a stationary window
of 120 values was above 0.1 in 58 % of evaluations (normal, lognormal and exponential
data alike), of 500 in 3 to 9 %, of 1,000 in 0.3 to 1.3 %; the ``auto`` numeric entry
(Evidently's rule) picks it for every reference over 1,000 values. Its floor is a bound,
not a fitted quantile: ``sqrt(nm / (n + m)) * W1 / std`` tends to the L1 norm of a
Brownian bridge run through the reference's CDF, ``||Z|| = integral |B(F(x))| dx``, whose
mean is ``sqrt(2 / pi) * integral sqrt(F (1 - F)) dx`` (computed from the sorted
reference) and whose tail is Gaussian with variance at most ``Var(X)`` (Borell-TIS: the
largest variance of a linear functional of ``Z``, reached by its integral, which is the
mean's), i.e. at most 1 in these units: ``P(||Z|| > E||Z|| + t) <= exp(-t^2 / 2)``. Measured
against 100,000 stationary windows of 200 values per shape, the bound is loose for light
tails (normal: 3.9 at 1e-4 against the bound's 5.6) and close for heavy ones (lognormal:
5.3 at 1e-4), where one extreme value in a small window moves the distance most. With the
floor at ``alpha`` 1e-4, 20,000 stationary windows per case of 30, 120, 500, 1,000 and
5,000 values: none drifted with normal, exponential, uniform or bimodal data; heavy tails
go past the bound in small windows: lognormal 17, 1, 1, 0, 0 and Student's t(3) 8, 5, 2,
2, 0 (between 1e-4 and 8.5e-4 of windows up to 1,000 values, against 0.4 % to 100 % above
0.1 without the floor). KS, which reads ranks, is the detector for heavy-tailed features.

>>> import numpy as np
>>> counts = np.full(10, 1_000)
>>> round(psi_noise_floor(5_000, counts, 1e-4, 1e-5), 4)  # the default window: below 0.1
0.0118
>>> round(psi_noise_floor(200, counts, 1e-4, 1e-5), 4)
0.2006
>>> round(psi_noise_floor(120, counts, 1e-4, 1e-5), 4)  # bins may be empty at 120
1.7133
>>> round(js_noise_floor(5_000, counts, 1e-5), 4), round(js_noise_floor(120, counts, 1e-5), 4)
(0.0461, 0.3998)
>>> ref = np.sort(np.random.default_rng(0).normal(size=10_000))
>>> spread = wasserstein_spread(ref, float(ref.std()))
>>> round(spread, 2)  # the standard normal's E||Z|| is 1.288
1.28
>>> round(wasserstein_noise_floor(5_000, 10_000, spread, 1e-4), 4)  # the default window
0.0965
>>> round(wasserstein_noise_floor(120, 10_000, spread, 1e-4), 4)
0.5115
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import chi2

#: Floors kept per window size by one detector (a count window has one size, a time window
#: a few hundred at most; past this many, each is computed again: tens of microseconds).
FLOORS_KEPT = 512


def _chance(n: int, counts: np.ndarray, alpha: float) -> tuple[float, np.ndarray]:
    """The two parts of a floor: the quadratic form's ``1 - alpha`` quantile, and the
    reference shares of the bins that may be empty in the window at once, largest first.

    Only bins with reference values count (the pooled unseen bucket and the empty bins
    of a one-value reference take no part). A bin of share ``r`` may be empty when
    ``(1 - r) ** n`` is above ``alpha / k``; as many of them are taken as may be empty at
    once: the expected count of empty bins plus four standard deviations, plus one.
    """
    counts = counts[counts > 0]
    k = counts.size
    m = float(counts.sum())
    quadratic = (1.0 / n + 1.0 / m) * float(chi2.isf(alpha, max(k - 1, 1)))
    r = counts / m
    p_empty = (1.0 - r) ** n
    maybe = p_empty > alpha / k
    if not maybe.any():
        return quadratic, r[:0]
    p = p_empty[maybe]
    at_once = math.ceil(float(p.sum()) + 4.0 * math.sqrt(float((p * (1.0 - p)).sum()))) + 1
    return quadratic, np.sort(r[maybe])[::-1][:at_once]


def psi_noise_floor(n: int, counts: np.ndarray, epsilon: float, alpha: float) -> float:
    """The PSI a window of ``n`` values exceeds by chance with probability about ``alpha``,
    against a reference of bin ``counts``.

    PSI's term ``(w - r) ln(w / r)`` is ``(w - r)^2 / r`` to second order, so PSI is the
    quadratic form; an empty window bin adds ``r * ln(r / epsilon)`` instead (its
    proportion floored at ``epsilon``).
    """
    quadratic, empty = _chance(n, counts, alpha)
    return quadratic + float((empty * np.log(empty / epsilon)).sum())


def js_noise_floor(n: int, counts: np.ndarray, alpha: float) -> float:
    """The Jensen-Shannon distance (base 2) a window of ``n`` values exceeds by chance with
    probability about ``alpha``, against a reference of bin ``counts``.

    The divergence is an eighth of the quadratic form to second order (in nats; divided by
    ``ln 2`` for bits); an empty window bin adds ``r / 2`` bits. The distance is the square
    root of the divergence.
    """
    quadratic, empty = _chance(n, counts, alpha)
    return math.sqrt(quadratic / (8.0 * math.log(2.0)) + float(empty.sum()) / 2.0)


def wasserstein_spread(sorted_reference: np.ndarray, scale: float) -> float:
    """``E||Z||`` in units of ``scale`` (the reference's standard deviation): the mean of
    the limit of ``sqrt(nm / (n + m)) * W1``, ``sqrt(2 / pi) * integral sqrt(F (1 - F)) dx``
    over the reference's empirical CDF ``F`` (a step function: exact as a sum over the
    gaps between its sorted values)."""
    m = sorted_reference.size
    if m < 2:
        return 0.0
    f = np.arange(1, m, dtype=np.float64) / m
    gaps = np.diff(sorted_reference)
    return math.sqrt(2.0 / math.pi) * float(np.dot(np.sqrt(f * (1.0 - f)), gaps)) / scale


def wasserstein_noise_floor(n: int, m: int, spread: float, alpha: float) -> float:
    """The normalised W1 a window of ``n`` values exceeds by chance with probability at
    most about ``alpha``, against a reference of ``m`` values and :func:`wasserstein_spread`
    ``spread``: ``(spread + sqrt(2 ln(1 / alpha))) * sqrt(1 / n + 1 / m)``."""
    return (spread + math.sqrt(2.0 * math.log(1.0 / alpha))) * math.sqrt(1.0 / n + 1.0 / m)


class Floors:
    """One fitted detector's noise floors, by window size: ``floors(n)``.

    ``floor`` computes one (a partial of :func:`psi_noise_floor`, :func:`js_noise_floor`
    or :func:`wasserstein_noise_floor` over what it needs of the reference); each is kept,
    as it depends on nothing else, up to :data:`FLOORS_KEPT` sizes.
    """

    def __init__(self, floor: Callable[[int], float]) -> None:
        self._floor = floor
        self._kept: dict[int, float] = {}

    def __call__(self, n: int) -> float:
        kept = self._kept.get(n)
        if kept is None:
            kept = self._floor(n)
            if len(self._kept) < FLOORS_KEPT:
                self._kept[n] = kept
        return kept
