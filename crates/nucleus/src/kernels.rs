//! Fused CPU kernels, with their backward passes, for the operations that dominate a training
//! step of the small transformers here.
//!
//! Why: candle builds LayerNorm, softmax, attention and cross-entropy out of many broadcast
//! primitives, and its autograd pays, per primitive, a zeroed gradient buffer, an
//! accumulation pass and (for every broadcast) a strided reduction. On the default model that
//! overhead was about two thirds of a step (perf, 2026-12-02: broadcast reductions 15%,
//! broadcast binary maps 16%, gradient zeroing 5%, against 30% in the matrix products), and
//! training ran at 0.44x PyTorch's speed. Each function below is one autograd node whose
//! forward and backward are single passes over contiguous rows, with the matrix products
//! done by `gemm` (the kernel under candle's own matmul) on strided views.
//!
//! Threads: with more than one (candle's setting, RAYON_NUM_THREADS), the linear layers split
//! their rows and their two backward products over the pool, and attention its sequences.
//!
//! Every kernel is checked against the composite candle expression it replaces, values and
//! gradients, in the tests at the bottom.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

fn err(msg: String) -> candle_core::Error {
    candle_core::Error::Msg(msg)
}

/// The f32 data of a CPU storage under a contiguous `layout` (the public functions below make
/// their inputs contiguous first).
fn rows_of<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        return Err(err(format!("{op}: expects f32, got {:?}", storage.dtype())));
    };
    let (start, end) =
        layout.contiguous_offsets().ok_or_else(|| err(format!("{op}: expects a contiguous input")))?;
    Ok(&data[start..end])
}

/// Runs `f` on the f32 data of a CPU tensor, made contiguous if it is not.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(rows_of(cpu, layout, "kernel")?)),
        _ => Err(err("the fused kernels run on the CPU only".into())),
    }
}

fn tensor_like(data: Vec<f32>, like: &Tensor) -> candle_core::Result<Tensor> {
    Tensor::from_vec(data, like.shape(), like.device())
}

fn last_dim(shape: &Shape, op: &str) -> candle_core::Result<usize> {
    match shape.dims().last() {
        Some(&n) if n > 0 => Ok(n),
        _ => Err(err(format!("{op}: needs a non-empty last dimension, got {shape:?}"))),
    }
}

/// x·σ(1.702x), element-wise (Hendrycks & Gimpel's sigmoid form of GELU).
pub fn quick_gelu(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(QuickGelu)
}

struct QuickGelu;

#[inline(always)]
fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + exp(-v))
}

/// x·σ(1.702x) of each element of `x` into `y`.
fn gelu_into(x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(o, &v)| *o = v * sigmoid(1.702 * v));
}

/// The gradient through x·σ(1.702x): `dx = g · slope(x)`.
fn gelu_backward_into(x: &[f32], g: &[f32], dx: &mut [f32]) {
    dx.iter_mut().zip(x).zip(g).for_each(|((d, &v), &gy)| *d = gy * quick_gelu_slope(v));
}

/// The derivative of x·σ(1.702x).
#[inline(always)]
fn quick_gelu_slope(v: f32) -> f32 {
    let s = sigmoid(1.702 * v);
    s + 1.702 * v * s * (1.0 - s)
}

/// e^x in f32, within a few ulp (Cephes' `expf` polynomial), and free of branches and calls
/// so that loops over slices vectorise: libm's `expf` is a scalar call per element, and was
/// 6% of a training step once the rest was fused. Saturates outside [-87, 88]; NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Round-to-nearest by the 1.5·2^23 trick (SSE2 has no vector floor).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // x - n·ln 2 in two parts so that the reduced argument keeps its low bits.
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n from the exponent bits: n is in [-126, 127] after the clamp.
    let two_n = f32::from_bits(((t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23) as u32);
    y * two_n
}

impl CustomOp1 for QuickGelu {
    fn name(&self) -> &'static str {
        "quick-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = rows_of(s, l, self.name())?;
        let mut y = vec![0f32; x.len()];
        map_rows(x, x, 1, &mut y, 1, |xb, _, yb| gelu_into(xb, yb));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dx = with_f32(arg, |x| {
            with_f32(grad, |g| {
                let mut dx = vec![0f32; x.len()];
                map_rows(x, g, 1, &mut dx, 1, gelu_backward_into);
                dx
            })
        })??;
        Ok(Some(tensor_like(dx, arg)?))
    }
}

/// Lanes of the reductions below: eight independent partial results let LLVM keep them in
/// vector registers, where one running total is a chain it must evaluate in order.
const LANES: usize = 8;

/// Σ f(a_i, b_i) over equal-length slices, in `LANES` partial sums.
#[inline(always)]
fn reduce_pairs(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| f(x, y)).sum();
    for (xa, xb) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += f(xa[i], xb[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ x_i.
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    reduce_pairs(xs, xs, |x, _| x)
}

/// Σ a_i·b_i.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    reduce_pairs(a, b, |x, y| x * y)
}

/// The largest element (-∞ for none), in `LANES` partial maxima.
#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().fold(tail, |a, &v| a.max(v))
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax { causal_scale: None })
}

struct Softmax {
    /// `Some(scale)`: causal attention scores, scaled; `None`: a plain softmax.
    causal_scale: Option<f32>,
}

impl Softmax {
    /// How many leading entries of row `r` (of width `n`) take part.
    fn visible(&self, r: usize, n: usize) -> usize {
        match self.causal_scale {
            Some(_) => r % n + 1,
            None => n,
        }
    }

    fn scale(&self) -> f32 {
        self.causal_scale.unwrap_or(1.0)
    }

