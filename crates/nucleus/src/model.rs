//! The transformers: the local model f_i (which reads its own bytes plus the joined peer
//! representation G(x), eq. 9) and the distillation student dist(x) (which reads bytes only).
//!
//! Both are pre-LayerNorm GPT-style decoders over bytes with learned positions. The
//! representation served to the network is a linear projection of the final hidden state to
//! `output_dim`; f_i's next-byte logits are read from that representation, so what a peer
//! serves is exactly what carries its predictions.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::{kernels, NucleusError};

/// Shape of one transformer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Vocabulary: 256, one token per byte.
    pub vocab: usize,
    /// Hidden width.
    pub dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads; must divide `dim`.
    pub heads: usize,
    /// Longest sequence the model reads.
    pub context: usize,
    /// Width of the network-standard representation `[batch, seq, output_dim]` (market paper
    /// §6); every peer must agree on it.
    pub output_dim: usize,
}

impl Default for ModelConfig {
    /// Trains at a few steps per second on 2 cores (batch 16, see `bench`).
    fn default() -> Self {
        ModelConfig { vocab: 256, dim: 128, depth: 2, heads: 4, context: 64, output_dim: 64 }
    }
}

impl ModelConfig {
    /// Checks that the shapes can build a model; `what` names it in the error ("model", "student").
    pub fn validate(&self, what: &str) -> Result<(), NucleusError> {
        let bad = |m: String| Err(NucleusError::Config(format!("{what}: {m}")));
        if self.vocab != 256 {
            return bad(format!("vocab is {}, the byte tokenizer needs 256", self.vocab));
        }
        if self.dim == 0 || self.depth == 0 || self.context == 0 || self.output_dim == 0 {
            return bad("dim, depth, context and output_dim must be positive".into());
        }
        if self.heads == 0 || !self.dim.is_multiple_of(self.heads) {
            return bad(format!("heads {} must divide dim {}", self.heads, self.dim));
        }
        Ok(())
    }
}

/// LayerNorm with learned gain and bias, on the fused kernel ([`kernels::layer_norm`]).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    /// Unit gain and zero bias of width `dim`, registered in `vb` as `weight` and `bias`.
    pub fn new(dim: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        kernels::layer_norm(x, &self.weight, &self.bias, 1e-5)
    }
}

/// A linear layer over the last dimension, as one fused autograd node ([`kernels::linear`]).
fn lin(layer: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    match layer.bias() {
        Some(bias) => kernels::linear(x, layer.weight(), bias),
        None => layer.forward(x),
    }
}

/// [`lin`] then x·σ(1.702x), fused when the layer has a bias.
fn lin_gelu(layer: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    match layer.bias() {
        Some(bias) => kernels::linear_gelu(x, layer.weight(), bias),
        None => kernels::quick_gelu(&layer.forward(x)?),
    }
}

/// One pre-LN block: causal self-attention then a 4x GELU MLP, each with a residual. The GELU is
/// x·σ(1.702x) (Hendrycks & Gimpel's sigmoid form, as in CLIP): one exp per element.
#[derive(Clone, Debug)]
struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
}

impl Block {
    fn new(dim: usize, heads: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Block {
            ln1: LayerNorm::new(dim, vb.pp("ln1"))?,
            qkv: candle_nn::linear(dim, 3 * dim, vb.pp("qkv"))?,
            proj: candle_nn::linear(dim, dim, vb.pp("proj"))?,
            ln2: LayerNorm::new(dim, vb.pp("ln2"))?,
            fc1: candle_nn::linear(dim, 4 * dim, vb.pp("fc1"))?,
            fc2: candle_nn::linear(4 * dim, dim, vb.pp("fc2"))?,
            heads,
        })
    }

    /// x: [b, t, d].
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let qkv = lin(&self.qkv, &self.ln1.forward(x)?)?;
        let y = kernels::causal_attention(&qkv, self.heads)?;
        let x = (x + lin(&self.proj, &y)?)?;
        let h = lin_gelu(&self.fc1, &self.ln2.forward(&x)?)?;
        x + lin(&self.fc2, &h)?
    }
}

