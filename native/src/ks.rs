//! The two-sample Kolmogorov-Smirnov statistic D of sorted samples (`monitor.detectors.ks`).
//!
//! scipy's `ks_2samp` reads both right-continuous ECDFs at every value x of either sample,
//! as `F(x) = i(x) / n1 - j(x) / n2` with `i(x) = #reference <= x` and `j(x) = #window <= x`
//! (integers divided as doubles), and D is the larger of `max F` and `-min F`. Reading F
//! at fewer points gives the same D bit for bit when the points left out cannot hold the
//! extremes. Because `a / n` and `a - b` are correctly rounded, `F` computed in floats is
//! monotone in `i` (and antitone in `j`), so with window values `w_0 <= ... <= w_{n2-1}`:
//!
//! * between two neighbouring distinct window values `j` is constant, so the largest
//!   reading there is at the last reference value below the next window value `w_t`:
//!   `lt(w_t) / n1 - t / n2` for the first copy `t` of `w_t` (`lt` = #reference `<`);
//!   for a later copy of a tie the same expression is smaller, so it never wins;
//! * the smallest reading of such a stretch is at its first value, itself no smaller than
//!   the reading at the window value before it: the smallest readings are
//!   `le(w_t) / n1 - (t + 1) / n2` at the last copy `t` of each window value (`le` =
//!   #reference `<=`); earlier copies of a tie give larger values, so they never win;
//! * before the first window value `F >= 0`, after the last `F <= 0`: both bounded by
//!   the 0 the extremes start from.
//!
//! So D needs, per window value, its two ranks in the reference: `n2` readings instead of
//! one per step of a merge of both samples (`n1 + n2` steps, each with two divisions).
//! The ranks of a sorted window are found by one forward pass over the reference that
//! counts a block of reference values per compare (no data-dependent branch in the common
//! case), on several slices of the window at once so the passes overlap in the CPU.
//! `tests/test_ks_native.py` holds this to scipy, to the numpy formulation of the same
//! readings and to a plain merge, bit for bit.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;

/// Reference values compared per step of the forward pass.
const BLOCK: usize = 4;
/// Slices of the window ranked side by side (independent dependency chains).
const LANES: usize = 8;

/// `#reference < v`, searching forward from `p`, which must not exceed the answer. A
/// block of reference values is counted per compare, so the loop exits on a branch that
/// is well predicted (fewer than `BLOCK` values between two window values).
#[inline(always)]
fn rank_below(r: &[f64], mut p: usize, v: f64) -> usize {
    while p + BLOCK <= r.len() {
        let block: &[f64; BLOCK] = r[p..p + BLOCK].try_into().expect("BLOCK values");
        let count = block.iter().map(|&x| (x < v) as usize).sum::<usize>();
        p += count;
        if count < BLOCK {
            return p;
        }
    }
    while p < r.len() && r[p] < v {
        p += 1;
    }
    p
}

/// Whether `x` is sorted ascending and holds no NaN (`<=` is false for NaN).
fn sorted_no_nan(x: &[f64]) -> bool {
    let mut ok = x.first().is_none_or(|v| !v.is_nan());
    for pair in x.windows(2) {
        ok &= pair[0] <= pair[1];
    }
    ok
}

/// `below[t] = #reference < window[t]` and `at[t] = #reference <= window[t]`. The window
/// is cut into `LANES` slices, each ranked by its own forward pass (started by a binary
/// search), interleaved so that their dependency chains overlap.
fn ranks(r: &[f64], w: &[f64], below: &mut [i64], at: &mut [i64]) {
    let n2 = w.len();
    let per_lane = n2.div_ceil(LANES);
    let mut p = [0usize; LANES];
    for (k, pk) in p.iter_mut().enumerate() {
        if k * per_lane < n2 {
            let v = w[k * per_lane];
            *pk = r.partition_point(|&x| x < v);
        }
    }
    for step in 0..per_lane {
        for (k, pk) in p.iter_mut().enumerate() {
            let t = k * per_lane + step;
            if t < n2 {
                let v = w[t];
                *pk = rank_below(r, *pk, v);
                let mut le = *pk;
                while le < r.len() && r[le] <= v {
                    le += 1; // ties with the reference: rare, except in discrete data
                }
                below[t] = *pk as i64;
                at[t] = le as i64;
            }
        }
    }
}

