//! Causal multi-head self-attention over a packed qkv tensor, sequences split over the pool.

use super::softmax::Softmax;
use super::*;

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
