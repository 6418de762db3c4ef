//! The nucleus: f_i, the gate G, the student, the scores, checkpoints and the offline export.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::{Embedding, Linear, VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::data::Batch;
use crate::model::{kl_to_teacher, next_token_loss, token_tensor, Encoder, LocalModel, ModelConfig};
use crate::optim::{clip_factor, grad_norm, AdamW};
use crate::{CheckpointError, DataError, NucleusError};

mod checkpoint;
mod config;
mod gate;
mod inference;

pub use config::{NucleusConfig, Scoring};
use gate::Gate;
pub use inference::Inference;

/// Why a peer's response was not joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// `None`: the peer timed out or failed.
    NoResponse,
    /// The buffer length is not `batch * seq * output_dim`.
    WrongShape {
        /// `batch * seq * output_dim`.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
    /// The buffer holds NaN or ±Inf.
    NonFinite,
    /// `uid >= slots`.
    UnknownUid,
    /// The uid appeared earlier in the same call.
    Duplicate,
}

/// What fed f_i in a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinMode {
    /// G(x) joined from this many peers.
    Gated(usize),
    /// No peer answered: the student dist(x) stood in (market paper Fig. 7, depth 1).
    Student,
}

/// The outcome of one [`Nucleus::train_step`].
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Mean next-byte cross-entropy (nats) of f_i on the batch, before the update.
    pub loss: f32,
    /// KL(G-fed f_i || dist-fed f_i) + MSE(dist(x), G(x)); 0 in student mode; in
    /// [`Nucleus::pretrain_step`], MSE(dist(x), f_i's own representation).
    pub distill_loss: f32,
    /// Whether G(x) from the peers or the student stood in.
    pub mode: JoinMode,
    /// For each joined uid, ∂loss/∂(its response), shape `[batch, seq, output_dim]` row-major:
    /// what goes back to that peer in a wire `Backward`.
    pub grads: Vec<(u16, Vec<f32>)>,
    /// Mean gate weight g_j(x) over the batch per joined uid.
    pub gates: Vec<(u16, f32)>,
    /// This step's raw score per passed uid (0 for failures) before smoothing.
    pub observed: Vec<(u16, f32)>,
    /// The uids whose responses were not joined, and why: they score 0 and their failure rate rises.
    pub failed: Vec<(u16, FailReason)>,
}

/// Initialises every variable from `seed` (candle's CPU generator cannot be seeded):
/// biases 0, LayerNorm gains 1, the gate's W_g and W_noise 0 (a balanced gate at start, as in
/// Shazeer et al.), everything else N(0, 0.02²) as in GPT-2.
pub(crate) fn init_vars(varmap: &VarMap, seed: u64) -> Result<(), NucleusError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0f32, 0.02).map_err(|e| NucleusError::Config(e.to_string()))?;
    let data = varmap.data().lock().map_err(|_| NucleusError::Config("variable map lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let t = var.as_tensor();
        let leaf = name.rsplit('.').next().unwrap_or("");
        let parent = name.rsplit('.').nth(1).unwrap_or("");
        let value = if leaf == "bias" || name.starts_with("gate.w_") {
            t.zeros_like()?
        } else if parent.starts_with("ln") && leaf == "weight" {
            t.ones_like()?
        } else {
            let v: Vec<f32> = (0..t.elem_count()).map(|_| normal.sample(&mut rng)).collect();
            Tensor::from_vec(v, t.shape(), t.device())?
        };
        var.set(&value)?;
    }
    Ok(())
}

/// How [`Nucleus::increase`] takes a peer out of G.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ablation {
    Remove,
    Shuffle,
}

/// One peer's learning state.
pub struct Nucleus {
    cfg: NucleusConfig,
    device: Device,
    varmap: VarMap,
    local: LocalModel,
    student: Encoder,
    gate: Gate,
    opt: AdamW,
    rng: ChaCha8Rng,
    /// Smoothed score per slot, and whether the slot has been observed.
    scores: Vec<f32>,
    seen: Vec<bool>,
    /// Smoothed failure rate per slot.
    fail_rate: Vec<f32>,
    steps: u64,
    /// Bumped by every change to the parameters (an optimiser step, a remote gradient), so
    /// [`Nucleus::model_version`] hashes them again only when they changed.
    revision: u64,
    /// The last version computed: (revision, hash of the parameters).
    version: std::sync::Mutex<Option<(u64, [u8; 32])>>,
}

