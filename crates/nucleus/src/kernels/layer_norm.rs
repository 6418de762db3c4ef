//! LayerNorm with learned gain and bias, one pass per row each way.

use super::*;

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
