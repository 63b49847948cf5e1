//! Sorting a window's columns: what `np.sort(values, axis=0)` gives (each column ascending,
//! its NaN last), at a speed that does not depend on the CPU's vector sort.
//!
//! Why: every evaluation sorts each numeric column of the window once (the summaries' quantiles,
//! KS and PSI all read the sorted columns). numpy sorts float64 with a vectorised quicksort where
//! the CPU has AVX-512 and it pays off (about 4 ns per value on the Intel machines of the
//! benchmarks), but on other CPUs it falls back to or runs slowly (22 ns per value measured on an
//! AMD EPYC of the same benchmarks, where the sort then took more than half of an evaluation).
//! This sort takes about 6 ns per value on that machine; `monitor.column_sort` times both once
//! per process and keeps the faster.
//!
//! How: each present value becomes a `u64` key whose unsigned order is the float order
//! (the sign bit flipped for positives, all bits flipped for negatives: `-0.0` sorts just before
//! `0.0`, which numpy leaves in either order as they compare equal). Three least-significant-
//! digit radix passes of 11 bits order the keys by their top 33 bits (a pass whose digit all keys
//! share is skipped); one insertion pass then orders the keys that share those bits, which
//! for values from a real distribution are few and adjacent. Values crowded in a narrow range
//! (many keys sharing their top 33 bits in the wrong order) would make that pass quadratic, so
//! it stops after `8 n` moves and a comparison sort (`sort_unstable`, pattern-defeating,
//! `O(n log n)`) finishes the column. NaN values follow, in their original order and bits.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::summary::f64_buffer;

const DIGIT: u32 = 11;
const RADIX: usize = 1 << DIGIT;
/// The radix passes order the keys by bits 31 to 63.
const LOW: u32 = 64 - 3 * DIGIT;
/// Below this many values, the comparison sort alone (the radix passes' counts cost more).
const SMALL: usize = 256;

