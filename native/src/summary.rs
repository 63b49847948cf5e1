//! Per-column statistics of a window sorted by numpy, and PSI of sorted columns, with the
//! bits of the numpy and Python code they replace (`monitor.summary`, `monitor.detectors.psi`).
//!
//! Exactness rests on doing the same IEEE operations in the same order:
//!
//! * a numpy sum of float64 along a contiguous axis (`ndarray.mean`, the sum of squared
//!   deviations in `ndarray.std`, `np.add.reduce`) is `0.0 + pairwise(x)`: the reduction
//!   starts from the identity and adds numpy's `DOUBLE_pairwise_sum` of the whole run
//!   (below 8 values a plain loop from `0.0`; up to 128 eight running sums of every 8th
//!   value, combined as `((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))`, then the rest
//!   one by one; above, two halves split at a multiple of 8). [`pairwise_sum`] is that
//!   function, line by line; the squared deviation `(x - mean) * (x - mean)` is what
//!   numpy's `subtract` then `square` give, computed on the fly instead of stored;
//! * the mean and the variance are then divided by the count, the deviation is the IEEE
//!   square root, the quantile is `lo + (hi - lo) * frac`: Rust does not contract
//!   `a * b + c` into a fused multiply-add (LLVM fuses only under fast-math flags), so
//!   every product is rounded before the addition, as in numpy;
//! * `f64::ln` is the C library's `log`, the function CPython's `math.log` calls;
//! * Python's `sum` of floats is left-to-right addition up to CPython 3.11 and Neumaier's
//!   compensated sum from 3.12 ([`python_float_sum`] does either, as told).
//!
//! `tests/test_summary_native.py` holds both functions to frozen copies of the Python code
//! they replace, bit for bit, with hypothesis (ties, NaN, one row, odd lengths).

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyString, PyTuple, PyType};

/// numpy's `PW_BLOCKSIZE`: runs longer than this are split in two.
const PW_BLOCKSIZE: usize = 128;

/// numpy's `DOUBLE_pairwise_sum` of `f(a[i])` (numpy sums a stored array; `f` computes
/// each element as numpy's element-wise step before the sum would have stored it).
fn pairwise_sum(a: &[f64], f: &impl Fn(f64) -> f64) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += f(x);
        }
        res
    } else if n <= PW_BLOCKSIZE {
        let whole = n - n % 8;
        let r = running_sums(&a[..whole], f);
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[whole..] {
            res += f(x);
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2], f) + pairwise_sum(&a[n2..], f)
    }
}

/// The eight running sums of [`pairwise_sum`] over `a` (a multiple of 8 values, at least 8).
/// Not inlined: inlined, the compiler pairs the sums for the final combination in vector
/// registers and shuffles every block to that pairing, which costs more than the adds.
#[inline(never)]
fn running_sums(a: &[f64], f: &impl Fn(f64) -> f64) -> [f64; 8] {
    let mut r = [0.0f64; 8];
    for (rj, &x) in r.iter_mut().zip(&a[..8]) {
        *rj = f(x);
    }
    // In blocks of 8 (no bounds checks: the eight sums run side by side in the CPU).
    for block in a[8..].chunks_exact(8) {
        for (rj, &x) in r.iter_mut().zip(block) {
            *rj += f(x);
        }
    }
    r
}

/// `np.add.reduce(x)` of a contiguous float64 run (of `f(x)`): the identity plus the
/// pairwise sum (`0.0 + -0.0` is `0.0`, as numpy gives).
fn numpy_sum(a: &[f64], f: &impl Fn(f64) -> f64) -> f64 {
    0.0 + pairwise_sum(a, f)
}

/// `numpy.quantile`'s linear rule on `n` sorted values, as `monitor.summary._interpolation`
/// computes it: (index below, index above, weight of the one above).
fn interpolation(q: f64, n: usize) -> (usize, usize, f64) {
    let pos = q * ((n - 1) as f64);
    let lo = pos.floor();
    let lo_index = lo as usize;
    (lo_index, (lo_index + 1).min(n - 1), pos - lo)
}

/// The statistics of one sorted column's first `n` values (its present ones, `n > 0`).
struct ColumnStats {
    count: usize,
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
    quantiles: Vec<f64>,
}

