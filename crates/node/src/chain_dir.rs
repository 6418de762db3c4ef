//! The data directory: where a chain is opened, and when a new one may start.
//!
//! A node never starts a new chain over a directory that already existed, unless told so: an
//! emptied or deleted chain file once made `agora node` say "resuming at height 0" and build a
//! new chain where 1,474 blocks had been. The rules:
//! - the directory is missing or empty: a new chain starts (the `--dev` one-command case);
//! - it holds `chain.redb`: the chain is opened, its pages' checksums and then the ledger's own
//!   invariants ([`ledger::Ledger::check_integrity`]) are verified, and a damaged store is
//!   refused with what was found;
//! - anything else (an empty or damaged `chain.redb`, other files and no chain) is refused
//!   unless `--new-chain` is given, which keeps an unreadable `chain.redb` aside under another
//!   name and starts a new chain. `--new-chain` never replaces a readable chain.
//!
//! A new chain is written to `chain.redb.new` and renamed into place once its genesis is
//! committed, so a crash while starting leaves no half-made `chain.redb` behind.

use crate::store::{OpenError, RedbStore};
use crate::NodeError;
use ledger::{GenesisConfig, Ledger, LedgerError};
use std::path::{Path, PathBuf};

/// The chain file inside a data directory.
pub const CHAIN_FILE: &str = "chain.redb";
/// Where a new chain is built before it is renamed to [`CHAIN_FILE`].
const NEW_FILE: &str = "chain.redb.new";

/// How [`open`] found the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// An existing chain, checked.
    Resumed,
    /// A new chain from the genesis.
    Started,
    /// A new chain from the genesis, after setting an unreadable chain file aside at this path.
    StartedOver {
        /// Where the damaged chain file was moved, for a person to inspect or restore.
        kept: PathBuf,
    },
}

