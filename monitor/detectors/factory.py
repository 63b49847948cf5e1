"""The detectors of a column, by config name: the default panel and its factory.

Which detectors run by default, and why
---------------------------------------

Evidently picks one test per column: KS for numeric columns with at most 1000
reference values and Wasserstein (in reference std units, threshold 0.1) above;
chi-square for categorical columns with few categories and Jensen-Shannon
above. Its reason is that with large samples a p-value test flags shifts too
small to matter.

We run a small *panel* per column instead (``DriftConfig.numeric`` and
``DriftConfig.categorical``), because the monitor evaluates the same column
many times and an alert needs more than one noisy evaluation anyway:

* numeric: ``psi`` (a scale-free, familiar magnitude with warning/critical
  grades), ``ks`` (a calibrated test: its p-values can be corrected across
  features, see :class:`monitor.drift.DriftTracker`) and ``adwin`` (a stream
  detector that localises *when* the change happened, between evaluations);
* categorical: ``psi`` (with an explicit bucket for unseen categories) and
  ``chi_square`` (a homogeneity test: it treats the reference as a sample and
  handles unseen categories without smoothing).

Default thresholds: zero false alarms per million events
----------------------------------------------------------

Users abandon a monitor that pages on data that did not change, so the
defaults are set for *no* false alarm in a million stationary events per model
(about 20 features, window 5000, step 1000: 1000 evaluations, 20,000
feature-evaluations), then for the shortest delay that allows:

* ``ks`` and ``chi_square`` at ``alpha = 1e-5``, corrected across features
  (BH): the chance that an evaluation of a stationary model flags anything is
  at most 1e-5, about 0.01 expected false alarms per million events. The KS
  p-value is Kolmogorov's limiting distribution (``ks.method: kolmogorov``):
  within 3 % of scipy's exact value at these sizes and about 1000 times faster
  (see :mod:`monitor.detectors.ks`).
* ``adwin`` on every numeric column with ``delta = 1e-5``: river's default
  0.002 raised about one false change per million stationary values (one per
  feature: twenty per million events per model); 1e-5 raised none in 20
  million, and ADWIN still finds a 0.5 sigma mean shift within about 250
  values, long before a 5000-value window test can, so it sets the delay for
  mean shifts. It reads sums of 64 values (``adwin.block``, see
  :class:`~monitor.detectors.streaming.ADWINDetector`), one river update per
  block: about 0.02 microseconds per value and feature, where value by value
  it was the costliest detector; list features in ``streaming_features`` to
  restrict it further. A change counts as drift only when the values after it
  sit away from the reference's mean (``adwin.away_only``, 4 standard errors):
  the end of a drift is a change too, and after an incident had resolved it
  opened a new one with PSI and KS at rest (PSI 0.005, KS D 0.02). The rule
  and its numbers are in :mod:`monitor.detectors.streaming` ("Direction").
* ``psi`` at its conventional 0.1 / 0.25: a stationary 5000-value window never
  reaches 0.1 against a 10,000-value reference (null mean ~0.003), so PSI adds
  a familiar magnitude without adding false alarms; KS and ADWIN do the
  detecting. Smaller windows and features of many categories do reach 0.1 by
  chance: there the thresholds rise to PSI's noise floor (``noise_alpha``,
  :mod:`monitor.detectors.psi`).
* ``persistence: 1``, ``clear_after: 5``: with thresholds this strict, waiting
  for a second drifted evaluation of an 80 %-overlapping window buys little
  and costs a step of delay; hysteresis (a window's worth of clean
  evaluations) keeps one drift to one incident.

``threshold: auto`` (calibration to ``expected_run_time_events``) is not the
default: it costs about 0.6 s per numeric feature at start-up (bootstrap of the
distance detectors on a 10,000-value reference; ~12 s for a 20-feature model)
and its default run time of 1e6 events is, by construction, about one false
alarm per million. It is the right tool for windows far from the defaults.

Users who prefer Evidently's rule list ``auto`` for numeric columns: it
resolves to ``ks`` when the reference has at most 1000 values and to
``wasserstein`` above. ``jensen_shannon`` is the bounded alternative for
categorical columns with many categories.

``n_reference`` (the number of reference observations) also caps the number of
quantile bins of PSI and JS at ``n_reference // 5`` (at least 2), so that each
reference bin holds about five values or more.

>>> from monitor.detectors.config import DriftConfig
>>> [d.name for d in build_detectors("numeric", DriftConfig(), n_reference=10_000)]
['psi', 'ks', 'adwin']
>>> [d.name for d in build_detectors("categorical", DriftConfig(), n_reference=10_000)]
['psi', 'chi_square']
>>> cfg = DriftConfig(numeric=["auto"])
>>> [d.name for d in build_detectors("numeric", cfg, 500)]
['ks']
>>> [d.name for d in build_detectors("numeric", cfg, 5_000)]
['wasserstein']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from monitor.detectors.base import Detector
from monitor.detectors.chi_square import ChiSquareDetector
from monitor.detectors.config import DriftConfig
from monitor.detectors.jensen_shannon import JensenShannonDetector
from monitor.detectors.ks import KSDetector
from monitor.detectors.psi import PSIDetector
from monitor.detectors.streaming import ADWINDetector, PageHinkleyDetector
from monitor.detectors.wasserstein import WassersteinDetector
from monitor.errors import DetectorError

#: Evidently's switch from KS to Wasserstein for the ``auto`` numeric entry.
AUTO_KS_MAX_REFERENCE = 1000
#: Stream detectors: they need every value through ``update``.
STREAM_DETECTORS = frozenset({"adwin", "page_hinkley"})


def _bins(bins: int, n_reference: int) -> int:
    return max(2, min(bins, n_reference // 5))


def build_detector(
    name: str,
    kind: Literal["numeric", "categorical"],
    config: DriftConfig,
    n_reference: int,
    threshold: float | None = None,
    *,
    seed: int = 0,
) -> Detector:
    """One fresh, unfitted detector by config name.

    ``seed`` reaches the detectors that use randomness (ADWIN's warm-up order).

    ``threshold`` overrides the warning-level threshold (PSI ``warning``,
    KS/chi-square ``alpha``, JS/Wasserstein ``threshold``), e.g. with a value
    from :func:`monitor.detectors.calibration.calibrate_thresholds`. For PSI,
    ``critical`` is raised to the override if it would fall below it.
    """
    if name == "auto":
        name = "ks" if n_reference <= AUTO_KS_MAX_REFERENCE else "wasserstein"
    if name == "psi":
        p = config.psi
        warning = threshold if threshold is not None else p.warning
        return PSIDetector(
            bins=_bins(p.bins, n_reference),
            warning=warning,
            critical=max(p.critical, warning),
            epsilon=p.epsilon,
            kind=kind,
            # A calibrated threshold (threshold: auto) is set for its target false-alarm
            # rate at the window's size already; the floor would move that rate.
            noise_alpha=p.noise_alpha if threshold is None else None,
        )
    if name == "ks":
        return KSDetector(
            alpha=threshold if threshold is not None else config.ks.alpha, method=config.ks.method
        )
    if name == "chi_square":
        return ChiSquareDetector(
            alpha=threshold if threshold is not None else config.chi_square.alpha
        )
    if name == "jensen_shannon":
        j = config.jensen_shannon
        t = threshold if threshold is not None else j.threshold
        critical = None if j.critical is None else max(j.critical, t)
        return JensenShannonDetector(
            threshold=t,
            bins=_bins(j.bins, n_reference),
            critical=critical,
            kind=kind,
            noise_alpha=j.noise_alpha if threshold is None else None,  # as PSI's above
        )
    if name == "wasserstein":
        w = config.wasserstein
        t = threshold if threshold is not None else w.threshold
        critical = None if w.critical is None else max(w.critical, t)
        return WassersteinDetector(
            threshold=t,
            critical=critical,
            noise_alpha=w.noise_alpha if threshold is None else None,  # as PSI's above
        )
    if name == "adwin":
        return ADWINDetector(**config.adwin.model_dump(), seed=seed)
    if name == "page_hinkley":
        return PageHinkleyDetector(**config.page_hinkley.model_dump())
    raise DetectorError(f"unknown detector {name!r}")


def build_detectors(
    kind: Literal["numeric", "categorical"],
    config: DriftConfig,
    n_reference: int,
    *,
    feature: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    seed: int = 0,
) -> list[Detector]:
    """Fresh, unfitted detectors for one column, per ``config`` (see the module docstring).

    ``feature`` (optional) applies ``config.streaming_features``: stream
    detectors are left out for features not listed. ``thresholds`` maps
    detector names to calibrated warning thresholds (``threshold: auto``).
    """
    if kind not in ("numeric", "categorical"):
        raise DetectorError(f"kind must be 'numeric' or 'categorical', got {kind!r}")
    if n_reference < 1:
        raise DetectorError(f"n_reference must be >= 1, got {n_reference!r}")
    names = config.numeric if kind == "numeric" else config.categorical
    thresholds = thresholds or {}
    detectors: list[Detector] = []
    for name in names:
        if name in STREAM_DETECTORS and not config.streams_feature(feature):
            continue
        resolved = name
        if name == "auto":
            resolved = "ks" if n_reference <= AUTO_KS_MAX_REFERENCE else "wasserstein"
        detectors.append(
            build_detector(resolved, kind, config, n_reference, thresholds.get(resolved), seed=seed)
        )
    return detectors


__all__ = ["AUTO_KS_MAX_REFERENCE", "STREAM_DETECTORS", "build_detector", "build_detectors"]
