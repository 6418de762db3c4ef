//! The chain of a run as several validators (`agora localnet --validators N`): N
//! `agora node --validator-key` processes on loopback, one chain ordered and finalized by the
//! consensus engine among them, instead of one node producing every block.
//!
//! Each validator gets a throwaway wallet (the same public password and cheap KDF as the
//! peers' wallets, [`crate::setup::PASSWORD`]) under `OUT/validators/`, a free loopback port
//! for its p2p address, its own data directory `OUT/chain/vI` and log `OUT/validator-I.log`.
//! The genesis names them all with equal power. At the end of a run [`agreement`] asks every
//! validator over JSON-RPC for its finalized head and the block at the lowest of them: a run
//! whose validators disagree is an error, never a report.

use crate::error::LocalnetError;
use crate::process::NodeProcess;
use crate::setup::PASSWORD;
use client::Client;
use ledger::{GenesisConfig, GenesisValidator, Hash, PublicKey};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use wallet::{KdfParams, Wallet, WordCount};

/// A validator of the run before it starts: its key file, public key and p2p address.
#[derive(Clone, Debug)]
pub struct ValidatorSpec {
    /// Its ed25519 key file.
    pub key_file: PathBuf,
    /// Its public key: its identity in the validator set.
    pub key: PublicKey,
    /// Where it listens for the other validators.
    pub p2p: SocketAddr,
}

/// The hotkey name each validator wallet uses.
const HOTKEY: &str = "validator";

/// Creates `n` validator wallets under `dir` (replacing earlier ones), each with a free
/// loopback p2p port.
pub fn create(dir: &Path, n: usize) -> Result<Vec<ValidatorSpec>, LocalnetError> {
    std::fs::create_dir_all(dir).map_err(|e| LocalnetError::io(dir, e))?;
    (0..n)
        .map(|i| {
            let (w, _) = Wallet::create(
                dir,
                &format!("v{i}"),
                PASSWORD,
                WordCount::Twelve,
                &KdfParams::INSECURE_FOR_TESTS,
                true,
            )?;
            w.create_hotkey(HOTKEY, WordCount::Twelve, true)?;
            Ok(ValidatorSpec {
                key_file: w.dir().join("hotkeys").join(HOTKEY),
                key: w.hotkey_public(HOTKEY)?,
                p2p: free_port()?,
            })
        })
        .collect()
}

/// The genesis with `validators` as its validator set (equal power).
pub fn with_validators(mut g: GenesisConfig, validators: &[ValidatorSpec]) -> GenesisConfig {
    g.validators = validators.iter().map(|v| GenesisValidator { key: v.key, power: 1 }).collect();
    g
}

/// The log of validator `i` under `out`.
pub fn log_path(out: &Path, i: usize) -> PathBuf {
    out.join(format!("validator-{i}.log"))
}

/// Starts every validator: `agora node --genesis G --data-dir OUT/chain/vI --block-time-ms T
/// --validator-key KEY --p2p-addr ADDR --peers KEY@ADDR,...` (the others), waiting for each
/// one's RPC address.
pub fn spawn(
    agora: &Path,
    genesis: &Path,
    out: &Path,
    validators: &[ValidatorSpec],
    block_time_ms: u64,
) -> Result<Vec<NodeProcess>, LocalnetError> {
    let mut nodes = Vec::with_capacity(validators.len());
    for (i, v) in validators.iter().enumerate() {
        let peers: Vec<String> = validators
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| format!("{}@{}", o.key, o.p2p))
            .collect();
        let args: Vec<std::ffi::OsString> = vec![
            "--genesis".into(),
            genesis.into(),
            "--data-dir".into(),
            out.join("chain").join(format!("v{i}")).into(),
            "--block-time-ms".into(),
            block_time_ms.to_string().into(),
            "--validator-key".into(),
            v.key_file.clone().into(),
            "--p2p-addr".into(),
            v.p2p.to_string().into(),
            "--peers".into(),
            peers.join(",").into(),
            // Every validator serves the dashboard's localnet panel (the run writes one file).
            "--localnet-file".into(),
            out.join(crate::monitor::DASHBOARD_FILE).into(),
        ];
        nodes.push(NodeProcess::spawn_with(agora, &args, &log_path(out, i))?);
    }
    Ok(nodes)
}

/// What every validator agreed on at the end of a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Agreement {
    /// Each validator's finalized height when asked.
    pub finalized: Vec<u64>,
    /// The lowest of them: the block every validator holds.
    pub height: u64,
    /// The hash of the block at `height` (the same at every validator).
    pub hash: Hash,
    /// The ledger's state root after that block (the same at every validator).
    pub state_root: Hash,
}

/// The name of the agreement's file in the run's directory.
pub const AGREEMENT_FILE: &str = "validators.json";

/// Asks every node (by RPC URL) for its finalized head, then for the block at the lowest
/// finalized height: the same hash and state root on all, or [`LocalnetError::Fork`].
pub async fn agreement(urls: &[String]) -> Result<Agreement, LocalnetError> {
    let mut clients = Vec::with_capacity(urls.len());
    for url in urls {
        clients.push(Client::connect(url).await.map_err(peer::ChainError::from)?);
    }
    let mut finalized = Vec::with_capacity(urls.len());
    for c in &clients {
        finalized.push(c.status().await.map_err(peer::ChainError::from)?.finalized.height);
    }
    let height = finalized.iter().copied().min().unwrap_or(0);
    let mut blocks = Vec::with_capacity(urls.len());
    for c in &clients {
        let b = c.block(height).await.map_err(peer::ChainError::from)?;
        blocks.push((b.hash, b.stored.block.header.state_root));
    }
    let (hash, state_root) = blocks.first().copied().unwrap_or((Hash::ZERO, Hash::ZERO));
    if blocks.iter().any(|b| *b != (hash, state_root)) {
        let seen: Vec<String> = blocks.iter().map(|(h, r)| format!("block {h} root {r}")).collect();
        return Err(LocalnetError::Fork { height, seen: seen.join("; ") });
    }
    Ok(Agreement { finalized, height, hash, state_root })
}

/// A free loopback port, found by binding port 0 and letting it go: what a validator's p2p
/// listens on, or an axon behind a chaos proxy (their addresses are needed before they start).
pub(crate) fn free_port() -> Result<SocketAddr, LocalnetError> {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(LocalnetError::NoFreePort)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_get_keys_distinct_ports_and_a_valid_genesis() {
        let dir = std::env::temp_dir().join(format!("agora-localnet-validators-{}", std::process::id()));
        let v = create(&dir, 4).unwrap();
        let g = with_validators(crate::genesis(&crate::Scenario::default()), &v);
        g.validate().unwrap();
        assert_eq!(g.validators.len(), 4);
        for (spec, gv) in v.iter().zip(&g.validators) {
            let key = wallet::read_hotkey_file(&spec.key_file).unwrap();
            assert_eq!(ledger::public_key(&key), gv.key, "the key file holds the genesis' key");
        }
        let mut ports: Vec<u16> = v.iter().map(|s| s.p2p.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 4);
        let _ = std::fs::remove_dir_all(dir);
    }
}
