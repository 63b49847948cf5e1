"""``threshold: auto``: thresholds calibrated for a target false-alarm rate.

A fixed PSI threshold of 0.1 means very different false-alarm rates for a
window of 500 and one of 50 000 values. :func:`calibrate_thresholds` instead
asks: *how far apart do a reference-sized sample and a window-sized sample of
the same distribution get by chance?*, and sets each window detector's warning
threshold so that stationary data raises a false alarm, on average, no more
often than once per ``config.expected_run_time_events`` events.

The approximation, step by step:

1. **Budget per evaluation.** Evaluating every ``step`` events, the mean run
   length of ``ERT`` events is ``ERT / step`` evaluations, so the probability
   that an evaluation *raises an alarm* must be at most ``b = step / ERT``.
2. **Split** (union bound) over the window detectors of the column and over
   ``n_features`` columns: ``b' = b / (detectors * n_features)``. If the
   config corrects p-values across features (Bonferroni/BH), the feature split
   is already done by the correction for the test detectors, which then get
   ``b / detectors``.
3. **Persistence.** An alarm needs ``persistence`` consecutive drifted
   evaluations. Overlapping windows are strongly correlated, so only
   ``k_eff = min(persistence, ceil(persistence * step / window_size))`` of them
   count as independent (at least 1): the per-evaluation raw rate is
   ``q = b' ** (1 / k_eff)``. With the usual window 5000 / step 1000 /
   persistence 2, ``k_eff = 1``: no credit for persistence, conservatively.
4. **Thresholds.** KS and chi-square have known null distributions: their
   ``alpha`` becomes ``q``. For distances (PSI, Jensen-Shannon, Wasserstein)
   the null distribution is estimated by a parametric bootstrap: each
   replicate fits the detector on a resample of the reference (size n) and
   evaluates an independent resample of window size, so both samples' noise is
   present. ``q`` is far in the tail (1e-5 and below), beyond what a few
   hundred replicates see, so a scaled chi-square ``c * chi2(df)`` is fitted
   by moments (Satterthwaite) to the replicates (to the squared distance for
   JS, whose divergence is asymptotically chi-square) and its ``1 - q``
   quantile is the threshold. PSI is asymptotically
   ``(1/n + 1/w) * chi2(bins - 1)``, so the fit is close for it; for
   Wasserstein it is a heuristic.

Stream detectors (ADWIN, Page-Hinkley) are not calibrated here: their ``delta``
/ ``threshold`` control their own false-alarm rate.

>>> import numpy as np
>>> from monitor.detectors.config import DriftConfig
>>> ref = np.random.default_rng(0).normal(size=5_000)
>>> t = calibrate_thresholds(ref, "numeric", 2_000, 1_000, DriftConfig(), seed=1)
>>> sorted(t), 0 < t["ks"] < 0.05, 0.0 < t["psi"] < 0.1
(['ks', 'psi'], True, True)
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import stats

from monitor.detectors.config import DriftConfig
from monitor.detectors.factory import STREAM_DETECTORS, build_detector
from monitor.errors import DetectorError

P_VALUE_DETECTORS = frozenset({"ks", "chi_square"})


def per_evaluation_rate(
    window_size: int,
    step: int,
    config: DriftConfig,
    n_detectors: int,
    n_features: int = 1,
    corrected: bool = False,
) -> float:
    """The raw false-positive rate ``q`` allowed per detector and evaluation (steps 1-3).

    >>> round(per_evaluation_rate(5_000, 1_000, DriftConfig(), n_detectors=2), 6)
    0.0005
    """
    budget = min(1.0, step / config.expected_run_time_events)
    budget /= n_detectors * (1 if corrected else n_features)
    k = config.persistence
    k_eff = max(1, min(k, math.ceil(k * step / window_size)))
    return budget ** (1.0 / k_eff)


def scaled_chi2_quantile(samples: np.ndarray, q: float) -> float:
    """Upper-``q`` quantile of ``c * chi2(df)`` matched to the samples' mean and variance."""
    mean, var = float(np.mean(samples)), float(np.var(samples, ddof=1))
    if mean <= 0 or var <= 0:
        return float(np.max(samples))
    scale, df = var / (2.0 * mean), 2.0 * mean * mean / var
    return float(scale * stats.chi2.isf(q, df))


def calibrate_thresholds(
    reference: np.ndarray,
    kind: Literal["numeric", "categorical"],
    window_size: int,
    step: int,
    config: DriftConfig,
    seed: int,
    *,
    n_features: int = 1,
    n_resamples: int = 200,
) -> dict[str, float]:
    """Warning thresholds per window detector of ``kind`` (see the module docstring).

    ``reference`` is the column's reference (values, or a count vector for
    categorical columns). The result maps detector names to the value
    :func:`monitor.detectors.build_detectors` takes as ``thresholds``.
    Deterministic for a given ``seed``.
    """
    if window_size < 1 or step < 1 or n_features < 1 or n_resamples < 10:
        raise DetectorError("window_size, step and n_features must be >= 1 and n_resamples >= 10")
    reference = np.asarray(reference)
    n_reference = int(reference.sum()) if kind == "categorical" else int(reference.size)
    if n_reference < 2:
        raise DetectorError("calibration needs a reference of at least 2 observations")
    names = config.numeric if kind == "numeric" else config.categorical
    resolved = [build_detector(n, kind, config, n_reference).name for n in names]
    window_names = [n for n in dict.fromkeys(resolved) if n not in STREAM_DETECTORS]
    if not window_names:
        return {}
    corrected = config.correction != "none"
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for name in window_names:
        q = per_evaluation_rate(
            window_size,
            step,
            config,
            n_detectors=len(window_names),
            n_features=n_features,
            corrected=corrected and name in P_VALUE_DETECTORS,
        )
        if name in P_VALUE_DETECTORS:
            out[name] = q
            continue
        samples = np.empty(n_resamples)
        for b in range(n_resamples):
            ref_b, win_b = _resample(reference, kind, n_reference, window_size, rng)
            detector = build_detector(name, kind, config, n_reference)
            detector.fit(ref_b)
            samples[b] = detector.evaluate(win_b).statistic
        if name == "jensen_shannon":
            out[name] = min(1.0, math.sqrt(scaled_chi2_quantile(samples**2, q)))
        else:
            out[name] = scaled_chi2_quantile(samples, q)
    return out


def _resample(
    reference: np.ndarray,
    kind: str,
    n_reference: int,
    window_size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """An independent reference-sized and window-sized draw from the reference distribution."""
    if kind == "categorical":
        p = reference / reference.sum()
        return rng.multinomial(n_reference, p), rng.multinomial(window_size, p)
    return (
        rng.choice(reference, size=n_reference, replace=True),
        rng.choice(reference, size=window_size, replace=True),
    )
