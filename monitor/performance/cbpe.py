r"""Confidence-based performance estimation (CBPE) for binary classifiers.

Labels come late or never; scores come with every prediction. If the model is
*calibrated* (among events scored ``p``, a fraction ``p`` is positive), each score
is the probability that the event's label is positive, so the expected confusion
matrix of a window follows from the scores alone (NannyML's CBPE, Yahoo/NannyML
2022). With scores :math:`p_i`, threshold :math:`t` and hard predictions
:math:`\hat y_i = [p_i \ge t]`:

.. math::

    E[TP] = \sum_{\hat y_i = 1} p_i \qquad E[FP] = \sum_{\hat y_i = 1} (1 - p_i)

    E[FN] = \sum_{\hat y_i = 0} p_i \qquad E[TN] = \sum_{\hat y_i = 0} (1 - p_i)

accuracy = (E[TP] + E[TN]) / n, precision = E[TP] / (E[TP] + E[FP]),
recall = E[TP] / (E[TP] + E[FN]), F1 = 2 E[TP] / (2 E[TP] + E[FP] + E[FN]).
Accuracy is an exact expectation; the ratios are ratios of expectations, which
differ from the expected ratio by O(1/n) and are what NannyML reports too.

ROC AUC: sweeping the threshold down the sorted distinct scores, the expected
true and false positives above each threshold are cumulative sums of ``p`` and
``1 - p``; dividing by :math:`P = \sum p_i` and :math:`N = \sum (1 - p_i)` gives an
expected ROC curve whose trapezoidal area is the estimate. Equivalently

.. math::

    \widehat{AUC} = \frac{1}{P N} \sum_{i, j} p_i (1 - p_j)
        \left([s_i > s_j] + \tfrac12 [s_i = s_j]\right)

(the pair :math:`i = j` included at one half, as the curve does).

The estimate is only as good as the calibration: it tracks degradation caused
by covariate shift (inputs moving to regions where the model is less sure) and
cannot see concept drift (the same score meaning something else), which is what
the realised metrics and the error-stream ADWIN are for. Estimates use the same
zero-denominator convention as :mod:`monitor.performance.realised` (0.0).
"""

from __future__ import annotations

import numpy as np

NAN = float("nan")


def expected_roc_auc(scores: np.ndarray) -> float:
    """Expected ROC AUC of calibrated ``scores`` (see the module docstring).

    >>> expected_roc_auc(np.array([0.5, 0.5]))
    0.5
    >>> round(expected_roc_auc(np.array([0.9, 0.1])), 6)
    0.9
    """
    p = np.asarray(scores, dtype=np.float64)
    total_pos = float(p.sum())
    total_neg = float(p.size - total_pos)
    if p.size == 0 or total_pos <= 0.0 or total_neg <= 0.0:
        return NAN
    # Group equal scores: a tie is one threshold step, drawn as a diagonal segment.
    _, inverse = np.unique(p, return_inverse=True)
    pos_per = np.bincount(inverse, weights=p)[::-1]  # highest score first
    neg_per = np.bincount(inverse, weights=1.0 - p)[::-1]
    tpr = np.concatenate(([0.0], np.cumsum(pos_per))) / total_pos
    fpr = np.concatenate(([0.0], np.cumsum(neg_per))) / total_neg
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def only_classes(scores: np.ndarray) -> bool:
    """Whether every score is exactly 0 or 1: class predictions sent as numbers, not
    probabilities, so CBPE must refuse them.

    Read as probabilities, hard 0/1 predictions say "certainly negative/positive" for every
    event, and CBPE estimates a perfect model (accuracy 1, whatever the model does): a
    confident, meaningless number that keeps an ``estimated_*`` threshold from ever firing.
    A bool or a class string is recognised per value (``Normalized.hard``); the numbers
    ``0`` and ``1`` are not, since a probabilistic model may emit them too (a random
    forest whose trees all agree). A whole window of them is no probabilistic model, so the
    window is the unit: one score strictly between 0 and 1 in it lets the estimate run.

    >>> only_classes(np.array([0.0, 1.0, 1.0])), only_classes(np.array([0.0, 1.0, 0.7]))
    (True, False)
    """
    p = np.asarray(scores, dtype=np.float64)
    return bool(p.size) and bool(np.all((p == 0.0) | (p == 1.0)))


def estimate_binary(scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Estimated accuracy, precision, recall, F1 and ROC AUC from calibrated scores.

    Keys are prefixed ``estimated_`` so they sit next to the realised metrics in a
    snapshot; ``estimated_n`` is the number of scores used. Empty input gives {}.

    >>> est = estimate_binary(np.array([0.9, 0.8, 0.3, 0.1]), 0.5)
    >>> round(est["estimated_accuracy"], 6), round(est["estimated_precision"], 6)
    (0.825, 0.85)
    """
    p = np.asarray(scores, dtype=np.float64)
    n = p.size
    if n == 0:
        return {}
    pred = p >= threshold
    tp = float(p[pred].sum())
    fp = float(np.count_nonzero(pred)) - tp
    fn = float(p[~pred].sum())
    tn = float(np.count_nonzero(~pred)) - fn

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else 0.0

    return {
        "estimated_accuracy": (tp + tn) / n,
        "estimated_precision": ratio(tp, tp + fp),
        "estimated_recall": ratio(tp, tp + fn),
        "estimated_f1": ratio(2 * tp, 2 * tp + fp + fn),
        "estimated_roc_auc": expected_roc_auc(p),
        "estimated_n": float(n),
    }


__all__ = ["estimate_binary", "expected_roc_auc", "only_classes"]
