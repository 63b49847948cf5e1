//! The window tests' hot loops over reference rank buckets (see
//! `monitor/detectors/ranks.py`, which has the same two functions in numpy and the
//! argument that they are exact).

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// A read-only view of a contiguous buffer.
///
/// SAFETY (of the one `unsafe`): the arrays come from `monitor/detectors/ranks.py`,
/// which owns them and does not touch them during the call; the GIL is held
/// throughout, so no Python thread can write to them while the view lives.
fn view<'a, T: pyo3::buffer::Element>(buf: &'a PyBuffer<T>, what: &str) -> PyResult<&'a [T]> {
    match buf.as_slice_ptr() {
        Some(ptr) => Ok(unsafe { &*ptr.as_ptr() }),
        None => Err(PyTypeError::new_err(format!(
            "{what} must be a contiguous 1-D array"
        ))),
    }
}

/// rank_buckets(unique, values, out, guide, lo, scale, /)
/// --
///
/// Write each value's rank bucket among ``unique`` (sorted, distinct float64) into
/// ``out`` (int64, as long as ``values``): ``2 j`` for the open interval below
/// ``unique[j]``, ``2 j + 1`` for ``unique[j]`` itself, ``2 k`` above the last,
/// ``2 k + 1`` for NaN. ``guide`` (int64, G + 1 entries; may be empty) holds
/// ``searchsorted(unique, lo + g / scale)`` for g = 0..G: the search starts in the
/// value's slot (widened by one slot each side against rounding), a few cache lines
/// instead of a binary search over the whole array.
#[pyfunction]
#[pyo3(signature = (unique, values, out, guide, lo, scale, /))]
pub fn rank_buckets(
    py: Python<'_>,
    unique: &Bound<'_, PyAny>,
    values: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    guide: &Bound<'_, PyAny>,
    lo: f64,
    scale: f64,
) -> PyResult<()> {
    let (unique_buf, values_buf) = (PyBuffer::<f64>::get(unique)?, PyBuffer::<f64>::get(values)?);
    let (unique, values) = (view(&unique_buf, "unique")?, view(&values_buf, "values")?);
    let guide_buf = PyBuffer::<i64>::get(guide)?;
    let guide = view(&guide_buf, "guide")?;
    let k = unique.len();
    let slots = guide.len().saturating_sub(1);
    if guide.iter().any(|&g| g < 0 || g as usize > k) {
        return Err(PyValueError::new_err("guide out of range"));
    }
    let lower_bound = |v: f64| -> usize {
        if slots < 2 {
            return unique.partition_point(|u| *u < v);
        }
        let x = (v - lo) * scale;
        // Saturating casts: below lo (or -inf) is slot 0, beyond the last slot the last.
        let g = if x > 0.0 {
            (x as usize).min(slots - 1)
        } else {
            0
        };
        let from = guide[g.saturating_sub(1)] as usize;
        let to = (guide[(g + 2).min(slots)] as usize + 1).min(k);
        from + unique[from..to].partition_point(|u| *u < v)
    };
    let buckets: Vec<i64> = values
        .iter()
        .map(|&v| {
            if v.is_nan() {
                (2 * k + 1) as i64
            } else {
                let idx = lower_bound(v);
                (2 * idx + usize::from(idx < k && unique[idx] == v)) as i64
            }
        })
        .collect();
    PyBuffer::<i64>::get(out)?.copy_from_slice(py, &buckets)
}

/// ks_from_counts(counts, ref_le, m, /)
/// --
///
/// The two-sample KS distance of a window given as counts over the ``2 k + 1`` rank
/// buckets (more entries are ignored) against a reference of ``m`` values with
/// ``ref_le[j]`` of them at most ``unique[j]``. The same floats as the numpy version.
#[pyfunction]
#[pyo3(signature = (counts, ref_le, m, /))]
pub fn ks_from_counts(
    counts: &Bound<'_, PyAny>,
    ref_le: &Bound<'_, PyAny>,
    m: i64,
) -> PyResult<f64> {
    let (counts_buf, ref_buf) = (PyBuffer::<i64>::get(counts)?, PyBuffer::<i64>::get(ref_le)?);
    let (counts, ref_le) = (view(&counts_buf, "counts")?, view(&ref_buf, "ref_le")?);
    let k = ref_le.len();
    if counts.len() < 2 * k + 1 || m <= 0 {
        return Err(PyValueError::new_err(
            "counts shorter than 2 k + 1, or m <= 0",
        ));
    }
    let n: i64 = counts[..2 * k + 1].iter().sum();
    if n <= 0 {
        return Err(PyValueError::new_err("the window holds no value"));
    }
    let (nf, mf) = (n as f64, m as f64);
    let float_term = |a: i64, r: i64| (a as f64 / nf - r as f64 / mf).abs();
    // The exact term is |a m - r n| / (n m): find its largest value with integers (no
    // division, vectorisable), then compute the floats only where the exact value is
    // within the rounding of the two quotients (a few ulp of 1) of the largest: the
    // others cannot round above it. The result is the float max over all terms.
    let (Some(nm), true) = (n.checked_mul(m), n < (1 << 31) && m < (1 << 31)) else {
        return Ok(ks_float_pass(counts, ref_le, &float_term));
    };
    let mut best: i64 = 0;
    let mut cum: i64 = 0;
    let mut prev: i64 = 0; // R_{j-1}
    for j in 0..k {
        cum += counts[2 * j];
        best = best.max((cum * m - prev * n).abs());
        cum += counts[2 * j + 1];
        let r = ref_le[j];
        best = best.max((cum * m - r * n).abs());
        prev = r;
    }
    // 8 ulp of 1.0 relative to n m, rounded up: generous for two quotients and a difference.
    let slack = ((nm as f64) * 8.0 * f64::EPSILON).ceil() as i64 + 1;
    let floor = best - slack;
    let mut d = 0.0_f64;
    let (mut cum, mut prev) = (0_i64, 0_i64);
    for j in 0..k {
        cum += counts[2 * j];
        if (cum * m - prev * n).abs() >= floor {
            d = d.max(float_term(cum, prev));
        }
        cum += counts[2 * j + 1];
        let r = ref_le[j];
        if (cum * m - r * n).abs() >= floor {
            d = d.max(float_term(cum, r));
        }
        prev = r;
    }
    Ok(d)
}

