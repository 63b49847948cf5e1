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
//! [`ks_statistic_full`] takes all of them: one forward pass over the reference ranks the
//! sorted window, counting a block of reference values per compare, on several slices of
//! the window at once so the passes overlap in the CPU.
//!
//! [`ks_statistic`], the kernel, takes a few hundred of them, by branch and bound.
//! Written over `n1 n2`, the readings are exact integer numerators:
//! `gap(t) = below[t] n2 - t n1` and, negated so that larger is more extreme,
//! `here(t) = (t + 1) n1 - at[t] n2`
//! (`below[t]` = #reference < `w_t`, `at[t]` = #reference <= `w_t`). Both ranks are
//! monotone in `t`, so for every `t` strictly between two ranked values `a < b`:
//! `gap(t) <= below[b] n2 - (a + 1) n1` and `here(t) <= b n1 - at[a] n2`. The search
//! ranks every 64th window value (binary searches over the whole reference), then halves
//! every stretch whose bound still reaches `best - margin` (`best`: the largest exact
//! numerator found so far) at its middle value (a binary search between the ranks of its
//! ends), level by level, and ranks the last stretches of up to 8 values one by one. A
//! stretch whose bound is below `best - margin` holds no reading that can round to D's
//! double (see [`extremes`] for `margin`): the doubles are then computed, as
//! [`extremes`] computes them, for the readings kept within `margin` of the final best,
//! and combined as before; the same bits (a reading left out is below the best by more
//! than both roundings, whichever side, gap or here, holds it).
//!
//! Why it pays: at the service's sizes (10,000 x 5,000) the readings near D are few, and
//! a stretch of `s` values has a bound about `2 s / n2` above its readings, which halving
//! shrinks quickly: about 250 of 5,000 values are ranked, drifted or not. The searches
//! of one level run side by side ([`rank_many`]) because their loads mostly miss the
//! cache (an evaluation's 22 columns of 120 KB do not fit in L2); one after the other,
//! they cost as much as the pass they replace. Where nothing prunes (readings near D all
//! along: equal samples, a lattice), the search gives up after a level that prunes less
//! than a tenth, or after `n2 / 8` readings, and ranks every value instead.
//! Ties of a window value with many reference copies (rounded data) cost a galloping
//! search from `below`, not a walk over the copies. `tests/test_ks_native.py` and the
//! tests below hold both paths to scipy, to the numpy formulation of the same readings
//! and to a plain merge, bit for bit.

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
///
/// Every call checks both samples (about 15,000 values a column at the service's sizes,
/// a fifth of the kernel's time at baseline SSE2): with AVX2 (asked of the CPU once) the
/// same comparisons run four at a time.
fn sorted_no_nan(x: &[f64]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // Safety: the CPU has AVX2 (checked just above).
            return unsafe { sorted_no_nan_avx2(x) };
        }
    }
    sorted_no_nan_plain(x)
}

/// [`sorted_no_nan`], compiled for AVX2: the same function, wider registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sorted_no_nan_avx2(x: &[f64]) -> bool {
    sorted_no_nan_plain(x)
}

