//! The losses: cross-entropy against next tokens, and the student's KL divergence to its
//! teacher.

use super::*;

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