fn column_stats(column: &[f64], quantiles: &[f64]) -> ColumnStats {
    // NaN sorts last: the present values are the ones before the first NaN (as many as
    // the Python code counts with np.isnan(...).sum(), the column being sorted).
    let count = match column.last() {
        Some(x) if x.is_nan() => column.partition_point(|x| !x.is_nan()),
        _ => column.len(),
    };
    let nan = f64::NAN;
    if count == 0 {
        return ColumnStats {
            count,
            mean: nan,
            std: nan,
            min: nan,
            max: nan,
            quantiles: vec![nan; quantiles.len()],
        };
    }
    let col = &column[..count];
    let n = count as f64;
    let mean = numpy_sum(col, &|x| x) / n;
    let var = numpy_sum(col, &|x| {
        let d = x - mean;
        d * d
    }) / n;
    let quantiles = quantiles
        .iter()
        .map(|&q| {
            let (lo, hi, frac) = interpolation(q, count);
            col[lo] + (col[hi] - col[lo]) * frac
        })
        .collect();
    ColumnStats {
        count,
        mean,
        std: var.sqrt(),
        min: col[0],
        max: col[count - 1],
        quantiles,
    }
}

/// Python's `sum(xs)` of floats (starting from the integer 0): left to right before
/// CPython 3.12, Neumaier's compensated sum from 3.12 (`bltinmodule.c`, `builtin_sum_impl`).
fn python_float_sum(xs: &[f64], compensated: bool) -> f64 {
    let Some((&first, rest)) = xs.split_first() else {
        return 0.0; // sum([]) is the int 0; the callers never ask
    };
    let mut f_result = 0.0 + first; // int 0 + float: the float path starts from it
    if !compensated {
        for &x in rest {
            f_result += x;
        }
        return f_result;
    }
    let mut c = 0.0f64;
    for &x in rest {
        let t = f_result + x;
        if f_result.abs() >= x.abs() {
            c += (f_result - t) + x;
        } else {
            c += (x - t) + f_result;
        }
        f_result = t;
    }
    if c != 0.0 && c.is_finite() {
        f_result += c;
    }
    f_result
}

/// `PSIDetector._psi_small` of a sorted window counted into the reference's bins by
/// `evaluate_sorted` (`edges`: inner edges, right-closed bins; `props`, `logs`: the
/// reference's proportions and their logs, one per bin; `epsilon`: the floor).
fn psi_sorted(
    window: &[f64],
    edges: &[f64],
    props: &[f64],
    logs: &[f64],
    epsilon: f64,
    compensated: bool,
) -> f64 {
    let total = window.len() as f64;
    let mut below = 0usize;
    let mut win: Vec<f64> = Vec::with_capacity(edges.len() + 1);
    for &e in edges {
        // window.searchsorted(e, side="right"): the values <= e (the window has no NaN)
        let upto = window.partition_point(|&x| x <= e);
        win.push((upto - below) as f64 / total);
        below = upto;
    }
    win.push((window.len() - below) as f64 / total);
    for p in win.iter_mut() {
        // Python's `p if p >= eps else eps`: the same for a count over a positive total.
        if *p < epsilon {
            *p = epsilon;
        }
    }
    let norm = python_float_sum(&win, compensated);
    let mut out = 0.0;
    for ((&p, &r), &r_log) in win.iter().zip(props).zip(logs) {
        let p = p / norm;
        out += (p - r) * (p.ln() - r_log);
    }
    out
}

/// A float64 buffer (a numpy array) that must be C- or Fortran-contiguous as told.
pub(crate) fn f64_buffer(
    obj: &Bound<'_, PyAny>,
    what: &str,
    fortran: bool,
) -> PyResult<PyBuffer<f64>> {
    let buf = PyBuffer::<f64>::get(obj)
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a float64 array")))?;
    let ok = if fortran {
        buf.dimensions() == 2 && buf.is_fortran_contiguous()
    } else {
        buf.dimensions() == 1 && buf.is_c_contiguous()
    };
    if !ok {
        let shape = if fortran {
            "2-D and Fortran-contiguous"
        } else {
            "1-D and C-contiguous"
        };
        return Err(PyValueError::new_err(format!("{what} must be {shape}")));
    }
    Ok(buf)
}