    /// Softmax of each row (width `n`) of `x` into `y`; entries past the visible ones get 0.
    fn rows(&self, x: &[f32], y: &mut [f32], n: usize) {
        let scale = self.scale();
        for (r, (xr, yr)) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)).enumerate() {
            let m = self.visible(r, n);
            let top = max(&xr[..m]);
            for (yv, &xv) in yr[..m].iter_mut().zip(&xr[..m]) {
                *yv = exp((xv - top) * scale);
            }
            let inv = 1.0 / sum(&yr[..m]);
            yr[..m].iter_mut().for_each(|v| *v *= inv);
            yr[m..].fill(0.0);
        }
    }

    /// The gradient `dx` of the input from the output `y` and its gradient `g`.
    fn rows_backward(&self, y: &[f32], g: &[f32], dx: &mut [f32], n: usize) {
        let scale = self.scale();
        for (r, ((yr, gr), dr)) in
            y.chunks_exact(n).zip(g.chunks_exact(n)).zip(dx.chunks_exact_mut(n)).enumerate()
        {
            let m = self.visible(r, n);
            let yg = dot(&yr[..m], &gr[..m]);
            for ((d, &yv), &gv) in dr[..m].iter_mut().zip(&yr[..m]).zip(&gr[..m]) {
                *d = scale * yv * (gv - yg);
            }
            dr[m..].fill(0.0);
        }
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        if self.causal_scale.is_some() {
            "causal-softmax"
        } else {
            "softmax-last-dim"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = last_dim(l.shape(), self.name())?;
        let x = rows_of(s, l, self.name())?;
        let mut y = vec![0f32; x.len()];
        if self.causal_scale.is_some() {
            // Causal rows know their position from their index: keep them in one block.
            self.rows(x, &mut y, n);
        } else {
            map_rows(x, x, n, &mut y, n, |xb, _, yb| self.rows(xb, yb, n));
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let n = last_dim(arg.shape(), self.name())?;
        let dx = with_f32(res, |y| {
            with_f32(grad, |g| {
                let mut dx = vec![0f32; y.len()];
                if self.causal_scale.is_some() {
                    self.rows_backward(y, g, &mut dx, n);
                } else {
                    map_rows(y, g, n, &mut dx, n, |yb, gb, db| self.rows_backward(yb, gb, db, n));
                }
                dx
            })
        })??;
        Ok(Some(tensor_like(dx, arg)?))
    }
}

/// The sums over rows of `g` (rows of `n`): the gradient of a bias added to every row.
fn column_sums(g: &[f32], n: usize) -> Vec<f32> {
    let mut sums = vec![0f32; n];
    for row in g.chunks_exact(n) {
        sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
    }
    sums
}

/// `x + bias`, where `bias`'s shape is the trailing part of `x`'s (a Linear's bias over
/// `[rows, out]`, learned positions `[t, d]` over `[b, t, d]`). The bias gradient is a
/// row-major sum over the leading blocks, not candle's strided broadcast reduction.
pub fn add_bias(x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let (xd, bd) = (x.dims(), bias.dims());
    if bd.len() > xd.len() || xd[xd.len() - bd.len()..] != *bd || bias.elem_count() == 0 {
        return Err(err(format!("add_bias: bias {bd:?} is not the trailing shape of {xd:?}")));
    }
    x.contiguous()?.apply_op2(&bias.contiguous()?, AddBias)
}

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = rows_of(s1, l1, self.name())?;
        let b = rows_of(s2, l2, self.name())?;
        let mut y = x.to_vec();
        for row in y.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b.iter()).for_each(|(v, &bv)| *v += bv);
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = bias.elem_count();
        let db = with_f32(grad, |g| column_sums(g, n))?;
        Ok((Some(grad.clone()), Some(tensor_like(db, bias)?)))
    }
}

/// LayerNorm over the last dimension: (x - mean) / sqrt(var + eps) · weight + bias.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    let n = last_dim(x.shape(), "layer-norm")?;
    if weight.dims() != [n] || bias.dims() != [n] {
        return Err(err(format!(
            "layer-norm: weight {:?} and bias {:?} must be [{n}]",
            weight.dims(),
            bias.dims()
        )));
    }
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, LayerNormOp { eps })
}

struct LayerNormOp {
    eps: f32,
}