/// [`sorted_no_nan`] for any CPU. The pairs are compared in blocks of a fixed size with
/// no early exit inside one (a loop the compiler turns into vector compares), and the
/// loop stops at the first block holding a pair out of order.
#[inline(always)]
fn sorted_no_nan_plain(x: &[f64]) -> bool {
    const CHUNK: usize = 64;
    if x.first().is_some_and(|v| v.is_nan()) {
        return false;
    }
    if x.len() < 2 {
        return true;
    }
    let (a, b) = (&x[..x.len() - 1], &x[1..]);
    let mut ca = a.chunks_exact(CHUNK);
    let mut cb = b.chunks_exact(CHUNK);
    for (p, q) in (&mut ca).zip(&mut cb) {
        let mut ok = true;
        for k in 0..CHUNK {
            ok &= p[k] <= q[k];
        }
        if !ok {
            return false;
        }
    }
    let mut ok = true;
    for (p, q) in ca.remainder().iter().zip(cb.remainder()) {
        ok &= p <= q;
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
                below[t] = *pk as i64;
                at[t] = rank_at(r, *pk, r.len(), v) as i64;
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
    let margin = margin(n1, n2);
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

/// D of two sorted, non-empty, NaN-free samples by ranking every window value (see the
/// module comment): the reference [`ks_statistic`] is held to, and its path where the
/// search gives up or the numerators could overflow.
pub fn ks_statistic_full(reference: &[f64], window: &[f64]) -> f64 {
    let (n1, n2) = (reference.len(), window.len());
    let mut below = vec![0i64; n2];
    let mut at = vec![0i64; n2];
    ranks(reference, window, &mut below, &mut at);
    let (n1, n2) = (n1 as i64, n2 as i64);
    let (hi, lo) = if exact_numerators(n1, n2) {
        extremes(&below, &at, n1, n2)
    } else {
        extremes_plain(&below, &at, n1, n2)
    };
    combine(hi, lo)
}

/// Whether `rank * n2 - t * n1` is an exact `i64` for every rank and `t` (`n1 n2 < 2^62`).
fn exact_numerators(n1: i64, n2: i64) -> bool {
    n1.checked_mul(n2).is_some_and(|p| p < 1 << 62)
}

/// The two sides combined as scipy (and the numba walk this replaces) combine them: `-0.0`
/// when both are 0.
fn combine(hi: f64, lo: f64) -> f64 {
    let ref_above = if hi < 1.0 { hi } else { 1.0 };
    let win_above = -lo;
    if ref_above > win_above {
        ref_above
    } else {
        win_above
    }
}

/// How far (in numerator units, over `n1 n2`) a reading's exact value may lie below the
/// largest and still round to the largest double: see [`extremes`].
fn margin(n1: i64, n2: i64) -> i64 {
    (6.0 * n1 as f64 * n2 as f64 / 9_007_199_254_740_992.0).ceil() as i64 + 1
}

/// The number of leading values of the sorted `s` for which `pred` holds (`pred` true
/// then false along `s`), by a binary search without data-dependent branches: the
/// compare feeds a conditional move, so a search costs its `log2(len)` loads and no
/// mispredictions.
#[inline(always)]
fn count_leading(s: &[f64], pred: impl Fn(f64) -> bool) -> usize {
    let mut size = s.len();
    if size == 0 {
        return 0;
    }
    let mut base = 0usize;
    while size > 1 {
        let half = size / 2;
        let mid = base + half;
        base = if pred(s[mid]) { mid } else { base };
        size -= half;
    }
    base + pred(s[base]) as usize
}

/// `#reference <= v` given `below = #reference < v` and that the answer is at most `hi`:
/// one compare when `v` is not a reference value; when it is, a galloping search over its
/// copies (a handful of loads near `below`, however many copies there are).
#[inline(always)]
fn rank_at(r: &[f64], below: usize, hi: usize, v: f64) -> usize {
    if below >= hi || r[below] > v {
        return below;
    }
    let (mut lo, mut step) = (below + 1, 1); // r[..lo] <= v
    while lo + step <= hi && r[lo + step - 1] <= v {
        lo += step;
        step *= 2;
    }
    let end = (lo + step - 1).min(hi); // the answer is in [lo, end]
    lo + count_leading(&r[lo..end], |x| x <= v)
}

/// Stretches of the window at most this long are ranked value by value.
const LEAF: usize = 8;
/// Every `GRID`-th window value is ranked first, by searches run side by side.
const GRID: usize = 64;
/// The search gives up (and every value is ranked) after `n2 / GIVE_UP` readings.
const GIVE_UP: usize = 8;

/// The search's knobs: [`GRID`], [`LEAF`], and whether it may give up (the tests also run
/// it to the end, so that its answers are checked where it would give up).
#[derive(Clone, Copy)]
struct Tuning {
    grid: usize,
    leaf: usize,
    may_give_up: bool,
}

const TUNED: Tuning = Tuning {
    grid: GRID,
    leaf: LEAF,
    may_give_up: true,
};

/// A window value `w[t]` with its ranks in the reference: `below = #reference < w[t]`,
/// `at = #reference <= w[t]`.
#[derive(Clone, Copy)]
struct Ranked {
    t: usize,
    below: usize,
    at: usize,
}

/// One search of [`rank_many`]: `#reference < v`, known to lie in `[base, base + size]`.
#[derive(Clone, Copy)]
struct Query {
    v: f64,
    base: usize,
    size: usize,
}

/// Runs the searches side by side, one step of each per round, so that their loads (cache
/// misses, mostly: 22 columns of 120 KB do not fit in L2) overlap instead of queueing;
/// leaves each `base` at its answer. Branch-free per step, as [`count_leading`].
fn rank_many(r: &[f64], queries: &mut [Query]) {
    let mut active = true;
    while active {
        active = false;
        for q in queries.iter_mut() {
            if q.size > 1 {
                let half = q.size / 2;
                let mid = q.base + half;
                q.base = if r[mid] < q.v { mid } else { q.base };
                q.size -= half;
                active = true;
            }
        }
    }
    for q in queries.iter_mut() {
        if q.size == 1 {
            q.base += (r[q.base] < q.v) as usize;
        }
    }
}

/// The search's work lists.
#[derive(Default)]
struct Buffers {
    queries: Vec<Query>,
    points: Vec<Ranked>,
    stretches: Vec<(Ranked, Ranked)>,
    split: Vec<(Ranked, Ranked)>,
    leaves: Vec<(Ranked, Ranked)>,
}

/// Buffers of [`ks_statistic`], kept between the columns of one call.
#[derive(Default)]
pub struct Scratch {
    bufs: Buffers,
    /// `(numerator, rank, t)` of readings that may round to the extreme: "gap" readings
    /// `rank / n1 - t / n2` and "here" readings (`t` is then the `t + 1` of the proof).
    gaps: Vec<(i64, i64, i64)>,
    heres: Vec<(i64, i64, i64)>,
    /// Window values whose readings the last search took (for the tests' and timings' eyes).
    readings: usize,
}

/// The search of [`ks_statistic`] over one pair.
struct BranchAndBound<'a> {
    r: &'a [f64],
    w: &'a [f64],
    n1: i64,
    n2: i64,
    margin: i64,
    /// The largest signed numerator seen so far (0: the extremes start from 0).
    best: i64,
    /// Window values whose readings were taken.
    readings: usize,
    tuning: Tuning,
    scratch: &'a mut Scratch,
}

impl BranchAndBound<'_> {
    /// Takes the two readings of a ranked window value, keeping each that may still
    /// round to the extreme.
    #[inline(always)]
    fn reading(&mut self, p: Ranked) {
        self.readings += 1;
        let (t, below, at) = (p.t as i64, p.below as i64, p.at as i64);
        let gap = below * self.n2 - t * self.n1;
        let here = (t + 1) * self.n1 - at * self.n2; // minus the numerator: larger is better
        self.best = self.best.max(gap).max(here);
        let floor = self.best - self.margin;
        if gap >= floor {
            self.scratch.gaps.push((gap, below, t));
        }
        if here >= floor {
            self.scratch.heres.push((here, at, t + 1));
        }
    }

    /// An upper bound of every signed numerator strictly between `a` and `b`: inside,
    /// `below[t] <= below[b]` and `t >= a + 1` bound the gaps, `at[t] >= at[a]` and
    /// `t + 1 <= b` the heres.
    fn bound(&self, a: Ranked, b: Ranked) -> i64 {
        let gap = b.below as i64 * self.n2 - (a.t as i64 + 1) * self.n1;
        let here = b.t as i64 * self.n1 - a.at as i64 * self.n2;
        gap.max(here)
    }

    /// `at` of `w[t]` from its `below`, at most `at_hi`.
    fn ranked(&self, t: usize, below: usize, at_hi: usize) -> Ranked {
        let at = rank_at(self.r, below, at_hi, self.w[t]);
        Ranked { t, below, at }
    }

    /// Ranks every value strictly between `a` and `b` by a forward pass.
    fn leaf(&mut self, a: Ranked, b: Ranked) {
        let (r, w) = (self.r, self.w);
        let mut p = a;
        for t in a.t + 1..b.t {
            p.t = t;
            if w[t] != w[t - 1] {
                p.below = rank_below(&r[..b.below], p.below, w[t]);
                p.at = rank_at(r, p.below, b.at, w[t]);
            }
            self.reading(p);
        }
    }

    /// D with the readings' doubles computed as [`extremes`] computes them, or `None`
    /// when the bounds prune too little (readings near the extreme all along the window:
    /// equal samples, a lattice), where ranking every value costs less.
    fn run(mut self) -> Option<f64> {
        let mut bufs = std::mem::take(&mut self.scratch.bufs);
        let finished = self.search(&mut bufs);
        self.scratch.bufs = bufs;
        self.scratch.readings = self.readings;
        finished.then(|| self.extremes())
    }

    /// Takes every reading that may round to the extreme (false: gave up first).
    fn search(&mut self, bufs: &mut Buffers) -> bool {
        let (r, w) = (self.r, self.w);
        let (n1, n2) = (r.len(), w.len());
        let tuning = self.tuning;
        let give_up = if tuning.may_give_up {
            (n2 / GIVE_UP).max(2 * tuning.grid)
        } else {
            usize::MAX
        };
        // The grid: every `grid`-th value and the last, ranked in the whole reference.
        let Buffers {
            queries,
            points,
            stretches,
            split,
            leaves,
        } = bufs;
        let last = (n2 - 1) % tuning.grid != 0;
        let grid = (0..n2).step_by(tuning.grid).chain(last.then_some(n2 - 1));
        points.clear();
        points.extend(grid.map(|t| Ranked { t, below: 0, at: 0 }));
        queries.clear();
        queries.extend(points.iter().map(|p| Query {
            v: w[p.t],
            base: 0,
            size: n1,
        }));
        rank_many(r, queries);
        for (p, q) in points.iter_mut().zip(queries.iter()) {
            *p = self.ranked(p.t, q.base, n1);
            self.reading(*p);
        }
        stretches.clear();
        leaves.clear();
        stretches.extend(
            points
                .windows(2)
                .map(|p| (p[0], p[1]))
                .filter(|(a, b)| b.t - a.t > 1),
        );
        // Halving: each level splits every stretch that may hold an extreme at its middle
        // value, whose searches run side by side; short stretches wait as leaves.
        let mut first_level = true;
        while !stretches.is_empty() {
            let floor = self.best - self.margin;
            split.clear();
            queries.clear();
            for &(a, b) in stretches.iter() {
                if self.bound(a, b) < floor {
                    continue;
                }
                if b.t - a.t <= tuning.leaf {
                    leaves.push((a, b));
                } else {
                    let v = w[a.t + (b.t - a.t) / 2];
                    queries.push(Query {
                        v,
                        base: a.below,
                        size: b.below - a.below,
                    });
                    split.push((a, b));
                }
            }
            // Past the grid, halving a stretch halves its bound's slack: a level that
            // prunes (almost) nothing means readings near the extreme all along.
            let futile = !first_level && 10 * split.len() >= 9 * stretches.len();
            if tuning.may_give_up && (futile || self.readings > give_up) {
                return false;
            }
            first_level = false;
            rank_many(r, queries);
            stretches.clear();
            for (&(a, b), q) in split.iter().zip(queries.iter()) {
                let m = self.ranked(a.t + (b.t - a.t) / 2, q.base, b.at);
                self.reading(m);
                for (x, y) in [(a, m), (m, b)] {
                    if y.t - x.t > 1 {
                        stretches.push((x, y));
                    }
                }
            }
        }
        for &(a, b) in leaves.iter() {
            if self.bound(a, b) >= self.best - self.margin {
                self.leaf(a, b);
            }
        }
        true
    }

    /// `(max, min)` of the kept readings within `margin` of the best, combined.
    fn extremes(&self) -> f64 {
        let (f1, f2) = (self.n1 as f64, self.n2 as f64);
        let floor = self.best - self.margin;
        let (mut hi, mut lo) = (0.0f64, 0.0f64);
        for &(num, rank, t) in &self.scratch.gaps {
            if num >= floor {
                let gap = rank as f64 / f1 - t as f64 / f2;
                hi = if gap > hi { gap } else { hi };
            }
        }
        for &(num, rank, t) in &self.scratch.heres {
            if num >= floor {
                let here = rank as f64 / f1 - t as f64 / f2;
                lo = if here < lo { here } else { lo };
            }
        }
        combine(hi, lo)
    }
}

