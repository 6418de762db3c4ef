//! The storage boundary: a small key-value trait the ledger persists through.
//!
//! The ledger keeps its working state in memory and writes each block's changes as one
//! [`WriteBatch`]; a [`Store`] only has to read keys, scan a prefix, and apply a batch
//! atomically. [`MemStore`] implements it in memory for tests; the node implements it over an
//! embedded database (redb), where `commit` is one write transaction.
//!
//! Key layout (all keys start with one ASCII byte naming the table):
//! - `a` + public key (32 bytes) -> [`crate::Account`]
//! - `n` + uid (u16 big-endian) -> [`crate::Neuron`]
//! - `w` + uid -> [`crate::WeightRow`]
//! - `b` + uid -> one row of the bonds matrix
//! - `m` -> the mechanism's stake-scaling vector
//! - `l` -> the network's own globals (difficulty, burn, last epoch, pending emission, ...)
//! - `i` -> a subnet's creation record (none for netuid 0)
//! - `s` + netuid (u16 big-endian) + one of the keys above from `n` -> that record of a subnet
//!   other than netuid 0 (netuid 0's records keep the unprefixed keys they had before subnets)
//! - `g` -> chain globals (height, recent block hashes, issuance, tau, subnet count)
//! - `c` -> the genesis configuration (JSON)
//! - `h` -> the head: the last committed block's height, hash, timestamp and state root
//! - `B` + height (u64 big-endian) -> a stored block (header, transactions, receipts)
//! - `H` + block hash -> height
//! - `T` + transaction id -> height (u64 big-endian) and index in the block (u32 big-endian),
//!   for transactions that were applied or failed (rejected ones used no nonce and may recur)
//! - `x` + anything -> records of the ledger's user, written with a block by
//!   `Ledger::commit_with` and never read by the ledger (the consensus layer's payload index)
//!
//! Big-endian numbers make a prefix scan return records in uid or height order.

use std::collections::BTreeMap;
use thiserror::Error;

/// The first byte of every key the ledger leaves to its user (see the key layout above).
pub const EXTERNAL_PREFIX: u8 = b'x';

/// Why the store failed. The ledger passes it on untouched; the node decides whether to stop.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend failed to read or write (its message).
    #[error("storage backend: {0}")]
    Backend(String),
    /// A record does not decode as what its key says it holds.
    #[error("stored record under key {key} is corrupt: {reason}")]
    Corrupt {
        /// The record's key, in hex.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The writes of one block, applied all together or not at all, in the order written: a later
/// operation on a key overrides an earlier one. (A list, not a map: a block of 4,096 weight rows
/// writes ~16,000 records, and appending is much cheaper than keeping them sorted.)
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` under `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// Appends every operation of `other`, after this batch's.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    /// Number of operations (a key written twice counts twice).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Every operation in the order written: `Some(value)` is a put, `None` a delete. Apply
    /// them in this order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.ops.iter().map(|(k, v)| (k.as_slice(), v.as_deref()))
    }

    /// Total bytes of keys and values, for metrics.
    pub fn size_bytes(&self) -> usize {
        self.ops.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum()
    }
}

/// The callback of [`Store::scan_prefix`]: called with each key and value.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// A transactional key-value store.
///
/// Contract:
/// - `get` and `scan_prefix` read the last committed state only; they never see a batch that has
///   not been committed.
/// - `commit` applies a whole batch atomically: after a crash at any moment, the store holds the
///   state before or after the batch, never a part of it. It is durable when it returns.
/// - Calls come from one thread at a time (the ledger owns the store); implementations need not
///   be `Sync`.
pub trait Store {
    /// The committed value under `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Calls `f(key, value)` for every key starting with `prefix`, in ascending key order.
    /// Stops early, returning the error, if `f` fails.
    fn scan_prefix(&self, prefix: &[u8], f: &mut Visitor<'_>) -> Result<(), StoreError>;

    /// Applies `batch` atomically and durably (see the contract above).
    fn commit(&mut self, batch: WriteBatch) -> Result<(), StoreError>;
}

/// An in-memory [`Store`]: a sorted map. Atomic because a batch is applied under `&mut self`.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    commits: u64,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of batches committed so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8], f: &mut Visitor<'_>) -> Result<(), StoreError> {
        for (k, v) in self.map.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            f(k, v)?;
        }
        Ok(())
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        for (k, v) in batch.ops {
            match v {
                Some(v) => {
                    self.map.insert(k, v);
                }
                None => {
                    self.map.remove(&k);
                }
            }
        }
        self.commits += 1;
        Ok(())
    }
}

/// A store behind a pointer is the store: `&mut S` lets a caller keep ownership of its store
/// (tests inspect it between blocks); `Box<S>` lets a node hold any backend behind one type
/// (`Box<dyn NodeStore>`).
macro_rules! forward_store {
    ($($pointer:ty),*) => {$(
        impl<S: Store + ?Sized> Store for $pointer {
            fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                (**self).get(key)
            }

            fn scan_prefix(&self, prefix: &[u8], f: &mut Visitor<'_>) -> Result<(), StoreError> {
                (**self).scan_prefix(prefix, f)
            }

            fn commit(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
                (**self).commit(batch)
            }
        }
    )*};
}

forward_store!(&mut S, Box<S>);

/// The contract every [`Store`] keeps, as a check any backend can run from its own tests: a
/// batch applies in order and in full (a later put or delete of a key wins), `get` reads what
/// was committed, and `scan_prefix` yields exactly the keys under the prefix in ascending order.
/// Panics on the first broken rule (it is test support).
pub fn check_store_contract<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.put(b"a1".to_vec(), b"x".to_vec());
    b.put(b"a2".to_vec(), b"y".to_vec());
    b.put(b"b1".to_vec(), b"z".to_vec());
    b.delete(b"a2".to_vec());
    b.put(b"a2".to_vec(), b"w".to_vec());
    s.commit(b).expect("commit");
    assert_eq!(s.get(b"a2").expect("get"), Some(b"w".to_vec()));
    let mut seen = Vec::new();
    s.scan_prefix(b"a", &mut |k, v| {
        seen.push((k.to_vec(), v.to_vec()));
        Ok(())
    })
    .expect("scan");
    assert_eq!(seen, vec![(b"a1".to_vec(), b"x".to_vec()), (b"a2".to_vec(), b"w".to_vec())]);
    let mut del = WriteBatch::new();
    del.delete(b"a1".to_vec());
    s.commit(del).expect("commit");
    assert_eq!(s.get(b"a1").expect("get"), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_apply_in_full_and_scans_respect_prefixes() {
        let mut s = MemStore::new();
        check_store_contract(&mut s);
        assert_eq!(s.commits(), 2);
    }
}
