//! A square sparse matrix in compressed-row form, the shape of W (weights) and B (bonds).
//!
//! Row i holds what peer i says about the others: `w[i][j]` is the score peer i gives peer j.
//! Columns within a row are kept sorted and unique, and explicit zeros are dropped, so "peer i
//! weights peer j" is exactly "(i, j) is stored". Every reduction below sums in a fixed
//! order (over rows in ascending index order, or along a row in [`Lanes`]), which makes
//! results bit-identical however the caller splits work.
//!
//! A `SparseMatrix` is valid by construction: every way to make one (the constructors, the
//! operations, and deserialisation, which runs [`SparseMatrix::check`]) yields the right shape,
//! sorted unique columns in range and finite values >= 0. So an epoch does not re-check its
//! matrices: at n = 65,536 with 256 weights a row that was two passes over 16.8 M entries.

use crate::error::MechanismError;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// An n x n matrix of per-peer opinions, weights W or bonds B, stored by row with only the
/// non-zero entries: row i is what peer i set. Valid by construction (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSparseMatrix")]
pub struct SparseMatrix {
    n: usize,
    /// `row_ptr[i]..row_ptr[i + 1]` indexes row i in `cols` and `vals`; length n + 1.
    row_ptr: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<f64>,
}

/// What a stored value must be. (NaN fails both comparisons.)
#[inline]
fn finite_non_negative(v: f64) -> bool {
    (0.0..=f64::MAX).contains(&v)
}

/// The stored form of a [`SparseMatrix`], checked before it becomes one.
#[derive(Deserialize)]
struct RawSparseMatrix {
    n: usize,
    row_ptr: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<f64>,
}

impl TryFrom<RawSparseMatrix> for SparseMatrix {
    type Error = MechanismError;

    fn try_from(raw: RawSparseMatrix) -> Result<Self, MechanismError> {
        let m = SparseMatrix { n: raw.n, row_ptr: raw.row_ptr, cols: raw.cols, vals: raw.vals };
        m.check()?;
        Ok(m)
    }
}

impl SparseMatrix {
    /// The n x n zero matrix.
    pub fn zeros(n: usize) -> Self {
        SparseMatrix { n, row_ptr: vec![0; n + 1], cols: Vec::new(), vals: Vec::new() }
    }

    /// Builds a matrix from one list of `(column, value)` pairs per row, in any order.
    ///
    /// Rejects a column out of range, a column named twice in a row, and any value that is
    /// negative, NaN or infinite. Zeros are accepted and dropped.
    pub fn from_rows<R>(n: usize, rows: R) -> Result<Self, MechanismError>
    where
        R: IntoIterator,
        R::Item: AsRef<[(usize, f64)]>,
    {
        let mut row_ptr = Vec::with_capacity(n + 1);
        row_ptr.push(0);
        let mut cols = Vec::new();
        let mut vals = Vec::new();
        let mut scratch: Vec<(usize, f64)> = Vec::new();
        let mut rows_seen = 0;
        for (i, row) in rows.into_iter().enumerate() {
            if i >= n {
                return Err(MechanismError::MatrixShape { rows: i + 1, expected: n });
            }
            scratch.clear();
            scratch.extend_from_slice(row.as_ref());
            scratch.sort_by_key(|&(j, _)| j);
            for (k, &(j, v)) in scratch.iter().enumerate() {
                if j >= n {
                    return Err(MechanismError::ColumnOutOfRange { row: i, col: j, n });
                }
                if k > 0 && scratch[k - 1].0 == j {
                    return Err(MechanismError::DuplicateColumn { row: i, col: j });
                }
                if !v.is_finite() || v < 0.0 {
                    return Err(MechanismError::BadWeight { row: i, col: j, value: v });
                }
                if v > 0.0 {
                    cols.push(j as u32);
                    vals.push(v);
                }
            }
            row_ptr.push(cols.len());
            rows_seen = i + 1;
        }
        if rows_seen != n {
            return Err(MechanismError::MatrixShape { rows: rows_seen, expected: n });
        }
        Ok(SparseMatrix { n, row_ptr, cols, vals })
    }

    /// Builds a matrix from dense rows (`rows[i][j]` is entry (i, j)); zeros are dropped.
    pub fn from_dense(rows: &[Vec<f64>]) -> Result<Self, MechanismError> {
        let n = rows.len();
        let sparse_rows: Vec<Vec<(usize, f64)>> = rows
            .iter()
            .map(|r| {
                if r.len() != n {
                    return Err(MechanismError::VectorLength {
                        what: "dense row",
                        got: r.len(),
                        expected: n,
                    });
                }
                Ok(r.iter().enumerate().map(|(j, &v)| (j, v)).filter(|&(_, v)| v != 0.0).collect())
            })
            .collect::<Result<_, _>>()?;
        Self::from_rows(n, sparse_rows)
    }

    /// Checks the invariants `from_rows` establishes: shape, sorted unique columns in range, and
    /// finite non-negative values. Deserialisation runs it; every other way to make a matrix
    /// keeps them.
    pub fn check(&self) -> Result<(), MechanismError> {
        let n = self.n;
        if self.row_ptr.len() != n + 1
            || self.row_ptr[0] != 0
            || self.row_ptr[n] != self.cols.len()
            || self.cols.len() != self.vals.len()
            || self.row_ptr.windows(2).any(|w| w[0] > w[1])
        {
            return Err(MechanismError::MatrixShape {
                rows: self.row_ptr.len().saturating_sub(1),
                expected: n,
            });
        }
        // The common case, a valid matrix, in loops without early exits, which the compiler
        // vectorises: every value finite and >= 0 (NaN fails both comparisons), every column
        // in range, columns ascending within each row. Only a failure takes the loop below,
        // which finds the first offending entry.
        let values_ok = self.vals.iter().fold(true, |ok, &v| ok & finite_non_negative(v));
        let cols_ok = self.cols.is_empty() || (self.cols.iter().fold(0, |m, &j| m.max(j)) as usize) < n;
        let ascending = (0..n).all(|i| {
            let cols = &self.cols[self.row_ptr[i]..self.row_ptr[i + 1]];
            cols.windows(2).fold(true, |ok, w| ok & (w[0] < w[1]))
        });
        if values_ok && cols_ok && ascending {
            return Ok(());
        }
        for i in 0..n {
            let (cols, vals) = self.row(i);
            for (k, (&j, &v)) in cols.iter().zip(vals).enumerate() {
                let j = j as usize;
                if j >= n {
                    return Err(MechanismError::ColumnOutOfRange { row: i, col: j, n });
                }
                if k > 0 && cols[k - 1] as usize >= j {
                    return Err(MechanismError::DuplicateColumn { row: i, col: j });
                }
                if !v.is_finite() || v < 0.0 {
                    return Err(MechanismError::BadWeight { row: i, col: j, value: v });
                }
            }
        }
        Ok(())
    }