/// The buffer's values. Safety: `buf` holds the export (the array cannot be freed or
/// resized while it lives) and the caller does not let the slice outlive it.
fn as_slice(buf: &PyBuffer<f64>) -> &[f64] {
    unsafe { std::slice::from_raw_parts(buf.buf_ptr() as *const f64, buf.item_count()) }
}

/// `object.__setattr__(obj, name, value)`: how a frozen dataclass's `__init__` sets a field
/// (the class's own `__setattr__` refuses).
fn set_field(
    obj: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
    value: Bound<'_, PyAny>,
) -> PyResult<()> {
    // Safety: three live references, held for the call.
    let done = unsafe { ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr()) };
    if done < 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    Ok(())
}

/// summarize_sorted(ordered, quantiles, cls, /)
/// --
///
/// Per column of ``ordered`` (a 2-D Fortran-contiguous float64 array with at least one
/// row, each column sorted ascending with its NaN last, as ``np.sort(values, axis=0)``
/// leaves it), the statistics of its present values (before the first NaN) as a
/// ``cls`` (``monitor.summary.NumericSummary``: a frozen dataclass whose fields are
/// ``count, missing_rate, mean, std, min, max, quantiles``, set as its ``__init__`` sets
/// them), with the same bits as the numpy code of ``monitor.summary`` (``mean``, ``std``
/// with ``ddof=0``, the first and last value, linear ``quantiles``, a tuple of floats in
/// [0, 1] that keys the ``quantiles`` dict); NaN statistics for a column with none. Returns
/// ``(summaries, counts)``. The arithmetic runs without the GIL.
#[pyfunction]
pub fn summarize_sorted<'py>(
    py: Python<'py>,
    ordered: &Bound<'py, PyAny>,
    quantiles: &Bound<'py, PyTuple>,
    cls: &Bound<'py, PyType>,
) -> PyResult<(Bound<'py, PyList>, Vec<usize>)> {
    let buf = f64_buffer(ordered, "ordered", true)?;
    let shape = buf.shape();
    let (rows, cols) = (shape[0], shape[1]);
    if rows == 0 {
        return Err(PyValueError::new_err("ordered must have rows"));
    }
    let values = as_slice(&buf);
    let qs: Vec<f64> = quantiles.extract()?;
    if qs.iter().any(|q| !(0.0..=1.0).contains(q)) {
        return Err(PyValueError::new_err("quantiles must be in [0, 1]"));
    }
    let stats: Vec<ColumnStats> = py.detach(|| {
        (0..cols)
            .map(|j| column_stats(&values[j * rows..(j + 1) * rows], &qs))
            .collect()
    });
    let names = [
        intern!(py, "count"),
        intern!(py, "missing_rate"),
        intern!(py, "mean"),
        intern!(py, "std"),
        intern!(py, "min"),
        intern!(py, "max"),
        intern!(py, "quantiles"),
    ];
    let new = py
        .import("builtins")?
        .getattr("object")?
        .getattr("__new__")?;
    let summaries = PyList::empty(py);
    let mut counts = Vec::with_capacity(cols);
    for s in stats {
        let obj = new.call1((cls,))?;
        let by_quantile = PyDict::new(py);
        for (q, v) in quantiles.iter().zip(&s.quantiles) {
            by_quantile.set_item(q, *v)?;
        }
        // missing_rate as Python computes it: 1.0 - n / n_rows (1.0 with no value)
        let missing = 1.0 - (s.count as f64) / (rows as f64);
        let fields = [
            s.count.into_pyobject(py)?.into_any(),
            PyFloat::new(py, missing).into_any(),
            PyFloat::new(py, s.mean).into_any(),
            PyFloat::new(py, s.std).into_any(),
            PyFloat::new(py, s.min).into_any(),
            PyFloat::new(py, s.max).into_any(),
            by_quantile.into_any(),
        ];
        for (name, value) in names.iter().zip(fields) {
            set_field(&obj, name, value)?;
        }
        summaries.append(obj)?;
        counts.push(s.count);
    }
    Ok((summaries, counts))
}

