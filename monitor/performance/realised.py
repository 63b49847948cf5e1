"""Realised performance metrics over numpy arrays (no scikit-learn at run time).

Each function computes a whole family of metrics in one pass over a window, so
the tracker can refresh every exported gauge with one call per evaluation. The
definitions follow scikit-learn's defaults exactly (the tests compare to 1e-9):

* precision / recall / F1 with a zero denominator are 0.0 (``zero_division``'s
  default outcome), not NaN, so a gauge does not vanish on a quiet window;
* ROC AUC is the Mann-Whitney statistic with ties counted one half (what
  ``roc_auc_score`` computes from the trapezoidal curve); NaN with one class only;
* log loss clips probabilities to ``[eps, 1 - eps]`` (float64 machine epsilon);
* multiclass macro averages run over the classes present in the window's labels
  or predictions (``labels=None``);
* MAPE is computed over non-zero labels only (a zero label makes the
  percentage undefined, and scikit-learn's ``eps`` floor turns it into ~1e15);
  how many were left out is reported as ``mape_excluded``. A label *near* zero is
  no better (1e-9 makes one term 1e9 times the error), but "near" depends on the
  label's unit, so no default can say it: ``mape_min_abs_label`` (the config's
  ``performance.mape_min_abs_label``, default 0) leaves out labels no larger than it,
  and a term that overflows float64 (a label of 1e-300) is left out whatever the
  setting, so MAPE is a finite number or NaN (no label left), never infinity.
  sMAPE (``smape``, the symmetric form of Makridakis 1993 / the M4 competition,
  ``2|p - y| / (|y| + |p|)``, a term with both zero counting 0) is reported beside it:
  bounded by 2, defined on every label, so it stays readable where MAPE cannot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

_EPS = float(np.finfo(np.float64).eps)
NAN = float("nan")


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else 0.0


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for 0/1 ``y_true``; NaN if one class only.

    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y = np.asarray(y_true) == 1
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN
    ranks = rankdata(scores)  # average ranks: ties count one half
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_log_loss(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mean negative log-likelihood of 0/1 labels under positive-class probabilities."""
    p = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1.0 - _EPS)
    y = np.asarray(y_true) == 1
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall, F1, ROC AUC, log loss, Brier score and positive rates.

    ``y_true`` holds 0/1, ``scores`` the predicted probability of class 1; a score
    ``>= threshold`` is a positive prediction. Empty input gives an empty dict.
    """
    y = np.asarray(y_true) == 1
    s = np.asarray(scores, dtype=np.float64)
    n = y.size
    if n == 0:
        return {}
    pred = s >= threshold
    tp = float(np.count_nonzero(pred & y))
    fp = float(np.count_nonzero(pred & ~y))
    fn = float(np.count_nonzero(~pred & y))
    tn = n - tp - fp - fn
    return {
        "accuracy": (tp + tn) / n,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": roc_auc(y, s),
        "log_loss": binary_log_loss(y, s),
        "brier": float(np.mean((s - y) ** 2)),
        "positive_rate_predicted": (tp + fp) / n,
        "positive_rate_label": (tp + fn) / n,
    }


def multiclass_log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-probability of the true class; rows are renormalised first.

    Renormalising makes unnormalised class scores from the wire usable; for proper
    probability rows it is a no-op and the value equals scikit-learn's.
    """
    p = np.asarray(proba, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    p = np.clip(p, _EPS, 1.0 - _EPS)
    rows = np.arange(p.shape[0])
    return float(-np.mean(np.log(p[rows, np.asarray(y_true)])))


def multiclass_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    *,
    proba: np.ndarray | None = None,
    max_exported_classes: int = 20,
) -> dict[str, float]:
    """Accuracy, macro and per-class precision/recall/F1, and log loss when possible.

    ``y_true``/``y_pred`` are class indices into ``class_names``. Per-class keys
    are ``"precision:<class>"`` etc., for the first ``max_exported_classes`` classes
    present in the window (bounded metric label cardinality); macro averages use
    every present class. ``proba`` (rows aligned with ``y_true``; NaN rows = no
    scores) adds ``log_loss`` over the rows that have scores and ``log_loss_n``,
    their number.
    """
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    n = yt.size
    if n == 0:
        return {}
    k = len(class_names)
    true_counts = np.bincount(yt, minlength=k).astype(np.float64)
    pred_counts = np.bincount(yp, minlength=k).astype(np.float64)
    tp = np.bincount(yt[yt == yp], minlength=k).astype(np.float64)
    present = (true_counts > 0) | (pred_counts > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_counts > 0, tp / pred_counts, 0.0)
        recall = np.where(true_counts > 0, tp / true_counts, 0.0)
        f1_den = pred_counts + true_counts
        f1 = np.where(f1_den > 0, 2 * tp / f1_den, 0.0)
    out: dict[str, float] = {
        "accuracy": float(tp.sum() / n),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
    }
    for idx in np.flatnonzero(present)[:max_exported_classes]:
        name = class_names[idx]
        out[f"precision:{name}"] = float(precision[idx])
        out[f"recall:{name}"] = float(recall[idx])
        out[f"f1:{name}"] = float(f1[idx])
    if proba is not None:
        has = ~np.isnan(proba).any(axis=1)
        if has.any():
            out["log_loss"] = multiclass_log_loss(yt[has], proba[has])
            out["log_loss_n"] = float(has.sum())
    return out


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, *, mape_min_abs_label: float = 0.0
) -> dict[str, float]:
    """MAE, RMSE, MAPE, sMAPE and mean error (see the module docstring for MAPE near zero).

    ``mean_error`` is ``mean(prediction - label)``: positive means the model
    over-predicts. MAPE is a ratio (0.1 = 10 %) over the labels whose magnitude is above
    ``mape_min_abs_label`` and whose term is finite; ``mape_excluded`` counts the others,
    and MAPE is NaN when that is every label. sMAPE is a ratio from 0 to 2.

    >>> out = regression_metrics(np.array([0.0, 1e-300, 2.0]), np.array([1.0, 1e100, 3.0]))
    >>> out["mape"], out["mape_excluded"], round(out["smape"], 4)
    (0.5, 2.0, 1.4667)
    """
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    if yt.size == 0:
        return {}
    err = yp - yt
    abs_err, abs_y = np.abs(err), np.abs(yt)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ratio = abs_err / abs_y
    kept = (abs_y > mape_min_abs_label) & np.isfinite(ratio)
    n_kept = int(np.count_nonzero(kept))
    # Each term over n, then summed: a mean of finite terms near float64's maximum must not
    # overflow in the sum.
    mape = float(np.sum(ratio[kept] / n_kept)) if n_kept else NAN
    denom = abs_y + np.abs(yp)
    both_zero = denom == 0.0
    smape_terms = 2.0 * abs_err / np.where(both_zero, 1.0, denom)
    return {
        "mae": float(np.mean(abs_err)),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape": mape,
        "mape_excluded": float(yt.size - n_kept),
        "smape": float(np.mean(smape_terms)),
        "mean_error": float(np.mean(err)),
    }


__all__ = [
    "binary_log_loss",
    "binary_metrics",
    "multiclass_log_loss",
    "multiclass_metrics",
    "regression_metrics",
    "roc_auc",
]
