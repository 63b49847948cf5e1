"""Model performance from delayed labels, and estimated performance before labels arrive.

* :mod:`~monitor.performance.config`: the ``performance:`` section of a model;
* :mod:`~monitor.performance.normalize`: raw prediction/label values to task values;
* :mod:`~monitor.performance.label_join`: bounded join of labels to predictions;
* :mod:`~monitor.performance.metrics`: realised metrics (scikit-learn definitions);
* :mod:`~monitor.performance.cbpe`: estimated metrics from calibrated scores;
* :mod:`~monitor.performance.tracker`: the per-model object the pipeline drives.
"""

from monitor.performance.cbpe import estimate_binary, expected_roc_auc
from monitor.performance.config import MetricThreshold, PerformanceConfig
from monitor.performance.label_join import EvictionCounts, JoinResult, LabelJoiner
from monitor.performance.normalize import ClassIndex, canonical_class
from monitor.performance.tracker import BatchResult, PerformanceEvaluation, PerformanceTracker

__all__ = [
    "BatchResult",
    "ClassIndex",
    "EvictionCounts",
    "JoinResult",
    "LabelJoiner",
    "MetricThreshold",
    "PerformanceConfig",
    "PerformanceEvaluation",
    "PerformanceTracker",
    "canonical_class",
    "estimate_binary",
    "expected_roc_auc",
]
