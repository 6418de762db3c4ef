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

mod activation;
mod attention;
mod layer_norm;
mod linear;
mod loss;
mod softmax;

pub use activation::{add_bias, exp, quick_gelu};
pub use attention::causal_attention;
pub use layer_norm::layer_norm;
pub use linear::{linear, linear_gelu};
pub use loss::{cross_entropy, kl_divergence};
pub use softmax::softmax_last_dim;

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

/// The sums over rows of `g` (rows of `n`): the gradient of a bias added to every row.
fn column_sums(g: &[f32], n: usize) -> Vec<f32> {
    let mut sums = vec![0f32; n];
    for row in g.chunks_exact(n) {
        sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
    }
    sums
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