    /// Where row i starts among the stored entries (`i = n`: their number).
    pub(crate) fn row_start(&self, i: usize) -> usize {
        self.row_ptr[i]
    }

    /// Every stored entry's column and value, row after row.
    pub(crate) fn entries(&self) -> (&[u32], &[f64]) {
        (&self.cols, &self.vals)
    }

    /// Number of peers (rows = columns).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of stored (non-zero) entries.
    pub fn nnz(&self) -> usize {
        self.vals.len()
    }

    /// Row i as parallel slices of sorted column indices and values.
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let span = self.row_ptr[i]..self.row_ptr[i + 1];
        (&self.cols[span.clone()], &self.vals[span])
    }

    /// Entry (i, j), zero when not stored.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        let (cols, vals) = self.row(i);
        match cols.binary_search(&(j as u32)) {
            Ok(k) => vals[k],
            Err(_) => 0.0,
        }
    }

    /// Every stored entry as `(row, column, value)`, row-major.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        (0..self.n).flat_map(move |i| {
            let (cols, vals) = self.row(i);
            cols.iter().zip(vals).map(move |(&j, &v)| (i, j as usize, v))
        })
    }

    /// The dense form, `n` rows of `n` values. For tests and small reference computations.
    pub fn to_dense(&self) -> Vec<Vec<f64>> {
        let mut out = vec![vec![0.0; self.n]; self.n];
        for (i, j, v) in self.iter() {
            out[i][j] = v;
        }
        out
    }

    /// The same matrix with the rows `i` where `drop(i)` emptied (a copy, O(nnz + n)).
    pub fn without_rows(&self, drop: impl Fn(usize) -> bool) -> SparseMatrix {
        let mut out = RowsBuilder::with_capacity(self.n, self.nnz());
        for i in 0..self.n {
            if !drop(i) {
                let (cols, vals) = self.row(i);
                out.cols.extend_from_slice(cols);
                out.vals.extend_from_slice(vals);
            }
            out.end_row();
        }
        out.finish()
    }

    /// Sum of row i.
    pub fn row_sum(&self, i: usize) -> f64 {
        self.row(i).1.iter().sum()
    }

    /// Sum of every column: `out[j] = sum_i w[i][j]`.
    pub fn col_sums(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.n];
        // Row by row, so each column is summed over i ascending. A row of long runs of
        // consecutive columns (validators weighting everyone) adds each run as a slice, which
        // the compiler vectorises; the sums are the same, term for term.
        for i in 0..self.n {
            let (cols, vals) = self.row(i);
            match ColumnRuns::long(cols) {
                Some(runs) => {
                    for run in runs {
                        let vals = &vals[run.entries()];
                        for (sum, &v) in out[run.columns()].iter_mut().zip(vals) {
                            *sum += v;
                        }
                    }
                }
                None => {
                    for (&j, &v) in cols.iter().zip(vals) {
                        out[j as usize] += v;
                    }
                }
            }
        }
        out
    }

    /// Each non-empty row scaled to sum to 1; empty rows stay empty.
    pub fn row_normalized(&self) -> SparseMatrix {
        let mut out = self.clone();
        for i in 0..self.n {
            let span = self.row_ptr[i]..self.row_ptr[i + 1];
            let sum: f64 = self.vals[span.clone()].iter().sum();
            if sum > 0.0 {
                for v in &mut out.vals[span] {
                    *v /= sum;
                }
            }
        }
        out
    }

    /// Each non-empty column scaled to sum to 1; empty columns stay empty.
    pub fn col_normalized(&self) -> SparseMatrix {
        let sums = self.col_sums();
        let mut out = self.clone();
        for (v, &j) in out.vals.iter_mut().zip(&self.cols) {
            let s = sums[j as usize];
            if s > 0.0 {
                *v /= s;
            }
        }
        out
    }

    /// Row i multiplied by `x[i]`: `out[i][j] = x[i] * w[i][j]` (W with S on its rows).
    #[cfg(test)]
    fn row_scaled(&self, x: &[f64]) -> SparseMatrix {
        let mut out = self.clone();
        for (i, &xi) in x[..self.n].iter().enumerate() {
            for v in &mut out.vals[self.row_ptr[i]..self.row_ptr[i + 1]] {
                *v *= xi;
            }
        }
        out.drop_zeros();
        out
    }

    /// `y = W^T x`, that is `y[j] = sum_i w[i][j] * x[i]`, summed over i ascending.
    pub fn transpose_mul(&self, x: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; self.n];
        for (i, &xi) in x[..self.n].iter().enumerate() {
            if xi == 0.0 {
                // Adding 0 * w is exact, so skipping it keeps the same bits.
                continue;
            }
            let (cols, vals) = self.row(i);
            for (&j, &w) in cols.iter().zip(vals) {
                y[j as usize] += w * xi;
            }
        }
        y
    }

    /// `y = W x`, that is `y[i] = sum_j w[i][j] * x[j]`, summed over j ascending.
    /// Rows are independent and run on rayon's pool; each row is summed by the same sequential
    /// loop whatever the thread count, so the result does not depend on it.
    pub fn mul(&self, x: &[f64]) -> Vec<f64> {
        (0..self.n)
            .into_par_iter()
            .with_min_len(256)
            .map(|i| {
                let (cols, vals) = self.row(i);
                cols.iter().zip(vals).map(|(&j, &w)| w * x[j as usize]).sum()
            })
            .collect()
    }

    /// The transpose, in the same compressed-row form (so its rows are our columns, each
    /// listing source rows in ascending order).
    pub fn transpose(&self) -> SparseMatrix {
        let mut counts = vec![0usize; self.n + 1];
        for &j in &self.cols {
            counts[j as usize + 1] += 1;
        }
        for j in 0..self.n {
            counts[j + 1] += counts[j];
        }
        let row_ptr = counts.clone();
        let mut next = counts;
        let mut cols = vec![0u32; self.nnz()];
        let mut vals = vec![0.0; self.nnz()];
        for i in 0..self.n {
            let (rc, rv) = self.row(i);
            for (&j, &v) in rc.iter().zip(rv) {
                let slot = next[j as usize];
                cols[slot] = i as u32;
                vals[slot] = v;
                next[j as usize] += 1;
            }
        }
        SparseMatrix { n: self.n, row_ptr, cols, vals }
    }

    /// Entry-wise `alpha * self + (1 - alpha) * previous`, the exponential moving average the
    /// bonds use; entries stored in either matrix are kept.
    #[cfg(test)]
    fn moving_average(&self, previous: &SparseMatrix, alpha: f64) -> SparseMatrix {
        self.zip_rows(previous, |a, b| alpha * a + (1.0 - alpha) * b)
    }

    /// Entry-wise sum.
    #[cfg(test)]
    fn add(&self, other: &SparseMatrix) -> SparseMatrix {
        self.zip_rows(other, |a, b| a + b)
    }

    /// Applies `f` to every stored value in place (values that become 0 are dropped).
    #[cfg(test)]
    fn map_values(&self, mut f: impl FnMut(usize, usize, f64) -> f64) -> SparseMatrix {
        let mut out = self.clone();
        for i in 0..self.n {
            for k in self.row_ptr[i]..self.row_ptr[i + 1] {
                out.vals[k] = f(i, self.cols[k] as usize, self.vals[k]);
            }
        }
        out.drop_zeros();
        out
    }

    /// Merges two matrices of the same size row by row: entries present in either one are
    /// combined with `f(self_value, other_value)`, missing entries read as 0.
    #[cfg(test)]
    fn zip_rows(&self, other: &SparseMatrix, f: impl Fn(f64, f64) -> f64) -> SparseMatrix {
        debug_assert_eq!(self.n, other.n);
        let mut out = RowsBuilder::with_capacity(self.n, self.nnz().max(other.nnz()));
        for i in 0..self.n {
            let (ac, av) = self.row(i);
            let (bc, bv) = other.row(i);
            out.push_merged(ac, av, bc, bv, &f);
        }
        out.finish()
    }

    /// Like `zip_rows`, but the first operand's row i is produced by `row(i, cols, vals)`
    /// (pushing sorted, unique columns) instead of being read from a stored matrix: the
    /// result is `f(row value, self value)` entry-wise. The bonds use it to combine the
    /// previous bonds with this epoch's bond increment without building the increment as a
    /// matrix of its own (at n = 65,536 with 256 weights a row that would be 200 MB).
    ///
    /// `merged(j, value)` then sees every stored entry of the result, row by row, while the
    /// row is still in cache: the mechanisms add up column sums there instead of in another
    /// pass over the matrix. `generated_nnz` bounds the number of generated entries, to size
    /// the result once.
    pub(crate) fn merge_generated_rows(
        &self,
        generated_nnz: usize,
        mut row: impl FnMut(usize, &mut Vec<u32>, &mut Vec<f64>),
        f: impl Fn(f64, f64) -> f64,
        mut merged: impl FnMut(usize, f64),
    ) -> SparseMatrix {
        let mut out = RowsBuilder::with_capacity(self.n, self.nnz() + generated_nnz);
        let (mut rc, mut rv) = (Vec::new(), Vec::new());
        for i in 0..self.n {
            rc.clear();
            rv.clear();
            row(i, &mut rc, &mut rv);
            debug_assert!(rc.windows(2).all(|p| p[0] < p[1]), "generated row {i} not sorted and unique");
            debug_assert!(rc.last().is_none_or(|&j| (j as usize) < self.n), "generated row {i} out of range");
            let (bc, bv) = self.row(i);
            let first = out.cols.len();
            out.push_merged(&rc, &rv, bc, bv, &f);
            for (&j, &v) in out.cols[first..].iter().zip(&out.vals[first..]) {
                merged(j as usize, v);
            }
        }
        out.finish()
    }

    #[cfg(test)]
    fn drop_zeros(&mut self) {
        if !self.vals.contains(&0.0) {
            return;
        }
        let mut row_ptr = Vec::with_capacity(self.n + 1);
        row_ptr.push(0);
        let mut w = 0;
        for i in 0..self.n {
            for k in self.row_ptr[i]..self.row_ptr[i + 1] {
                if self.vals[k] != 0.0 {
                    self.cols[w] = self.cols[k];
                    self.vals[w] = self.vals[k];
                    w += 1;
                }
            }
            row_ptr.push(w);
        }
        self.cols.truncate(w);
        self.vals.truncate(w);
        self.row_ptr = row_ptr;
    }
}

