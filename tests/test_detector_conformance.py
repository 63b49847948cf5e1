"""One conformance suite run over every detector (after river's ``checks/common.py``).

Every detector, window test or stream detector, is driven the same way: ``fit``
on a reference, ``update`` with the new values, ``evaluate`` on the window.
"""

from __future__ import annotations

import inspect
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from monitor.detectors.base import Detector, DetectorBase
from monitor.detectors.chi_square import ChiSquareDetector
from monitor.detectors.jensen_shannon import JensenShannonDetector
from monitor.detectors.ks import _P_CACHE_SIZE, KSDetector
from monitor.detectors.pca import PCADetector
from monitor.detectors.psi import PSIDetector
from monitor.detectors.streaming import ADWINDetector, PageHinkleyDetector, StreamDetector
from monitor.detectors.wasserstein import WassersteinDetector
from monitor.errors import DetectorError
from monitor.state_format import encode
from tests.checkpoint import through_format

RNG_SEED = 20240601


def numeric_reference() -> np.ndarray:
    # scale 0.1 so Page-Hinkley's default threshold (column units) suits the data
    return np.random.default_rng(RNG_SEED).normal(scale=0.1, size=2_000)


def numeric_shifted() -> np.ndarray:
    return np.random.default_rng(RNG_SEED + 1).normal(loc=0.5, scale=0.1, size=2_000)


def numeric_stream(n: int) -> np.ndarray:
    return np.random.default_rng(RNG_SEED + 2).normal(scale=0.1, size=n)


def categorical_reference() -> np.ndarray:
    return np.array([400, 300, 200, 100], dtype=np.int64)


def categorical_shifted() -> np.ndarray:
    return np.array([100, 200, 300, 400, 150], dtype=np.int64)  # reversed, plus an unseen code


def correlated(seed: int, n: int, rho: float) -> np.ndarray:
    """Three standard normal columns, the first two with correlation ``rho``."""
    rng = np.random.default_rng(seed)
    x, e, z = rng.normal(size=(3, n))
    return np.column_stack([x, rho * x + np.sqrt(1 - rho**2) * e, z])


@dataclass(frozen=True)
class Case:
    id: str
    cls: type
    kwargs: dict[str, Any]  # non-default values, to check they are stored unchanged
    kind: str
    bad: tuple[tuple[dict[str, Any], str], ...]  # (kwargs, message fragment)

    def make(self) -> Detector:
        return self.cls(**self.kwargs)

    def reference(self) -> np.ndarray:
        if self.kind == "multivariate":
            return correlated(RNG_SEED, 2_000, 0.8)
        return numeric_reference() if self.kind == "numeric" else categorical_reference()

    def shifted(self) -> np.ndarray:
        if self.kind == "multivariate":  # the correlation flips; every marginal stays N(0, 1)
            return correlated(RNG_SEED + 1, 2_000, -0.8)
        return numeric_shifted() if self.kind == "numeric" else categorical_shifted()

    def other_window(self, seed: int) -> np.ndarray:
        if self.kind == "multivariate":
            return correlated(seed, 500, 0.8)
        rng = np.random.default_rng(seed)
        if self.kind == "numeric":
            return rng.normal(scale=0.1, size=500)
        return rng.multinomial(500, [0.4, 0.3, 0.2, 0.1]).astype(np.int64)


