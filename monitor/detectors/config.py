"""Drift-detection settings per model: which detectors, their thresholds, and alert policy.

YAML shape (every key optional; these are the defaults)::

    drift:
      numeric: [psi, ks, adwin]
      categorical: [psi, chi_square]
      psi: {bins: 10, warning: 0.1, critical: 0.25, epsilon: 0.0001, noise_alpha: 0.00001}
      ks: {alpha: 0.00001, method: kolmogorov}
      chi_square: {alpha: 0.00001}
      jensen_shannon: {threshold: 0.1, critical: null, bins: 10,   # null = 2 * threshold
                       noise_alpha: 0.00001}
      wasserstein: {threshold: 0.1, critical: null, noise_alpha: 0.0001}
      adwin: {delta: 0.00001, away_only: true, block: 64, clock: 1, min_window_length: 1,
              grace_period: 10}
      page_hinkley: {min_instances: 30, delta: 0.005, threshold: 50.0, alpha: 0.9999, mode: both}
      correction: bh
      persistence: 1
      clear_after: 5
      threshold: fixed
      expected_run_time_events: 1000000
      streaming_features: all

Why these defaults (measured in BENCHMARKS.md, "Detection quality"): at the
service's default window (5000 events, step 1000, 10,000-value reference) and
~20 features, a false alarm budget of *zero per million events per model* needs
a per-evaluation false-positive rate around 1e-5 or below, since a model is
evaluated 1000 times per million events. KS and chi-square get ``alpha =
1e-5`` (after BH across features, the chance that any feature of one
evaluation flags under no drift is at most alpha), ADWIN gets ``delta = 1e-5``
(no detection in 20 million stationary values, against about one per million at
river's default 0.002), and PSI keeps its conventional grades, which stationary
windows of these sizes never reach. With thresholds that strict, requiring two
consecutive drifted evaluations (``persistence: 2``) buys little: overlapping
windows are strongly correlated, and it costs one full step of delay. So
``persistence`` is 1 and the anti-flapping work moves to ``clear_after: 5``: an
incident clears only after a whole window (5000 / 1000 steps) of clean
evaluations, so one drift is one incident even when ADWIN fires before the
window tests catch up.

Stream detectors run on every numeric column by default (``streaming_features:
all``): ADWIN on each feature is what catches a 0.25-sigma shift at the first
evaluation after it instead of the second (BENCHMARKS.md, "Detection
quality"). It is paid per value and per column: about 0.02 microseconds at the
default ``block: 64`` (ADWIN tests the sum of each run of 64 values, so river is
called once per 64 values), against 0.14-0.16 value by value (``block: 1``),
which was roughly a tenth of the service's per-event time on a 20-feature
model (BENCHMARKS.md "Throughput"); ``clock``, ``min_window_length`` and
``grace_period`` count blocks. List only the features that need it, or
``[__prediction__]``, for a still busier model.

Parameter bounds mirror the detectors' own checks, so a bad value is reported
by ``monitor check-config`` with its path instead of failing at start-up.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from monitor.strict_model import StrictModel

NumericDetectorName = Literal[
    "psi", "ks", "wasserstein", "jensen_shannon", "adwin", "page_hinkley", "auto"
]
CategoricalDetectorName = Literal["psi", "chi_square", "jensen_shannon"]


class _Params(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PSIParams(_Params):
    """Population Stability Index settings (numeric and categorical)."""

    bins: int = Field(10, ge=2, description="Reference-quantile bins for numeric columns (>= 2).")
    warning: float = Field(0.1, gt=0, description="PSI at or above which drift is a warning.")
    critical: float = Field(0.25, gt=0, description="PSI at or above which drift is critical.")
    epsilon: float = Field(
        1e-4, gt=0, lt=1, description="Floor for empty-bin proportions, keeps PSI finite."
    )
    noise_alpha: float | None = Field(
        1e-5,
        gt=0,
        lt=1,
        description=(
            "Noise floor: PSI counts as drift only above the PSI that a window of its size"
            " and the reference, drawn from one distribution, exceed with about this"
            " probability (both thresholds raised to it where it is higher). 0.012 at the"
            " default window, below the thresholds; 1.7 at 120 values, where a stationary"
            " window reached 0.1 in a quarter of evaluations, and 0.22 for a feature of 500"
            " rare categories at 5,000 values, where it did in 96%. null: the thresholds alone."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> PSIParams:
        if self.critical < self.warning:
            raise ValueError("critical must be >= warning")
        return self


class KSParams(_Params):
    """Two-sample Kolmogorov-Smirnov test settings (numeric)."""

    alpha: float = Field(
        1e-5,
        gt=0,
        lt=1,
        description=(
            "Significance level: warning if p < alpha, critical if p < alpha/10. 1e-5 because"
            " a model is tested ~1000 times per million events: 0.05 would page weekly."
        ),
    )
    method: Literal["kolmogorov", "asymp", "auto"] = Field(
        "kolmogorov",
        description=(
            "p-value: kolmogorov (limiting distribution, ~20 us, within +3 % of the exact p at"
            " 10,000 vs 5,000 values), asymp or auto (equal to scipy ks_2samp with that method;"
            " auto is exact, 10-90 ms per call, up to 10,000 values)."
        ),
    )


class ChiSquareParams(_Params):
    """Chi-square homogeneity test settings (categorical)."""

    alpha: float = Field(
        1e-5,
        gt=0,
        lt=1,
        description=(
            "Significance level: warning if p < alpha, critical if p < alpha/10 (1e-5: see KS)."
        ),
    )


class JensenShannonParams(_Params):
    """Jensen-Shannon distance settings (numeric via quantile bins, or categorical)."""

    threshold: float = Field(
        0.1, gt=0, le=1, description="JS distance (base 2, in [0, 1]) that is a warning."
    )
    critical: float | None = Field(
        None, gt=0, le=1, description="JS distance that is critical; default 2 * threshold."
    )
    bins: int = Field(10, ge=2, description="Reference-quantile bins for numeric columns (>= 2).")
    noise_alpha: float | None = Field(
        1e-5,
        gt=0,
        lt=1,
        description=(
            "Noise floor, as PSI's: the distance counts as drift only above the one that a"
            " window of its size and the reference, drawn from one distribution, exceed with"
            " about this probability. 0.046 at the default window with 10 bins; 0.40 at 120"
            " values, where 70% of stationary windows were at 0.1. null: the thresholds alone."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> JensenShannonParams:
        # The detector refuses it too, but only when the model is built: at run time, not
        # in check-config.
        if self.critical is not None and self.critical < self.threshold:
            raise ValueError("critical must be >= threshold")
        return self


class WassersteinParams(_Params):
    """Wasserstein-1 distance in reference standard deviations (numeric)."""

    threshold: float = Field(
        0.1, gt=0, description="Distance / reference std that is a warning (Evidently: 0.1)."
    )
    critical: float | None = Field(
        None, gt=0, description="Distance / reference std that is critical; default 2 * threshold."
    )
    noise_alpha: float | None = Field(
        1e-4,
        gt=0,
        lt=1,
        description=(
            "Noise floor, as PSI's: the distance counts as drift only above a bound of the"
            " one that a window of its size and the reference, drawn from one distribution,"
            " exceed with at most about this probability. 0.097 at the default window"
            " (normal data; 0.105 with heavy tails), about the threshold; 0.51 at 120 values,"
            " where 58% of stationary windows were at 0.1. null: the thresholds alone."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> WassersteinParams:
        # critical below threshold would make every warning critical: a typo, not a choice.
        if self.critical is not None and self.critical < self.threshold:
            raise ValueError("critical must be >= threshold")
        return self


class ADWINParams(_Params):
    """river ADWIN settings (stream detector, numeric).

    ``clock``, ``min_window_length`` and ``grace_period`` count ADWIN *inputs*:
    one input per ``block`` values (see :class:`~monitor.detectors.streaming.ADWINDetector`).
    """

    delta: float = Field(
        1e-5,
        gt=0,
        lt=1,
        description=(
            "Confidence; smaller means fewer false alarms. river's 0.002 raised about one"
            " false change per million stationary values; 1e-5 none in 20 million (and none"
            " in 200 million at block 64), and still detects a 0.5 sigma mean shift within"
            " about 250 values (200 at block 1)."
        ),
    )
    away_only: bool = Field(
        True,
        description=(
            "Count a change as drift only when the values after it sit at least 4 standard"
            " errors from the reference's mean: a return to the reference (the end of a drift)"
            " is a change too, and must not open an incident."
        ),
    )
    block: int = Field(
        64,
        ge=1,
        description=(
            "Values summarised into one ADWIN input (their sum; results stay in value units)."
            " 64 cuts ADWIN's cost per value about 7-fold against 1 (value by value), with"
            " the same false alarms and delays in BENCHMARKS.md 'Detection quality'. Changes"
            " are found at block ends: at random change times, 60-110 events later on average."
        ),
    )
    clock: int = Field(
        1,
        ge=1,
        description=(
            "Run the cut test every `clock` inputs: 1 = every 64 values at block 64 (value by"
            " value, clock 32 tested every 32). A test costs about five inputs."
        ),
    )
    min_window_length: int = Field(
        1,
        ge=1,
        description=(
            "Smallest sub-window compared, in inputs: 1 block (64 values) at the default;"
            " 5, the value-by-value default, would count blocks and detect later."
        ),
    )
    grace_period: int = Field(
        10, ge=0, description="Inputs seen before any test (after start and after each change)."
    )


class PageHinkleyParams(_Params):
    """river Page-Hinkley settings (stream detector, numeric)."""

    min_instances: int = Field(30, ge=1, description="Values seen before any test.")
    delta: float = Field(0.005, ge=0, description="Tolerated change magnitude.")
    threshold: float = Field(
        50.0, gt=0, description="Cumulative deviation (column units) that signals a change."
    )
    alpha: float = Field(0.9999, gt=0, le=1, description="Forgetting factor.")
    mode: Literal["up", "down", "both"] = Field("both", description="Direction of change.")


class DriftConfig(StrictModel):
    """Which detectors run, their thresholds, multiple-testing correction and persistence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    numeric: list[NumericDetectorName] = Field(
        default_factory=lambda: ["psi", "ks", "adwin"],
        description=(
            "Detectors for numeric columns. 'auto' is KS for references of at most"
            " 1000 values and Wasserstein above (Evidently's rule)."
        ),
    )
    categorical: list[CategoricalDetectorName] = Field(
        default_factory=lambda: ["psi", "chi_square"],
        description="Detectors for categorical columns (count vectors by category code).",
    )
    psi: PSIParams = Field(default_factory=PSIParams, description="PSI settings.")
    ks: KSParams = Field(default_factory=KSParams, description="KS test settings.")
    chi_square: ChiSquareParams = Field(
        default_factory=ChiSquareParams, description="Chi-square test settings."
    )
    jensen_shannon: JensenShannonParams = Field(
        default_factory=JensenShannonParams, description="Jensen-Shannon settings."
    )
    wasserstein: WassersteinParams = Field(
        default_factory=WassersteinParams, description="Wasserstein settings."
    )
    adwin: ADWINParams = Field(default_factory=ADWINParams, description="ADWIN settings.")
    page_hinkley: PageHinkleyParams = Field(
        default_factory=PageHinkleyParams, description="Page-Hinkley settings."
    )
    correction: Literal["none", "bonferroni", "bh"] = Field(
        "bh",
        description=(
            "Multiple-testing correction of p-values across the features of one"
            " evaluation: none, Bonferroni (family-wise) or Benjamini-Hochberg (FDR)."
        ),
    )
    persistence: int = Field(
        1,
        ge=1,
        description=(
            "Consecutive drifted evaluations before a feature is drifting. 1: the strict"
            " alphas/delta already hold false alarms near zero, and every extra evaluation"
            " adds a step of delay while overlapping windows add little evidence."
        ),
    )
    clear_after: int = Field(
        5,
        ge=1,
        description=(
            "Consecutive clean evaluations before a drifting feature clears. 5 = window /"
            " step at the defaults: a window's worth of clean data ends an incident, so one"
            " drift is one alert."
        ),
    )
    threshold: Literal["fixed", "auto"] = Field(
        "fixed",
        description=(
            "fixed: use the thresholds above. auto: calibrate window-detector thresholds on"
            " bootstrap windows of the reference for expected_run_time_events. Not the default:"
            " it costs ~0.6 s per numeric feature at start (10,000-value reference), and a mean"
            " run time of 1e6 events still means about one false alarm per million."
        ),
    )
    expected_run_time_events: int = Field(
        1_000_000,
        ge=1,
        description="Target mean number of stationary events between false alarms (auto).",
    )
    streaming_features: list[str] | Literal["all"] | None = Field(
        "all",
        description=(
            "Features that get the stream detectors (adwin, page_hinkley) listed in"
            " `numeric`: 'all', a list of feature names, or null for none."
        ),
    )

    def streams_feature(self, feature: str | None) -> bool:
        """Whether stream detectors run on ``feature`` (None = the caller does not filter)."""
        if self.streaming_features == "all" or feature is None:
            return True
        if self.streaming_features is None:
            return False
        return feature in self.streaming_features