/// Builds a [`SparseMatrix`] row by row from entries already in ascending column order,
/// checking them as they come: the cheap way to bring rows a caller keeps sorted (a ledger's
/// weight rows) into the mechanism, where [`SparseMatrix::from_rows`] would copy and sort
/// each row first. Zeros are dropped, as `from_rows` does.
///
/// ```
/// # use mechanism::SparseMatrix;
/// let mut b = SparseMatrix::builder(3, 3);
/// b.push_row([(1, 2.0), (2, 0.0)]).unwrap();
/// b.push_row([]).unwrap();
/// b.push_row([(0, 1.0), (2, 4.0)]).unwrap();
/// let w = b.finish().unwrap();
/// assert_eq!(w, SparseMatrix::from_rows(3, [vec![(1, 2.0)], vec![], vec![(2, 4.0), (0, 1.0)]]).unwrap());
/// ```
pub struct SparseMatrixBuilder {
    rows: RowsBuilder,
}

impl SparseMatrix {
    /// A builder for an n x n matrix with room for `nnz` entries (see [`SparseMatrixBuilder`]).
    pub fn builder(n: usize, nnz: usize) -> SparseMatrixBuilder {
        SparseMatrixBuilder { rows: RowsBuilder::with_capacity(n, nnz) }
    }
}

impl SparseMatrixBuilder {
    /// Appends the next row. Rejects, leaving the builder as it was, a column out of range or
    /// not above the one before it, a value that is negative, NaN or infinite, and a row past
    /// the n-th. (The entries are read twice, columns then values, hence `Clone`: slice
    /// iterators and their maps and filters are.)
    pub fn push_row<I>(&mut self, entries: I) -> Result<(), MechanismError>
    where
        I: IntoIterator<Item = (u32, f64)>,
        I::IntoIter: Clone,
    {
        let b = &mut self.rows;
        let row = b.row_ptr.len() - 1;
        let n = b.n;
        if row >= n {
            return Err(MechanismError::MatrixShape { rows: row + 1, expected: n });
        }
        let first = b.cols.len();
        // Copied columns first, then values, and checked in straight loops without early exits
        // (columns rising, values finite and >= 0), which the compiler vectorises: pushing each
        // entry to two vectors instead costs several times more.
        let entries = entries.into_iter();
        b.cols.extend(entries.clone().map(|e| e.0));
        b.vals.extend(entries.map(|e| e.1));
        let (cols, vals) = (&b.cols[first..], &b.vals[first..]);
        // Whether a value is 0 (to be dropped) is read in the same pass.
        let (values_ok, zero) = vals
            .iter()
            .fold((true, false), |(ok, zero), &v| (ok & finite_non_negative(v), zero | (v == 0.0)));
        let ok = cols.windows(2).fold(true, |ok, w| ok & (w[0] < w[1])) & values_ok;
        // One above the last column.
        let prev = cols.last().map_or(0, |&j| u64::from(j) + 1);
        if !(ok && prev <= n as u64) {
            let (cols, vals) = (&b.cols[first..], &b.vals[first..]);
            let err = (0..cols.len())
                .find_map(|k| {
                    let (j, v) = (cols[k] as usize, vals[k]);
                    if j >= n {
                        Some(MechanismError::ColumnOutOfRange { row, col: j, n })
                    } else if k > 0 && cols[k - 1] as usize >= j {
                        Some(MechanismError::DuplicateColumn { row, col: j })
                    } else if !finite_non_negative(v) {
                        Some(MechanismError::BadWeight { row, col: j, value: v })
                    } else {
                        None
                    }
                })
                .expect("a failed check names an entry");
            b.cols.truncate(first);
            b.vals.truncate(first);
            return Err(err);
        }
        if zero {
            b.drop_zeros_since(first);
        }
        b.end_row();
        Ok(())
    }