CASES = [
    Case(
        "psi-numeric",
        PSIDetector,
        {"bins": 8, "warning": 0.12, "critical": 0.3, "epsilon": 1e-3},
        "numeric",
        (
            ({"bins": 1}, "bins must be an integer >= 2"),
            ({"warning": 0.5}, "warning <= critical"),
            ({"epsilon": 0}, "epsilon"),
            ({"kind": "text"}, "kind must be one of"),
        ),
    ),
    Case(
        "psi-categorical",
        PSIDetector,
        {"kind": "categorical", "warning": 0.05},
        "categorical",
        (({"bins": 2.5}, "bins"), ({"critical": -1.0}, "warning <= critical")),
    ),
    Case(
        "ks",
        KSDetector,
        {"alpha": 0.01},
        "numeric",
        (
            ({"alpha": 0}, "alpha must be in (0, 1)"),
            ({"alpha": 1.0}, "alpha"),
            ({"method": "exact"}, "method must be one of"),
        ),
    ),
    Case("ks-asymp", KSDetector, {"alpha": 0.01, "method": "asymp"}, "numeric", ()),
    Case("ks-auto", KSDetector, {"alpha": 0.01, "method": "auto"}, "numeric", ()),
    Case(
        "chi_square",
        ChiSquareDetector,
        {"alpha": 0.01},
        "categorical",
        (({"alpha": -0.1}, "alpha must be in (0, 1)"),),
    ),
    Case(
        "jensen_shannon-numeric",
        JensenShannonDetector,
        {"threshold": 0.15, "bins": 12, "critical": 0.4},
        "numeric",
        (
            ({"threshold": 0}, "threshold must be in (0, 1]"),
            ({"bins": 1}, "bins"),
            ({"threshold": 0.3, "critical": 0.2}, "critical must be in [threshold, 1]"),
        ),
    ),
    Case(
        "jensen_shannon-categorical",
        JensenShannonDetector,
        {"kind": "categorical", "threshold": 0.2},
        "categorical",
        (({"kind": "ordinal"}, "kind must be one of"),),
    ),
    Case(
        "wasserstein",
        WassersteinDetector,
        {"threshold": 0.2, "critical": 0.5},
        "numeric",
        (
            ({"threshold": -1}, "threshold must be > 0"),
            ({"threshold": 0.3, "critical": 0.1}, "critical must be >= threshold"),
        ),
    ),
    Case(
        "adwin",
        ADWINDetector,
        {"delta": 0.001, "clock": 16, "min_window_length": 6, "grace_period": 20, "seed": 3},
        "numeric",
        (
            ({"delta": 0}, "delta must be in (0, 1)"),
            ({"clock": 0}, "clock must be an integer >= 1"),
            ({"grace_period": -1}, "grace_period"),
            ({"seed": -1}, "seed must be an integer >= 0"),
        ),
    ),
    Case(
        "page_hinkley",
        PageHinkleyDetector,
        {"min_instances": 40, "delta": 0.01, "threshold": 40.0, "alpha": 0.999, "mode": "both"},
        "numeric",
        (
            ({"threshold": 0}, "threshold must be > 0"),
            ({"mode": "sideways"}, "mode must be"),
            ({"min_instances": 0}, "min_instances"),
            ({"alpha": 2.0}, "alpha"),
        ),
    ),
]
CASES.append(
    Case(
        "pca",
        PCADetector,
        {"variance": 0.8, "alpha": 0.001, "seed": 5},
        "multivariate",
        (
            ({"variance": 1.0}, "variance must be in (0, 1)"),
            ({"alpha": 0}, "alpha must be in (0, 1)"),
            ({"seed": -2}, "seed must be an integer >= 0"),
        ),
    )
)
IDS = [c.id for c in CASES]


def run(detector: Detector, window: np.ndarray):
    detector.update(window)
    return detector.evaluate(window)


def fitted(case: Case) -> Detector:
    detector = case.make()
    detector.fit(case.reference())
    return detector


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_implements_protocol(case: Case) -> None:
    detector = case.make()
    assert isinstance(detector, Detector)
    assert case.kind in detector.supports and detector.name


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_constructor_arguments_stored_unchanged(case: Case) -> None:
    detector = case.make()
    for name, value in case.kwargs.items():
        assert getattr(detector, name) == value
    defaults = case.cls()
    for name, param in inspect.signature(case.cls).parameters.items():
        assert getattr(defaults, name) == param.default


REPR_CASES = [c for c in CASES if issubclass(c.cls, DetectorBase)]


@pytest.mark.parametrize("case", REPR_CASES, ids=[c.id for c in REPR_CASES])
def test_repr_shows_every_parameter_and_rebuilds_the_detector(case: Case) -> None:
    detector = case.make()
    params = inspect.signature(case.cls).parameters
    shown = ", ".join(f"{name}={getattr(detector, name)!r}" for name in params)
    assert repr(detector) == f"{case.cls.__name__}({shown})"
    rebuilt = eval(repr(detector), {case.cls.__name__: case.cls})
    assert all(getattr(rebuilt, name) == getattr(detector, name) for name in params)