/// Bytes -> hidden states -> representation `[b, t, output_dim]`; the trunk shared by f_i and
/// the student.
#[derive(Clone, Debug)]
pub struct Encoder {
    tok: Embedding,
    pos: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    rep: Linear,
    /// The shapes it was built with.
    pub cfg: ModelConfig,
}

/// Additive causal mask [t, t]: -1e9 above the diagonal (the composite form of
/// [`kernels::causal_attention`], kept for its tests).
#[cfg(test)]
pub(crate) fn causal_mask(t: usize, device: &Device) -> candle_core::Result<Tensor> {
    let m: Vec<f32> = (0..t).flat_map(|i| (0..t).map(move |j| if j > i { -1e9 } else { 0.0 })).collect();
    Tensor::from_vec(m, (t, t), device)
}

/// Bytes as a `[b, t]` u32 tensor.
pub fn token_tensor(tokens: &[u8], b: usize, t: usize, device: &Device) -> candle_core::Result<Tensor> {
    let ids: Vec<u32> = tokens.iter().map(|&x| u32::from(x)).collect();
    Tensor::from_vec(ids, (b, t), device)
}

impl Encoder {
    /// A fresh encoder of `cfg`'s shapes with its variables registered in `vb` (initialised by the caller).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(cfg.dim, cfg.heads, vb.pp(format!("blocks.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Encoder {
            tok: candle_nn::embedding(cfg.vocab, cfg.dim, vb.pp("tok"))?,
            pos: vb.get((cfg.context, cfg.dim), "pos")?,
            blocks,
            ln_f: LayerNorm::new(cfg.dim, vb.pp("ln_f"))?,
            rep: candle_nn::linear(cfg.dim, cfg.output_dim, vb.pp("rep"))?,
            cfg: cfg.clone(),
        })
    }

    /// Token and position embeddings of `tokens` [b, t] u32 -> [b, t, dim].
    pub fn embed(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (_, t) = tokens.dims2()?;
        kernels::add_bias(&self.tok.forward(tokens)?, &self.pos.narrow(0, 0, t)?)
    }

    /// From embedded input [b, t, dim] to the representation [b, t, output_dim].
    pub fn forward_embedded(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        lin(&self.rep, &self.ln_f.forward(&h)?)
    }

    /// dist(x): bytes [b, t] -> representation [b, t, output_dim].
    pub fn forward(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_embedded(&self.embed(tokens)?)
    }
}

/// The network standard's basis: a fixed `[vocab, output_dim]` matrix of ±1, the same for
/// every peer, onto which a peer projects its next-byte distribution to make the
/// representation it serves. Entry (v, d) is +1 when the top bit of
/// `splitmix64(STANDARD_BASIS_SEED + v * output_dim + d)` is set, else -1: a few lines in any
/// language (docs/python-peer.md has them in Python).
///
/// Why: eq. (10) sums the neighbours' outputs. Were each peer to serve its own learned hidden
/// features, the sum would add vectors written in unrelated coordinate systems, which no gate
/// can make sense of when the routed set changes from batch to batch. Projected predictive
/// distributions share one coordinate system, so G(x) is (a sketch of) a mixture of the
/// neighbours' predictions and a better-trained neighbour is plainly more useful.
pub fn standard_basis(vocab: usize, output_dim: usize, device: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_vec(standard_basis_values(vocab, output_dim), (vocab, output_dim), device)
}

/// [`standard_basis`] as plain row-major values (`vocab` rows of `output_dim`).
pub fn standard_basis_values(vocab: usize, output_dim: usize) -> Vec<f32> {
    (0..(vocab * output_dim) as u64)
        .map(|i| if splitmix64(STANDARD_BASIS_SEED.wrapping_add(i)) >> 63 == 1 { 1.0 } else { -1.0 })
        .collect()
}