/// Responses accepted for the join, and the refused ones with their reason.
type Accepted = (Vec<Joined>, Vec<(u16, FailReason)>);

/// What ablation needs from an evaluation forward: inputs x, targets y, G(x), the gate
/// weights and the joined peers.
type EvalParts = (Tensor, Tensor, Tensor, Tensor, Vec<Joined>);

/// A response accepted for the join.
struct Joined {
    uid: u16,
    var: Var,
}

impl Nucleus {
    /// A fresh nucleus: f_i, the gate over `cfg.slots` uids and the student, seeded from `cfg.seed`, every
    /// score zero.
    pub fn new(cfg: NucleusConfig) -> Result<Self, NucleusError> {
        cfg.validate()?;
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let local = LocalModel::new(&cfg.model, vb.pp("local"))?;
        let student = Encoder::new(&cfg.student, vb.pp("student"))?;
        let gate = Gate::new(cfg.model.dim, cfg.slots, vb.pp("gate"))?;
        init_vars(&varmap, cfg.seed)?;
        let vars = named_vars(&varmap, "")?;
        let opt = AdamW::new(vars, cfg.lr, cfg.weight_decay)?;
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x9e37_79b9_7f4a_7c15);
        Ok(Nucleus {
            scores: vec![0.0; cfg.slots],
            seen: vec![false; cfg.slots],
            fail_rate: vec![0.0; cfg.slots],
            cfg,
            device,
            varmap,
            local,
            student,
            gate,
            opt,
            rng,
            steps: 0,
            revision: 0,
            version: std::sync::Mutex::new(None),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &NucleusConfig {
        &self.cfg
    }

    /// Optimisation steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Number of trainable parameters of f_i.
    pub fn local_parameters(&self) -> usize {
        named_vars(&self.varmap, "local.")
            .map(|v| v.iter().map(|(_, v)| v.as_tensor().elem_count()).sum())
            .unwrap_or(0)
    }

    fn check_tokens(&self, tokens: &[u8], batch: usize, seq: usize) -> Result<(), NucleusError> {
        if batch == 0 || seq == 0 {
            return Err(NucleusError::EmptyBatch { batch, seq });
        }
        if seq > self.cfg.model.context {
            return Err(NucleusError::Context { seq, context: self.cfg.model.context });
        }
        if tokens.len() != batch * seq {
            return Err(NucleusError::Shape { what: "tokens", expected: batch * seq, found: tokens.len() });
        }
        Ok(())
    }

    /// f_i(x) with the student standing in for the peers (queries go to depth 1 only).
    fn offline_forward(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let dist = self.student.forward(x)?.detach();
        self.local.forward(x, &dist)
    }

    /// f_i(x) as served to other peers: tokens `[batch, seq]` -> `[batch, seq, output_dim]`,
    /// row-major f32. The gate input is the student's dist(x), never a further network query.
    pub fn serve_forward(&self, tokens: &[u8], batch: usize, seq: usize) -> Result<Vec<f32>, NucleusError> {
        self.check_tokens(tokens, batch, seq)?;
        let x = token_tensor(tokens, batch, seq, &self.device)?;
        let (rep, _) = self.offline_forward(&x)?;
        Ok(rep.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Which model [`Nucleus::serve_forward`] answers with (issue 16: signed into every axon
    /// response): BLAKE3 over every parameter (name, then the f32 values little-endian, in name
    /// order), and the optimisation steps taken. Hashed again only after the parameters changed
    /// (an optimiser step, an applied remote gradient); otherwise it costs a lock.
    pub fn model_version(&self) -> Result<([u8; 32], u64), NucleusError> {
        let mut cache = self.version.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((revision, id)) = *cache {
            if revision == self.revision {
                return Ok((id, self.steps));
            }
        }
        let mut h = blake3::Hasher::new();
        for (name, var) in named_vars(&self.varmap, "")? {
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            let values = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        let id: [u8; 32] = h.finalize().into();
        *cache = Some((self.revision, id));
        Ok((id, self.steps))
    }

    /// Applies a gradient another peer sent for our served output on `tokens`: NaN/Inf is
    /// refused, the gradient is clipped to `remote_grad_max_norm` and scaled by `weight` (the
    /// sender's stake share in [0, 1]); the resulting parameter gradient of f_i is clipped to
    /// `grad_clip` and applied by SGD at `remote_lr`. Returns the norm of the applied output
    /// gradient (after clipping and weighting).
    pub fn apply_remote_gradient(
        &mut self,
        tokens: &[u8],
        batch: usize,
        seq: usize,
        grads: &[f32],
        weight: f32,
    ) -> Result<f32, NucleusError> {
        self.check_tokens(tokens, batch, seq)?;
        let expected = batch * seq * self.cfg.model.output_dim;
        if grads.len() != expected {
            return Err(NucleusError::Shape { what: "remote gradient", expected, found: grads.len() });
        }
        if !(weight.is_finite() && (0.0..=1.0).contains(&weight)) {
            return Err(NucleusError::Config(format!("remote gradient weight {weight} must be in [0, 1]")));
        }
        if let Some(i) = grads.iter().position(|g| !g.is_finite()) {
            return Err(NucleusError::NonFinite { what: "remote gradient", index: i, value: grads[i] });
        }
        let norm = grads.iter().map(|g| f64::from(*g).powi(2)).sum::<f64>().sqrt();
        let scale = clip_factor(norm, self.cfg.remote_grad_max_norm) * f64::from(weight);
        let applied = norm * scale;
        if applied == 0.0 || self.cfg.remote_lr == 0.0 {
            return Ok(applied as f32);
        }
        let x = token_tensor(tokens, batch, seq, &self.device)?;
        let (rep, _) = self.offline_forward(&x)?;
        let g = Tensor::from_slice(grads, rep.shape(), &self.device)?;
        // d(sum(rep * g))/d(rep) = g: the chain rule carries the peer's gradient into f_i.
        let surrogate = (rep * (g * scale)?)?.sum_all()?;
        let store = surrogate.backward()?;
        let vars = named_vars(&self.varmap, "local.")?;
        let clip = clip_factor(grad_norm(&store, &vars)?, self.cfg.grad_clip);
        self.revision += 1;
        for (_, var) in &vars {
            if let Some(pg) = store.get(var.as_tensor()) {
                let step = (pg * (self.cfg.remote_lr * clip))?;
                var.set(&(var.as_tensor() - step)?)?;
            }
        }
        Ok(applied as f32)
    }

    /// Noisy top-k routing: which of `candidates` to query for this batch. Each candidate's
    /// logit is the batch mean of H(x) (with fresh noise) minus `fail_penalty` times its
    /// smoothed failure rate. Uids outside the gate and duplicates are dropped.
    pub fn route(&mut self, batch: &Batch, candidates: &[u16]) -> Vec<u16> {
        let mut uniq: Vec<u16> = Vec::new();
        for &c in candidates {
            if usize::from(c) < self.cfg.slots && !uniq.contains(&c) {
                uniq.push(c);
            }
        }
        let k = self.cfg.top_k;
        let logits = match self.route_logits(batch) {
            Ok(l) => l,
            // The gate cannot fail on a valid batch; if it did, the least-failing peers are the
            // best guess without it.
            Err(_) => vec![0.0; self.cfg.slots],
        };
        let mut scored: Vec<(f32, u16)> = uniq
            .into_iter()
            .map(|u| {
                let i = usize::from(u);
                (logits[i] - self.cfg.fail_penalty * self.fail_rate[i], u)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|(_, u)| u).collect()
    }

    fn route_logits(&mut self, batch: &Batch) -> Result<Vec<f32>, NucleusError> {
        self.check_tokens(&batch.tokens, batch.batch, batch.seq)?;
        let x = token_tensor(&batch.tokens, batch.batch, batch.seq, &self.device)?;
        let (clean, noise) = self.gate.forward(&x)?;
        let eps = self.standard_normal(clean.shape().clone())?;
        let noisy = (clean + (noise * eps)?)?;
        Ok(noisy.mean(0)?.to_vec1::<f32>()?)
    }

    fn standard_normal(&mut self, shape: candle_core::Shape) -> Result<Tensor, NucleusError> {
        let normal = Normal::new(0f32, 1.0).map_err(|e| NucleusError::Config(e.to_string()))?;
        let v: Vec<f32> = (0..shape.elem_count()).map(|_| normal.sample(&mut self.rng)).collect();
        Ok(Tensor::from_vec(v, shape, &self.device)?)
    }

    /// Validates the responses: accepted ones become variables (so their gradient can be read),
    /// the rest are reported with a reason.
    fn accept(&self, batch: &Batch, responses: &[(u16, Option<Vec<f32>>)]) -> Result<Accepted, NucleusError> {
        let expected = batch.batch * batch.seq * self.cfg.model.output_dim;
        let shape = (batch.batch, batch.seq, self.cfg.model.output_dim);
        let clip = self.cfg.response_clip;
        let mut joined: Vec<Joined> = Vec::new();
        let mut failed = Vec::new();
        let mut seen = Vec::new();
        for (uid, resp) in responses {
            let uid = *uid;
            let reason = if usize::from(uid) >= self.cfg.slots {
                Some(FailReason::UnknownUid)
            } else if seen.contains(&uid) {
                Some(FailReason::Duplicate)
            } else {
                match resp {
                    None => Some(FailReason::NoResponse),
                    Some(v) if v.len() != expected => Some(FailReason::WrongShape { expected, got: v.len() }),
                    Some(v) if v.iter().any(|x| !x.is_finite()) => Some(FailReason::NonFinite),
                    Some(_) => None,
                }
            };
            seen.push(uid);
            match (reason, resp) {
                (Some(r), _) => failed.push((uid, r)),
                (None, Some(v)) => {
                    let t = Tensor::from_slice(v, shape, &self.device)?.clamp(-clip, clip)?;
                    joined.push(Joined { uid, var: Var::from_tensor(&t)? });
                }
                (None, None) => failed.push((uid, FailReason::NoResponse)),
            }
        }
        Ok((joined, failed))
    }

    /// Gate weights [b, k] over the joined peers: softmax of their (noisy when training)
    /// logits; the routing already kept the top k, failed peers are left out of the softmax
    /// so they contribute zeros and the survivors share their weight.
    fn gate_weights(
        &self,
        x: &Tensor,
        joined: &[Joined],
        eps: Option<Tensor>,
    ) -> Result<Tensor, NucleusError> {
        let (clean, noise) = self.gate.forward(x)?;
        let logits = match eps {
            Some(eps) => (clean + (noise * eps)?)?,
            None => clean,
        };
        let idx: Vec<u32> = joined.iter().map(|j| u32::from(j.uid)).collect();
        let idx = Tensor::from_vec(idx, joined.len(), &self.device)?;
        let selected = logits.index_select(&idx, 1)?;
        Ok(candle_nn::ops::softmax(&selected, D::Minus1)?)
    }

    /// G(x) = Σ_j g_j(x)·f_j(x) (eq. 10): [b, t, output_dim].
    fn join(gates: &Tensor, joined: &[Joined]) -> candle_core::Result<Tensor> {
        let b = gates.dim(0)?;
        let mut g_x: Option<Tensor> = None;
        for (j, peer) in joined.iter().enumerate() {
            let g_j = gates.narrow(1, j, 1)?.reshape((b, 1, 1))?;
            let term = peer.var.as_tensor().broadcast_mul(&g_j)?;
            g_x = Some(match g_x {
                None => term,
                Some(acc) => (acc + term)?,
            });
        }
        g_x.ok_or_else(|| candle_core::Error::Msg("join of no peers".into()))
    }

    /// One step of a peer that has not joined the network yet: f_i learns from its own bytes,
    /// fed by the student, and the student learns f_i's own served representation (a next-byte
    /// distribution in the network standard, like any neighbour's answer). With no G to
    /// distil, this keeps f_i reading network-standard input, so the neighbours' answers,
    /// written in the same coordinates, are of use from the first step they arrive; a peer
    /// pretrained with [`Nucleus::train_step`] alone first learns to ignore its gate input,
    /// and rated every neighbour a loss for its first minutes on the localnet.
    pub fn pretrain_step(&mut self, batch: &Batch) -> Result<StepReport, NucleusError> {
        self.check_tokens(&batch.tokens, batch.batch, batch.seq)?;
        let (b, t) = (batch.batch, batch.seq);
        let x = token_tensor(&batch.tokens, b, t, &self.device)?;
        let y = token_tensor(&batch.targets, b, t, &self.device)?;
        let dist = self.student.forward(&x)?;
        let (rep, logits) = self.local.forward(&x, &dist.detach())?;
        let loss = next_token_loss(&logits, &y)?;
        let loss_v = loss.to_scalar::<f32>()?;
        let mse = candle_nn::loss::mse(&dist, &rep.detach())?;
        let distill_v = mse.to_scalar::<f32>()?;
        let store = (&loss + (mse * self.cfg.distill_weight)?)?.backward()?;
        self.optimise(&store)?;
        self.steps += 1;
        Ok(StepReport {
            loss: loss_v,
            distill_loss: distill_v,
            mode: JoinMode::Student,
            grads: Vec::new(),
            gates: Vec::new(),
            observed: Vec::new(),
            failed: Vec::new(),
        })
    }

    /// One optimisation step of f_i, the gate and the student on `batch`.
    ///
    /// `responses`: for each queried uid, `Some(out)` with `out.len() == batch*seq*output_dim`,
    /// or `None` if it failed or timed out. Invalid responses count as failures. When no
    /// response is usable, the student stands in and only f_i learns this step (the student
    /// keeps what it distilled from the network).
    pub fn train_step(
        &mut self,
        batch: &Batch,
        responses: &[(u16, Option<Vec<f32>>)],
    ) -> Result<StepReport, NucleusError> {
        self.check_tokens(&batch.tokens, batch.batch, batch.seq)?;
        let (b, t) = (batch.batch, batch.seq);
        let x = token_tensor(&batch.tokens, b, t, &self.device)?;
        let y = token_tensor(&batch.targets, b, t, &self.device)?;
        let (joined, failed) = self.accept(batch, responses)?;

        let report = if joined.is_empty() {
            let (_, logits) = self.offline_forward(&x)?;
            let loss = next_token_loss(&logits, &y)?;
            let loss_v = loss.to_scalar::<f32>()?;
            let store = loss.backward()?;
            self.optimise(&store)?;
            StepReport {
                loss: loss_v,
                distill_loss: 0.0,
                mode: JoinMode::Student,
                grads: Vec::new(),
                gates: Vec::new(),
                observed: Vec::new(),
                failed: failed.clone(),
            }
        } else {
            let eps = self.standard_normal((b, self.cfg.slots).into())?;
            let gates = self.gate_weights(&x, &joined, Some(eps))?;
            let g_x = Self::join(&gates, &joined)?;
            let (_, logits) = self.local.forward(&x, &g_x)?;
            let loss = next_token_loss(&logits, &y)?;
            let loss_v = loss.to_scalar::<f32>()?;

            // Eq. (11): the student learns to stand in for G. The KL term compares f_i's
            // predictions fed by dist(x) and by G(x) (teacher side detached); the MSE term
            // matches the representations directly, which steadies the early steps.
            let dist = self.student.forward(&x)?;
            let (_, logits_dist) = self.local.forward(&x, &dist)?;
            let kl = kl_to_teacher(&logits_dist, &logits)?;
            let mse = candle_nn::loss::mse(&dist, &g_x.detach())?;
            let distill = (kl + mse)?;
            let distill_v = distill.to_scalar::<f32>()?;
            let total = (&loss + (distill * self.cfg.distill_weight)?)?;
            let store = total.backward()?;

            let mut grads = Vec::with_capacity(joined.len());
            for peer in &joined {
                let g = match store.get(peer.var.as_tensor()) {
                    Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
                    None => vec![0.0; b * t * self.cfg.model.output_dim],
                };
                grads.push((peer.uid, g));
            }
            let mean_gates = gates.mean(0)?.to_vec1::<f32>()?;
            let observed_joined: Vec<f32> = match self.cfg.scoring {
                Scoring::Gating => mean_gates.clone(),
                Scoring::PruningMask => {
                    self.increase(&x, &y, &g_x, &gates, &joined, loss_v, Ablation::Remove)?
                }
                Scoring::PruningFisher => {
                    let bt = (b * t) as f32;
                    joined
                        .iter()
                        .zip(&grads)
                        .map(|(peer, (_, grad))| {
                            let f = peer.var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                            let per_seq = t * self.cfg.model.output_dim;
                            let mut sum = 0f32;
                            for s in 0..b {
                                let r = s * per_seq..(s + 1) * per_seq;
                                // grad_fj = g_j ⊙ ∂L/∂G, so grad_fj·f_j = ∂L/∂G_b · g_j f_j;
                                // times b·t undoes the mean over tokens to get ∂L_b.
                                let d: f32 =
                                    grad[r.clone()].iter().zip(&f[r]).map(|(g, v)| g * v).sum::<f32>() * bt;
                                sum += d * d;
                            }
                            Ok(sum / bt)
                        })
                        .collect::<Result<Vec<f32>, NucleusError>>()?
                }
            };
            self.optimise(&store)?;
            let mut observed: Vec<(u16, f32)> =
                joined.iter().zip(&observed_joined).map(|(p, o)| (p.uid, *o)).collect();
            observed.extend(failed.iter().map(|(u, _)| (*u, 0.0)));
            StepReport {
                loss: loss_v,
                distill_loss: distill_v,
                mode: JoinMode::Gated(joined.len()),
                grads,
                gates: joined.iter().zip(&mean_gates).map(|(p, g)| (p.uid, *g)).collect(),
                observed,
                failed: failed.clone(),
            }
        };
        self.update_scores(&report, &joined, &failed);
        self.steps += 1;
        Ok(report)
    }

    fn optimise(&mut self, store: &candle_core::backprop::GradStore) -> Result<(), NucleusError> {
        let norm = grad_norm(store, &self.opt.vars)?;
        if !norm.is_finite() {
            return Err(NucleusError::GradientNorm { norm });
        }
        self.revision += 1;
        self.opt.step(store, clip_factor(norm, self.cfg.grad_clip))?;
        Ok(())
    }

    fn update_scores(&mut self, report: &StepReport, joined: &[Joined], failed: &[(u16, FailReason)]) {
        let a = self.cfg.smoothing;
        for (uid, obs) in &report.observed {
            let i = usize::from(*uid);
            if i < self.cfg.slots && obs.is_finite() {
                self.scores[i] = (1.0 - a) * self.scores[i] + a * obs;
                self.seen[i] = true;
            }
        }
        let f = self.cfg.fail_smoothing;
        for p in joined {
            let i = usize::from(p.uid);
            self.fail_rate[i] *= 1.0 - f;
        }
        for (uid, _) in failed {
            let i = usize::from(*uid);
            if i < self.cfg.slots {
                self.fail_rate[i] = (1.0 - f) * self.fail_rate[i] + f;
                // A failed peer earns nothing this step under every scorer.
                if report.mode == JoinMode::Student {
                    self.scores[i] *= 1.0 - a;
                    self.seen[i] = true;
                }
            }
        }
    }

    /// Evaluation forward (no noise, no update): the loss and, when peers answered, the pieces
    /// to ablate them.
    fn eval(
        &self,
        batch: &Batch,
        responses: &[(u16, Option<Vec<f32>>)],
    ) -> Result<(f32, Option<EvalParts>), NucleusError> {
        self.check_tokens(&batch.tokens, batch.batch, batch.seq)?;
        let x = token_tensor(&batch.tokens, batch.batch, batch.seq, &self.device)?;
        let y = token_tensor(&batch.targets, batch.batch, batch.seq, &self.device)?;
        let (joined, _) = self.accept(batch, responses)?;
        if joined.is_empty() {
            let (_, logits) = self.offline_forward(&x)?;
            return Ok((next_token_loss(&logits, &y)?.to_scalar::<f32>()?, None));
        }
        let gates = self.gate_weights(&x, &joined, None)?;
        let g_x = Self::join(&gates, &joined)?;
        let (_, logits) = self.local.forward(&x, &g_x)?;
        let loss = next_token_loss(&logits, &y)?.to_scalar::<f32>()?;
        Ok((loss, Some((x, y, g_x, gates, joined))))
    }

    /// Mean next-byte loss (nats) on `batch` without updating anything: peers joined by the
    /// clean gate, or the student standing in when no response is usable.
    pub fn held_out_loss(
        &self,
        batch: &Batch,
        responses: &[(u16, Option<Vec<f32>>)],
    ) -> Result<f32, NucleusError> {
        Ok(self.eval(batch, responses)?.0)
    }

    /// Held-out loss of f_i fed by the student only (the offline model), whatever peers exist.
    pub fn student_loss(&self, batch: &Batch) -> Result<f32, NucleusError> {
        self.check_tokens(&batch.tokens, batch.batch, batch.seq)?;
        let x = token_tensor(&batch.tokens, batch.batch, batch.seq, &self.device)?;
        let y = token_tensor(&batch.targets, batch.batch, batch.seq, &self.device)?;
        let (_, logits) = self.offline_forward(&x)?;
        Ok(next_token_loss(&logits, &y)?.to_scalar::<f32>()?)
    }

    /// Loss of f_i on the batch with each joined peer's term changed in G, minus the full
    /// loss: removed (`Ablation::Remove`), or its answers shuffled between the batch's
    /// sequences (`Ablation::Shuffle`: sequence b reads the answer to sequence b+1,
    /// cyclically; with one sequence there is nothing to shuffle with, and the term is removed).
    #[allow(clippy::too_many_arguments)]
    fn increase(
        &self,
        x: &Tensor,
        y: &Tensor,
        g_x: &Tensor,
        gates: &Tensor,
        joined: &[Joined],
        full_loss: f32,
        how: Ablation,
    ) -> Result<Vec<f32>, NucleusError> {
        let b = gates.dim(0)?;
        let rolled: Vec<u32> = (0..b as u32).map(|s| (s + 1) % b as u32).collect();
        let rolled = Tensor::from_vec(rolled, b, &self.device)?;
        let shuffle = how == Ablation::Shuffle && b >= 2;
        let mut out = Vec::with_capacity(joined.len());
        for (j, peer) in joined.iter().enumerate() {
            let g_j = gates.narrow(1, j, 1)?.reshape((b, 1, 1))?.detach();
            let f_j = peer.var.as_tensor().detach();
            // G with f_j's term replaced: by nothing, or by the shuffled answers.
            let replacement = if shuffle { (f_j.index_select(&rolled, 0)? - &f_j)? } else { f_j.neg()? };
            let changed = (g_x.detach() + replacement.broadcast_mul(&g_j)?)?;
            let (_, logits) = self.local.forward(x, &changed)?;
            let loss = next_token_loss(&logits, y)?.to_scalar::<f32>()?;
            out.push(loss - full_loss);
        }
        Ok(out)
    }

    /// What each usable uid's answers are worth to f_i on `batch` (eq. 2 made empirical): the
    /// increase of the loss when its answers no longer match the inputs they answer, by
    /// shuffling them between the batch's sequences. Failed uids get 0. Nothing is updated.
    ///
    /// Why shuffled rather than removed (the printed eq. 2 removes the peer): removing a term
    /// changes the scale and spread of G(x) that f_i was trained on, so it costs loss even for
    /// a peer that answers pure noise; f_i is calibrated to its presence. Shuffled answers keep
    /// their distribution and lose only what they say about this input, so a noise peer, or
    /// one that answers the same thing whatever it is asked, is worth 0 in expectation, and an
    /// informative one is worth the information (permutation importance).
    pub fn ablation(
        &self,
        batch: &Batch,
        responses: &[(u16, Option<Vec<f32>>)],
    ) -> Result<Vec<(u16, f32)>, NucleusError> {
        let (loss, parts) = self.eval(batch, responses)?;
        let mut out: Vec<(u16, f32)> = Vec::new();
        if let Some((x, y, g_x, gates, joined)) = parts {
            let inc = self.increase(&x, &y, &g_x, &gates, &joined, loss, Ablation::Shuffle)?;
            out.extend(joined.iter().map(|p| p.uid).zip(inc));
        }
        for (uid, _) in responses {
            if !out.iter().any(|(u, _)| u == uid) {
                out.push((*uid, 0.0));
            }
        }
        Ok(out)
    }

    /// Smoothed scores w_ij of every observed uid, negatives clipped to 0, normalised to sum to
    /// 1 (empty when nothing scored above 0): ready for `set_weights`.
    pub fn weights(&self) -> Vec<(u16, f32)> {
        let raw: Vec<(u16, f32)> = (0..self.cfg.slots)
            .filter(|&i| self.seen[i])
            .map(|i| (i as u16, self.scores[i].max(0.0)))
            .collect();
        let sum: f32 = raw.iter().map(|(_, w)| w).sum();
        if !(sum > 0.0 && sum.is_finite()) {
            return Vec::new();
        }
        raw.into_iter().filter(|(_, w)| *w > 0.0).map(|(u, w)| (u, w / sum)).collect()
    }

    /// Raw smoothed score of a uid (before clipping and normalisation).
    pub fn score(&self, uid: u16) -> Option<f32> {
        let i = usize::from(uid);
        (i < self.cfg.slots && self.seen[i]).then(|| self.scores[i])
    }
}

fn named_vars(varmap: &VarMap, prefix: &str) -> Result<Vec<(String, Var)>, NucleusError> {
    let data = varmap.data().lock().map_err(|_| NucleusError::Config("variable map lock poisoned".into()))?;
    let mut v: Vec<(String, Var)> =
        data.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn batch(seed: u8) -> Batch {
        let tokens: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(seed).wrapping_add(7)).collect();
        let targets: Vec<u8> = tokens.iter().map(|t| t.wrapping_add(1)).collect();
        Batch::new(tokens, targets, 2, 32).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn route_picks_at_most_k_distinct_known_candidates(
            candidates in proptest::collection::vec(0u16..12, 0..20),
            seed in 0u8..255,
        ) {
            let mut n = Nucleus::new(NucleusConfig::tiny(u64::from(seed))).unwrap();
            let r = n.route(&batch(seed), &candidates);
            let known: Vec<u16> = candidates.iter().copied().filter(|c| *c < 8).collect();
            let mut distinct = known.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(r.len(), distinct.len().min(2));
            prop_assert!(r.iter().all(|u| known.contains(u)));
            let mut d = r.clone();
            d.sort();
            d.dedup();
            prop_assert_eq!(d.len(), r.len());
        }

        #[test]
        fn weights_are_a_normalised_row(obs in proptest::collection::vec(-1f32..1.0, 1..8)) {
            let mut n = Nucleus::new(NucleusConfig::tiny(0)).unwrap();
            for (i, o) in obs.iter().enumerate() {
                n.scores[i] = *o;
                n.seen[i] = true;
            }
            let w = n.weights();
            let sum: f32 = w.iter().map(|(_, w)| w).sum();
            if obs.iter().any(|o| *o > 0.0) {
                prop_assert!((sum - 1.0).abs() < 1e-5);
                prop_assert!(w.iter().all(|(u, w)| *w > 0.0 && obs[usize::from(*u)] > 0.0));
            } else {
                prop_assert!(w.is_empty());
            }
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut c = NucleusConfig::tiny(0);
        c.student.output_dim += 1;
        assert!(matches!(Nucleus::new(c), Err(NucleusError::Config(_))));
        let mut c = NucleusConfig::tiny(0);
        c.model.heads = 3;
        assert!(Nucleus::new(c).is_err());
        let mut c = NucleusConfig::tiny(0);
        c.smoothing = 0.0;
        assert!(matches!(Nucleus::new(c), Err(NucleusError::Parameter { name: "smoothing", .. })));
        let mut c = NucleusConfig::tiny(0);
        c.weight_decay = -1.0;
        let e = Nucleus::new(c).err().expect("a negative weight decay is refused");
        assert_eq!(e.to_string(), "configuration: weight_decay is -1, must be finite and >= 0");
    }

    #[test]
    fn a_missing_checkpoint_names_its_path() {
        let dir = std::env::temp_dir().join(format!("agora-no-checkpoint-{}", std::process::id()));
        match Nucleus::load_checkpoint(&dir) {
            Err(NucleusError::Io { path, source }) => {
                assert!(path.starts_with(&dir), "{}", path.display());
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected an Io error naming the file, got {:?}", other.err()),
        }
    }

    #[test]
    fn same_seed_same_model() {
        let b = batch(3);
        let a = Nucleus::new(NucleusConfig::tiny(4)).unwrap();
        let c = Nucleus::new(NucleusConfig::tiny(4)).unwrap();
        let d = Nucleus::new(NucleusConfig::tiny(5)).unwrap();
        let out = |n: &Nucleus| n.serve_forward(&b.tokens, 2, 32).unwrap();
        assert_eq!(out(&a), out(&c));
        assert_ne!(out(&a), out(&d));
        assert_eq!(out(&a).len(), 2 * 32 * 16);
    }
}