@pytest.mark.parametrize(
    ("case", "kwargs", "message"),
    [(c, kw, msg) for c in CASES for kw, msg in c.bad],
    ids=[f"{c.id}-{i}" for c in CASES for i in range(len(c.bad))],
)
def test_bad_parameters_rejected_clearly(case: Case, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DetectorError) as info:
        case.cls(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_evaluate_before_fit_and_bad_data_raise(case: Case) -> None:
    with pytest.raises(DetectorError, match="fit"):
        case.make().evaluate(case.shifted())
    detector = fitted(case)
    bad = np.array([0.1, np.nan]) if case.kind == "numeric" else np.array([1, -1])
    with pytest.raises(DetectorError):
        run(detector, bad)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_identical_window_not_drifted(case: Case) -> None:
    result = run(fitted(case), case.reference())
    assert not result.drifted and result.severity == "ok"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_shifted_window_drifted(case: Case) -> None:
    result = run(fitted(case), case.shifted())
    assert result.drifted and result.severity in ("warning", "critical")
    assert result.detector == case.cls.name


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_deterministic(case: Case) -> None:
    a, b = fitted(case), fitted(case)
    for seed in range(3):
        window = case.other_window(seed)
        assert run(a, window) == run(b, window)
    assert run(a, case.shifted()) == run(b, case.shifted())


def restarted(case: Case, detector: Detector) -> Detector:
    """``detector`` after a checkpoint and restore, as ``ModelMonitor.restore`` does it.

    The detector is built from the configured settings and fitted on the reference
    again; a stream detector then adopts its saved internals, read back from the
    checkpoint's bytes. A window test keeps nothing of its own in a checkpoint: the
    window it evaluates is restored with the model.
    """
    clone = fitted(case)
    if isinstance(detector, StreamDetector):
        saved = through_format(stream_detectors={"x": [detector.export_state("ref")]})
        assert isinstance(clone, StreamDetector)
        assert clone.restore_state(saved.stream_detectors["x"][0], "ref") is None
    return clone


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_checkpoint_round_trip_then_identical_results(case: Case) -> None:
    original = fitted(case)
    run(original, case.other_window(0))
    clone = restarted(case, original)
    for window in (case.other_window(1), case.shifted(), case.other_window(2)):
        assert run(clone, window) == run(original, window)


def footprint(detector: Detector) -> int:
    """Bytes a detector holds: its Python attributes (arrays, caches, containers), deep;
    for a stream detector also its checkpoint, which carries river's compiled internals
    that Python cannot measure."""
    size = _deep_bytes(detector, set())
    if isinstance(detector, StreamDetector):
        saved = through_format(stream_detectors={"x": [detector.export_state("ref")]})
        size += len(encode(saved))
    return size


def _deep_bytes(obj: Any, seen: set[int]) -> int:
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_bytes(k, seen) + _deep_bytes(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset | deque):
        size += sum(_deep_bytes(v, seen) for v in obj)
    elif isinstance(obj, DetectorBase):  # a detector, or one inside another (PCA's KS)
        held = {k: v for k, v in vars(obj).items() if k not in CACHES}
        size += _deep_bytes(held, seen)
    return size


# Derived caches, left out of a detector's footprint: each has its own fixed cap (checked).
CACHES = {"_p_cache": _P_CACHE_SIZE}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bounded_memory(case: Case) -> None:
    detector = fitted(case)
    chunk: Callable[[int], np.ndarray]
    if case.kind == "numeric":
        stream = numeric_stream(100_000)
        chunk = lambda i: stream[i * 1_000 : (i + 1) * 1_000]  # noqa: E731
    else:
        chunk = lambda i: case.other_window(i)  # noqa: E731
    sizes = []
    for i in range(100):
        run(detector, chunk(i))
        if i in (9, 99):
            sizes.append(footprint(detector))
            for name, cap in CACHES.items():
                assert len(getattr(detector, name, ())) <= cap
    # 10x more data must not mean a proportionally bigger state (ADWIN grows ~log n)
    assert sizes[1] <= 1.5 * sizes[0] + 2_000