/// Every term in floats: for sizes whose products do not fit the integer pass.
fn ks_float_pass(counts: &[i64], ref_le: &[i64], float_term: &dyn Fn(i64, i64) -> f64) -> f64 {
    let (mut cum, mut prev, mut d) = (0_i64, 0_i64, 0.0_f64);
    for j in 0..ref_le.len() {
        cum += counts[2 * j];
        d = d.max(float_term(cum, prev));
        cum += counts[2 * j + 1];
        let r = ref_le[j];
        d = d.max(float_term(cum, r));
        prev = r;
    }
    d
}

/// prefix_at(counts, positions, /)
/// --
///
/// ``[sum(counts[: p + 1]) for p in positions]`` for ascending ``positions``, in one
/// pass: a PSI bin (a union of rank buckets) is a difference of two of these.
#[pyfunction]
#[pyo3(signature = (counts, positions, /))]
pub fn prefix_at(counts: &Bound<'_, PyAny>, positions: Vec<usize>) -> PyResult<Vec<i64>> {
    let buf = PyBuffer::<i64>::get(counts)?;
    let counts = view(&buf, "counts")?;
    let mut out = Vec::with_capacity(positions.len());
    let (mut cum, mut at) = (0_i64, 0_usize);
    for p in positions {
        if p >= counts.len() || (p + 1 < at) {
            return Err(PyValueError::new_err(
                "positions out of range or not ascending",
            ));
        }
        while at <= p {
            cum += counts[at];
            at += 1;
        }
        out.push(cum);
    }
    Ok(out)
}

/// order_statistics(counts, buckets, values, unique, ranks, /)
/// --
///
/// The window's values at ascending 0-based ``ranks`` among its present values, from its
/// bucket ``counts``, each value's bucket (``buckets``, int32) and the ``values``: a rank
/// in a reference value's bucket is that value; one in an open interval is found among
/// the few window values in it (one pass over the window, then a sort of those few).
#[pyfunction]
#[pyo3(signature = (counts, buckets, values, unique, ranks, /))]
pub fn order_statistics(
    counts: &Bound<'_, PyAny>,
    buckets: &Bound<'_, PyAny>,
    values: &Bound<'_, PyAny>,
    unique: &Bound<'_, PyAny>,
    ranks: Vec<i64>,
) -> PyResult<Vec<f64>> {
    let counts_buf = PyBuffer::<i64>::get(counts)?;
    let buckets_buf = PyBuffer::<i32>::get(buckets)?;
    let (values_buf, unique_buf) = (PyBuffer::<f64>::get(values)?, PyBuffer::<f64>::get(unique)?);
    let counts = view(&counts_buf, "counts")?;
    let buckets = view(&buckets_buf, "buckets")?;
    let values = view(&values_buf, "values")?;
    let unique = view(&unique_buf, "unique")?;
    if buckets.len() != values.len() {
        return Err(PyValueError::new_err("buckets and values differ in length"));
    }
    let mut located = Vec::with_capacity(ranks.len());
    let (mut below, mut at) = (0_i64, 0_usize);
    for &r in &ranks {
        loop {
            if at >= counts.len() {
                return Err(PyValueError::new_err("rank beyond the counted values"));
            }
            if r < below + counts[at] {
                break;
            }
            below += counts[at];
            at += 1;
        }
        located.push((at, below));
    }
    let mut open: Vec<usize> = located
        .iter()
        .map(|&(b, _)| b)
        .filter(|b| b % 2 == 0)
        .collect();
    open.dedup(); // ascending ranks give ascending buckets
    let mut groups: Vec<Vec<f64>> = vec![Vec::new(); open.len()];
    if !open.is_empty() {
        for (&b, &v) in buckets.iter().zip(values.iter()) {
            if let Ok(i) = open.binary_search(&(b as usize)) {
                groups[i].push(v);
            }
        }
        for g in &mut groups {
            g.sort_by(|a, b| a.total_cmp(b));
        }
    }
    let mut out = Vec::with_capacity(ranks.len());
    for (&r, &(b, below)) in ranks.iter().zip(located.iter()) {
        if b % 2 == 1 {
            out.push(unique[b / 2]);
            continue;
        }
        let g = &groups[open.binary_search(&b).expect("located above")];
        let i = usize::try_from(r - below).ok().filter(|&i| i < g.len());
        match i {
            Some(i) => out.push(g[i]),
            None => return Err(PyValueError::new_err("counts and buckets disagree")),
        }
    }
    Ok(out)
}
