use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a localnet run or its report failed.
#[derive(Debug, Error)]
pub enum LocalnetError {
    /// The scenario is not one that can run (a role without what it needs, a bad TOML field).
    #[error("scenario: {0}")]
    Scenario(String),
    /// A file or directory of the run could not be created, written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory that could not be used.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A peer's dataset could not be found or loaded.
    #[error("dataset {topic:?}: {reason}")]
    Dataset {
        /// The dataset as the scenario names it.
        topic: String,
        /// Why.
        reason: String,
    },
    /// A process (a node, a validator, a peer) could not be started.
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        /// The executable that would not start.
        program: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A node did not open its RPC port in time.
    #[error("the node did not start listening within {seconds} s (see {})", log.display())]
    NodeNotListening {
        /// How long it was given.
        seconds: u64,
        /// Its log, which says why.
        log: PathBuf,
    },
    /// A node stopped before the run ended.
    #[error("a node exited during the run (see {})", log.display())]
    NodeExited {
        /// Its log, which says why.
        log: PathBuf,
    },
    /// The tokio runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// No loopback port could be bound for a node, a validator or an axon.
    #[error("no free loopback port: {0}")]
    NoFreePort(std::io::Error),
    /// A peer's fault-injecting proxy could not start.
    #[error("fault proxy for peer {peer}: {source}")]
    FaultProxy {
        /// The peer's name.
        peer: String,
        /// Why.
        source: wire::chaos::ChaosError,
    },
    /// A peer could not be started or pretrained.
    #[error("peer {name}: {reason}")]
    Peer {
        /// The peer's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The chain refused or could not take a transaction (registration, stake, weights).
    #[error("chain: {0}")]
    Chain(#[from] peer::ChainError),
    /// A peer's status log or final report could not be read.
    #[error("peer file: {0}")]
    PeerFile(#[from] peer::files::FileError),
    /// A peer's wallet could not be created or read.
    #[error("wallet: {0}")]
    Wallet(#[from] wallet::WalletError),
    /// A file of the run directory does not parse.
    #[error("{path}: line {line}: {reason}")]
    Parse {
        /// The file that does not parse.
        path: PathBuf,
        /// The line (1-based; 0 when unknown).
        line: u64,
        /// What was wrong.
        reason: String,
    },
    /// The run directory's files do not fit together (a report naming an unknown uid, no samples).
    #[error("report: {0}")]
    Report(String),
    /// The independent judge could not measure a peer.
    #[error("judge: {0}")]
    Judge(String),
    /// A model (the judge's or an in-process peer's) failed.
    #[error("model: {0}")]
    Model(#[from] nucleus::NucleusError),
    /// An in-process peer's run failed.
    #[error("peer: {0}")]
    Run(#[from] peer::run::RunError),
    /// Validators finalized different blocks at one height: consensus is broken.
    #[error("the validators disagree at finalized height {height}: {seen}")]
    Fork {
        /// The finalized height at which they differ.
        height: u64,
        /// Each validator's block hash there.
        seen: String,
    },
    /// The user pressed Ctrl-C; the processes were stopped.
    #[error("interrupted (Ctrl-C)")]
    Interrupted,
}

impl LocalnetError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> LocalnetError {
        LocalnetError::Io { path: path.to_path_buf(), source }
    }
}