/// `(max, min)` of the readings `below[t] / n1 - t / n2` and `at[t] / n1 - (t + 1) / n2`
/// (and 0), as doubles, computed the way scipy computes them.
///
/// The divisions are most of the cost, so they are done only where the result can be an
/// extreme. Each reading is the double nearest to the exact `num / (n1 n2)`, with
/// `num = below[t] n2 - t n1` (or `at[t] n2 - (t + 1) n1`), to within 3 * 2^-53 (two
/// rounded quotients in [0, 1] and their rounded difference); so a reading whose exact
/// numerator lies more than `margin` below the largest cannot be the largest double, and
/// likewise for the smallest. The numerators are exact integers (`n1 n2 < 2^62`: checked).
fn extremes(below: &[i64], at: &[i64], n1: i64, n2: i64) -> (f64, f64) {
    let (f1, f2) = (n1 as f64, n2 as f64);
    let reading = |rank: i64, t: i64| rank as f64 / f1 - t as f64 / f2;
    let mut gap_max = 0i64; // 0: the extremes start from 0, as scipy's do
    let mut here_min = 0i64;
    for (t, (&b, &a)) in below.iter().zip(at).enumerate() {
        let t = t as i64;
        gap_max = gap_max.max(b * n2 - t * n1);
        here_min = here_min.min(a * n2 - (t + 1) * n1);
    }
    let margin = (6.0 * f1 * f2 / 9_007_199_254_740_992.0).ceil() as i64 + 1;
    let (mut hi, mut lo) = (0.0f64, 0.0f64);
    for (t, (&b, &a)) in below.iter().zip(at).enumerate() {
        let t = t as i64;
        if b * n2 - t * n1 >= gap_max - margin {
            let gap = reading(b, t);
            hi = if gap > hi { gap } else { hi };
        }
        if a * n2 - (t + 1) * n1 <= here_min + margin {
            let here = reading(a, t + 1);
            lo = if here < lo { here } else { lo };
        }
    }
    (hi, lo)
}

/// [`extremes`] dividing at every reading: for sizes whose numerators could overflow.
fn extremes_plain(below: &[i64], at: &[i64], n1: i64, n2: i64) -> (f64, f64) {
    let (f1, f2) = (n1 as f64, n2 as f64);
    let (mut hi, mut lo) = (0.0f64, 0.0f64);
    for (t, (&b, &a)) in below.iter().zip(at).enumerate() {
        let gap = b as f64 / f1 - t as f64 / f2;
        let here = a as f64 / f1 - (t + 1) as f64 / f2;
        hi = if gap > hi { gap } else { hi };
        lo = if here < lo { here } else { lo };
    }
    (hi, lo)
}

/// D of two sorted, non-empty, NaN-free samples (see the module comment).
pub fn ks_statistic(reference: &[f64], window: &[f64]) -> f64 {
    let (n1, n2) = (reference.len(), window.len());
    let mut below = vec![0i64; n2];
    let mut at = vec![0i64; n2];
    ranks(reference, window, &mut below, &mut at);
    let (n1, n2) = (n1 as i64, n2 as i64);
    let exact = n1.checked_mul(n2).is_some_and(|p| p < 1 << 62);
    let (hi, lo) = if exact {
        extremes(&below, &at, n1, n2)
    } else {
        extremes_plain(&below, &at, n1, n2)
    };
    // Combined as scipy (and the numba walk this replaces) combine them.
    let ref_above = if hi < 1.0 { hi } else { 1.0 };
    let win_above = -lo;
    if ref_above > win_above {
        ref_above
    } else {
        win_above
    }
}

/// A C-contiguous float64 buffer (a numpy array) as a slice; `what` names it in errors.
fn f64_buffer(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<PyBuffer<f64>> {
    let buf = PyBuffer::<f64>::get(obj)
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a float64 array")))?;
    if buf.dimensions() != 1 || !buf.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{what} must be 1-D and C-contiguous"
        )));
    }
    if buf.item_count() == 0 {
        return Err(PyValueError::new_err(format!("{what} must not be empty")));
    }
    Ok(buf)
}

/// The buffer's values. Safety: `buf` holds the export (the array cannot be freed or
/// resized while it lives) and the caller does not let the slice outlive it.
fn as_slice(buf: &PyBuffer<f64>) -> &[f64] {
    unsafe { std::slice::from_raw_parts(buf.buf_ptr() as *const f64, buf.item_count()) }
}

/// D for each pair, or the error of the first pair that is not sorted / holds a NaN.
fn statistics(pairs: &[(&[f64], &[f64])]) -> Result<Vec<f64>, String> {
    pairs
        .iter()
        .enumerate()
        .map(|(k, &(r, w))| {
            if !sorted_no_nan(r) {
                Err(format!(
                    "pair {k}: reference is not sorted ascending or holds NaN"
                ))
            } else if !sorted_no_nan(w) {
                Err(format!(
                    "pair {k}: window is not sorted ascending or holds NaN"
                ))
            } else {
                Ok(ks_statistic(r, w))
            }
        })
        .collect()
}

/// ks_statistic_sorted(reference, window, /)
/// --
///
/// The two-sample KS distance D of two sorted float64 arrays (1-D, C-contiguous,
/// non-empty, no NaN; infinities are values like any other): equal, bit for bit, to
/// ``scipy.stats.ks_2samp(reference, window, method="asymp").statistic``. Raises
/// ValueError for an unsorted array or a NaN, TypeError for another dtype. Runs without
/// the GIL.
#[pyfunction]
pub fn ks_statistic_sorted(
    py: Python<'_>,
    reference: &Bound<'_, PyAny>,
    window: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    let r = f64_buffer(reference, "reference")?;
    let w = f64_buffer(window, "window")?;
    let (rs, ws) = (as_slice(&r), as_slice(&w));
    let out = py.detach(|| statistics(&[(rs, ws)]));
    out.map(|d| d[0])
        .map_err(|e| PyValueError::new_err(e.replacen("pair 0: ", "", 1)))
}