impl LayerNormOp {
    /// Mean and 1/std of one row.
    fn moments(&self, row: &[f32]) -> (f32, f32) {
        let n = row.len() as f32;
        let mean = sum(row) / n;
        let var = reduce_pairs(row, row, |v, _| (v - mean) * (v - mean)) / n;
        (mean, 1.0 / (var + self.eps).sqrt())
    }
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = last_dim(l1.shape(), self.name())?;
        let x = rows_of(s1, l1, self.name())?;
        let w = rows_of(s2, l2, self.name())?;
        let b = rows_of(s3, l3, self.name())?;
        let mut y = vec![0f32; x.len()];
        map_rows(x, x, n, &mut y, n, |xb, _, yb| {
            for (xr, yr) in xb.chunks_exact(n).zip(yb.chunks_exact_mut(n)) {
                let (mean, rstd) = self.moments(xr);
                for (((yv, &xv), &wv), &bv) in yr.iter_mut().zip(xr).zip(w.iter()).zip(b.iter()) {
                    *yv = (xv - mean) * rstd * wv + bv;
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = last_dim(x.shape(), self.name())?;
        let (dx, dw, db) = with_f32(x, |x| {
            with_f32(weight, |w| {
                with_f32(grad, |g| {
                    // One block of rows: its dx rows, and its share of dw and db.
                    let block = |xb: &[f32], gb: &[f32], dxb: &mut [f32]| -> (Vec<f32>, Vec<f32>) {
                        let (mut dw, mut db) = (vec![0f32; n], vec![0f32; n]);
                        let (mut xhat, mut dxhat) = (vec![0f32; n], vec![0f32; n]);
                        for ((xr, gr), dr) in
                            xb.chunks_exact(n).zip(gb.chunks_exact(n)).zip(dxb.chunks_exact_mut(n))
                        {
                            let (mean, rstd) = self.moments(xr);
                            for k in 0..n {
                                xhat[k] = (xr[k] - mean) * rstd;
                                dxhat[k] = gr[k] * w[k];
                                dw[k] += gr[k] * xhat[k];
                                db[k] += gr[k];
                            }
                            let mean_dxhat = sum(&dxhat) / n as f32;
                            let mean_dxhat_xhat = dot(&dxhat, &xhat) / n as f32;
                            for k in 0..n {
                                dr[k] = rstd * (dxhat[k] - mean_dxhat - xhat[k] * mean_dxhat_xhat);
                            }
                        }
                        (dw, db)
                    };
                    let mut dx = vec![0f32; x.len()];
                    let parts: Vec<(Vec<f32>, Vec<f32>)> = match row_blocks(x.len() / n, n) {
                        Some(rows) => x
                            .par_chunks(rows * n)
                            .zip(g.par_chunks(rows * n))
                            .zip(dx.par_chunks_mut(rows * n))
                            .map(|((xb, gb), dxb)| block(xb, gb, dxb))
                            .collect(),
                        None => vec![block(x, g, &mut dx)],
                    };
                    let (mut dw, mut db) = (vec![0f32; n], vec![0f32; n]);
                    for (pw, pb) in parts {
                        dw.iter_mut().zip(pw).for_each(|(d, v)| *d += v);
                        db.iter_mut().zip(pb).for_each(|(d, v)| *d += v);
                    }
                    (dx, dw, db)
                })
            })
        })???;
        Ok((Some(tensor_like(dx, x)?), Some(tensor_like(dw, weight)?), Some(tensor_like(db, bias)?)))
    }
}

/// How many threads the kernels may use: candle's own setting (RAYON_NUM_THREADS, else the
/// physical cores), read once: candle recomputes the default from /proc on every call.
fn threads() -> usize {
    #[cfg(test)]
    if let Some(n) = tests::THREADS.with(|t| t.get()) {
        return n;
    }
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(candle_core::utils::get_num_threads)
}

/// Elements below which a row kernel stays on one thread (small in the unit tests, so that
/// they run the parallel paths on small inputs).
const MIN_PARALLEL: usize = if cfg!(test) { 64 } else { 1 << 15 };

/// Rows per block when `rows` rows of `width` elements are split over the pool, or `None` to
/// stay on this thread: one thread, already inside a pool task, or too little work to pay
/// for the hand-off.
fn row_blocks(rows: usize, width: usize) -> Option<usize> {
    let threads = threads();
    if threads < 2 || rows < threads || rows * width < MIN_PARALLEL || rayon::current_thread_index().is_some()
    {
        return None;
    }
    Some(rows.div_ceil(threads))
}

/// `f(block of a, block of b, block of out)` over matching row blocks (`a` and `b` rows of
/// `n_in`, `out` rows of `n_out`), on the pool when [`row_blocks`] says so.
fn map_rows(
    a: &[f32],
    b: &[f32],
    n_in: usize,
    out: &mut [f32],
    n_out: usize,
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync + Send,
) {
    match row_blocks(a.len() / n_in.max(1), n_in.max(n_out)) {
        Some(block) => a
            .par_chunks(block * n_in)
            .zip(b.par_chunks(block * n_in))
            .zip(out.par_chunks_mut(block * n_out))
            .for_each(|((ab, bb), ob)| f(ab, bb, ob)),
        None => f(a, b, out),
    }
}

/// Σ over row blocks of `f(block of a, block of b)` (rows of `n`), on the pool when
/// [`row_blocks`] says so; `R` adds up the blocks' results.
fn sum_rows<R: Send + std::ops::Add<Output = R>>(
    a: &[f32],
    b: &[f32],
    n: usize,
    f: impl Fn(&[f32], &[f32]) -> R + Sync + Send,
) -> R {
    match row_blocks(a.len() / n.max(1), n) {
        Some(block) => {
            let mut parts: Vec<R> =
                a.par_chunks(block * n).zip(b.par_chunks(block * n)).map(|(ab, bb)| f(ab, bb)).collect();
            let first = parts.remove(0);
            parts.into_iter().fold(first, |acc, r| acc + r)
        }
        None => f(a, b),
    }
}

/// A read-only matrix view: element (r, c) is `data[r * rs + c * cs]`, so a transpose is a
/// swap of the strides, not a copy.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat { data, rows, cols, rs: cols, cs: 1 }
    }

    /// Rows of `cols` consecutive elements, `rs` apart.
    fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        Mat { data, rows, cols, rs, cs: 1 }
    }

