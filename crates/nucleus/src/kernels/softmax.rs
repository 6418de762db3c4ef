//! Softmax over the last dimension, forward and backward in one pass per row.

use super::*;

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax { causal_scale: None })
}

pub(super) struct Softmax {
    /// `Some(scale)`: causal attention scores, scaled; `None`: a plain softmax.
    pub(super) causal_scale: Option<f32>,
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
    pub(super) fn rows(&self, x: &[f32], y: &mut [f32], n: usize) {
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
    pub(super) fn rows_backward(&self, y: &[f32], g: &[f32], dx: &mut [f32], n: usize) {
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
