//! The model presets a peer can run. Every preset speaks the same network-standard output
//! width and context, so peers of different sizes can join each other's gates.

use nucleus::{ModelConfig, NucleusConfig, Scoring};

/// Width of the representation every peer serves (`[batch, seq, OUTPUT_DIM]`).
pub const OUTPUT_DIM: usize = 32;
/// Bytes per sequence.
pub const CONTEXT: usize = 64;
/// Gate slots: uids `0..SLOTS` can be routed to.
pub const SLOTS: usize = 64;

/// How big a peer's local model is (a scenario file spells it `tiny`, `small` or `medium`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSize {
    /// For tests and the CI localnet: a step takes milliseconds.
    Tiny,
    /// The localnet default: eight of them train side by side on 2 cores.
    Small,
    /// Twice the width of small.
    Medium,
}

impl ModelSize {
    /// As `agora peer run --model-size` and a scenario file spell it.
    pub fn name(self) -> &'static str {
        match self {
            ModelSize::Tiny => "tiny",
            ModelSize::Small => "small",
            ModelSize::Medium => "medium",
        }
    }
}

/// The nucleus configuration of a preset, seeded.
pub fn nucleus_preset(size: ModelSize, seed: u64) -> NucleusConfig {
    let (dim, depth, heads) = match size {
        ModelSize::Tiny => (32, 1, 2),
        ModelSize::Small => (64, 2, 4),
        ModelSize::Medium => (128, 2, 4),
    };
    let model = ModelConfig { vocab: 256, dim, depth, heads, context: CONTEXT, output_dim: OUTPUT_DIM };
    let student = ModelConfig { dim: 32, depth: 1, heads: 2, ..model.clone() };
    NucleusConfig {
        model,
        student,
        slots: SLOTS,
        top_k: 3,
        // The gate's own running scores are only a guide here: the weights a peer submits come
        // from its scoring rounds (masking over every neighbour, see `run`), so the cheap Fisher
        // form saves one forward pass per neighbour per step.
        scoring: Scoring::PruningFisher,
        batch: if size == ModelSize::Tiny { 8 } else { 16 },
        seed,
        ..NucleusConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_speaks_the_same_output() {
        for size in [ModelSize::Tiny, ModelSize::Small, ModelSize::Medium] {
            let cfg = nucleus_preset(size, 3);
            cfg.validate().expect("preset validates");
            assert_eq!((cfg.model.output_dim, cfg.model.context), (OUTPUT_DIM, CONTEXT));
        }
    }
}