    /// The matrix, once all n rows are in.
    pub fn finish(self) -> Result<SparseMatrix, MechanismError> {
        let rows = self.rows.row_ptr.len() - 1;
        if rows != self.rows.n {
            return Err(MechanismError::MatrixShape { rows, expected: self.rows.n });
        }
        Ok(self.rows.finish())
    }
}

/// Builds a matrix row by row, keeping the invariants (sorted unique columns, no zeros).
pub(crate) struct RowsBuilder {
    n: usize,
    row_ptr: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<f64>,
}

/// The vectors of a matrix, to build another one in (see [`RowsBuilder::reusing`]).
#[derive(Debug, Default)]
pub(crate) struct Parts {
    row_ptr: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<f64>,
}

impl Parts {
    /// The bytes the vectors hold on to.
    pub(crate) fn capacity_bytes(&self) -> usize {
        8 * self.row_ptr.capacity() + 4 * self.cols.capacity() + 8 * self.vals.capacity()
    }
}

impl SparseMatrix {
    /// Gives up the matrix's vectors, for building another one in them.
    pub(crate) fn into_parts(self) -> Parts {
        Parts { row_ptr: self.row_ptr, cols: self.cols, vals: self.vals }
    }
}

impl RowsBuilder {
    pub(crate) fn with_capacity(n: usize, nnz: usize) -> Self {
        RowsBuilder::reusing(n, nnz, Parts::default())
    }

    /// A builder that writes into `parts` (cleared), grown to hold `nnz` entries: memory kept
    /// from an earlier matrix is written again instead of being allocated, which would cost a
    /// page fault per 4 KB on first touch.
    pub(crate) fn reusing(n: usize, nnz: usize, parts: Parts) -> Self {
        let Parts { mut row_ptr, mut cols, mut vals } = parts;
        row_ptr.clear();
        row_ptr.reserve(n + 1);
        row_ptr.push(0);
        cols.clear();
        cols.reserve(nnz);
        vals.clear();
        vals.reserve(nnz);
        RowsBuilder { n, row_ptr, cols, vals }
    }

    /// Appends the next row: the sorted merge of rows a and b, `f(a_value, b_value)` on each
    /// column present in either (a missing value reads as 0), dropping results equal to 0.
    fn push_merged(&mut self, ac: &[u32], av: &[f64], bc: &[u32], bv: &[f64], f: impl Fn(f64, f64) -> f64) {
        if ac == bc {
            // The same columns in both, as for bonds when the weights did not change: copy the
            // columns and combine the values in one straight loop.
            let start = self.cols.len();
            self.cols.extend_from_slice(ac);
            self.vals.extend(av.iter().zip(bv).map(|(&a, &b)| f(a, b)));
            if !self.vals[start..].contains(&0.0) {
                self.row_ptr.push(self.cols.len());
                return;
            }
            // Some result is 0 and must not be stored: take the general path below.
            self.cols.truncate(start);
            self.vals.truncate(start);
        }
        let (mut p, mut q) = (0, 0);
        while p < ac.len() || q < bc.len() {
            let (j, a, b) = match (ac.get(p), bc.get(q)) {
                (Some(&ja), Some(&jb)) if ja == jb => {
                    p += 1;
                    q += 1;
                    (ja, av[p - 1], bv[q - 1])
                }
                (Some(&ja), Some(&jb)) if ja < jb => {
                    p += 1;
                    (ja, av[p - 1], 0.0)
                }
                (Some(_), Some(&jb)) => {
                    q += 1;
                    (jb, 0.0, bv[q - 1])
                }
                (Some(&ja), None) => {
                    p += 1;
                    (ja, av[p - 1], 0.0)
                }
                (None, Some(&jb)) => {
                    q += 1;
                    (jb, 0.0, bv[q - 1])
                }
                (None, None) => unreachable!("loop condition"),
            };
            let v = f(a, b);
            if v != 0.0 {
                self.cols.push(j);
                self.vals.push(v);
            }
        }
        self.row_ptr.push(self.cols.len());
    }

    /// Appends `(col, val)` to the current row. Columns must ascend within a row and `val`
    /// must be finite and > 0 (checked in debug builds).
    #[inline]
    pub(crate) fn push(&mut self, col: usize, val: f64) {
        debug_assert!(col < self.n && val > 0.0 && val.is_finite(), "bad entry ({col}, {val})");
        debug_assert!(
            self.cols.len() == self.row_ptr[self.row_ptr.len() - 1]
                || (self.cols[self.cols.len() - 1] as usize) < col,
            "column {col} out of order"
        );
        self.cols.push(col as u32);
        self.vals.push(val);
    }

    /// Closes the current row.
    pub(crate) fn end_row(&mut self) {
        self.row_ptr.push(self.cols.len());
    }

    /// The matrix, keeping the vectors' spare capacity (for a matrix that lives only as long
    /// as the epoch, and whose vectors are then reused).
    pub(crate) fn finish_in_place(self) -> SparseMatrix {
        debug_assert_eq!(self.row_ptr.len(), self.n + 1);
        SparseMatrix { n: self.n, row_ptr: self.row_ptr, cols: self.cols, vals: self.vals }
    }

    pub(crate) fn finish(mut self) -> SparseMatrix {
        debug_assert_eq!(self.row_ptr.len(), self.n + 1);
        // Capacity is reserved for the worst case (say, previous bonds plus all new ones);
        // give back what was not used, since the result may be kept for a whole epoch.
        self.cols.shrink_to_fit();
        self.vals.shrink_to_fit();
        SparseMatrix { n: self.n, row_ptr: self.row_ptr, cols: self.cols, vals: self.vals }
    }
}

