//! Agora's learning half (issue 5): the machine learning of one peer, with no networking.
//!
//! Owns, in the market paper's terms (seed 000):
//! - the local model f_i over bytes and its dataset D_i ([`model`], [`data`]);
//! - the sparsely gated join G(x) = Σ_j g_j(x)·f_j(x) of the peers' responses (eq. 9-10, §7),
//!   with noisy top-k routing after Shazeer et al. 2017 ([`Nucleus::route`]);
//! - the loss gradient with respect to each peer's response, to send back, and the bounded,
//!   stake-weighted application of gradients other peers send us
//!   ([`Nucleus::apply_remote_gradient`]);
//! - the weight scores w_ij: the pruning score of eq. (3) (by masking or by its Fisher
//!   quadratic form) or the gating importance (§7), smoothed and row-normalised;
//! - the distillation student dist(x) trained with KL(dist(x), G(x)) (eq. 11, §8), which stands
//!   in for the network when peers are down and runs fully offline ([`Inference`]);
//! - checkpoints (safetensors + optimizer state) and the offline export.
//!
//! Assumes: the caller (the `peer` crate) does all networking, passes peers' responses as
//! plain `f32` buffers of shape `[batch, seq, output_dim]` row-major, and maps uids to gate
//! slots one-to-one (`uid < slots`). Every peer agrees on `output_dim` and the byte tokenizer.
//! Runs on the CPU with candle; numbers are f32.
//!
//! Speed: the training step's hot operations (linear layers, attention, LayerNorm, softmax,
//! cross-entropy) are fused kernels with hand-written backward passes ([`kernels`]); the
//! rest is candle.
//!
//! Threads: candle's matrix products and these kernels use RAYON_NUM_THREADS threads (default:
//! one per core), candle's element-wise operations a second pool of CANDLE_NUM_THREADS that
//! spins while it waits for its workers and fights the first one for the cores;
//! [`configure_threads`] turns that second pool off unless the user sized it. Processes that
//! share cores should set RAYON_NUM_THREADS=1.
//!
//! Memory: every candle operation allocates its output. Above glibc's (adaptive) mmap threshold
//! each of those is a fresh mapping, zeroed by the kernel and unmapped again when dropped;
//! processes that train should call [`keep_freed_memory`] first.

pub mod bench;
pub mod data;
pub mod kernels;
pub mod model;
mod nucleus;
pub mod optim;
pub mod standard;

pub use data::{Batch, Corpus, Split, BUILTIN_TOPICS};
pub use model::ModelConfig;
pub use nucleus::{FailReason, Inference, JoinMode, Nucleus, NucleusConfig, Scoring, StepReport};
pub use standard::StandardReader;

/// Settles candle's thread pools from the environment, once, at the start of `main` (before
/// any other thread exists):
/// - CANDLE_NUM_THREADS (candle's element-wise pool, which spins while it waits and fights the
///   rayon pool for the cores) becomes 1 unless the user set it;
/// - RAYON_NUM_THREADS (the pool of the matrix products and of [`kernels`]) is pinned to
///   candle's default, one per physical core, unless the user set it: unset, candle
///   recomputes that default from /proc on every matrix product.
///
/// Measured on 2 cores, default model: 11-12 K training tokens/s with neither set, 16-20 K
/// after this.
pub fn configure_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", candle_core::utils::get_num_threads().to_string());
    }
}

/// Tells the C allocator to serve large blocks from its heap and keep freed memory for reuse,
/// instead of mapping and unmapping pages for every tensor: page faults and page zeroing were
/// a third of a small model's step (measured: 200 steps of 4 tiny peers, 51 s before, 30 s
/// after). A no-op outside glibc. Call once, early, before threads start allocating.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Everything that can go wrong in the nucleus. Shape and value errors name what was expected.
#[derive(Debug, thiserror::Error)]
pub enum NucleusError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("shape: {0}")]
    Shape(String),
    #[error("non-finite value: {0}")]
    NonFinite(String),
    #[error("data: {0}")]
    Data(String),
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
    /// A configuration value out of its range: the field, its value and what it must be.
    #[error("configuration: {name} is {value}, must be {expected}")]
    Parameter { name: &'static str, value: String, expected: &'static str },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}
