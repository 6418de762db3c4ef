//! Linear layers (with and without a fused GELU) as one autograd node, their products done
//! by `gemm` on strided views, rows split over the pool.

use super::activation::{gelu_backward_into, gelu_into};
use super::*;

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
