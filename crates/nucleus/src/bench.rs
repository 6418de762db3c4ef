//! `agora bench train`: training throughput of the local model f_i, in tokens per second.
//!
//! What is timed: forward, backward, global-norm clipping and an AdamW step of f_i alone (the
//! joined peer input is zeros), on byte batches of the built-in `food` sample. That is the
//! same work `bench/train_vs_torch.py` times in PyTorch for the ratio.

use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::{Corpus, Split};
use crate::model::{next_token_loss, token_tensor, zeros_rep, LocalModel};
use crate::optim::{clip_factor, grad_norm, AdamW};
use crate::{NucleusConfig, NucleusError};

/// The measurement, as printed by the `bench_train` example with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct TrainBench {
    /// Training throughput: batch·context tokens per step over the timed steps' wall time.
    pub tokens_per_s: f64,
    /// Timed steps (the 2 warm-up steps are not counted).
    pub steps: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Bytes per sequence (the model's full context).
    pub context: usize,
    /// The model's hidden width.
    pub dim: usize,
    /// Its transformer blocks.
    pub depth: usize,
    /// Its attention heads.
    pub heads: usize,
    /// Width of the representation it serves to the network.
    pub output_dim: usize,
    /// Trainable parameters of f_i.
    pub parameters: usize,
    /// Wall time of the timed steps.
    pub seconds: f64,
    /// Next-byte loss (nats) of the first timed step: with the last, shows the model learned.
    pub first_loss: f32,
    /// Next-byte loss (nats) of the last timed step.
    pub last_loss: f32,
}

/// Trains f_i of `cfg.model` for `steps` timed steps (after 2 untimed warm-up steps) at batch
/// `cfg.batch` and full context; returns tokens (batch·context per step) per second.
pub fn train_tokens_per_s(cfg: &NucleusConfig, steps: usize) -> Result<TrainBench, NucleusError> {
    cfg.validate()?;
    let m = &cfg.model;
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let model = LocalModel::new(m, vb)?;
    // The nucleus's own initialisation (GPT-2 style, seeded), as the PyTorch script uses.
    crate::nucleus::init_vars(&varmap, cfg.seed)?;
    let vars: Vec<_> = {
        let data =
            varmap.data().lock().map_err(|_| NucleusError::Config("variable map lock poisoned".into()))?;
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let parameters = vars.iter().map(|(_, v)| v.as_tensor().elem_count()).sum();
    let mut opt = AdamW::new(vars, cfg.lr, cfg.weight_decay)?;
    let corpus = Corpus::builtin("food")?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let joined = zeros_rep(cfg.batch, m.context, m, &device)?;
    let mut losses = Vec::with_capacity(steps);
    let mut start = Instant::now();
    for i in 0..steps + 2 {
        if i == 2 {
            start = Instant::now();
        }
        let batch = corpus.sample(Split::Train, cfg.batch, m.context, &mut rng)?;
        let x = token_tensor(&batch.tokens, batch.batch, batch.seq, &device)?;
        let y = token_tensor(&batch.targets, batch.batch, batch.seq, &device)?;
        let (_, logits) = model.forward(&x, &joined)?;
        let loss = next_token_loss(&logits, &y)?;
        let store = loss.backward()?;
        let clip = clip_factor(grad_norm(&store, &opt.vars)?, cfg.grad_clip);
        opt.step(&store, clip)?;
        if i >= 2 {
            losses.push(loss.to_scalar::<f32>()?);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let tokens = (steps * cfg.batch * m.context) as f64;
    Ok(TrainBench {
        tokens_per_s: tokens / seconds,
        steps,
        batch: cfg.batch,
        context: m.context,
        dim: m.dim,
        depth: m.depth,
        heads: m.heads,
        output_dim: m.output_dim,
        parameters,
        seconds,
        first_loss: losses.first().copied().unwrap_or(f32::NAN),
        last_loss: losses.last().copied().unwrap_or(f32::NAN),
    })
}
