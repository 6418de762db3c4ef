//! Whether a store holds a consistent chain, and the records a state checkpoint copies.
//!
//! A store can be damaged outside the ledger's control (a disk error, a file overwritten or
//! truncated by hand). The storage engine's own checksums catch most of it; these checks catch
//! what decodes but is not the chain the blocks say: a state whose recomputed root differs from
//! the head's, a head that is not the last block, issuance that does not add up, a block chain
//! whose hashes do not link. [`Ledger::check_integrity`] is quick (one pass over the state);
//! [`Ledger::check_blocks`] reads every block in a range.

use crate::block::{tx_root, StoredBlock};
use crate::error::LedgerError;
use crate::ledger::Ledger;
use crate::state::{decode, keys};
use crate::store::{Store, StoreError, WriteBatch};
use crate::types::Hash;
use thiserror::Error;

/// What a store check found wrong. Any of these means the store is damaged: do not build on it.
#[derive(Debug, Error)]
pub enum IntegrityError {
    #[error("the state records give root {computed}, but the head (block {height}) says {stored}")]
    StateRoot { height: u64, stored: Hash, computed: Hash },
    #[error("block {height}: {reason}")]
    Block { height: u64, reason: String },
    #[error("issuance says {issuance} base units exist, but balances and stakes add up to {circulating}")]
    Conservation { issuance: u128, circulating: u128 },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<StoreError> for IntegrityError {
    fn from(e: StoreError) -> Self {
        IntegrityError::Ledger(e.into())
    }
}

fn bad_block(height: u64, reason: impl Into<String>) -> IntegrityError {
    IntegrityError::Block { height, reason: reason.into() }
}

impl<S: Store> Ledger<S> {
    /// Checks the opened chain against itself: the state's root recomputed from its records is
    /// the head's, the head is the last stored block (or the genesis at height 0), and total
    /// issuance equals the sum of balances and stakes. One pass over the state; call it on a
    /// ledger with no pending block (just opened).
    pub fn check_integrity(&self) -> Result<(), IntegrityError> {
        let head = self.head();
        let mut state = self.state().clone();
        state.mark_all_dirty();
        let (computed, _) = state.finish();
        if computed != head.state_root {
            return Err(IntegrityError::StateRoot { height: head.height, stored: head.state_root, computed });
        }
        let globals = self.state().globals();
        if globals.height != head.height {
            return Err(bad_block(head.height, format!("the state is at height {}", globals.height)));
        }
        if head.height == 0 {
            if head.hash != globals.genesis_hash {
                return Err(bad_block(0, "the head hash is not the genesis hash"));
            }
        } else {
            let stored = self
                .block(head.height)?
                .ok_or_else(|| bad_block(head.height, "the head block is missing"))?;
            let header = &stored.block.header;
            if header.hash() != head.hash || header.state_root != head.state_root {
                return Err(bad_block(head.height, "the stored block is not the head"));
            }
        }
        let issuance = self.issuance().total();
        let circulating = self.state().circulating();
        if issuance != circulating {
            return Err(IntegrityError::Conservation { issuance, circulating });
        }
        Ok(())
    }