/// new_frozen(cls, names, rows, /)
/// --
///
/// ``[cls(*row) for row in rows]`` for a frozen dataclass ``cls`` (slots, no
/// ``__post_init__``) whose fields are ``names`` in order: each field set as the generated
/// ``__init__`` sets it (``object.__setattr__``), without running that Python code (it
/// costs more than the detector arithmetic of a result). ``rows``: a list of tuples.
#[pyfunction]
pub fn new_frozen<'py>(
    py: Python<'py>,
    cls: &Bound<'py, PyType>,
    names: Vec<Bound<'py, PyString>>,
    rows: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyList>> {
    let new = py
        .import("builtins")?
        .getattr("object")?
        .getattr("__new__")?;
    let out = PyList::empty(py);
    for row in rows.iter() {
        let row = row.cast_into::<PyTuple>()?;
        if row.len() != names.len() {
            return Err(PyValueError::new_err(format!(
                "a row of {} values for {} fields",
                row.len(),
                names.len()
            )));
        }
        let obj = new.call1((cls,))?;
        for (name, value) in names.iter().zip(row.iter()) {
            set_field(&obj, name, value)?;
        }
        out.append(obj)?;
    }
    Ok(out)
}

/// psi_sorted_many(windows, plans, compensated, /)
/// --
///
/// PSI of every sorted window (1-D C-contiguous float64, non-empty, no NaN) against its
/// plan (1-D float64: ``[epsilon, *edges, *props, *logs]`` with one edge fewer than bins):
/// ``PSIDetector.evaluate_sorted``'s statistic for each, the same bits.
/// ``compensated``: whether Python's ``sum`` of floats is compensated (CPython 3.12 on).
/// Runs without the GIL.
#[pyfunction]
pub fn psi_sorted_many(
    py: Python<'_>,
    windows: &Bound<'_, PyList>,
    plans: &Bound<'_, PyList>,
    compensated: bool,
) -> PyResult<Vec<f64>> {
    if windows.len() != plans.len() {
        return Err(PyValueError::new_err("windows and plans differ in length"));
    }
    let mut bufs = Vec::with_capacity(windows.len());
    for (k, (w, p)) in windows.iter().zip(plans.iter()).enumerate() {
        let w = f64_buffer(&w, &format!("windows[{k}]"), false)?;
        let p = f64_buffer(&p, &format!("plans[{k}]"), false)?;
        let plan_len = p.item_count();
        if w.item_count() == 0 {
            return Err(PyValueError::new_err(format!("windows[{k}] is empty")));
        }
        if plan_len < 3 || plan_len % 3 != 0 {
            return Err(PyValueError::new_err(format!("plans[{k}] is malformed")));
        }
        bufs.push((w, p));
    }
    let jobs: Vec<(&[f64], &[f64])> = bufs
        .iter()
        .map(|(w, p)| (as_slice(w), as_slice(p)))
        .collect();
    Ok(py.detach(|| {
        jobs.iter()
            .map(|&(w, plan)| {
                let bins = plan.len() / 3;
                let (edges, rest) = plan[1..].split_at(bins - 1);
                let (props, logs) = rest.split_at(bins);
                psi_sorted(w, edges, props, logs, plan[0], compensated)
            })
            .collect()
    }))
}

/// Adds this module's functions to the Python module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(summarize_sorted, m)?)?;
    m.add_function(wrap_pyfunction!(psi_sorted_many, m)?)?;
    m.add_function(wrap_pyfunction!(new_frozen, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_matches_a_plain_sum_of_small_integers() {
        for n in [0usize, 1, 7, 8, 9, 128, 129, 1000, 5001] {
            let a: Vec<f64> = (0..n).map(|i| i as f64).collect();
            assert_eq!(numpy_sum(&a, &|x| x), (n * n.saturating_sub(1) / 2) as f64);
        }
    }

    #[test]
    fn negative_zero_sums_to_zero_as_numpy() {
        assert!(numpy_sum(&[-0.0; 9], &|x| x).is_sign_positive());
    }

    #[test]
    fn python_sum_forms() {
        let xs = [1e16, 1.0, -1e16];
        assert_eq!(python_float_sum(&xs, false), 0.0);
        assert_eq!(python_float_sum(&xs, true), 1.0);
    }
}
