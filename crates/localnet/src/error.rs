use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a localnet run or its report failed.
#[derive(Debug, Error)]
pub enum LocalnetError {
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("dataset {topic:?}: {reason}")]
    Dataset { topic: String, reason: String },
    #[error("cannot start {}: {source}", program.display())]
    Spawn { program: PathBuf, source: std::io::Error },
    #[error("the node did not start listening within {seconds} s (see {})", log.display())]
    NodeNotListening { seconds: u64, log: PathBuf },
    #[error("a node exited during the run (see {})", log.display())]
    NodeExited { log: PathBuf },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("no free loopback port: {0}")]
    NoFreePort(std::io::Error),
    #[error("fault proxy for peer {peer}: {source}")]
    FaultProxy { peer: String, source: wire::chaos::ChaosError },
    #[error("peer {name}: {reason}")]
    Peer { name: String, reason: String },
    #[error("chain: {0}")]
    Chain(#[from] peer::ChainError),
    #[error("peer file: {0}")]
    PeerFile(#[from] peer::files::FileError),
    #[error("wallet: {0}")]
    Wallet(#[from] wallet::WalletError),
    #[error("{path}: line {line}: {reason}")]
    Parse { path: PathBuf, line: u64, reason: String },
    #[error("report: {0}")]
    Report(String),
    #[error("judge: {0}")]
    Judge(String),
    #[error("model: {0}")]
    Model(#[from] nucleus::NucleusError),
    #[error("peer: {0}")]
    Run(#[from] peer::run::RunError),
    #[error("the validators disagree at finalized height {height}: {seen}")]
    Fork { height: u64, seen: String },
    #[error("interrupted (Ctrl-C)")]
    Interrupted,
}

impl LocalnetError {
    pub fn io(path: &Path, source: std::io::Error) -> LocalnetError {
        LocalnetError::Io { path: path.to_path_buf(), source }
    }
}
