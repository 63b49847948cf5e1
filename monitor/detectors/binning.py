"""Binning shared by the histogram detectors (PSI, Jensen-Shannon) and chi-square.

Numeric columns are binned at reference quantiles, fixed at fit so that every
evaluation only counts the window into the same bins. Categorical count vectors
keep one bin per reference category plus one pooled bucket for every category
the reference never saw.
"""

from __future__ import annotations

import numpy as np

from monitor.detectors.base import ColumnKind, as_counts, as_numeric
from monitor.errors import DetectorError


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at reference quantiles, deduplicated.

    Only inner edges are kept: the outer bins are open-ended, so window values
    beyond the reference range still land in a bin instead of being dropped.
    Edges are reference values (``inverted_cdf`` quantiles) and duplicates
    (discrete or heavily tied data) are merged, so no reference bin is empty by
    construction. Bins are right-closed, ``(e_{i-1}, e_i]``,
    matching ``np.searchsorted(edges, x, side="left")``.

    >>> quantile_edges(np.arange(10.0), 2)
    array([4.])
    >>> quantile_edges(np.array([1.0, 1.0, 1.0, 2.0]), 4)
    array([1.])
    """
    qs = np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="inverted_cdf")
    edges = np.unique(qs)
    # An edge at the maximum would leave the last bin empty: drop it.
    return edges[edges < reference.max()] if edges.size else edges


def pooled_counts(window: np.ndarray, n_reference_categories: int) -> np.ndarray:
    """Window counts over the reference's categories plus one pooled "unseen" bucket.

    >>> pooled_counts(np.array([1, 2, 3, 4, 5]), 3)
    array([1, 2, 3, 9])
    >>> pooled_counts(np.array([7]), 3)
    array([7, 0, 0, 0])
    """
    out = np.zeros(n_reference_categories + 1, dtype=np.int64)
    seen = min(window.size, n_reference_categories)
    out[:seen] = window[:seen]
    out[-1] = window[n_reference_categories:].sum()
    return out


def reference_bins(
    kind: ColumnKind, reference: np.ndarray, bins: int, detector: str
) -> tuple[np.ndarray | None, np.ndarray]:
    """Inner edges (numeric; None for categorical) and the reference's counts per bin.

    A numeric reference of one value gets three bins (below it, it, above it), two of them
    empty: the only bins in which a move away from a constant can show.

    The categorical counts end with the (empty) pooled bucket for unseen categories.
    """
    if kind == "numeric":
        ref = as_numeric(reference, "reference")
        if ref.size == 0:
            raise DetectorError(f"{detector}: reference must not be empty")
        edges = quantile_edges(ref, bins)
        if edges.size == 0:
            # One value c: no quantile separates anything, and a single bin made every window
            # look like the reference (PSI 0 for a stream at 10 against a reference of 3).
            # Bins below c, at c and above it; the two empty ones take the detectors' floor.
            c = float(ref[0])
            edges = np.array([np.nextafter(c, -np.inf), c])
        counts = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=edges.size + 1)
        return edges, counts
    ref_counts = as_counts(reference, "reference")
    if ref_counts.sum() == 0:
        raise DetectorError(f"{detector}: reference counts must not all be zero")
    return None, np.append(ref_counts, 0)


def window_bins(edges: np.ndarray | None, n_bins: int, window: np.ndarray) -> np.ndarray:
    """The window's counts in the bins :func:`reference_bins` made (``n_bins`` of them)."""
    if edges is not None:
        win = as_numeric(window, "window")
        return np.bincount(np.searchsorted(edges, win, side="left"), minlength=n_bins)
    return pooled_counts(as_counts(window, "window"), n_bins - 1)