/// The float order as unsigned integer order (for non-NaN `x`).
#[inline]
fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// The inverse of [`key`].
#[inline]
fn value(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Sort `keys` ascending (`spare`: scratch of any content, resized here).
fn sort_keys(keys: &mut Vec<u64>, spare: &mut Vec<u64>) {
    let n = keys.len();
    if n < SMALL {
        keys.sort_unstable();
        return;
    }
    let mut counts = [[0u32; RADIX]; 3];
    for &k in keys.iter() {
        for (p, c) in counts.iter_mut().enumerate() {
            c[((k >> (LOW + p as u32 * DIGIT)) as usize) & (RADIX - 1)] += 1;
        }
    }
    spare.clear();
    spare.resize(n, 0);
    for (p, c) in counts.iter_mut().enumerate() {
        if c.iter().any(|&m| m as usize == n) {
            continue; // every key has this digit: the pass would move nothing
        }
        let mut at = 0u32;
        for m in c.iter_mut() {
            let here = *m;
            *m = at;
            at += here;
        }
        let shift = LOW + p as u32 * DIGIT;
        for &k in keys.iter() {
            let d = ((k >> shift) as usize) & (RADIX - 1);
            spare[c[d] as usize] = k;
            c[d] += 1;
        }
        std::mem::swap(keys, spare);
    }
    // Keys sharing their top bits may still be out of order among themselves.
    let mut budget = 8 * n;
    for i in 1..n {
        let x = keys[i];
        let mut j = i;
        while j > 0 && keys[j - 1] > x {
            keys[j] = keys[j - 1];
            j -= 1;
        }
        keys[j] = x;
        budget = budget.saturating_sub(i - j);
        if budget == 0 {
            keys.sort_unstable(); // crowded values: finish in O(n log n)
            return;
        }
    }
}

/// `src` sorted into `out` (same length): present values ascending, then the NaN.
fn sort_column(src: &[f64], out: &mut [f64], keys: &mut Vec<u64>, spare: &mut Vec<u64>) {
    keys.clear();
    keys.extend(src.iter().filter(|x| !x.is_nan()).map(|&x| key(x)));
    sort_keys(keys, spare);
    let present = keys.len();
    for (o, &k) in out.iter_mut().zip(keys.iter()) {
        *o = value(k);
    }
    if present < src.len() {
        for (o, &x) in out[present..]
            .iter_mut()
            .zip(src.iter().filter(|x| x.is_nan()))
        {
            *o = x;
        }
    }
}

/// sort_columns(values, out, /)
/// --
///
/// Write into ``out`` each column of ``values`` sorted ascending with its NaN last: what
/// ``np.sort(values, axis=0)`` gives, up to the order of ``-0.0`` and ``0.0`` (here ``-0.0``
/// first; numpy leaves equal values in either order). Both are 2-D Fortran-contiguous float64
/// arrays of the same shape, ``out`` writable and not ``values``. The sort runs without the GIL.
#[pyfunction]
pub fn sort_columns(
    py: Python<'_>,
    values: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let src = f64_buffer(values, "values", true)?;
    let dst = f64_buffer(out, "out", true)?;
    if src.shape() != dst.shape() {
        return Err(PyValueError::new_err(
            "values and out must have the same shape",
        ));
    }
    if dst.readonly() {
        return Err(PyValueError::new_err("out must be writable"));
    }
    let (rows, count) = (src.shape()[0], src.item_count());
    let (src_ptr, dst_ptr) = (src.buf_ptr() as usize, dst.buf_ptr() as usize);
    if count > 0 && src_ptr.abs_diff(dst_ptr) < count * std::mem::size_of::<f64>() {
        return Err(PyValueError::new_err("out must not overlap values"));
    }
    if rows == 0 {
        return Ok(());
    }
    // Safety: both exports are held until the end of the call, the two regions do not
    // overlap (checked), and `out` is writable (checked); nothing else runs on them while
    // the GIL is released, as long as the caller does not share `out` (it is ours, new).
    let input = unsafe { std::slice::from_raw_parts(src_ptr as *const f64, count) };
    let output = unsafe { std::slice::from_raw_parts_mut(dst_ptr as *mut f64, count) };
    py.detach(|| {
        let (mut keys, mut spare) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        for (s, o) in input.chunks_exact(rows).zip(output.chunks_exact_mut(rows)) {
            sort_column(s, o, &mut keys, &mut spare);
        }
    });
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sort_columns, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(v: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; v.len()];
        sort_column(v, &mut out, &mut Vec::new(), &mut Vec::new());
        out
    }

    fn check(v: &[f64]) {
        let got = sorted(v);
        let mut want: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        want.sort_unstable_by(|a, b| a.total_cmp(b));
        let present = want.len();
        assert_eq!(
            got[..present]
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>(),
            want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert!(got[present..].iter().all(|x| x.is_nan()));
        assert_eq!(got.len(), v.len());
    }

    #[test]
    fn keys_keep_the_float_order() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -1.0,
            -5e-324,
            -0.0,
            0.0,
            5e-324,
            1.0,
            1e300,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(key(w[0]) < key(w[1]), "{} {}", w[0], w[1]);
        }
        for &x in &xs {
            assert_eq!(value(key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn sorts_spread_crowded_tied_and_missing_values() {
        let mut s: u64 = 7;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for n in [0usize, 1, 2, 255, 256, 257, 1000, 5000] {
            let spread: Vec<f64> = (0..n)
                .map(|_| (next() >> 11) as f64 * 1e-10 - 4e5)
                .collect();
            check(&spread);
            // crowded: the same top 33 bits, differing below (the insertion pass's worst case)
            let crowded: Vec<f64> = (0..n)
                .map(|_| f64::from_bits(0x408f_4000_0000_0000 | (next() >> 40)))
                .collect();
            check(&crowded);
            let tied: Vec<f64> = (0..n).map(|_| (next() % 3) as f64 - 1.0).collect();
            check(&tied);
            let missing: Vec<f64> = (0..n)
                .map(|i| {
                    if i % 7 == 0 {
                        f64::NAN
                    } else {
                        -((next() % 1000) as f64)
                    }
                })
                .collect();
            check(&missing);
        }
    }
}
