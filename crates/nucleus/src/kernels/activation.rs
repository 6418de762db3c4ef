//! Element-wise kernels: quick GELU (fused into the linear layer too) and a bias added over
//! leading blocks.

use super::*;

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
pub(super) fn gelu_into(x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(o, &v)| *o = v * sigmoid(1.702 * v));
}

/// The gradient through x·σ(1.702x): `dx = g · slope(x)`.
pub(super) fn gelu_backward_into(x: &[f32], g: &[f32], dx: &mut [f32]) {
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