/// D of two sorted, non-empty, NaN-free samples, equal bit for bit to
/// [`ks_statistic_full`], by a branch and bound over stretches of the window
/// (see the module comment); `scratch` is reused between calls.
pub fn ks_statistic(reference: &[f64], window: &[f64], scratch: &mut Scratch) -> f64 {
    search(reference, window, scratch, TUNED)
}

/// [`ks_statistic`] with the grid and leaf sizes given.
fn search(reference: &[f64], window: &[f64], scratch: &mut Scratch, tuning: Tuning) -> f64 {
    let (n1, n2) = (reference.len() as i64, window.len() as i64);
    if !exact_numerators(n1, n2) {
        return ks_statistic_full(reference, window);
    }
    scratch.gaps.clear();
    scratch.heres.clear();
    let search = BranchAndBound {
        r: reference,
        w: window,
        n1,
        n2,
        margin: margin(n1, n2),
        best: 0,
        readings: 0,
        tuning,
        scratch,
    };
    search
        .run()
        .unwrap_or_else(|| ks_statistic_full(reference, window))
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

/// Window values, over all pairs of a call, from which the pairs are split across threads:
/// below it (about 0.15 ms of work) starting a thread costs a noticeable part of the gain.
const THREADS_FROM: usize = 50_000;

/// Threads for a call of `pairs` pairs holding `window_values` window values in all:
/// `MONITOR_NATIVE_THREADS` (a positive integer; unset, 1 or invalid: none), capped by
/// `available_parallelism` and the pairs, and 1 below [`THREADS_FROM`]. None by default:
/// threads shorten one call only where a core is idle, and cost CPU (BENCHMARKS.md, "KS
/// evaluation speed": on a busy 2-core host two threads made the call slower).
fn threads_for(pairs: usize, window_values: usize) -> usize {
    let wanted = std::env::var("MONITOR_NATIVE_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(1);
    if wanted <= 1 || window_values < THREADS_FROM {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    wanted.min(cores).min(pairs).max(1)
}

/// D for each pair, or the error of the first pair that is not sorted / holds a NaN, on
/// `threads` threads (this one and `threads - 1` more), each taking a run of consecutive
/// pairs: the same answers, the first error in pair order.
fn statistics_on(pairs: &[(&[f64], &[f64])], threads: usize) -> Result<Vec<f64>, String> {
    if threads <= 1 || pairs.len() < 2 {
        return statistics_from(pairs, 0);
    }
    let per_thread = pairs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut runs = pairs.chunks(per_thread).enumerate();
        let (_, own) = runs.next().expect("at least two pairs");
        let others: Vec<_> = runs
            .map(|(k, run)| scope.spawn(move || statistics_from(run, k * per_thread)))
            .collect();
        let mut out = statistics_from(own, 0);
        for other in others {
            let theirs = other.join().expect("a KS thread panicked");
            out = out.and_then(|mut d| {
                d.extend(theirs?);
                Ok(d)
            });
        }
        out
    })
}

/// D for each pair (numbered from `first` in errors), on this thread.
fn statistics_from(pairs: &[(&[f64], &[f64])], first: usize) -> Result<Vec<f64>, String> {
    let mut scratch = Scratch::default();
    pairs
        .iter()
        .enumerate()
        .map(|(k, &(r, w))| {
            let k = first + k;
            if !sorted_no_nan(r) {
                Err(format!(
                    "pair {k}: reference is not sorted ascending or holds NaN"
                ))
            } else if !sorted_no_nan(w) {
                Err(format!(
                    "pair {k}: window is not sorted ascending or holds NaN"
                ))
            } else {
                Ok(ks_statistic(r, w, &mut scratch))
            }
        })
        .collect()
}

/// ks_threads(pairs, window_values, /)
/// --
///
/// The threads :func:`ks_statistics_sorted` uses for ``pairs`` pairs holding
/// ``window_values`` window values in all (``MONITOR_NATIVE_THREADS``, the cores, the
/// pairs; 1 for a small call): for the operators' and the tests' eyes.
#[pyfunction]
pub fn ks_threads(pairs: usize, window_values: usize) -> usize {
    threads_for(pairs, window_values)
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
    let out = py.detach(|| statistics_on(&[(rs, ws)], 1));
    out.map(|d| d[0])
        .map_err(|e| PyValueError::new_err(e.replacen("pair 0: ", "", 1)))
}

/// ks_statistics_sorted(references, windows, /)
/// --
///
/// ``[ks_statistic_sorted(r, w) for r, w in zip(references, windows)]`` in one call (two
/// lists of equal length), with the GIL released once for all pairs: an evaluation's
/// columns at once, split across threads when they are many (:func:`ks_threads`,
/// ``MONITOR_NATIVE_THREADS``).
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
    // The environment is read with the GIL held: Python's putenv holds it too.
    let window_values = pairs.iter().map(|(_, w)| w.len()).sum();
    let threads = threads_for(pairs.len(), window_values);
    py.detach(|| statistics_on(&pairs, threads))
        .map_err(PyValueError::new_err)
}