/// ks_statistics_sorted(references, windows, /)
/// --
///
/// ``[ks_statistic_sorted(r, w) for r, w in zip(references, windows)]`` in one call (two
/// lists of equal length), with the GIL released once for all pairs: an evaluation's
/// columns at once.
#[pyfunction]
pub fn ks_statistics_sorted(
    py: Python<'_>,
    references: &Bound<'_, PyList>,
    windows: &Bound<'_, PyList>,
) -> PyResult<Vec<f64>> {
    if references.len() != windows.len() {
        return Err(PyValueError::new_err(
            "references and windows differ in length",
        ));
    }
    let mut bufs = Vec::with_capacity(references.len());
    for (k, (r, w)) in references.iter().zip(windows.iter()).enumerate() {
        bufs.push((
            f64_buffer(&r, &format!("references[{k}]"))?,
            f64_buffer(&w, &format!("windows[{k}]"))?,
        ));
    }
    let pairs: Vec<(&[f64], &[f64])> = bufs
        .iter()
        .map(|(r, w)| (as_slice(r), as_slice(w)))
        .collect();
    py.detach(|| statistics(&pairs))
        .map_err(PyValueError::new_err)
}

/// Adds the kernel's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ks_statistic_sorted, m)?)?;
    m.add_function(wrap_pyfunction!(ks_statistics_sorted, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk this replaces, line for line (numba's `_ks_walk`).
    fn merge_walk(r: &[f64], w: &[f64]) -> f64 {
        let (n1, n2) = (r.len(), w.len());
        let (mut i, mut j, mut lo, mut hi) = (0usize, 0usize, 0.0f64, 0.0f64);
        let (mut a, mut b) = (r[0], w[0]);
        for _ in 0..n1 + n2 {
            let take_ref = a <= b;
            let v = a.min(b);
            i += take_ref as usize;
            j += 1 - take_ref as usize;
            a = if i < n1 { r[i] } else { f64::INFINITY };
            b = if j < n2 { w[j] } else { f64::INFINITY };
            let d = i as f64 / n1 as f64 - j as f64 / n2 as f64;
            if v < a.min(b) {
                lo = lo.min(d);
                hi = hi.max(d);
            }
        }
        let ref_above = hi.min(1.0);
        if ref_above > -lo {
            ref_above
        } else {
            -lo
        }
    }

    #[test]
    fn equals_the_merge_walk_with_ties_and_all_sizes() {
        let mut seed = 1u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..20_000 {
            let (n1, n2, spread) = (1 + next() % 70, 1 + next() % 70, 1 + next() % 40);
            let shift = next() % 5;
            let mut r: Vec<f64> = (0..n1).map(|_| (next() % spread) as f64).collect();
            let mut w: Vec<f64> = (0..n2).map(|_| (next() % spread + shift) as f64).collect();
            r.sort_by(f64::total_cmp);
            w.sort_by(f64::total_cmp);
            assert_eq!(ks_statistic(&r, &w).to_bits(), merge_walk(&r, &w).to_bits());
            assert_eq!(ks_statistic(&w, &r).to_bits(), merge_walk(&w, &r).to_bits());
        }
    }

    #[test]
    fn the_division_shortcut_finds_the_extremes_of_dividing_everywhere() {
        // Monotone ranks as from a sorted window, for sizes up to a million: the readings
        // of `extremes` (divided only near the exact extremes) and of `extremes_plain`.
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as i64
        };
        for _ in 0..300 {
            let n1 = 1 + next() % 1_000_000;
            let n2 = 1 + next() % 3_000;
            let mut ranks: Vec<i64> = (0..2 * n2).map(|_| next() % (n1 + 1)).collect();
            ranks.sort_unstable();
            let below: Vec<i64> = ranks.iter().step_by(2).copied().collect();
            let at: Vec<i64> = ranks.iter().skip(1).step_by(2).copied().collect();
            let (h1, l1) = extremes(&below, &at, n1, n2);
            let (h2, l2) = extremes_plain(&below, &at, n1, n2);
            assert_eq!((h1.to_bits(), l1.to_bits()), (h2.to_bits(), l2.to_bits()));
        }
    }

    #[test]
    fn sortedness_and_nan_are_checked() {
        assert!(sorted_no_nan(&[1.0, 1.0, 2.0]));
        assert!(!sorted_no_nan(&[2.0, 1.0]));
        assert!(!sorted_no_nan(&[f64::NAN]));
        assert!(!sorted_no_nan(&[1.0, f64::NAN]));
        assert!(sorted_no_nan(&[f64::NEG_INFINITY, f64::INFINITY]));
    }
}
