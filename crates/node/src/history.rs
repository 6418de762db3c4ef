//! Past states for `agora_metagraph(height)`: a checkpoint every epoch, replay on top.
//!
//! The state at any height is a pure function of the genesis and the blocks, so a past height
//! can always be rebuilt by replay; replaying from genesis per call cost a node 26 s of CPU for
//! one batch and 360 MB for 64 concurrent calls at height 1,500. So after every block whose
//! height is a multiple of the tempo (the epoch blocks) the node stores the state records as a
//! checkpoint ([`NodeStore::write_checkpoint`]), and a past height is rebuilt from the latest
//! checkpoint at or below it: at most `tempo - 1` ordinary blocks, never an epoch (the next
//! epoch block is the next checkpoint). Checkpoints older than the history window are dropped;
//! heights before it are refused. A replay that passes a checkpoint height with no checkpoint
//! (a chain older than this code, or a crash between a block and its checkpoint) stores it.

use crate::store::NodeStore;
use ledger::{GenesisConfig, Ledger, LedgerError, MemStore, Metagraph, Store, StoreError};
use std::sync::Arc;

/// The node's checkpoints and what it serves from them.
#[derive(Clone)]
pub struct History {
    store: Arc<dyn NodeStore>,
    genesis: GenesisConfig,
    /// Blocks between checkpoints: the tempo.
    interval: u64,
    /// How many blocks back past heights are served.
    window: u64,
}

/// Why a past state could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("block {height} is before the history this node keeps (blocks {oldest} and later)")]
    /// The height asked for is older than the `--history-blocks` the node keeps.
    TooOld {
        /// The height asked for.
        height: u64,
        /// The oldest height the node can still rebuild.
        oldest: u64,
    },
    /// A block needed for the replay is not in the store (the store is damaged).
    #[error("block {0} is missing from the store")]
    MissingBlock(u64),
    #[error("replaying block {height}: {reason}")]
    /// Replaying a stored block from a checkpoint failed: the store and the ledger disagree.
    Replay {
        /// The block that failed.
        height: u64,
        /// The ledger's error.
        reason: String,
    },
    /// Reading the store or opening a checkpoint failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<StoreError> for HistoryError {
    fn from(e: StoreError) -> Self {
        HistoryError::Ledger(e.into())
    }
}

impl History {
    /// Checkpoints every `genesis.tempo` blocks, serving the last `window` blocks.
    pub fn new(store: Box<dyn NodeStore>, genesis: GenesisConfig, window: u64) -> History {
        let interval = genesis.tempo.max(1);
        History { store: Arc::from(store), genesis, interval, window }
    }

    /// The oldest height served when the head is `head`.
    pub fn oldest(&self, head: u64) -> u64 {
        head.saturating_sub(self.window)
    }

    fn is_checkpoint(&self, height: u64) -> bool {
        height > 0 && height.is_multiple_of(self.interval)
    }

    /// Called with the committed state after block `height` (the head): stores its checkpoint
    /// if `height` is a checkpoint height and none is stored yet, dropping those too old.
    pub fn after_block<S: Store>(&self, height: u64, state: &S) -> Result<(), StoreError> {
        if !self.is_checkpoint(height) || self.store.has_checkpoint(height)? {
            return Ok(());
        }
        let records = ledger::state_records(state)?;
        self.store.write_checkpoint(height, &records, self.oldest(height))
    }

    /// The metagraph after block `height` (at most `head`), from the latest checkpoint at or
    /// below it plus the blocks after that.
    pub fn metagraph_at(&self, height: u64, head: u64) -> Result<Metagraph, HistoryError> {
        let oldest = self.oldest(head);
        if height < oldest {
            return Err(HistoryError::TooOld { height, oldest });
        }
        let (from, mut replay) = match self.store.checkpoint_at_or_before(height)? {
            Some((at, mem)) => (at, Ledger::open(mem)?),
            None => (0, Ledger::init(MemStore::new(), self.genesis.clone())?),
        };
        for h in from + 1..=height {
            let stored = ledger::stored_block(&*self.store, h)?.ok_or(HistoryError::MissingBlock(h))?;
            let failed =
                |e: &dyn std::fmt::Display| HistoryError::Replay { height: h, reason: e.to_string() };
            replay.execute_block(&stored.block).map_err(|e| failed(&e))?;
            replay.commit().map_err(|e| failed(&e))?;
            if h >= oldest && self.is_checkpoint(h) && !self.store.has_checkpoint(h)? {
                let records = ledger::state_records(replay.store())?;
                self.store.write_checkpoint(h, &records, oldest)?;
            }
        }
        Ok(replay.metagraph())
    }

