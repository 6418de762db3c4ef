//! What a nucleus is configured with (its model, student, gate, scoring and training
//! constants), and the checks that refuse a configuration that cannot train.

use super::*;

/// How the weights w_ij are scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scoring {
    /// Eq. (3) made empirical: the increase of the local loss when peer j's term g_j·f_j is
    /// removed from G, measured on the batch by masking (one extra forward pass per peer).
    PruningMask,
    /// Eq. (3) as its quadratic form with the empirical Fisher information standing in for the
    /// Hessian (the paper notes they coincide for cross-entropy): per sequence b,
    /// (∂L_b/∂G_b · g_j f_j)², summed and divided by the token count. Free: it reuses the
    /// gradients already computed for the backward to peers.
    PruningFisher,
    /// §7: the gate's own importance, the mean g_j(x) over the batch.
    Gating,
}

/// Everything that shapes a nucleus. `Default` trains at a few steps per second on 2 cores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NucleusConfig {
    /// The local model f_i.
    pub model: ModelConfig,
    /// The distillation student dist(x); must share `context` and `output_dim` with `model`.
    pub student: ModelConfig,
    /// Gate size: uids `0..slots` can be routed to (the subnetwork's max uids).
    pub slots: usize,
    /// Peers queried per batch (k of noisy top-k).
    pub top_k: usize,
    /// How the weight scores w_ij are measured.
    pub scoring: Scoring,
    /// AdamW learning rate for f_i, the gate and the student.
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm bound for our own steps and for steps from remote gradients.
    pub grad_clip: f64,
    /// L2 bound on a gradient another peer sends us, before the stake weighting.
    pub remote_grad_max_norm: f64,
    /// SGD rate for remote gradients: a remote step moves f_i's parameters by at most
    /// `remote_lr · grad_clip` (times the sender's weight).
    pub remote_lr: f64,
    /// Responses are clamped to ±this before the join, so a peer serving huge values cannot
    /// saturate f_i.
    pub response_clip: f32,
    /// Exponential smoothing rate of the scores (new = (1-a)·old + a·observed).
    pub smoothing: f32,
    /// Weight of the distillation loss relative to the next-byte loss.
    pub distill_weight: f64,
    /// Gate-logit penalty per unit of a peer's smoothed failure rate.
    pub fail_penalty: f32,
    /// Smoothing rate of the failure rate.
    pub fail_smoothing: f32,
    /// Training batch size (used by the bench and the examples; `train_step` takes any batch).
    pub batch: usize,
    /// Seeds the initial parameters and the gate noise: the same seed trains the same model.
    pub seed: u64,
}

impl Default for NucleusConfig {
    fn default() -> Self {
        let model = ModelConfig::default();
        NucleusConfig {
            student: ModelConfig { dim: 64, depth: 1, heads: 2, ..model.clone() },
            model,
            slots: 64,
            top_k: 3,
            scoring: Scoring::PruningMask,
            lr: 2e-3,
            weight_decay: 0.0,
            grad_clip: 1.0,
            remote_grad_max_norm: 1.0,
            remote_lr: 1e-3,
            response_clip: 100.0,
            smoothing: 0.1,
            distill_weight: 1.0,
            fail_penalty: 4.0,
            fail_smoothing: 0.2,
            batch: 16,
            seed: 0,
        }
    }
}

impl NucleusConfig {
    /// A tiny configuration for tests: trains in seconds in a debug build.
    pub fn tiny(seed: u64) -> Self {
        let model = ModelConfig { vocab: 256, dim: 32, depth: 1, heads: 2, context: 32, output_dim: 16 };
        NucleusConfig {
            student: ModelConfig { dim: 32, ..model.clone() },
            model,
            slots: 8,
            top_k: 2,
            lr: 1e-2,
            batch: 8,
            seed,
            ..NucleusConfig::default()
        }
    }

    /// Refuses shapes and rates that cannot train, with the field and its allowed range.
    pub fn validate(&self) -> Result<(), NucleusError> {
        self.model.validate("model")?;
        self.student.validate("student")?;
        if self.student.context != self.model.context || self.student.output_dim != self.model.output_dim {
            return Err(NucleusError::Config(format!(
                "student context/output_dim {}/{} must equal the model's {}/{}",
                self.student.context, self.student.output_dim, self.model.context, self.model.output_dim
            )));
        }
        if self.slots == 0 || self.slots > usize::from(u16::MAX) + 1 || self.top_k == 0 {
            return Err(NucleusError::Config(format!(
                "slots {} must be in 1..=65536 and top_k {} positive",
                self.slots, self.top_k
            )));
        }
        let positive = [
            ("lr", self.lr),
            ("grad_clip", self.grad_clip),
            ("remote_grad_max_norm", self.remote_grad_max_norm),
            ("response_clip", f64::from(self.response_clip)),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(NucleusError::Parameter {
                    name,
                    value: v.to_string(),
                    expected: "finite and > 0",
                });
            }
        }
        for (name, v) in [("smoothing", self.smoothing), ("fail_smoothing", self.fail_smoothing)] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(NucleusError::Parameter { name, value: v.to_string(), expected: "in (0, 1]" });
            }
        }
        let non_negative = [
            ("remote_lr", self.remote_lr),
            ("distill_weight", self.distill_weight),
            ("weight_decay", self.weight_decay),
            ("fail_penalty", f64::from(self.fail_penalty)),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(NucleusError::Parameter {
                    name,
                    value: v.to_string(),
                    expected: "finite and >= 0",
                });
            }
        }
        Ok(())
    }
}
