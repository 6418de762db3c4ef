//! The gate G that routes each batch to the top k peers.

use super::*;

/// Noisy top-k gate (Shazeer et al. 2017, eq. 3-5): H(x) = x̄·W_g + ε·softplus(x̄·W_noise),
/// with x̄ the mean byte embedding of the sequence; keep the top k, softmax over the kept.
#[derive(Clone, Debug)]
pub(super) struct Gate {
    emb: Embedding,
    w_g: Linear,
    w_noise: Linear,
}

impl Gate {
    pub(super) fn new(dim: usize, slots: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Gate {
            emb: candle_nn::embedding(256, dim, vb.pp("emb"))?,
            w_g: candle_nn::linear_no_bias(dim, slots, vb.pp("w_g"))?,
            w_noise: candle_nn::linear_no_bias(dim, slots, vb.pp("w_noise"))?,
        })
    }

    /// tokens [b, t] -> (clean logits [b, slots], noise scale [b, slots]).
    pub(super) fn forward(&self, tokens: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let xbar = self.emb.forward(tokens)?.mean(1)?;
        let clean = self.w_g.forward(&xbar)?;
        let raw = self.w_noise.forward(&xbar)?;
        // softplus, stable: relu(x) + ln(1 + e^{-|x|})
        let noise = (raw.relu()? + ((raw.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
        Ok((clean, noise))
    }
}
