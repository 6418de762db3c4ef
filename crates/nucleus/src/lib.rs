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

/// Everything that can go wrong in the nucleus. Shape and value errors name what was expected
/// and what was found, so a peer can answer a bad request with the reason.
#[derive(Debug, thiserror::Error)]
pub enum NucleusError {
    /// A configuration that cannot build a model or a nucleus (the message names the field).
    #[error("configuration: {0}")]
    Config(String),
    /// A buffer whose length does not fit its shape: a representation of the wrong width, a
    /// peer's response or gradient that is not `batch x seq x output_dim`.
    #[error("shape: {what} has {found} values, expected {expected}")]
    Shape {
        /// The buffer, in the papers' terms ("remote gradient", "representation").
        what: &'static str,
        /// The length its shape needs.
        expected: usize,
        /// The length it has.
        found: usize,
    },
    /// A batch with no rows or no positions.
    #[error("shape: a {batch}x{seq} batch is empty")]
    EmptyBatch {
        /// Rows asked for.
        batch: usize,
        /// Positions per row asked for.
        seq: usize,
    },
    /// Rows longer than the context the model was built for (its positional table ends there).
    #[error("shape: {seq} positions, more than the model's context of {context}")]
    Context {
        /// Positions per row asked for.
        seq: usize,
        /// The model's context length.
        context: usize,
    },
    /// A NaN or infinity where a finite number must be: in a peer's response or gradient it
    /// would poison the join and the model, so the whole buffer is refused.
    #[error("non-finite value: {what} value {index} is {value}")]
    NonFinite {
        /// The buffer ("representation", "remote gradient").
        what: &'static str,
        /// The first non-finite element's index.
        index: usize,
        /// Its value (NaN or an infinity).
        value: f32,
    },
    /// The gradient of a training step overflowed: the step is skipped, the model unchanged.
    #[error("non-finite value: gradient norm {norm}; step skipped")]
    GradientNorm {
        /// The global L2 norm of the step's gradients.
        norm: f64,
    },
    /// Text or a dataset that cannot be used.
    #[error("data: {0}")]
    Data(#[from] DataError),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A configuration value out of its range: the field, its value and what it must be.
    #[error("configuration: {name} is {value}, must be {expected}")]
    Parameter {
        /// The configuration field.
        name: &'static str,
        /// Its value, as given.
        value: String,
        /// The range or form it must have.
        expected: &'static str,
    },
    /// A checkpoint or export that cannot be written or read back.
    #[error("checkpoint {}: {source}", path.display())]
    Checkpoint {
        /// The file concerned (the state or config JSON, or the optimizer tensors).
        path: std::path::PathBuf,
        /// What was wrong with it.
        source: CheckpointError,
    },
    /// candle refused a tensor operation (or could not read a safetensors file).
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Why text or a dataset cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Too few bytes for what was asked: a text to score, a prompt, a corpus part to sample
    /// windows of the context length from.
    #[error("{what} has {found} bytes, needs at least {needed}")]
    TooShort {
        /// The text ("prompt", "corpus science Train part").
        what: String,
        /// Its length in bytes.
        found: usize,
        /// The fewest bytes that work.
        needed: usize,
    },
    /// A corpus with too few entries to hold one in every few out for the held-out and test
    /// parts (the paper's dataset D_i needs its own validation split).
    #[error("corpus {corpus}: {entries} entries, need at least {needed} to hold some out")]
    TooFewEntries {
        /// The corpus's name.
        corpus: String,
        /// Entries it has.
        entries: usize,
        /// Entries it needs.
        needed: usize,
    },
    /// A topic that is not one of [`BUILTIN_TOPICS`].
    #[error("no built-in topic {topic:?}; have {BUILTIN_TOPICS:?}")]
    NoBuiltinTopic {
        /// The topic asked for.
        topic: String,
    },
    /// A topic found neither in the fortunes directories nor built in.
    #[error(
        "no fortunes topic {topic:?} in {searched:?} and no built-in one (built in: {BUILTIN_TOPICS:?}); \
         install Debian's `fortunes` package, set AGORA_FORTUNES_DIR, or give a path"
    )]
    NoTopic {
        /// The topic asked for.
        topic: String,
        /// The directories searched, in order.
        searched: Vec<std::path::PathBuf>,
    },
    /// A `+`-separated dataset name with an empty part (`science+`).
    #[error("dataset {spec:?} has an empty part")]
    EmptyPart {
        /// The dataset name as given.
        spec: String,
    },
}

/// What is wrong with a checkpoint or export file (the file is in [`NucleusError::Checkpoint`]).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The JSON does not parse as the expected state, or the state does not serialise.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Written by a build with another checkpoint format.
    #[error("format version {found}, this build reads {expected}")]
    Version {
        /// The version this build reads.
        expected: u32,
        /// The version in the file.
        found: u32,
    },
    /// A per-slot score vector whose length is not the configuration's slot count.
    #[error("{vector} has {found} slots, the configuration {expected}")]
    Slots {
        /// The vector ("scores", "seen", "fail_rate").
        vector: &'static str,
        /// The configuration's slot count.
        expected: usize,
        /// The vector's length.
        found: usize,
    },
    /// The optimizer state has no moment for one of the model's variables.
    #[error("optimizer state lacks {name}")]
    MissingMoment {
        /// The moment's tensor name (`m.<variable>` or `v.<variable>`).
        name: String,
    },
    /// An optimizer moment whose shape is not its variable's (a checkpoint of another model).
    #[error("optimizer state {name} has shape {found:?}, the variable {expected:?}")]
    MomentShape {
        /// The moment's tensor name.
        name: String,
        /// The variable's shape.
        expected: Vec<usize>,
        /// The moment's shape in the file.
        found: Vec<usize>,
    },
    /// The saved position in the sampling RNG's stream is not an integer.
    #[error("rng position {found:?} is not an integer")]
    RngPosition {
        /// The text found.
        found: String,
    },
}