    fn t(self) -> Self {
        Mat { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    /// Whether every element the strides address lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst (+)= a · b` with `dst` row-major `[a.rows, b.cols]` at row stride `dst_rs`: gemm, the
/// kernel under candle's own matmul, called directly so that a bias can be accumulated into,
/// strided head blocks read and written in place, and no zeroed output or transposed weight
/// becomes an autograd node.
fn gemm(dst: &mut [f32], dst_rs: usize, a: Mat, b: Mat, accumulate: bool) -> candle_core::Result<()> {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let dst_fits = m == 0 || n == 0 || (dst_rs >= n && (m - 1) * dst_rs + n <= dst.len());
    if b.rows != k || !dst_fits || !a.in_bounds() || !b.in_bounds() {
        return Err(err(format!(
            "gemm: [{}, {}] x [{}, {}] into {} elements at row stride {dst_rs}",
            a.rows,
            a.cols,
            b.rows,
            b.cols,
            dst.len()
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(dst_rs).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return Ok(());
    }
    // Threads only pay for themselves on the larger products (the per-head ones are ~2^17),
    // and not inside a task the kernels below already spread over the pool.
    let threads = threads();
    let parallelism = if threads > 1 && m * n * k >= 1 << 18 && rayon::current_thread_index().is_none() {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: dst holds m rows of n at stride dst_rs and is exclusively borrowed; a and b were
    // checked to
    // address only elements inside their slices for the m×k and k×n shapes gemm walks; f32
    // is one of gemm's supported element types.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// A linear layer `x · weightᵀ + bias` over the last dimension of `x` (any leading shape),
/// as one autograd node: the three gradients (x, weight, bias) come from two products and a
/// row sum, where the composite (reshape, transpose, matmul, broadcast add, reshape) paid a
/// zeroed buffer and an accumulation pass per step.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    apply_linear(x, weight, bias, Linear { gelu: false, pre_activation: OnceLock::new() })
}

/// [`quick_gelu`] of [`linear`], as one node (the MLP's first layer): the activation is applied
/// while the product is in cache, and its input is kept for the backward.
pub fn linear_gelu(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    apply_linear(x, weight, bias, Linear { gelu: true, pre_activation: OnceLock::new() })
}

fn apply_linear(x: &Tensor, weight: &Tensor, bias: &Tensor, op: Linear) -> candle_core::Result<Tensor> {
    let (out, inp) = weight.dims2()?;
    if last_dim(x.shape(), op.name())? != inp || bias.dims() != [out] {
        return Err(err(format!(
            "{}: input {:?}, weight {:?}, bias {:?} do not fit",
            op.name(),
            x.dims(),
            weight.dims(),
            bias.dims()
        )));
    }
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

struct Linear {
    gelu: bool,
    /// With `gelu`: the product before the activation, set by the forward for the backward.
    pre_activation: OnceLock<Vec<f32>>,
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        if self.gelu {
            "linear-gelu"
        } else {
            "linear"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (x, w, b) = (rows_of(s1, l1, op)?, rows_of(s2, l2, op)?, rows_of(s3, l3, op)?);
        let (out, inp) = l2.shape().dims2()?;
        let rows = x.len() / inp;
        let mut y = Vec::with_capacity(rows * out);
        for _ in 0..rows {
            y.extend_from_slice(b);
        }
        let wt = Mat::row_major(w, out, inp).t();
        let threads = threads();
        if threads > 1 && rows >= 2 * threads {
            // Row blocks on each thread: one sequential product each beats gemm's own split
            // at these sizes.
            let block = rows.div_ceil(threads);
            y.par_chunks_mut(block * out)
                .zip(x.par_chunks(block * inp))
                .try_for_each(|(yb, xb)| gemm(yb, out, Mat::row_major(xb, xb.len() / inp, inp), wt, true))?;
        } else {
            gemm(&mut y, out, Mat::row_major(x, rows, inp), wt, true)?;
        }
        if self.gelu {
            let mut activated = vec![0f32; y.len()];
            map_rows(&y, &y, 1, &mut activated, 1, |xb, _, yb| gelu_into(xb, yb));
            // A node's forward runs once; were it run again it would find the same values.
            let _ = self.pre_activation.set(y);
            y = activated;
        }
        let mut dims = l1.shape().dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = out;
        }
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out, inp) = weight.dims2()?;
        let rows = x.elem_count() / inp;
        let (dx, dw, db) = with_f32(x, |x| {
            with_f32(weight, |w| {
                with_f32(grad, |g| -> candle_core::Result<_> {
                    let through_gelu;
                    let g = if self.gelu {
                        let pre = self
                            .pre_activation
                            .get()
                            .ok_or_else(|| err("linear-gelu: backward before forward".into()))?;
                        through_gelu = {
                            let mut d = vec![0f32; g.len()];
                            map_rows(pre, g, 1, &mut d, 1, gelu_backward_into);
                            d
                        };
                        &through_gelu[..]
                    } else {
                        g
                    };
                    let g_mat = Mat::row_major(g, rows, out);
                    let input_grad = || {
                        let mut dx = vec![0f32; rows * inp];
                        gemm(&mut dx, inp, g_mat, Mat::row_major(w, out, inp), false).map(|_| dx)
                    };
                    let weight_grad = || {
                        let mut dw = vec![0f32; out * inp];
                        gemm(&mut dw, inp, g_mat.t(), Mat::row_major(x, rows, inp), false).map(|_| dw)
                    };
                    // The two products cost the same: one per thread.
                    let (dx, dw) = if threads() > 1 {
                        rayon::join(input_grad, weight_grad)
                    } else {
                        (input_grad(), weight_grad())
                    };
                    let (dx, dw) = (dx?, dw?);
                    Ok((dx, dw, column_sums(g, out)))
                })
            })
        })????;
        Ok((Some(tensor_like(dx, x)?), Some(tensor_like(dw, weight)?), Some(tensor_like(db, bias)?)))
    }
}

/// Causal scaled dot-product attention softmax(q·kᵀ/√hd, causal)·v with `heads` heads, read
/// straight from the packed projections `qkv` `[b, t, 3d]` (queries, keys, values side by
/// side, head-major inside each) and written as `[b, t, d]` with the heads side by side. One
/// node: the head split, the two batched products, the mask, the scale, the softmax and the
/// head merge were ten, each with its own gradient buffers.
pub fn causal_attention(qkv: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (_, _, packed) = qkv.dims3()?;
    if heads == 0 || packed % (3 * heads) != 0 {
        return Err(err(format!("causal attention: width {packed} is not 3 x {heads} heads x head width")));
    }
    let hd = packed / 3 / heads;
    let op = Attention { heads, scale: 1.0 / (hd as f32).sqrt(), probs: OnceLock::new() };
    qkv.contiguous()?.apply_op1(op)
}

/// One sequence's slices in the attention backward: (its qkv, its qkv gradient), (its output
/// gradient, its attention weights).
type SequenceBackward<'a> = ((&'a [f32], &'a mut [f32]), (&'a [f32], &'a [f32]));

struct Attention {
    heads: usize,
    scale: f32,
    /// The attention weights [b, h, t, t], set by the forward for the backward.
    probs: OnceLock<Vec<f32>>,
}

impl Attention {
    /// (b, t, d, hd) of a packed `[b, t, 3d]` input.
    fn dims(&self, shape: &Shape) -> candle_core::Result<(usize, usize, usize, usize)> {
        let (b, t, packed) = shape.dims3()?;
        let d = packed / 3;
        Ok((b, t, d, d / self.heads))
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = rows_of(s, l, self.name())?;
        let (b, t, d, hd) = self.dims(l.shape())?;
        let causal = Softmax { causal_scale: Some(self.scale) };
        let heads = self.heads;
        let mut probs = vec![0f32; b * heads * t * t];
        let mut y = vec![0f32; b * t * d];
        // One sequence of the batch: all its heads.
        let sequence = |(packed, (yb, pb)): (&[f32], (&mut [f32], &mut [f32]))| -> candle_core::Result<()> {
            let mut scores = vec![0f32; t * t];
            for (h, p) in pb.chunks_exact_mut(t * t).enumerate() {
                let head = |part: usize| Mat::strided(&packed[part * d + h * hd..], t, hd, 3 * d);
                gemm(&mut scores, t, head(0), head(1).t(), false)?;
                causal.rows(&scores, p, t);
                gemm(&mut yb[h * hd..], d, Mat::row_major(p, t, t), head(2), false)?;
            }
            Ok(())
        };
        if threads() > 1 {
            qkv.par_chunks(t * 3 * d)
                .zip(y.par_chunks_mut(t * d).zip(probs.par_chunks_mut(heads * t * t)))
                .try_for_each(sequence)?;
        } else {
            qkv.chunks(t * 3 * d)
                .zip(y.chunks_mut(t * d).zip(probs.chunks_mut(heads * t * t)))
                .try_for_each(sequence)?;
        }
        let _ = self.probs.set(probs);
        Ok((CpuStorage::F32(y), Shape::from((b, t, d))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, t, d, hd) = self.dims(arg.shape())?;
        let probs =
            self.probs.get().ok_or_else(|| err("causal attention: backward before forward".into()))?;
        let causal = Softmax { causal_scale: Some(self.scale) };
        let dqkv = with_f32(arg, |qkv| {
            with_f32(grad, |g| -> candle_core::Result<_> {
                let heads = self.heads;
                let mut dqkv = vec![0f32; qkv.len()];
                // One sequence of the batch: all its heads.
                let sequence = |((packed, dpacked), (gb, pb)): SequenceBackward| {
                    let (mut dp, mut ds) = (vec![0f32; t * t], vec![0f32; t * t]);
                    for (h, p) in pb.chunks_exact(t * t).enumerate() {
                        let head = |part: usize| Mat::strided(&packed[part * d + h * hd..], t, hd, 3 * d);
                        let p = Mat::row_major(p, t, t);
                        let gy = Mat::strided(&gb[h * hd..], t, hd, d);
                        // dV = Pᵀ·dY; dP = dY·Vᵀ; dS = softmax backward; dQ = dS·K; dK = dSᵀ·Q.
                        gemm(&mut dpacked[2 * d + h * hd..], 3 * d, p.t(), gy, false)?;
                        gemm(&mut dp, t, gy, head(2).t(), false)?;
                        causal.rows_backward(p.data, &dp, &mut ds, t);
                        let ds = Mat::row_major(&ds, t, t);
                        gemm(&mut dpacked[h * hd..], 3 * d, ds, head(1), false)?;
                        gemm(&mut dpacked[d + h * hd..], 3 * d, ds.t(), head(0), false)?;
                    }
                    candle_core::Result::Ok(())
                };
                if threads() > 1 {
                    qkv.par_chunks(t * 3 * d)
                        .zip(dqkv.par_chunks_mut(t * 3 * d))
                        .zip(g.par_chunks(t * d).zip(probs.par_chunks(heads * t * t)))
                        .try_for_each(sequence)?;
                } else {
                    qkv.chunks(t * 3 * d)
                        .zip(dqkv.chunks_mut(t * 3 * d))
                        .zip(g.chunks(t * d).zip(probs.chunks(heads * t * t)))
                        .try_for_each(sequence)?;
                }
                Ok(dqkv)
            })
        })???;
        Ok(Some(tensor_like(dqkv, arg)?))
    }
}

/// Mean cross-entropy (nats) of logits `[rows, classes]` against u32 targets `[rows]`: a
/// log-softmax and the pick of each target in one pass, and a backward of softmax − one-hot.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let (rows, _) = logits.dims2()?;
    if targets.dims() != [rows] {
        return Err(err(format!("cross-entropy: targets {:?} for {rows} rows", targets.dims())));
    }
    logits.contiguous()?.apply_op2(&targets.contiguous()?, CrossEntropy)
}

struct CrossEntropy;

fn targets_of<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [u32]> {
    let CpuStorage::U32(t) = s else {
        return Err(err(format!("cross-entropy: targets must be u32, got {:?}", s.dtype())));
    };
    let (start, end) =
        l.contiguous_offsets().ok_or_else(|| err("cross-entropy: expects contiguous targets".into()))?;
    Ok(&t[start..end])
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = last_dim(l1.shape(), self.name())?;
        let z = rows_of(s1, l1, self.name())?;
        let targets = targets_of(s2, l2)?;
        if let Some(t) = targets.iter().find(|&&t| t as usize >= n) {
            return Err(err(format!("cross-entropy: target {t} out of {n} classes")));
        }
        // Σ over a block of rows of -log softmax(z)[target].
        let block = |zb: &[f32], tb: &[u32]| -> f64 {
            let mut scratch = vec![0f32; n];
            let mut total = 0f64;
            for (zr, &t) in zb.chunks_exact(n).zip(tb) {
                let top = max(zr);
                scratch.iter_mut().zip(zr).for_each(|(e, &v)| *e = exp(v - top));
                total += f64::from(top + sum(&scratch).ln() - zr[t as usize]);
            }
            total
        };
        let total: f64 = match row_blocks(targets.len(), n) {
            Some(rows) => {
                z.par_chunks(rows * n).zip(targets.par_chunks(rows)).map(|(zb, tb)| block(zb, tb)).sum()
            }
            None => block(z, targets),
        };
        let mean = (total / targets.len().max(1) as f64) as f32;
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = last_dim(logits.shape(), self.name())?;
        let targets: Vec<u32> = targets.to_vec1()?;
        let g = grad.to_scalar::<f32>()? / targets.len().max(1) as f32;
        let dz = with_f32(logits, |z| {
            // A block of rows: g·(softmax(z) − one-hot(target)).
            let block = |zb: &[f32], tb: &[u32], db: &mut [f32]| {
                for ((zr, dr), &t) in zb.chunks_exact(n).zip(db.chunks_exact_mut(n)).zip(tb) {
                    let top = max(zr);
                    dr.iter_mut().zip(zr).for_each(|(d, &v)| *d = exp(v - top));
                    let inv = g / sum(dr);
                    dr.iter_mut().for_each(|d| *d *= inv);
                    dr[t as usize] -= g;
                }
            };
            let mut dz = vec![0f32; z.len()];
            match row_blocks(targets.len(), n) {
                Some(rows) => z
                    .par_chunks(rows * n)
                    .zip(targets.par_chunks(rows))
                    .zip(dz.par_chunks_mut(rows * n))
                    .for_each(|((zb, tb), db)| block(zb, tb, db)),
                None => block(z, &targets, &mut dz),
            }
            dz
        })?;
        Ok((Some(tensor_like(dz, logits)?), None))
    }
}

/// Mean over rows of KL(p ‖ q) between the softmaxes of `teacher` (p) and `student` (q)
/// logits `[rows, classes]`, in nats; only the student side gets a gradient, (q − p)/rows, so
/// the teacher is as if detached (the distillation loss of eq. 11).
pub fn kl_divergence(student: &Tensor, teacher: &Tensor) -> candle_core::Result<Tensor> {
    let (rows, classes) = student.dims2()?;
    if teacher.dims() != [rows, classes] || classes == 0 {
        return Err(err(format!(
            "kl-divergence: student {:?} and teacher {:?} differ",
            student.dims(),
            teacher.dims()
        )));
    }
    student.contiguous()?.apply_op2(&teacher.contiguous()?, KlDivergence)
}

struct KlDivergence;

/// log-softmax of one row into `out`.
fn log_softmax_row(z: &[f32], out: &mut [f32]) {
    let top = max(z);
    out.iter_mut().zip(z).for_each(|(o, &v)| *o = exp(v - top));
    let log_sum = top + sum(out).ln();
    out.iter_mut().zip(z).for_each(|(o, &v)| *o = v - log_sum);
}

impl CustomOp2 for KlDivergence {
    fn name(&self) -> &'static str {
        "kl-divergence"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = last_dim(l1.shape(), self.name())?;
        let (q, p) = (rows_of(s1, l1, self.name())?, rows_of(s2, l2, self.name())?);
        let total = sum_rows(q, p, n, |qb, pb| {
            let (mut log_q, mut log_p) = (vec![0f32; n], vec![0f32; n]);
            let mut total = 0f64;
            for (qr, pr) in qb.chunks_exact(n).zip(pb.chunks_exact(n)) {
                log_softmax_row(qr, &mut log_q);
                log_softmax_row(pr, &mut log_p);
                total += f64::from(reduce_pairs(&log_p, &log_q, |lp, lq| exp(lp) * (lp - lq)));
            }
            total
        });
        let rows = (q.len() / n).max(1);
        Ok((CpuStorage::F32(vec![(total / rows as f64) as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        student: &Tensor,
        teacher: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = last_dim(student.shape(), self.name())?;
        let rows = (student.elem_count() / n).max(1);
        let g = grad.to_scalar::<f32>()? / rows as f32;
        let dq = with_f32(student, |q| {
            with_f32(teacher, |p| {
                let mut dq = vec![0f32; q.len()];
                map_rows(q, p, n, &mut dq, n, |qb, pb, db| {
                    let mut log_p = vec![0f32; n];
                    for ((qr, pr), dr) in
                        qb.chunks_exact(n).zip(pb.chunks_exact(n)).zip(db.chunks_exact_mut(n))
                    {
                        log_softmax_row(qr, dr);
                        log_softmax_row(pr, &mut log_p);
                        dr.iter_mut().zip(&log_p).for_each(|(d, &lp)| *d = g * (exp(*d) - exp(lp)));
                    }
                });
                dq
            })
        })??;
        Ok((Some(tensor_like(dq, student)?), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var, D};
    use proptest::prelude::*;

    thread_local! {
        /// Overrides [`threads`] on this test's thread, to run both the sequential and the
        /// parallel paths whatever the machine.
        pub(super) static THREADS: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    }

    fn randn(shape: &[usize], seed: u64) -> Var {
        // A fixed pseudo-random fill (no global RNG), wide enough to exercise exp's range.
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n as u64)
            .map(|i| {
                let z =
                    (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9)) >> 40;
                (z as f32 / (1u64 << 24) as f32 - 0.5) * 6.0
            })
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    /// Forward values and the gradients of a weighted sum of the output, fused against composite.
    fn check(vars: &[&Var], fused: &Tensor, composite: &Tensor, tol: f32) {
        assert!(max_diff(fused, composite) < tol, "forward differs by {}", max_diff(fused, composite));
        let w = randn(fused.dims(), 99);
        let gf = (fused * w.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let gc = (composite * w.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        for v in vars {
            let (a, b) = (gf.get(v).expect("fused gradient"), gc.get(v).expect("composite gradient"));
            assert!(max_diff(a, b) < tol, "gradient differs by {}", max_diff(a, b));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn quick_gelu_matches_its_composite(rows in 1usize..6, cols in 1usize..40, seed in 0u64..1000) {
            let x = randn(&[rows, cols], seed);
            let composite = (x.as_tensor() * candle_nn::ops::sigmoid(&(x.as_tensor() * 1.702).unwrap()).unwrap()).unwrap();
            check(&[&x], &quick_gelu(&x).unwrap(), &composite, 1e-5);
        }

        #[test]
        fn softmax_matches_candles(rows in 1usize..6, cols in 1usize..300, seed in 0u64..1000) {
            let x = randn(&[rows, cols], seed);
            let composite = candle_nn::ops::softmax(&x, D::Minus1).unwrap();
            check(&[&x], &softmax_last_dim(&x).unwrap(), &composite, 1e-5);
        }

        #[test]
        fn add_bias_matches_broadcast_add(b in 1usize..4, t in 1usize..9, d in 1usize..33, seed in 0u64..1000) {
            let x = randn(&[b, t, d], seed);
            let row_bias = randn(&[d], seed + 1);
            let plane_bias = randn(&[t, d], seed + 2);
            let fused = add_bias(&add_bias(&x, &row_bias).unwrap(), &plane_bias).unwrap();
            let composite = x.broadcast_add(&row_bias).unwrap().broadcast_add(&plane_bias).unwrap();
            check(&[&x, &row_bias, &plane_bias], &fused, &composite, 1e-5);
        }

        #[test]
        fn layer_norm_matches_its_composite(rows in 1usize..8, d in 2usize..70, seed in 0u64..1000) {
            let x = randn(&[rows, d], seed);
            let w = randn(&[d], seed + 1);
            let b = randn(&[d], seed + 2);
            let mean = x.mean_keepdim(D::Minus1).unwrap();
            let centred = x.broadcast_sub(&mean).unwrap();
            let var = centred.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
            let normed = centred.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap()).unwrap();
            let composite = normed.broadcast_mul(&w).unwrap().broadcast_add(&b).unwrap();
            check(&[&x, &w, &b], &layer_norm(&x, &w, &b, 1e-5).unwrap(), &composite, 1e-4);
        }

        #[test]
        fn cross_entropy_matches_candles(rows in 1usize..20, classes in 2usize..300, seed in 0u64..1000) {
            let z = randn(&[rows, classes], seed);
            let t: Vec<u32> = (0..rows as u32).map(|r| (r * 7 + seed as u32) % classes as u32).collect();
            let t = Tensor::from_vec(t, rows, &Device::Cpu).unwrap();
            let fused = cross_entropy(&z, &t).unwrap();
            let composite = candle_nn::loss::cross_entropy(&z, &t).unwrap();
            check(&[&z], &fused, &composite, 1e-4);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn linear_matches_matmul_and_bias(b in 1usize..4, t in 1usize..9, inp in 1usize..40, out in 1usize..40, seed in 0u64..1000) {
            let x = randn(&[b, t, inp], seed);
            let w = randn(&[out, inp], seed + 1);
            let bias = randn(&[out], seed + 2);
            let composite = x.broadcast_matmul(&w.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
            check(&[&x, &w, &bias], &linear(&x, &w, &bias).unwrap(), &composite, 1e-4);
        }

        #[test]
        fn kl_divergence_matches_the_log_softmax_composite(rows in 1usize..12, classes in 1usize..300, seed in 0u64..1000) {
            let q = randn(&[rows, classes], seed);
            let p = randn(&[rows, classes], seed + 1);
            let log_q = candle_nn::ops::log_softmax(&q, D::Minus1).unwrap();
            let log_p = candle_nn::ops::log_softmax(&p.as_tensor().detach(), D::Minus1).unwrap();
            let composite = ((log_p.exp().unwrap() * (log_p - log_q).unwrap()).unwrap().sum_all().unwrap() / rows as f64).unwrap();
            let fused = kl_divergence(&q, &p).unwrap();
            check(&[&q], &fused, &composite, 1e-4);
            let grads = fused.backward().unwrap();
            prop_assert!(grads.get(&p).is_none(), "the teacher gets no gradient");
        }

        #[test]
        fn linear_gelu_matches_linear_then_gelu(rows in 1usize..9, inp in 1usize..40, out in 1usize..40, seed in 0u64..1000) {
            let x = randn(&[2, rows, inp], seed);
            let w = randn(&[out, inp], seed + 1);
            let bias = randn(&[out], seed + 2);
            let composite = quick_gelu(&linear(&x, &w, &bias).unwrap()).unwrap();
            check(&[&x, &w, &bias], &linear_gelu(&x, &w, &bias).unwrap(), &composite, 1e-4);
        }

        #[test]
        fn attention_matches_split_matmul_mask_softmax_matmul_merge(b in 1usize..3, h in 1usize..4, t in 1usize..17, hd in 1usize..9, seed in 0u64..1000) {
            let d = h * hd;
            let qkv = randn(&[b, t, 3 * d], seed);
            let head = |part: usize| qkv.narrow(2, part * d, d).unwrap().reshape((b, t, h, hd)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
            let (q, k, v) = (head(0), head(1), head(2));
            let scale = 1.0 / (hd as f64).sqrt();
            let mask = crate::model::causal_mask(t, &Device::Cpu).unwrap();
            let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap().broadcast_add(&mask).unwrap();
            let y = candle_nn::ops::softmax(&scores, D::Minus1).unwrap().matmul(&v).unwrap();
            let composite = y.transpose(1, 2).unwrap().reshape((b, t, d)).unwrap();
            check(&[&qkv], &causal_attention(&qkv, h).unwrap(), &composite, 1e-4);
        }
    }

    #[test]
    fn one_thread_and_several_compute_the_same() {
        let run = |threads: usize| {
            THREADS.with(|t| t.set(Some(threads)));
            let x = randn(&[4, 9, 24], 1);
            let w1 = randn(&[72, 24], 2);
            let b1 = randn(&[72], 3);
            let w2 = randn(&[24, 24], 4);
            let b2 = randn(&[24], 5);
            let y = linear(&causal_attention(&linear(&x, &w1, &b1).unwrap(), 3).unwrap(), &w2, &b2).unwrap();
            let y = linear_gelu(&y, &w2, &b2).unwrap();
            let y = layer_norm(&y, &b2, &b2, 1e-5).unwrap();
            let y = quick_gelu(&softmax_last_dim(&y).unwrap()).unwrap();
            let logits = y.reshape((36, 24)).unwrap();
            let targets = Tensor::from_vec((0..36u32).map(|i| i % 24).collect(), 36, &Device::Cpu).unwrap();
            let teacher = randn(&[36, 24], 7);
            let loss = (cross_entropy(&logits, &targets).unwrap()
                + kl_divergence(&logits, &teacher).unwrap())
            .unwrap();
            let loss = (loss + (&y * randn(y.dims(), 6).as_tensor()).unwrap().sum_all().unwrap()).unwrap();
            let grads = loss.backward().unwrap();
            THREADS.with(|t| t.set(None));
            let mut out = vec![y.flatten_all().unwrap().to_vec1::<f32>().unwrap()];
            for v in [&x, &w1, &b1, &w2, &b2] {
                out.push(grads.get(v).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
            out
        };
        let (one, several) = (run(1), run(3));
        for (a, b) in one.iter().zip(&several) {
            let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "threads change a result by {worst}");
        }
    }

    #[test]
    fn lane_reductions_agree_with_plain_ones() {
        for len in [0usize, 1, 7, 8, 9, 31, 64, 257] {
            let a: Vec<f32> = (0..len).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25).collect();
            let b: Vec<f32> = (0..len).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.5).collect();
            assert!((sum(&a) - a.iter().sum::<f32>()).abs() < 1e-4, "sum of {len}");
            let plain_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain_dot).abs() < 1e-4, "dot of {len}");
            assert_eq!(max(&a), a.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)), "max of {len}");
        }
    }

    #[test]
    fn fast_exp_is_within_a_few_ulp_of_libm() {
        let mut worst = 0f32;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let (ours, libm) = (exp(x), x.exp());
            worst = worst.max(((ours - libm) / libm).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
        assert!(exp(1000.0).is_finite());
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let x = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(add_bias(&x, &Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap()).is_err());
        let w = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
        assert!(layer_norm(&x, &w, &w, 1e-5).is_err());
        let t = Tensor::from_vec(vec![0u32, 9], 2, &Device::Cpu).unwrap();
        assert!(cross_entropy(&x, &t).is_err(), "a target past the last class");
        let t = Tensor::from_vec(vec![0u32], 1, &Device::Cpu).unwrap();
        assert!(cross_entropy(&x, &t).is_err(), "fewer targets than rows");
        assert!(kl_divergence(&x, &x.t().unwrap()).is_err());
        let ints = Tensor::from_vec(vec![1u32, 2, 3, 4, 5, 6], (2, 3), &Device::Cpu).unwrap();
        assert!(quick_gelu(&ints).is_err());
        let w = Tensor::zeros((4, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(
            linear(&x, &w, &Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap()).is_err(),
            "bias of the input width"
        );
        assert!(
            linear(&x, &w.t().unwrap(), &Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap()).is_err(),
            "weight [3, 4] for width 3"
        );
        let qkv = Tensor::zeros((2, 3, 12), DType::F32, &Device::Cpu).unwrap();
        assert!(causal_attention(&qkv, 3).is_err(), "3 heads of width 4/3");
        assert!(causal_attention(&qkv, 0).is_err());
        assert!(causal_attention(&qkv.narrow(2, 0, 8).unwrap(), 2).is_err(), "8 is not a multiple of 3");
    }
}