    /// Reads blocks `from..=to` and checks that each is stored under its height, links to its
    /// parent (block 1 to the genesis), is found by its hash, carries the transactions its
    /// `tx_root` commits to with one receipt each, and that the last one at the head height is
    /// the head. Returns the hash of block `to`.
    pub fn check_blocks(&self, from: u64, to: u64) -> Result<Hash, IntegrityError> {
        let from = from.max(1);
        let mut parent = match from {
            1 => self.state().globals().genesis_hash,
            h => self.block(h - 1)?.ok_or_else(|| bad_block(h - 1, "missing"))?.block.header.hash(),
        };
        for h in from..=to {
            let stored = self.block(h)?.ok_or_else(|| bad_block(h, "missing"))?;
            let header = &stored.block.header;
            if header.height != h {
                return Err(bad_block(h, format!("stored under height {h} but says {}", header.height)));
            }
            if header.parent_hash != parent {
                return Err(bad_block(
                    h,
                    format!("parent {} is not block {}'s hash {parent}", header.parent_hash, h - 1),
                ));
            }
            let hash = header.hash();
            match self.block_by_hash(&hash)? {
                Some(b) if b.block.header.height == h => {}
                _ => return Err(bad_block(h, format!("its hash {hash} does not lead back to it"))),
            }
            let ids: Vec<Hash> = stored.block.txs.iter().map(crate::SignedTx::id).collect();
            if tx_root(&ids) != header.tx_root {
                return Err(bad_block(h, "its transactions do not match its tx_root"));
            }
            if stored.receipts.len() != ids.len() {
                return Err(bad_block(
                    h,
                    format!("{} receipts for {} transactions", stored.receipts.len(), ids.len()),
                ));
            }
            parent = hash;
        }
        let head = self.head();
        if to == head.height && to > 0 && parent != head.hash {
            return Err(bad_block(to, "the last block is not the head"));
        }
        Ok(parent)
    }
}

/// The committed block at `height` in a store holding a chain, if there is one.
pub fn stored_block<S: Store + ?Sized>(store: &S, height: u64) -> Result<Option<StoredBlock>, LedgerError> {
    let key = keys::block(height);
    match store.get(&key)? {
        Some(v) => Ok(Some(decode(&key, &v)?)),
        None => Ok(None),
    }
}

/// Every record of the committed state (accounts, neurons, weights, bonds, scaling, subnets, globals,
/// genesis, head), but not the blocks and their indexes, as one batch. Committed to an empty
/// store, [`Ledger::open`] on it resumes at the same head with the same root: a checkpoint from
/// which later blocks replay.
pub fn state_records<S: Store + ?Sized>(store: &S) -> Result<WriteBatch, StoreError> {
    let mut batch = WriteBatch::new();
    for prefix in [
        &[keys::ACCOUNT][..],
        &[keys::NEURON],
        &[keys::ROW],
        &[keys::BOND],
        keys::SCALING,
        keys::NET_GLOBALS,
        &[keys::SUBNET],
        keys::GLOBALS,
        keys::GENESIS,
        keys::HEAD,
    ] {
        store.scan_prefix(prefix, &mut |k, v| {
            batch.put(k.to_vec(), v.to_vec());
            Ok(())
        })?;
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{dev_key, public_key, GenesisConfig};
    use crate::store::MemStore;
    use crate::tx::{Call, TxBody};
    use crate::UNITS_PER_TOKEN;

    fn chain(blocks: u64) -> Ledger<MemStore> {
        let mut l =
            Ledger::init(MemStore::new(), GenesisConfig::dev(&["alice"], 1_000 * UNITS_PER_TOKEN)).unwrap();
        let k = dev_key("alice");
        for n in 0..blocks {
            let tx = TxBody {
                sender: public_key(&k),
                nonce: n,
                fee: 10_000,
                call: Call::Transfer { to: public_key(&dev_key("bob")), amount: 7 },
            }
            .sign(&k, "agora-dev");
            l.propose(vec![tx], n + 1, public_key(&k)).unwrap();
            l.commit().unwrap();
        }
        l
    }

    fn with_store(
        l: Ledger<MemStore>,
        f: impl FnOnce(&mut MemStore),
    ) -> Result<Ledger<MemStore>, LedgerError> {
        let mut s = l.into_store();
        f(&mut s);
        Ledger::open(s)
    }

    #[test]
    fn a_sound_chain_passes_and_its_checkpoint_resumes_at_the_head() {
        let l = chain(5);
        l.check_integrity().unwrap();
        assert_eq!(l.check_blocks(1, 5).unwrap(), l.head().hash);
        let mut copy = MemStore::new();
        copy.commit(state_records(l.store()).unwrap()).unwrap();
        let resumed = Ledger::open(copy).unwrap();
        assert_eq!(resumed.head(), l.head());
        assert!(resumed.block(5).unwrap().is_none(), "a checkpoint holds no blocks");
        chain(0).check_integrity().unwrap();
    }

    #[test]
    fn damage_that_still_decodes_is_found() {
        // A balance changed by hand: the root and the issuance no longer agree.
        let alice = keys::account(&public_key(&dev_key("alice")));
        let l = with_store(chain(3), |s| {
            let mut a: crate::Account = decode(&alice, &s.get(&alice).unwrap().unwrap()).unwrap();
            a.balance += 1;
            let mut b = WriteBatch::new();
            b.put(alice.clone(), borsh::to_vec(&a).unwrap());
            s.commit(b).unwrap();
        })
        .unwrap();
        assert!(matches!(l.check_integrity(), Err(IntegrityError::StateRoot { height: 3, .. })));
        // A block removed: the head block is missing, and the walk stops there.
        let l = with_store(chain(3), |s| {
            let mut b = WriteBatch::new();
            b.delete(keys::block(3));
            s.commit(b).unwrap();
        })
        .unwrap();
        assert!(matches!(l.check_integrity(), Err(IntegrityError::Block { height: 3, .. })));
        assert!(matches!(l.check_blocks(1, 3), Err(IntegrityError::Block { height: 3, .. })));
        // A block replaced by another: its parent link breaks.
        let other = chain(3);
        let l = with_store(chain(3), |s| {
            let mut b = WriteBatch::new();
            let mut forged = other.block(2).unwrap().unwrap();
            forged.block.header.timestamp_ms += 1;
            b.put(keys::block(2), borsh::to_vec(&forged).unwrap());
            s.commit(b).unwrap();
        })
        .unwrap();
        assert!(matches!(l.check_blocks(1, 3), Err(IntegrityError::Block { height: 2, .. })));
    }
}