/// ks_statistic_sorted_full(reference, window, /)
/// --
///
/// :func:`ks_statistic_sorted` computed by ranking every window value in the reference
/// (the kernel before the search; the search's reference in the tests): the same D, bit
/// for bit, the same checks.
#[pyfunction]
pub fn ks_statistic_sorted_full(
    py: Python<'_>,
    reference: &Bound<'_, PyAny>,
    window: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    let r = f64_buffer(reference, "reference")?;
    let w = f64_buffer(window, "window")?;
    let (rs, ws) = (as_slice(&r), as_slice(&w));
    py.detach(|| {
        if !sorted_no_nan(rs) {
            Err("reference is not sorted ascending or holds NaN")
        } else if !sorted_no_nan(ws) {
            Err("window is not sorted ascending or holds NaN")
        } else {
            Ok(ks_statistic_full(rs, ws))
        }
    })
    .map_err(PyValueError::new_err)
}

/// Adds the kernel's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ks_statistic_sorted, m)?)?;
    m.add_function(wrap_pyfunction!(ks_statistic_sorted_full, m)?)?;
    m.add_function(wrap_pyfunction!(ks_threads, m)?)?;
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

    /// D by the search with its tuning, run to the end, and with other grid and leaf sizes.
    fn searched(r: &[f64], w: &[f64], scratch: &mut Scratch) -> [u64; 4] {
        let to_the_end = Tuning {
            may_give_up: false,
            ..TUNED
        };
        let fine = Tuning {
            grid: 3,
            leaf: 1,
            may_give_up: false,
        };
        let coarse = Tuning {
            grid: 1_000,
            leaf: 40,
            may_give_up: false,
        };
        [TUNED, to_the_end, fine, coarse].map(|t| search(r, w, scratch, t).to_bits())
    }

    #[test]
    fn equals_the_merge_walk_with_ties_and_all_sizes() {
        let mut scratch = Scratch::default();
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
            for (x, y) in [(&r, &w), (&w, &r)] {
                let walk = merge_walk(x, y).to_bits();
                assert_eq!(ks_statistic_full(x, y).to_bits(), walk);
                assert_eq!(searched(x, y, &mut scratch), [walk; 4]);
            }
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

    /// A reference and a window, sorted.
    type Pair = (Vec<f64>, Vec<f64>);

    /// A seeded generator of the tests' samples.
    struct Samples(u64);

    impl Samples {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 11
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn uniform(&mut self) -> f64 {
            (self.next() as f64 + 0.5) / (1u64 << 53) as f64
        }

        /// `n` sorted normals (Box-Muller) with mean `shift` and scale `scale`, rounded to
        /// `decimals` when given (ties), sorted.
        fn normals(&mut self, n: usize, shift: f64, scale: f64, decimals: Option<i32>) -> Vec<f64> {
            let mut v: Vec<f64> = (0..n)
                .map(|_| {
                    let (u1, u2) = (self.uniform(), self.uniform());
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    let x = shift + scale * z;
                    match decimals {
                        Some(d) => (x * 10f64.powi(d)).round() / 10f64.powi(d),
                        None => x,
                    }
                })
                .collect();
            v.sort_by(f64::total_cmp);
            v
        }
    }

    /// The pairs of the service's kind: up to 10,000 x 5,000, drifted or not, continuous or
    /// rounded (ties), plus the shapes that defeat the search's bounds (a lattice where
    /// every reading is near the extreme, equal samples, a few distinct values).
    fn service_pairs(count: usize, seed: u64) -> Vec<Pair> {
        let mut g = Samples(seed);
        let mut out = Vec::new();
        for k in 0..count {
            let n1 = 1 + g.below(10_000) as usize;
            let n2 = 1 + g.below(5_000) as usize;
            let decimals = [None, None, Some(0), Some(1), Some(2)][k % 5];
            let shift = [0.0, 0.0, 0.02, 0.1, 1.0, -3.0][g.below(6) as usize];
            let scale = [1.0, 1.0, 1.1, 0.5][g.below(4) as usize];
            out.push((
                g.normals(n1, 0.0, 1.0, decimals),
                g.normals(n2, shift, scale, decimals),
            ));
        }
        let lattice: Vec<f64> = (0..10_000).map(f64::from).collect();
        let between: Vec<f64> = (0..5_000).map(|i| 2.0 * f64::from(i) + 0.5).collect();
        let tied: Vec<f64> = (0..10_000).map(|i| f64::from(i % 13)).collect();
        let mut tied_sorted = tied.clone();
        tied_sorted.sort_by(f64::total_cmp);
        let few: Vec<f64> = (0..5_000).map(|i| f64::from(i % 4) * 3.0).collect();
        let mut few_sorted = few.clone();
        few_sorted.sort_by(f64::total_cmp);
        out.push((lattice.clone(), between.clone()));
        out.push((between.clone(), lattice.clone()));
        out.push((lattice.clone(), lattice[..5_000].to_vec()));
        out.push((lattice.clone(), lattice.clone()));
        out.push((tied_sorted.clone(), few_sorted.clone()));
        out.push((tied_sorted.clone(), tied_sorted[..5_000].to_vec()));
        out
    }

    #[test]
    fn the_search_equals_ranking_every_value_at_the_service_sizes() {
        let mut scratch = Scratch::default();
        for (r, w) in service_pairs(400, 11) {
            let full = ks_statistic_full(&r, &w).to_bits();
            assert_eq!(searched(&r, &w, &mut scratch), [full; 4]);
            let swapped = ks_statistic_full(&w, &r).to_bits();
            assert_eq!(searched(&w, &r, &mut scratch), [swapped; 4]);
        }
        // A few against the merge walk itself, beyond the ranking path.
        for (r, w) in service_pairs(20, 12) {
            assert_eq!(
                ks_statistic(&r, &w, &mut scratch).to_bits(),
                merge_walk(&r, &w).to_bits()
            );
        }
    }

    #[test]
    fn the_search_equals_ranking_every_value_near_the_rounding_limit() {
        // Windows whose D is reached (to within the rounding margin) at many readings: a
        // window drawn from the reference itself, so ties of the exact numerators abound.
        let mut scratch = Scratch::default();
        let mut g = Samples(5);
        for _ in 0..2_000 {
            let n1 = 1 + g.below(300) as usize;
            let r = g.normals(n1, 0.0, 1.0, Some(1));
            let n2 = 1 + g.below(300) as usize;
            let mut w: Vec<f64> = (0..n2).map(|_| r[g.below(n1 as u64) as usize]).collect();
            w.sort_by(f64::total_cmp);
            let full = ks_statistic_full(&r, &w).to_bits();
            assert_eq!(searched(&r, &w, &mut scratch), [full; 4]);
        }
    }

    #[test]
    fn the_search_takes_few_readings_of_a_typical_window_and_gives_up_on_a_lattice() {
        // What makes it fast: at the service's sizes, drifted or not, a small part of the
        // window is ranked; where the bounds cannot prune, it hands over to ranking all.
        let mut g = Samples(3);
        let mut scratch = Scratch::default();
        for shift in [0.0, 0.0, 0.0, 0.02, 0.05, 0.1, 1.0] {
            let (r, w) = (
                g.normals(10_000, 0.0, 1.0, None),
                g.normals(5_000, shift, 1.0, None),
            );
            let d = ks_statistic(&r, &w, &mut scratch);
            assert_eq!(d.to_bits(), ks_statistic_full(&r, &w).to_bits());
            assert!(
                scratch.readings < 5_000 / 8,
                "{shift}: {} readings",
                scratch.readings
            );
        }
        let pairs = service_pairs(0, 0);
        for (r, w) in &pairs[..4] {
            let mut run = |tuning| {
                let d = search(r, w, &mut scratch, tuning).to_bits();
                (d, scratch.readings)
            };
            let (given_up, to_the_end) = (
                run(TUNED),
                run(Tuning {
                    may_give_up: false,
                    ..TUNED
                }),
            );
            assert_eq!(given_up.0, ks_statistic_full(r, w).to_bits());
            assert_eq!(to_the_end.0, given_up.0);
            assert!(given_up.1 < w.len() / 4, "{} of {}", given_up.1, w.len());
        }
    }

    /// `cargo test --release -- --ignored --nocapture timing`: microseconds per pair of the
    /// search and of ranking every value, on the service's sizes. A measurement, not a test.
    #[test]
    #[ignore]
    fn timing() {
        let mut g = Samples(3);
        let mut normal_pairs = |shift: f64, round: Option<i32>| -> Vec<Pair> {
            (0..22)
                .map(|_| {
                    (
                        g.normals(10_000, 0.0, 1.0, round),
                        g.normals(5_000, shift, 1.0, round),
                    )
                })
                .collect()
        };
        let cases: Vec<(&str, Vec<Pair>)> = vec![
            ("null", normal_pairs(0.0, None)),
            ("shift 0.1", normal_pairs(0.1, None)),
            ("rounded 1", normal_pairs(0.0, Some(1))),
            ("lattice", service_pairs(0, 0)[..1].to_vec()),
            ("equal", service_pairs(0, 0)[3..4].to_vec()),
        ];
        let mut scratch = Scratch::default();
        let env = |k: &str, d: usize| std::env::var(k).map_or(d, |v| v.parse().unwrap());
        let tuning = Tuning {
            grid: env("KS_GRID", GRID),
            leaf: env("KS_LEAF", LEAF),
            may_give_up: true,
        };
        for (name, pairs) in &cases {
            let (mut full, mut fast, mut sink) = (f64::MAX, f64::MAX, 0.0);
            let per_pair =
                |t: std::time::Instant| t.elapsed().as_secs_f64() * 1e6 / 50.0 / pairs.len() as f64;
            for _ in 0..7 {
                let t = std::time::Instant::now();
                for _ in 0..50 {
                    for (r, w) in pairs {
                        sink += ks_statistic_full(r, w);
                    }
                }
                full = full.min(per_pair(t));
                let t = std::time::Instant::now();
                for _ in 0..50 {
                    for (r, w) in pairs {
                        sink -= search(r, w, &mut scratch, tuning);
                    }
                }
                fast = fast.min(per_pair(t));
            }
            println!(
                "{name:>10}: full {full:7.2} us, search {fast:7.2} us per pair, best of 7 ({sink})"
            );
        }
    }

    #[test]
    fn threads_give_the_same_answers_and_the_first_error() {
        let pairs = service_pairs(9, 21);
        let slices: Vec<(&[f64], &[f64])> = pairs
            .iter()
            .map(|(r, w)| (r.as_slice(), w.as_slice()))
            .collect();
        let one = statistics_on(&slices, 1).unwrap();
        for threads in 2..6 {
            assert_eq!(statistics_on(&slices, threads).unwrap(), one);
        }
        let (unsorted, nan) = (vec![2.0, 1.0], vec![0.0, f64::NAN]);
        let mut bad = slices.clone();
        bad[7].1 = &unsorted;
        bad[12].0 = &nan;
        for threads in 1..6 {
            let err = statistics_on(&bad, threads).unwrap_err();
            assert_eq!(err, "pair 7: window is not sorted ascending or holds NaN");
        }
        assert_eq!(threads_for(22, THREADS_FROM - 1), 1);
        assert!(threads_for(1, 10 * THREADS_FROM) == 1);
    }

    /// The vectorised check against the plain pairwise one, for every length around the
    /// blocks and every place of a pair out of order or a NaN.
    #[test]
    fn the_blocked_check_equals_the_pairwise_one() {
        let pairwise =
            |x: &[f64]| x.first().is_none_or(|v| !v.is_nan()) && x.windows(2).all(|p| p[0] <= p[1]);
        for n in [0usize, 1, 2, 3, 63, 64, 65, 66, 127, 128, 129, 200] {
            let base: Vec<f64> = (0..n).map(|i| (i / 3) as f64).collect();
            assert_eq!(sorted_no_nan(&base), pairwise(&base), "n={n}");
            assert!(sorted_no_nan(&base));
            for at in 0..n {
                for bad in [f64::NAN, -1.0, -0.0, f64::NEG_INFINITY] {
                    let mut x = base.clone();
                    x[at] = bad;
                    assert_eq!(sorted_no_nan(&x), pairwise(&x), "n={n} at={at} bad={bad}");
                    assert_eq!(sorted_no_nan_plain(&x), pairwise(&x), "n={n} at={at}");
                }
            }
        }
    }

    /// `cargo test --release -- --ignored --nocapture check_timing`: nanoseconds of the
    /// check of a 10,000-value sample, blocked (as dispatched) and pairwise.
    #[test]
    #[ignore]
    fn check_timing() {
        let x: Vec<f64> = (0..10_000).map(|i| i as f64 * 0.5).collect();
        let pairwise = |x: &[f64]| {
            let mut ok = x.first().is_none_or(|v| !v.is_nan());
            for pair in x.windows(2) {
                ok &= pair[0] <= pair[1];
            }
            ok
        };
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let mut n = 0;
            for _ in 0..10_000 {
                n += usize::from(sorted_no_nan(std::hint::black_box(&x)));
            }
            let blocked = t.elapsed() / 10_000;
            let t = std::time::Instant::now();
            for _ in 0..10_000 {
                n += usize::from(pairwise(std::hint::black_box(&x)));
            }
            eprintln!(
                "blocked {blocked:?}, pairwise {:?} ({n})",
                t.elapsed() / 10_000
            );
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