/// Row i of a matrix scaled to sum to 1, optionally without its diagonal entry, as
/// `(column, value)` pairs, columns ascending; see [`SparseMatrix::normalized_row`].
pub(crate) struct NormalizedRow<'a> {
    cols: std::slice::Iter<'a, u32>,
    vals: std::slice::Iter<'a, f64>,
    /// The diagonal column to skip, or `usize::MAX`.
    skip: usize,
    inv: f64,
    sum: f64,
}

impl NormalizedRow<'_> {
    /// The normalised value of this row's stored entry `v` in column `j`, or `None` when the
    /// entry is skipped (the removed diagonal, or a value that normalises to 0). For callers
    /// that pick the entries they need out of the raw row.
    #[inline]
    pub(crate) fn value(&self, j: usize, v: f64) -> Option<f64> {
        if j == self.skip {
            return None;
        }
        let x = if self.inv.is_finite() { v * self.inv } else { v / self.sum };
        (x > 0.0).then_some(x)
    }
}

impl Iterator for NormalizedRow<'_> {
    type Item = (usize, f64);

    #[inline]
    fn next(&mut self) -> Option<(usize, f64)> {
        loop {
            let j = *self.cols.next()? as usize;
            let v = *self.vals.next()?;
            if let Some(x) = self.value(j, v) {
                return Some((j, x));
            }
        }
    }
}

/// The runs of consecutive columns of a row (columns strictly ascending, as every row here
/// is): entries `k0..k1` hold columns `j0..j0 + (k1 - k0)`. A row of validator weights at the
/// production chain's size holds every column but its own: two runs, over which a pass can
/// read per-column vectors as slices instead of looking each entry's column up.
pub(crate) struct ColumnRuns<'a> {
    cols: &'a [u32],
    /// The first entry of the next run.
    at: usize,
}

/// One run of [`ColumnRuns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ColumnRun {
    /// The run's first entry in the row.
    pub(crate) first: usize,
    /// Its first column.
    pub(crate) column: usize,
    /// How many entries (and columns) it spans.
    pub(crate) len: usize,
}

impl ColumnRun {
    /// The run's positions in the row.
    pub(crate) fn entries(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.len
    }

    /// The run's columns.
    pub(crate) fn columns(&self) -> std::ops::Range<usize> {
        self.column..self.column + self.len
    }
}

impl<'a> ColumnRuns<'a> {
    /// The runs of `cols` when they average at least [`ColumnRuns::LONG`] entries, `None`
    /// otherwise (a sparse row, where slicing per run would cost more than it saves). Known
    /// from the row's ends alone: a strictly ascending row with `g` missing columns between
    /// its first and last has at most `g + 1` runs.
    pub(crate) fn long(cols: &'a [u32]) -> Option<ColumnRuns<'a>> {
        let (&first, &last) = (cols.first()?, cols.last()?);
        let gaps = (last - first) as usize + 1 - cols.len();
        ((gaps + 1) * ColumnRuns::LONG <= cols.len()).then_some(ColumnRuns { cols, at: 0 })
    }

    /// The shortest average run [`ColumnRuns::long`] takes.
    const LONG: usize = 16;
}

impl Iterator for ColumnRuns<'_> {
    type Item = ColumnRun;

    fn next(&mut self) -> Option<ColumnRun> {
        let cols = self.cols;
        let first = self.at;
        let column = *cols.get(first)? as usize;
        // `cols[k] - k` never falls along a strictly ascending row (and cols[k] >= k), and it
        // stays the same exactly along a run: bisect for where it grows.
        let offset = column - first;
        let (mut lo, mut hi) = (first + 1, cols.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if cols[mid] as usize - mid == offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.at = lo;
        Some(ColumnRun { first, column, len: lo - first })
    }
}

/// Sums in four interleaved lanes: term k of a sequence goes to lane `k % 4`, and the total
/// is `(lane 0 + lane 1) + (lane 2 + lane 3)`. A fixed order, so the result is the same on
/// every machine, but four additions in flight instead of one: a plain sum along a row of
/// 256 weights waits 256 times on the latency of an addition, which was a fifth of a small
/// epoch.
pub(crate) struct Lanes;

impl Lanes {
    /// `sum_k term(k)` over `k in 0..len`, in this order. `term` is called with k ascending,
    /// so it may also write out what it computes.
    #[inline]
    pub(crate) fn sum_by(len: usize, mut term: impl FnMut(usize) -> f64) -> f64 {
        Lanes::sum2_by(len, |k| (term(k), 0.0)).0
    }

    /// Two such sums over the same terms' index, side by side.
    #[inline]
    pub(crate) fn sum2_by(len: usize, mut terms: impl FnMut(usize) -> (f64, f64)) -> (f64, f64) {
        // Unrolled by hand, so that each lane is a register of its own.
        let (mut a, mut b) = ([0.0; 4], [0.0; 4]);
        let full = len - len % 4;
        let mut k = 0;
        while k < full {
            for lane in 0..4 {
                let (x, y) = terms(k + lane);
                a[lane] += x;
                b[lane] += y;
            }
            k += 4;
        }
        for (lane, k) in (full..len).enumerate() {
            let (x, y) = terms(k);
            a[lane] += x;
            b[lane] += y;
        }
        ((a[0] + a[1]) + (a[2] + a[3]), (b[0] + b[1]) + (b[2] + b[3]))
    }

    /// [`Lanes::sum2_by`] with the terms taken from the items of a slice, `terms(k, item k)`:
    /// the same lanes and order, walked in chunks of four, so that reading the items costs no
    /// bounds checks.
    #[inline]
    pub(crate) fn sum2_over<T: Copy>(
        items: &[T],
        mut terms: impl FnMut(usize, T) -> (f64, f64),
    ) -> (f64, f64) {
        let (mut a, mut b) = ([0.0; 4], [0.0; 4]);
        let mut chunks = items.chunks_exact(4);
        let mut k = 0;
        for chunk in &mut chunks {
            for (lane, &item) in chunk.iter().enumerate() {
                let (x, y) = terms(k + lane, item);
                a[lane] += x;
                b[lane] += y;
            }
            k += 4;
        }
        for (lane, &item) in chunks.remainder().iter().enumerate() {
            let (x, y) = terms(k + lane, item);
            a[lane] += x;
            b[lane] += y;
        }
        ((a[0] + a[1]) + (a[2] + a[3]), (b[0] + b[1]) + (b[2] + b[3]))
    }
}

impl SparseMatrix {
    /// Row i scaled to sum to 1 (without its diagonal entry when `skip_diagonal`), computed on
    /// the spot: the row is summed, then iterated while it is still in cache. This lets a
    /// mechanism walk the normalised W without a normalised copy of it (200 MB at n = 65,536
    /// with 256 weights a row).
    ///
    /// Entry (i, j) is `w_ij * (1 / sum_i)`: one multiplication per entry instead of a
    /// division, which would be most of the cost of a pass; it can differ from `w_ij / sum_i`
    /// in the last bit. When `1 / sum_i` is not finite (a row of subnormal weights) the row
    /// divides instead. The sum is taken in [`Lanes`] over the row's stored entries, the
    /// skipped diagonal counting as +0. Entries whose value is 0 (a row sum that overflowed
    /// to infinity, or a quotient that underflowed) are skipped, so every item is `> 0`.
    #[inline]
    pub(crate) fn normalized_row(&self, i: usize, skip_diagonal: bool) -> NormalizedRow<'_> {
        let (cols, vals) = self.row(i);
        let (skip, sum) = self.row_sum_without(i, skip_diagonal);
        NormalizedRow { cols: cols.iter(), vals: vals.iter(), skip, inv: 1.0 / sum, sum }
    }