/// Opens the chain in `dir`, or starts one from `genesis` where the rules above allow it.
pub fn open(
    dir: &Path,
    genesis: GenesisConfig,
    new_chain: bool,
) -> Result<(Ledger<RedbStore>, Opened), NodeError> {
    let file = dir.join(CHAIN_FILE);
    let existed = dir.exists();
    if file.exists() {
        return open_existing(dir, &file, genesis, new_chain);
    }
    let others = if existed { other_entries(dir)? } else { Vec::new() };
    if !others.is_empty() && !new_chain {
        return Err(NodeError::NoChain {
            path: dir.to_path_buf(),
            found: format!("no {CHAIN_FILE}, but other files ({})", others.join(", ")),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| NodeError::DataDir { path: dir.to_path_buf(), source })?;
    Ok((start(dir, genesis)?, Opened::Started))
}

fn open_existing(
    dir: &Path,
    file: &Path,
    genesis: GenesisConfig,
    new_chain: bool,
) -> Result<(Ledger<RedbStore>, Opened), NodeError> {
    let damaged = |reason: String| NodeError::DamagedStore { path: file.to_path_buf(), reason };
    let len = std::fs::metadata(file)
        .map_err(|source| NodeError::DataDir { path: file.to_path_buf(), source })?
        .len();
    let unreadable = if len == 0 {
        Some(format!("{CHAIN_FILE} is empty (0 bytes)"))
    } else {
        match RedbStore::open(file) {
            Ok(store) => return open_store(dir, file, store, genesis, new_chain),
            Err(OpenError::Damaged(reason)) => Some(format!("{CHAIN_FILE} is damaged: {reason}")),
            Err(OpenError::InUse) => return Err(NodeError::InUse { path: file.to_path_buf() }),
            Err(OpenError::Io(reason)) => return Err(damaged(reason)),
        }
    };
    let found = unreadable.unwrap_or_default();
    if !new_chain {
        return Err(if len == 0 {
            NodeError::NoChain { path: dir.to_path_buf(), found }
        } else {
            damaged(found)
        });
    }
    let kept = set_aside(file)?;
    Ok((start(dir, genesis)?, Opened::StartedOver { kept }))
}

fn open_store(
    dir: &Path,
    file: &Path,
    store: RedbStore,
    genesis: GenesisConfig,
    new_chain: bool,
) -> Result<(Ledger<RedbStore>, Opened), NodeError> {
    let damaged = |reason: String| NodeError::DamagedStore { path: file.to_path_buf(), reason };
    let ledger = match Ledger::open(store) {
        Ok(l) => l,
        Err(LedgerError::NotInitialised) if new_chain => {
            // A readable database that never received a genesis: nothing to keep.
            std::fs::remove_file(file)
                .map_err(|source| NodeError::DataDir { path: file.to_path_buf(), source })?;
            return Ok((start(dir, genesis)?, Opened::Started));
        }
        Err(LedgerError::NotInitialised) => {
            return Err(NodeError::NoChain {
                path: dir.to_path_buf(),
                found: format!("{CHAIN_FILE} holds no chain"),
            })
        }
        Err(e @ (LedgerError::Store(_) | LedgerError::Genesis(_))) => return Err(damaged(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let head = ledger.head();
    if new_chain {
        return Err(NodeError::NewChainOverChain { path: file.to_path_buf(), height: head.height });
    }
    let stored = ledger.state().globals().genesis_hash;
    let given = genesis.hash();
    if stored != given {
        return Err(LedgerError::GenesisMismatch { stored, given }.into());
    }
    ledger.check_integrity().map_err(|e| damaged(e.to_string()))?;
    Ok((ledger, Opened::Resumed))
}

/// Builds a new chain in [`NEW_FILE`], renames it to [`CHAIN_FILE`] and opens it.
fn start(dir: &Path, genesis: GenesisConfig) -> Result<Ledger<RedbStore>, NodeError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NodeError::DataDir { path, source }
    };
    let tmp = dir.join(NEW_FILE);
    let file = dir.join(CHAIN_FILE);
    if tmp.exists() {
        // A start that crashed before its rename: ours, and holding no chain anyone used.
        std::fs::remove_file(&tmp).map_err(io(&tmp))?;
    }
    let store = RedbStore::create(&tmp).map_err(|e| NodeError::DataDir {
        path: tmp.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    // The genesis is committed durably; dropping the ledger closes the file before the rename.
    drop(Ledger::init(store, genesis)?);
    std::fs::rename(&tmp, &file).map_err(io(&file))?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Make the rename itself durable (best effort: not every platform syncs directories).
        let _ = d.sync_all();
    }
    let store = RedbStore::open(&file)
        .map_err(|e| NodeError::DamagedStore { path: file.clone(), reason: e.to_string() })?;
    Ok(Ledger::open(store)?)
}

/// Renames an unreadable chain file to `chain.redb.unreadable-<unix seconds>`.
fn set_aside(file: &Path) -> Result<PathBuf, NodeError> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let kept = file.with_file_name(format!("{CHAIN_FILE}.unreadable-{secs}"));
    std::fs::rename(file, &kept).map_err(|source| NodeError::DataDir { path: kept.clone(), source })?;
    Ok(kept)
}

/// Names in `dir` other than an interrupted start's [`NEW_FILE`].
fn other_entries(dir: &Path) -> Result<Vec<String>, NodeError> {
    let entries =
        std::fs::read_dir(dir).map_err(|source| NodeError::DataDir { path: dir.to_path_buf(), source })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != NEW_FILE)
        .collect();
    names.sort();
    names.truncate(5);
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{dev_key, public_key, Call, TxBody, UNITS_PER_TOKEN};

    /// A data directory that does not exist yet.
    fn temp(name: &str) -> PathBuf {
        crate::test_utils::temp_dir(name).join("data")
    }

    fn genesis() -> GenesisConfig {
        GenesisConfig::dev(&["alice", "bob"], 1_000 * UNITS_PER_TOKEN)
    }

    /// A chain of `blocks` blocks in `dir`.
    fn chain(dir: &Path, blocks: u64) {
        let (mut l, opened) = open(dir, genesis(), false).unwrap();
        assert_eq!(opened, Opened::Started);
        let a = dev_key("alice");
        for n in 0..blocks {
            let tx = TxBody {
                sender: public_key(&a),
                nonce: n,
                fee: 10_000,
                call: Call::Transfer { to: public_key(&dev_key("bob")), amount: 1 },
            }
            .sign(&a, "agora-dev");
            l.propose(vec![tx], n + 1, public_key(&a)).unwrap();
            l.commit().unwrap();
        }
    }

    #[test]
    fn a_missing_or_empty_directory_starts_and_a_chain_resumes() {
        let dir = temp("fresh");
        chain(&dir, 3);
        let (l, opened) = open(&dir, genesis(), false).unwrap();
        assert_eq!((opened, l.head().height), (Opened::Resumed, 3));
        drop(l);
        let empty = temp("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(open(&empty, genesis(), false).unwrap().1, Opened::Started);
        // Another genesis on the same directory is refused, as before.
        let mut other = genesis();
        other.chain_id = "other".into();
        assert!(matches!(
            open(&dir, other, false),
            Err(NodeError::Ledger(LedgerError::GenesisMismatch { .. }))
        ));
        for d in [dir, empty] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    /// Issue 13: `truncate -s 0 chain.redb` then a start said "resuming at height 0" and built a
    /// new chain. Now it is refused, and `--new-chain` starts over keeping the old file.
    #[test]
    fn an_emptied_chain_file_is_refused_unless_new_chain_is_asked_for() {
        let dir = temp("truncated");
        chain(&dir, 4);
        std::fs::File::create(dir.join(CHAIN_FILE)).unwrap(); // truncates to 0 bytes
        let err = open(&dir, genesis(), false).err().expect("refused");
        assert!(matches!(&err, NodeError::NoChain { .. }), "{err}");
        assert!(
            err.to_string().contains("empty (0 bytes)") && err.to_string().contains("--new-chain"),
            "{err}"
        );
        assert_eq!(std::fs::metadata(dir.join(CHAIN_FILE)).unwrap().len(), 0, "the refusal wrote nothing");
        let (l, opened) = open(&dir, genesis(), true).unwrap();
        assert_eq!(l.head().height, 0);
        let Opened::StartedOver { kept } = opened else { panic!("{opened:?}") };
        assert!(kept.exists());
        drop(l);
        // --new-chain never replaces a readable chain.
        chain_more(&dir);
        assert!(matches!(open(&dir, genesis(), true), Err(NodeError::NewChainOverChain { height: 1, .. })));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn chain_more(dir: &Path) {
        let (mut l, _) = open(dir, genesis(), false).unwrap();
        l.propose(vec![], 1, public_key(&dev_key("v"))).unwrap();
        l.commit().unwrap();
    }

    #[test]
    fn a_deleted_chain_file_beside_other_files_is_refused() {
        let dir = temp("deleted");
        chain(&dir, 2);
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        std::fs::remove_file(dir.join(CHAIN_FILE)).unwrap();
        let err = open(&dir, genesis(), false).err().expect("refused");
        assert!(err.to_string().contains("notes.txt"), "{err}");
        assert_eq!(open(&dir, genesis(), true).unwrap().1, Opened::Started);
        let _ = std::fs::remove_dir_all(dir);
    }
}