    /// Blocks a call for `height` replays now: from the latest checkpoint at or below it.
    pub fn replay_length(&self, height: u64) -> Result<u64, StoreError> {
        Ok(height - self.store.checkpoint_at_or_before(height)?.map_or(0, |(at, _)| at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedbStore;
    use ledger::{dev_key, public_key, Call, TxBody};

    fn temp(name: &str) -> std::path::PathBuf {
        crate::test_utils::temp_dir(name)
    }

    /// Three neurons setting weights, an epoch every 4 blocks.
    fn genesis() -> GenesisConfig {
        crate::test_utils::neuron_genesis("agora-dev", 4)
    }

    /// Runs `blocks` blocks on a redb ledger, with checkpoints as the node takes them, and keeps
    /// every metagraph it passed through.
    fn run(dir: &std::path::Path, blocks: u64, window: u64) -> (History, Vec<Metagraph>) {
        let store = RedbStore::create(&dir.join("chain.redb")).unwrap();
        let history = History::new(store.handle(), genesis(), window);
        let mut l = Ledger::init(store, genesis()).unwrap();
        let mut seen = vec![l.metagraph()];
        for h in 1..=blocks {
            let who = ["n0", "n1", "n2"][(h % 3) as usize];
            let k = dev_key(who);
            let nonce = l.account(&public_key(&k)).nonce;
            let w = (h % 7) as f64 / 10.0 + 0.1;
            let others: Vec<u16> = (0..3u16).filter(|&u| u != (h % 3) as u16).collect();
            let tx = TxBody {
                sender: public_key(&k),
                nonce,
                fee: 10_000,
                call: Call::set_weights(others, &[w, 1.0 - w]),
            }
            .sign(&k, "agora-dev");
            l.propose(vec![tx], h, public_key(&k)).unwrap();
            l.commit().unwrap();
            history.after_block(h, l.store()).unwrap();
            seen.push(l.metagraph());
        }
        (history, seen)
    }

    #[test]
    fn every_past_height_is_rebuilt_exactly_from_at_most_one_epoch_of_blocks() {
        let dir = temp("exact");
        let (history, seen) = run(&dir, 30, 1_000);
        for (h, expected) in seen.iter().enumerate() {
            let h = h as u64;
            assert_eq!(&history.metagraph_at(h, 30).unwrap(), expected, "height {h}");
            assert!(history.replay_length(h).unwrap() < 4, "height {h} replays more than an epoch");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn old_checkpoints_are_dropped_and_missing_ones_are_filled_by_replay() {
        let dir = temp("window");
        let (history, seen) = run(&dir, 30, 10);
        assert!(matches!(history.metagraph_at(19, 30), Err(HistoryError::TooOld { height: 19, oldest: 20 })));
        assert_eq!(history.metagraph_at(20, 30).unwrap(), seen[20]);
        assert!(!history.store.has_checkpoint(8).unwrap(), "dropped with the window");
        // A chain from before checkpoints: the first call replays from genesis and leaves the
        // checkpoints it passes, so the next call is short.
        let wide = History::new(history.store.handle(), genesis(), 1_000);
        assert_eq!(wide.replay_length(11).unwrap(), 11);
        assert_eq!(wide.metagraph_at(11, 30).unwrap(), seen[11]);
        assert_eq!(wide.replay_length(11).unwrap(), 3);
        let _ = std::fs::remove_dir_all(dir);
    }
}