    /// Row i's sum in [`Lanes`], its diagonal entry counting as +0 when `skip_diagonal`, and
    /// the column to skip (i, or `usize::MAX`).
    fn row_sum_without(&self, i: usize, skip_diagonal: bool) -> (usize, f64) {
        let (cols, vals) = self.row(i);
        let skip = if skip_diagonal { i } else { usize::MAX };
        let d = if skip_diagonal { cols.binary_search(&(i as u32)).ok() } else { None };
        let sum = match d {
            Some(d) => Lanes::sum2_over(vals, |k, v| (if k == d { 0.0 } else { v }, 0.0)).0,
            None => Lanes::sum2_over(vals, |_, v| (v, 0.0)).0,
        };
        (skip, sum)
    }
}

impl RowsBuilder {
    /// Appends to the current row row i of `w` normalised as [`SparseMatrix::normalized_row`]
    /// gives it (diagonal skipped, zeros dropped), only its entries at the positions `keep`
    /// (ascending) or all of them. Returns where the appended entries start.
    pub(crate) fn push_normalized(&mut self, w: &SparseMatrix, i: usize, keep: Option<&[u32]>) -> usize {
        let (cols, vals) = w.row(i);
        let (_, sum) = w.row_sum_without(i, true);
        let first = self.cols.len();
        // A valid row's sum is never NaN.
        if sum <= 0.0 {
            return first;
        }
        let inv = 1.0 / sum;
        let scale = |v: f64| if inv.is_finite() { v * inv } else { v / sum };
        match keep {
            None => {
                // The row around its diagonal entry, as two straight copies.
                let d = cols.binary_search(&(i as u32)).map_or(cols.len(), |d| d);
                for span in [0..d, (d + 1).min(cols.len())..cols.len()] {
                    self.cols.extend_from_slice(&cols[span.clone()]);
                    if inv.is_finite() {
                        self.vals.extend(vals[span].iter().map(|&v| v * inv));
                    } else {
                        self.vals.extend(vals[span].iter().map(|&v| v / sum));
                    }
                }
            }
            Some(keep) => {
                for &k in keep {
                    let k = k as usize;
                    if cols[k] as usize != i {
                        self.cols.push(cols[k]);
                        self.vals.push(scale(vals[k]));
                    }
                }
            }
        }
        // Quotients that underflowed (rare).
        self.drop_zeros_since(first);
        first
    }

    /// Appends to the current row the entries `cols` (ascending), with values 0 for the caller
    /// to fill in through the returned slice; [`RowsBuilder::drop_zeros_since`] then removes
    /// those left at 0.
    pub(crate) fn append_columns(&mut self, cols: &[u32]) -> &mut [f64] {
        let first = self.cols.len();
        self.cols.extend_from_slice(cols);
        self.vals.resize(first + cols.len(), 0.0);
        &mut self.vals[first..]
    }

    /// Removes the entries equal to 0 from position `first` on; true if there were any.
    pub(crate) fn drop_zeros_since(&mut self, first: usize) -> bool {
        // A fold rather than `contains`, whose early exit keeps the compiler from vectorising.
        if !self.vals[first..].iter().fold(false, |zero, &v| zero | (v == 0.0)) {
            return false;
        }
        let mut at = first;
        for k in first..self.vals.len() {
            if self.vals[k] != 0.0 {
                self.cols[at] = self.cols[k];
                self.vals[at] = self.vals[k];
                at += 1;
            }
        }
        self.cols.truncate(at);
        self.vals.truncate(at);
        true
    }

    /// The number of entries pushed so far.
    pub(crate) fn len(&self) -> usize {
        self.cols.len()
    }

