//! AdamW with its moments as named tensors, so a checkpoint can save and restore them (candle-nn's
//! optimiser keeps its state private), and global-norm gradient clipping.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Tensor, Var};

use crate::kernels::with_f32;
use crate::CheckpointError;

/// AdamW (Loshchilov & Hutter) over a fixed, name-sorted list of variables.
pub struct AdamW {
    /// The variables updated, sorted by name (the order of the moments and of the checkpoint).
    pub vars: Vec<(String, Var)>,
    /// First moments (running means of the gradients), one per variable.
    pub m: Vec<Tensor>,
    /// Second moments (running means of the squared gradients), one per variable.
    pub v: Vec<Tensor>,
    /// Updates taken so far (for the bias correction).
    pub step: u64,
    /// Step size: Adam's normalised update moves each parameter by about `lr` at most.
    pub lr: f64,
    /// Decay rate of the first moment (0.9).
    pub beta1: f64,
    /// Decay rate of the second moment (0.999).
    pub beta2: f64,
    /// Added to the root of the second moment so a near-zero one cannot blow the step up.
    pub eps: f64,
    /// Decoupled weight decay, applied to the parameter directly rather than through the gradient.
    pub weight_decay: f64,
}

impl AdamW {
    /// An optimizer over `vars` with zero moments and the usual betas (0.9, 0.999).
    pub fn new(mut vars: Vec<(String, Var)>, lr: f64, weight_decay: f64) -> candle_core::Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m =
            vars.iter().map(|(_, v)| v.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(AdamW { vars, m, v, step: 0, lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay })
    }

    /// One update from `grads`, each variable's gradient first multiplied by `grad_scale` (the
    /// clipping factor). Variables without a gradient keep their value and moments.
    pub fn step(&mut self, grads: &GradStore, grad_scale: f64) -> candle_core::Result<()> {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let (scale, eps) = (grad_scale as f32, self.eps as f32);
        let (step1, step2) = ((self.lr / bc1) as f32, (1.0 / bc2) as f32);
        let decay = (1.0 - self.lr * self.weight_decay) as f32;
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // One pass over (w, g, m, v) per variable, where the tensor expression took twelve
            // operations, each allocating its output.
            let (w, m, v) = with_f32(var.as_tensor(), |w| {
                with_f32(g, |g| {
                    with_f32(&self.m[i], |m| {
                        with_f32(&self.v[i], |v| {
                            let mut out = (w.to_vec(), m.to_vec(), v.to_vec());
                            for (((wk, mk), vk), &gk) in
                                out.0.iter_mut().zip(out.1.iter_mut()).zip(out.2.iter_mut()).zip(g)
                            {
                                let gk = gk * scale;
                                *mk = b1 * *mk + (1.0 - b1) * gk;
                                *vk = b2 * *vk + (1.0 - b2) * gk * gk;
                                *wk = *wk * decay - step1 * *mk / ((*vk * step2).sqrt() + eps);
                            }
                            out
                        })
                    })
                })
            })????;
            let like = var.as_tensor();
            var.set(&Tensor::from_vec(w, like.shape(), like.device())?)?;
            self.m[i] = Tensor::from_vec(m, like.shape(), like.device())?;
            self.v[i] = Tensor::from_vec(v, like.shape(), like.device())?;
        }
        Ok(())
    }

    /// Moments as named tensors for a safetensors file.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`]; every variable must have both.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step: u64) -> Result<(), CheckpointError> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{prefix}.{name}");
                let t =
                    state.get(&key).ok_or_else(|| CheckpointError::MissingMoment { name: key.clone() })?;
                if t.dims() != var.as_tensor().dims() {
                    return Err(CheckpointError::MomentShape {
                        name: key,
                        expected: var.as_tensor().dims().to_vec(),
                        found: t.dims().to_vec(),
                    });
                }
                *slot = t.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Global L2 norm of the gradients of `vars` (those without a gradient count as zero).
pub fn grad_norm(grads: &GradStore, vars: &[(String, Var)]) -> candle_core::Result<f64> {
    let mut sq = 0f64;
    for (_, v) in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += with_f32(g, |g| g.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>())?;
        }
    }
    Ok(sq.sqrt())
}

/// The factor that brings a gradient of norm `norm` within `max_norm` (1 when it already is).
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if norm.is_finite() && norm > max_norm && norm > 0.0 {
        max_norm / norm
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn clipped_norm_never_exceeds_the_bound(norm in 0.0f64..1e12, max in 1e-6f64..1e3) {
            let f = clip_factor(norm, max);
            prop_assert!(f > 0.0 && f <= 1.0);
            prop_assert!(norm * f <= max * (1.0 + 1e-9) || norm <= max);
        }
    }

    #[test]
    fn one_adamw_step_follows_the_formula() {
        let w = Var::from_tensor(&Tensor::new(&[1f32, -2.0, 0.5], &Device::Cpu).unwrap()).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], 0.01, 0.1).unwrap();
        // loss = Σ 3·w, so every gradient is 3; clipped by 0.5 to 1.5.
        let g = (w.as_tensor() * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        opt.step(&g, 0.5).unwrap();
        let (m, v) = (0.1 * 1.5, 0.001 * 1.5 * 1.5);
        let (m_hat, v_hat) = (m / (1.0 - 0.9), v / (1.0 - 0.999));
        let want: Vec<f64> = [1.0, -2.0, 0.5]
            .iter()
            .map(|x| x * (1.0 - 0.01 * 0.1) - 0.01 * m_hat / (f64::sqrt(v_hat) + 1e-8))
            .collect();
        let got = w.as_tensor().to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // Relative: β2 = 0.999 is not exact in f32.
        assert!((f64::from(opt.m[0].to_vec1::<f32>().unwrap()[0]) / m - 1.0).abs() < 1e-4);
        assert!((f64::from(opt.v[0].to_vec1::<f32>().unwrap()[0]) / v - 1.0).abs() < 1e-4);
    }

    #[test]
    fn adamw_minimises_a_quadratic() {
        let x = Var::from_tensor(&Tensor::new(&[3f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut opt = AdamW::new(vec![("x".into(), x.clone())], 0.1, 0.0).unwrap();
        for _ in 0..300 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            opt.step(&g, 1.0).unwrap();
        }
        let v = x.as_tensor().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|a| a.abs() < 0.05), "{v:?}");
        assert_eq!(opt.step, 300);
    }
}