/// Part of the network standard: changing it makes peers unintelligible to each other.
pub const STANDARD_BASIS_SEED: u64 = 0x6167_6f72_615f_7631; // "agora_v1"

/// Steele, Lea and Flood's SplitMix64 output function.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The local model f_i of eq. (9): f_i(x, G(x)). The joined peer representation enters through
/// a linear map added to the byte embeddings, so a peer with no useful neighbours still learns
/// from its own bytes. What it serves is its next-byte distribution in the network standard
/// ([`standard_basis`]).
#[derive(Clone, Debug)]
pub struct LocalModel {
    /// The byte trunk; the joined representation G(x) is added to its input.
    pub encoder: Encoder,
    gate_in: Linear,
    head: Linear,
    basis: Tensor,
}

impl LocalModel {
    /// A fresh f_i of `cfg`'s shapes with its variables registered in `vb` (initialised by the caller).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(LocalModel {
            encoder: Encoder::new(cfg, vb.clone())?,
            gate_in: candle_nn::linear(cfg.output_dim, cfg.dim, vb.pp("gate_in"))?,
            head: candle_nn::linear(cfg.output_dim, cfg.vocab, vb.pp("head"))?,
            basis: standard_basis(cfg.vocab, cfg.output_dim, vb.device())?,
        })
    }

    /// tokens [b, t] u32, joined [b, t, output_dim] -> (representation [b, t, output_dim],
    /// logits [b, t, vocab]).
    pub fn forward(&self, tokens: &Tensor, joined: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let x = self.encoder.embed(tokens)?.broadcast_add(&lin(&self.gate_in, joined)?)?;
        let hidden = self.encoder.forward_embedded(&x)?;
        let logits = lin(&self.head, &hidden)?;
        let (b, t, v) = logits.dims3()?;
        let probs = kernels::softmax_last_dim(&logits.reshape((b * t, v))?)?;
        let rep = probs.matmul(&self.basis)?.reshape((b, t, self.basis.dim(1)?))?;
        Ok((rep, logits))
    }
}

/// Mean next-byte cross-entropy (nats) of logits [b, t, vocab] against targets [b, t] u32.
pub fn next_token_loss(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    kernels::cross_entropy(&logits.reshape((b * t, v))?, &targets.reshape(b * t)?)
}

/// Mean over positions of KL(p_teacher || p_student) between two logit tensors [b, t, vocab];
/// the teacher side is detached so only the student side learns (eq. 11).
pub fn kl_to_teacher(student_logits: &Tensor, teacher_logits: &Tensor) -> candle_core::Result<Tensor> {
    let (b, t, v) = student_logits.dims3()?;
    // Detached, not merely given no gradient: candle's backward expects a gradient for every
    // tracked node it walks through, and the teacher side must not be walked.
    let teacher = teacher_logits.detach().reshape((b * t, v))?;
    kernels::kl_divergence(&student_logits.reshape((b * t, v))?, &teacher)
}

/// A zero tensor [b, t, output_dim] (the joined input when a model runs without peers).
pub fn zeros_rep(b: usize, t: usize, cfg: &ModelConfig, device: &Device) -> candle_core::Result<Tensor> {
    Tensor::zeros((b, t, cfg.output_dim), DType::F32, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_basis_is_pinned_and_tells_bytes_apart() {
        let b = standard_basis(256, 32, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        // Pinned: other implementations (docs/python-peer.md) must produce the same matrix.
        assert_eq!(&b[0][..8], &[1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0]);
        assert!(b.iter().flatten().all(|v| *v == 1.0 || *v == -1.0));
        let mut rows: Vec<&Vec<f32>> = b.iter().collect();
        rows.sort_by(|x, y| x.partial_cmp(y).unwrap());
        rows.dedup();
        assert_eq!(rows.len(), 256, "every byte has its own direction");
    }
}