    /// The entries appended to the current row since position `first`.
    pub(crate) fn since(&self, first: usize) -> (&[u32], &[f64]) {
        (&self.cols[first..], &self.vals[first..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lanes_over_a_slice_sum_as_by_index(
            items in proptest::collection::vec((-1e3..1e3f64, 0.0..1e-3f64), 0..70),
        ) {
            // The same lanes and order, so the same bits, for every length (full chunks of
            // four and each remainder).
            let by_index = Lanes::sum2_by(items.len(), |k| (items[k].0 * items[k].1, items[k].0 + k as f64));
            let over = Lanes::sum2_over(&items, |k, (a, b)| (a * b, a + k as f64));
            prop_assert_eq!(by_index.0.to_bits(), over.0.to_bits());
            prop_assert_eq!(by_index.1.to_bits(), over.1.to_bits());
        }

        #[test]
        fn column_runs_cover_the_row_in_maximal_runs(
            kept in proptest::collection::vec(proptest::bool::weighted(0.9), 0..300),
        ) {
            let cols: Vec<u32> = (0..kept.len() as u32).filter(|&j| kept[j as usize]).collect();
            let runs: Vec<ColumnRun> = match ColumnRuns::long(&cols) {
                Some(runs) => runs.collect(),
                None => return Ok(()),
            };
            // Back to back, each over consecutive columns, and no two could be one.
            let mut at = 0;
            for (r, run) in runs.iter().enumerate() {
                prop_assert_eq!(run.first, at);
                prop_assert!(run.len > 0);
                for (k, j) in run.entries().zip(run.columns()) {
                    prop_assert_eq!(cols[k] as usize, j);
                }
                if r > 0 {
                    prop_assert!(runs[r - 1].columns().end < run.column);
                }
                at += run.len;
            }
            prop_assert_eq!(at, cols.len());
        }

        #[test]
        fn column_sums_are_the_per_entry_sums(
            rows in proptest::collection::vec(
                (proptest::collection::vec(proptest::bool::weighted(0.95), 40), 0.0..1e3f64), 1..40),
        ) {
            // Rows of every column but their own (the validators' shape), dense rows with a
            // few missing, sparse rows and empty ones: the run path and the per-entry path
            // must give the same bits.
            let n = 40;
            let w = SparseMatrix::from_rows(
                rows.len().max(n),
                (0..rows.len().max(n)).map(|i| match rows.get(i) {
                    Some((_, scale)) if i % 5 == 0 => {
                        (0..n).filter(|&j| j != i % n).map(|j| (j, scale * (1 + j) as f64)).collect()
                    }
                    Some((kept, scale)) if i % 5 != 4 => (0..n)
                        .filter(|&j| kept[j])
                        .map(|j| (j, scale * ((i * 31 + j * 17) % 101) as f64 / 7.0))
                        .collect::<Vec<_>>(),
                    Some((_, scale)) => vec![(i % n, *scale), ((i * 7) % n, 1.0 + scale)]
                        .into_iter()
                        .collect::<std::collections::BTreeMap<_, _>>()
                        .into_iter()
                        .collect(),
                    None => Vec::new(),
                }),
            )
            .unwrap();
            let mut by_entry = vec![0.0; w.n()];
            for (_, j, v) in w.iter() {
                by_entry[j] += v;
            }
            let sums = w.col_sums();
            prop_assert_eq!(sums.len(), by_entry.len());
            for (a, b) in sums.iter().zip(&by_entry) {
                prop_assert_eq!(a.to_bits(), b.to_bits());
            }
        }
    }

    #[test]
    fn column_runs_by_hand() {
        let runs = |cols: &[u32]| {
            ColumnRuns::long(cols).map(|r| r.map(|r| (r.first, r.column, r.len)).collect::<Vec<_>>())
        };
        // Every column but 3 of 0..40: two runs.
        let all_but_3: Vec<u32> = (0..40).filter(|&j| j != 3).collect();
        assert_eq!(runs(&all_but_3), Some(vec![(0, 0, 3), (3, 4, 36)]));
        let from_5: Vec<u32> = (5..30).collect();
        assert_eq!(runs(&from_5), Some(vec![(0, 5, 25)]));
        // Too many gaps for the row's length, and an empty row: no runs.
        assert_eq!(runs(&[0, 2, 4, 6, 8]), None);
        assert_eq!(runs(&[]), None);
    }

    fn m(rows: &[&[(usize, f64)]]) -> SparseMatrix {
        SparseMatrix::from_rows(rows.len(), rows.iter().map(|r| r.to_vec())).unwrap()
    }

    #[test]
    fn from_rows_sorts_and_drops_zeros() {
        let w = m(&[&[(2, 1.0), (0, 0.0), (1, 3.0)], &[], &[(0, 2.0)]]);
        assert_eq!(w.row(0), (&[1u32, 2][..], &[3.0, 1.0][..]));
        assert_eq!(w.nnz(), 3);
        assert_eq!(w.get(2, 0), 2.0);
        assert_eq!(w.get(1, 1), 0.0);
    }

    #[test]
    fn without_rows_empties_only_the_dropped_rows() {
        let w = m(&[&[(1, 1.0), (2, 2.0)], &[(0, 3.0)], &[(0, 4.0), (1, 5.0)]]);
        let out = w.without_rows(|i| i == 1);
        assert_eq!(out, m(&[&[(1, 1.0), (2, 2.0)], &[], &[(0, 4.0), (1, 5.0)]]));
        out.check().unwrap();
        assert_eq!(w.without_rows(|_| false), w);
        assert_eq!(w.without_rows(|_| true), SparseMatrix::zeros(3));
    }

    #[test]
    fn from_rows_rejects_bad_entries() {
        let bad = |rows: Vec<Vec<(usize, f64)>>| SparseMatrix::from_rows(2, rows).unwrap_err();
        assert_eq!(
            bad(vec![vec![(2, 1.0)], vec![]]),
            MechanismError::ColumnOutOfRange { row: 0, col: 2, n: 2 }
        );
        assert_eq!(
            bad(vec![vec![], vec![(1, 1.0), (1, 2.0)]]),
            MechanismError::DuplicateColumn { row: 1, col: 1 }
        );
        assert!(matches!(
            bad(vec![vec![(0, f64::NAN)], vec![]]),
            MechanismError::BadWeight { row: 0, col: 0, .. }
        ));
        assert!(matches!(bad(vec![vec![(0, -0.5)], vec![]]), MechanismError::BadWeight { .. }));
        assert!(matches!(bad(vec![vec![(0, f64::INFINITY)], vec![]]), MechanismError::BadWeight { .. }));
        assert_eq!(bad(vec![vec![]]), MechanismError::MatrixShape { rows: 1, expected: 2 });
        assert_eq!(bad(vec![vec![], vec![], vec![]]), MechanismError::MatrixShape { rows: 3, expected: 2 });
    }

    #[test]
    fn products_match_hand_arithmetic() {
        // W = [[0, 1], [2, 3]], x = [10, 100]
        let w = m(&[&[(1, 1.0)], &[(0, 2.0), (1, 3.0)]]);
        // W^T x = [0*10 + 2*100, 1*10 + 3*100] = [200, 310]
        assert_eq!(w.transpose_mul(&[10.0, 100.0]), vec![200.0, 310.0]);
        // W x = [1*100, 2*10 + 3*100] = [100, 320]
        assert_eq!(w.mul(&[10.0, 100.0]), vec![100.0, 320.0]);
        assert_eq!(w.transpose().to_dense(), vec![vec![0.0, 2.0], vec![1.0, 3.0]]);
    }

    #[test]
    fn normalisations_and_merges() {
        let w = m(&[&[(0, 1.0), (1, 3.0)], &[], &[(1, 1.0)]]);
        assert_eq!(w.row_normalized().to_dense()[0], vec![0.25, 0.75, 0.0]);
        assert_eq!(w.row_normalized().row_sum(1), 0.0);
        // column 1 sums to 4: [3/4, 1/4]
        let c = w.col_normalized();
        assert_eq!((c.get(0, 1), c.get(2, 1), c.get(0, 0)), (0.75, 0.25, 1.0));
        let z = SparseMatrix::zeros(3);
        assert_eq!(w.add(&z), w);
        let ema = w.moving_average(&m(&[&[(2, 4.0)], &[], &[]]), 0.5);
        assert_eq!(ema.to_dense()[0], vec![0.5, 1.5, 2.0]);
        assert_eq!(
            w.row_scaled(&[2.0, 5.0, 0.0]).to_dense(),
            vec![vec![2.0, 6.0, 0.0], vec![0.0; 3], vec![0.0; 3]]
        );
        assert_eq!(w.row_scaled(&[2.0, 5.0, 0.0]).nnz(), 2);
    }

    #[test]
    fn merge_generated_rows_matches_zip() {
        // prev = [[0, 2, 0], [1, 0, 0], [0, 0, 0]]; generated rows: row 0 -> {0: 1, 1: 3}, row 2 -> {2: 5}
        let prev = m(&[&[(1, 2.0)], &[(0, 1.0)], &[]]);
        let mut sums = vec![0.0; 3];
        let merged = prev.merge_generated_rows(
            3,
            |i, c, v| match i {
                0 => {
                    c.extend([0, 1]);
                    v.extend([1.0, 3.0]);
                }
                2 => {
                    c.push(2);
                    v.push(5.0);
                }
                _ => {}
            },
            |new, old| 10.0 * new + old,
            |j, v| sums[j] += v,
        );
        // row 0: 10*1 + 0, 10*3 + 2; row 1: 0 + 1; row 2: 10*5
        assert_eq!(merged.to_dense(), vec![vec![10.0, 32.0, 0.0], vec![1.0, 0.0, 0.0], vec![0.0, 0.0, 50.0]]);
        assert_eq!(sums, merged.col_sums());
        // Results equal to 0 are dropped: keep only the generated part, with nothing generated.
        let dropped =
            prev.merge_generated_rows(0, |_, _, _| {}, |new, _| new, |_, _| panic!("nothing stored"));
        assert_eq!(dropped.nnz(), 0);
        // Rows with the same columns in both take the straight path, and still drop zeros.
        let same = m(&[&[(0, 1.0), (2, 2.0)], &[(1, 1.0)], &[]]);
        assert_eq!(same.zip_rows(&same, |a, b| a + b), same.map_values(|_, _, v| 2.0 * v));
        assert_eq!(same.zip_rows(&same, |a, _| if a == 1.0 { 0.0 } else { a }), m(&[&[(2, 2.0)], &[], &[]]));
        let gen = m(&[&[(0, 1.0), (1, 3.0)], &[], &[(2, 5.0)]]);
        assert_eq!(merged, gen.zip_rows(&prev, |a, b| 10.0 * a + b));
    }

    #[test]
    fn builder_checks_sorted_rows_and_refuses_bad_ones_whole() {
        let mut b = SparseMatrix::builder(3, 4);
        b.push_row([(0, 1.0), (2, 0.0)]).unwrap();
        // Each bad row is refused with the offending entry, and leaves no trace.
        assert_eq!(
            b.push_row([(1, 1.0), (3, 1.0)]),
            Err(MechanismError::ColumnOutOfRange { row: 1, col: 3, n: 3 })
        );
        assert_eq!(b.push_row([(2, 1.0), (1, 1.0)]), Err(MechanismError::DuplicateColumn { row: 1, col: 1 }));
        assert_eq!(b.push_row([(1, 1.0), (1, 2.0)]), Err(MechanismError::DuplicateColumn { row: 1, col: 1 }));
        assert!(matches!(b.push_row([(0, f64::NAN)]), Err(MechanismError::BadWeight { row: 1, col: 0, .. })));
        assert!(matches!(b.push_row([(0, -1.0)]), Err(MechanismError::BadWeight { row: 1, col: 0, .. })));
        assert!(matches!(b.push_row([(0, f64::INFINITY)]), Err(MechanismError::BadWeight { .. })));
        b.push_row([(1, 3.0)]).unwrap();
        // Too few rows, then too many.
        let mut short = SparseMatrix::builder(3, 0);
        short.push_row([]).unwrap();
        assert_eq!(short.finish(), Err(MechanismError::MatrixShape { rows: 1, expected: 3 }));
        b.push_row([]).unwrap();
        assert_eq!(b.push_row([]), Err(MechanismError::MatrixShape { rows: 4, expected: 3 }));
        let w = b.finish().unwrap();
        assert_eq!(w, m(&[&[(0, 1.0)], &[(1, 3.0)], &[]]));
        assert_eq!(w.nnz(), 2);
    }

    #[test]
    fn deserialising_checks_the_invariants() {
        let w = m(&[&[(1, 0.5)], &[(0, 2.0), (1, 1.0)]]);
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<SparseMatrix>(&json).unwrap(), w);
        // The same text with a negative value, a column out of range, columns out of order and a
        // row pointer past the end: each is refused, so no invalid matrix can exist.
        for bad in [
            json.replace("2.0", "-2.0"),
            json.replace("\"cols\":[1,0,1]", "\"cols\":[1,0,7]"),
            json.replace("\"cols\":[1,0,1]", "\"cols\":[1,1,0]"),
            json.replace("\"row_ptr\":[0,1,3]", "\"row_ptr\":[0,1,4]"),
        ] {
            assert_ne!(bad, json);
            assert!(serde_json::from_str::<SparseMatrix>(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rows_builder_keeps_rows_apart() {
        let mut b = RowsBuilder::with_capacity(3, 2);
        b.push(2, 1.5);
        b.end_row();
        b.end_row();
        b.push(0, 2.0);
        b.end_row();
        assert_eq!(b.finish(), m(&[&[(2, 1.5)], &[], &[(0, 2.0)]]));
    }

    #[test]
    fn normalized_rows_can_skip_the_diagonal() {
        // row 0: [2, 1, 1] -> without its diagonal [_, 0.5, 0.5], with it [0.5, 0.25, 0.25];
        // row 1: only a self weight, so empty without the diagonal; row 2: [0, 3, 0] -> [0, 1, 0].
        let w = m(&[&[(0, 2.0), (1, 1.0), (2, 1.0)], &[(1, 4.0)], &[(1, 3.0)]]);
        let row = |i, skip| w.normalized_row(i, skip).collect::<Vec<_>>();
        assert_eq!(row(0, true), vec![(1, 0.5), (2, 0.5)]);
        assert_eq!(row(1, true), vec![]);
        assert_eq!(row(2, true), vec![(1, 1.0)]);
        assert_eq!(row(0, false), vec![(0, 0.5), (1, 0.25), (2, 0.25)]);
        assert_eq!(row(1, false), vec![(1, 1.0)]);
        // A row of subnormal weights: 1 / sum overflows, so the row divides instead.
        let tiny = m(&[&[(0, 5e-324), (1, 5e-324)], &[], &[]]);
        assert_eq!(tiny.normalized_row(0, false).collect::<Vec<_>>(), vec![(0, 0.5), (1, 0.5)]);
        // A row whose sum overflows: every quotient is 0, so the row reads as empty.
        let huge = m(&[&[(0, f64::MAX), (1, f64::MAX)], &[], &[]]);
        assert_eq!(huge.normalized_row(0, false).count(), 0);
        // Picking single entries: the diagonal is None when skipped.
        let r0 = w.normalized_row(0, true);
        assert_eq!((r0.value(0, 2.0), r0.value(2, 1.0)), (None, Some(0.5)));
    }
}
