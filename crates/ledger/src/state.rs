//! The chain state in memory, its commitment (the state root) and its mapping onto the store.
//!
//! The working state lives in memory (accounts in a sorted map, neurons and weight rows in
//! vectors indexed by uid, the mechanism's bonds and scaling vector). Every mutation goes
//! through a method that marks the record dirty; `State::finish` then encodes each dirty
//! record once, hashes it into its Merkle tree leaf and puts it in the block's write batch.
//! So the cost of a block is proportional to what it changed, not to the size of the state.
//!
//! State root = `SHA-256("agora/state/v1" || H(globals) || accounts || neurons || weights ||
//! bonds || H(scaling))`, where
//! - `accounts` is a Merkle tree over 2^16 buckets (first two bytes of the key); a bucket's leaf
//!   hashes its accounts in key order, so an insert touches one bucket, not a sorted position;
//! - `neurons`, `weights` and `bonds` are Merkle trees over uid slots (`max_neurons` rounded up
//!   to a power of two), leaf = hash of the record's canonical (borsh) encoding with its uid.

use crate::error::LedgerError;
use crate::genesis::GenesisConfig;
use crate::merkle::{leaf_hash, sha256, MerkleTree};
use crate::store::{Store, StoreError, WriteBatch};
use crate::types::{Account, Float, Hash, Neuron, PublicKey, WeightRow};
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::VerifyingKey;
use mechanism::{MechanismState, SparseMatrix};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Tokens in existence: `genesis + minted - burned` (the conservation law the tests check).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Issuance {
    /// Balances and stakes at genesis.
    pub genesis: u64,
    /// Everything emission has created since.
    pub minted: u128,
    /// Everything fees and registration costs have destroyed since.
    pub burned: u128,
}

impl Issuance {
    pub fn total(&self) -> u128 {
        (u128::from(self.genesis) + self.minted).saturating_sub(self.burned)
    }
}

/// Chain-wide values, one record.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Globals {
    pub genesis_hash: Hash,
    /// Height of the last executed block (0: genesis).
    pub height: u64,
    /// Timestamp of the last executed block (the genesis time at height 0).
    pub timestamp_ms: u64,
    /// Hashes of the most recent blocks, oldest first; the last is the hash of block
    /// `height - 1` (the parent of the last executed block), the genesis hash standing for
    /// block 0. Proof-of-work registrations name one of these. (The hash of block `height`
    /// itself cannot be here: it covers this state's root.)
    pub recent_hashes: Vec<Hash>,
    pub issuance: Issuance,
    /// Current proof-of-work difficulty.
    pub difficulty: u64,
    /// Registrations (of any kind) since the last difficulty and burn adjustment.
    pub registrations_this_interval: u64,
    /// What a burned registration (`burned_register`, `register_by`) burns now, in base units:
    /// adjusted with the difficulty, by the same rule ([`crate::pow::next_difficulty`]).
    pub burn: u64,
    /// Height of the last epoch (0 before the first).
    pub last_epoch_block: u64,
    /// Uids whose neuron was replaced since the last epoch: their bonds are cleared at the next.
    pub replaced_since_epoch: BTreeSet<u16>,
    /// Size of the bonds matrix (the neuron count at the last epoch).
    pub bonds_n: u32,
    /// tau: the emission per block in force, in base units (`emission_per_block` unless
    /// adaptive inflation moved it: see [`crate::inflation`]).
    pub tau: u64,
    /// `sum(diag W) / sum(W)` at the last epoch (`None` before one, or when W was empty).
    pub sparsity: Option<Float>,
}

impl Globals {
    /// The hash of block `height` if it is among the recent ones.
    pub fn recent_hash(&self, height: u64) -> Option<Hash> {
        // recent_hashes[k] is block (self.height - len + k).
        let len = self.recent_hashes.len() as u64;
        let first = self.height.checked_sub(len)?;
        let k = height.checked_sub(first)?;
        self.recent_hashes.get(usize::try_from(k).ok()?).copied()
    }

    /// Heights named by `recent_hashes`, as `(oldest, newest)`.
    pub fn recent_range(&self) -> Option<(u64, u64)> {
        let len = self.recent_hashes.len() as u64;
        let first = self.height.checked_sub(len)?;
        Some((first, self.height.checked_sub(1)?))
    }
}

#[derive(Debug, Default, Clone)]
struct Dirty {
    accounts: BTreeSet<PublicKey>,
    neurons: BTreeSet<u16>,
    rows: BTreeSet<u16>,
    bonds: bool,
    scaling: bool,
}

/// The whole state of the chain at one height.
#[derive(Clone)]
pub struct State {
    pub(crate) cfg: Arc<GenesisConfig>,
    pub(crate) accounts: BTreeMap<PublicKey, Account>,
    pub(crate) neurons: Vec<Neuron>,
    pub(crate) rows: Vec<WeightRow>,
    /// hotkey -> uid (derived from `neurons`, not committed separately).
    pub(crate) hotkeys: HashMap<PublicKey, u16>,
    /// Decompressed keys of registered hotkeys: the senders of most transactions, so their
    /// point decompression is paid once at registration, not per transaction.
    pub(crate) key_cache: HashMap<PublicKey, VerifyingKey>,
    /// Bonds B and scaling vector A, as the mechanism returned them at the last epoch.
    pub(crate) mech: MechanismState,
    pub(crate) globals: Globals,
    accounts_tree: MerkleTree,
    neurons_tree: MerkleTree,
    rows_tree: MerkleTree,
    bonds_tree: MerkleTree,
    scaling_hash: Hash,
    dirty: Dirty,
}

/// Buckets of the account tree (first two key bytes).
const ACCOUNT_BUCKETS: usize = 1 << 16;

pub(crate) mod keys {
    use crate::types::PublicKey;

    pub const ACCOUNT: u8 = b'a';
    pub const NEURON: u8 = b'n';
    pub const ROW: u8 = b'w';
    pub const BOND: u8 = b'b';
    pub const SCALING: &[u8] = b"m";
    pub const GLOBALS: &[u8] = b"g";
    pub const GENESIS: &[u8] = b"c";
    pub const HEAD: &[u8] = b"h";
    pub const BLOCK: u8 = b'B';
    pub const BLOCK_HASH: u8 = b'H';
    pub const TX: u8 = b'T';

    pub fn account(pk: &PublicKey) -> Vec<u8> {
        let mut k = Vec::with_capacity(33);
        k.push(ACCOUNT);
        k.extend_from_slice(&pk.0);
        k
    }

    pub fn uid(table: u8, uid: u16) -> Vec<u8> {
        let b = uid.to_be_bytes();
        vec![table, b[0], b[1]]
    }

    pub fn block(height: u64) -> Vec<u8> {
        let mut k = vec![BLOCK];
        k.extend_from_slice(&height.to_be_bytes());
        k
    }

    pub fn tx(id: &crate::types::Hash) -> Vec<u8> {
        let mut k = vec![TX];
        k.extend_from_slice(&id.0);
        k
    }

    pub fn block_hash(hash: &crate::types::Hash) -> Vec<u8> {
        let mut k = vec![BLOCK_HASH];
        k.extend_from_slice(&hash.0);
        k
    }
}

fn encode<T: BorshSerialize>(x: &T) -> Vec<u8> {
    // Vec writers never fail and every stored type encodes infallibly (floats are finite or
    // carried as `Float`).
    borsh::to_vec(x).unwrap_or_default()
}

pub(crate) fn decode<T: BorshDeserialize>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    borsh::from_slice(bytes).map_err(|e| StoreError::Corrupt { key: hex::encode(key), reason: e.to_string() })
}

/// One stored row of the bonds matrix.
type BondRow = Vec<(u16, Float)>;

fn bond_row(b: &SparseMatrix, i: usize) -> BondRow {
    if i >= b.n() {
        return Vec::new();
    }
    let (cols, vals) = b.row(i);
    cols.iter().zip(vals).map(|(&j, &v)| (j as u16, Float(v))).collect()
}

impl State {
    /// The state at height 0.
    pub fn genesis(cfg: Arc<GenesisConfig>) -> Result<State, LedgerError> {
        cfg.validate()?;
        let issuance = cfg.issuance()?;
        let genesis_hash = cfg.hash();
        let mut s = State::empty(
            cfg.clone(),
            Globals {
                genesis_hash,
                height: 0,
                timestamp_ms: cfg.genesis_time_ms,
                recent_hashes: Vec::new(),
                issuance: Issuance { genesis: issuance, minted: 0, burned: 0 },
                difficulty: cfg.registration.difficulty,
                registrations_this_interval: 0,
                burn: cfg.registration.burn,
                last_epoch_block: 0,
                replaced_since_epoch: BTreeSet::new(),
                bonds_n: cfg.neurons.len() as u32,
                tau: cfg.emission_per_block,
                sparsity: None,
            },
        );
        for a in &cfg.accounts {
            if a.balance > 0 {
                s.set_account(a.key, Account { balance: a.balance, nonce: 0 });
            }
        }
        for (uid, g) in cfg.neurons.iter().enumerate() {
            let mut n = Neuron::new(uid as u16, g.hotkey, g.coldkey, g.stake, 0, cfg.delegation.default_take);
            n.endpoint = g.endpoint;
            s.push_neuron(n);
        }
        s.mech = MechanismState::genesis(cfg.neurons.len());
        s.dirty.bonds = true;
        s.dirty.scaling = true;
        Ok(s)
    }

    fn empty(cfg: Arc<GenesisConfig>, globals: Globals) -> State {
        let slots = cfg.max_neurons as usize;
        State {
            accounts: BTreeMap::new(),
            neurons: Vec::new(),
            rows: Vec::new(),
            hotkeys: HashMap::new(),
            key_cache: HashMap::new(),
            mech: MechanismState::genesis(0),
            globals,
            accounts_tree: MerkleTree::new(ACCOUNT_BUCKETS),
            neurons_tree: MerkleTree::new(slots),
            rows_tree: MerkleTree::new(slots),
            bonds_tree: MerkleTree::new(slots),
            scaling_hash: Hash::ZERO,
            dirty: Dirty::default(),
            cfg,
        }
    }

    /// Loads the committed state from a store.
    pub fn load<S: Store>(store: &S) -> Result<State, LedgerError> {
        let cfg_bytes = store.get(keys::GENESIS)?.ok_or(LedgerError::NotInitialised)?;
        let cfg: GenesisConfig = serde_json::from_slice(&cfg_bytes)
            .map_err(|e| StoreError::Corrupt { key: "c (genesis)".into(), reason: e.to_string() })?;
        // Refuse a stored configuration no chain could have started from (a damaged store).
        cfg.validate()?;
        let globals_bytes = store.get(keys::GLOBALS)?.ok_or(LedgerError::NotInitialised)?;
        let globals: Globals = decode(keys::GLOBALS, &globals_bytes)?;
        let mut s = State::empty(Arc::new(cfg), globals);
        store.scan_prefix(&[keys::ACCOUNT], &mut |k, v| {
            let pk = PublicKey(k[1..].try_into().map_err(|_| StoreError::Corrupt {
                key: hex::encode(k),
                reason: "account key is not 32 bytes".into(),
            })?);
            s.accounts.insert(pk, decode(k, v)?);
            s.dirty.accounts.insert(pk);
            Ok(())
        })?;
        let mut neurons = Vec::new();
        store.scan_prefix(&[keys::NEURON], &mut |k, v| {
            let n: Neuron = decode(k, v)?;
            if usize::from(n.uid) != neurons.len() || k != keys::uid(keys::NEURON, n.uid).as_slice() {
                return Err(StoreError::Corrupt {
                    key: hex::encode(k),
                    reason: format!("neuron uid {} out of sequence at slot {}", n.uid, neurons.len()),
                });
            }
            neurons.push(n);
            Ok(())
        })?;
        for n in neurons {
            s.push_neuron(n);
        }
        let n = s.neurons.len();
        store.scan_prefix(&[keys::ROW], &mut |k, v| {
            let uid = uid_of(k)?;
            let row: WeightRow = decode(k, v)?;
            let slot = s.rows.get_mut(usize::from(uid)).ok_or_else(|| StoreError::Corrupt {
                key: hex::encode(k),
                reason: format!("weight row for uid {uid} but only {n} neurons"),
            })?;
            *slot = row;
            Ok(())
        })?;
        let bonds_n = s.globals.bonds_n as usize;
        let mut bond_rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); bonds_n];
        store.scan_prefix(&[keys::BOND], &mut |k, v| {
            let uid = uid_of(k)?;
            let row: BondRow = decode(k, v)?;
            let slot = bond_rows.get_mut(usize::from(uid)).ok_or_else(|| StoreError::Corrupt {
                key: hex::encode(k),
                reason: format!("bonds row {uid} outside a {bonds_n} x {bonds_n} matrix"),
            })?;
            *slot = row.into_iter().map(|(j, v)| (usize::from(j), v.0)).collect();
            Ok(())
        })?;
        let bonds = SparseMatrix::from_rows(bonds_n, bond_rows)
            .map_err(|e| StoreError::Corrupt { key: "b (bonds)".into(), reason: e.to_string() })?;
        let scaling: Vec<Float> = match store.get(keys::SCALING)? {
            Some(v) => decode(keys::SCALING, &v)?,
            None => Vec::new(),
        };
        s.mech = MechanismState { bonds, stake_scaling: scaling.into_iter().map(|x| x.0).collect() };
        // Rebuild every tree; the batch this produces is discarded (the store already holds it).
        s.mark_all_dirty();
        s.finish();
        Ok(s)
    }

    pub(crate) fn mark_all_dirty(&mut self) {
        self.dirty.accounts.extend(self.accounts.keys().copied());
        // uids, not `0..len as u16`: a full table of 65,536 would wrap to an empty range.
        self.dirty.neurons.extend((0..self.neurons.len()).map(|u| u as u16));
        self.dirty.rows.extend((0..self.rows.len()).map(|u| u as u16));
        self.dirty.bonds = true;
        self.dirty.scaling = true;
    }

    // --- reads -----------------------------------------------------------------------------

    pub fn config(&self) -> &GenesisConfig {
        &self.cfg
    }

    pub fn account(&self, pk: &PublicKey) -> Account {
        self.accounts.get(pk).copied().unwrap_or_default()
    }

    /// Every account in key order.
    pub fn accounts(&self) -> impl Iterator<Item = (&PublicKey, &Account)> {
        self.accounts.iter()
    }

    pub fn neurons(&self) -> &[Neuron] {
        &self.neurons
    }

    pub fn globals(&self) -> &Globals {
        &self.globals
    }

    pub fn uid_of(&self, hotkey: &PublicKey) -> Option<u16> {
        self.hotkeys.get(hotkey).copied()
    }

    pub fn neuron(&self, uid: u16) -> Option<&Neuron> {
        self.neurons.get(usize::from(uid))
    }

    pub fn n(&self) -> usize {
        self.neurons.len()
    }

    // --- writes (each marks what it touched) ------------------------------------------------

    pub(crate) fn set_account(&mut self, pk: PublicKey, a: Account) {
        self.accounts.insert(pk, a);
        self.dirty.accounts.insert(pk);
    }

    /// Mutable access to a neuron, marking it dirty. `None` for an unknown uid.
    pub(crate) fn neuron_mut(&mut self, uid: u16) -> Option<&mut Neuron> {
        let n = self.neurons.get_mut(usize::from(uid))?;
        self.dirty.neurons.insert(uid);
        Some(n)
    }

    pub(crate) fn set_row(&mut self, uid: u16, row: WeightRow) {
        if let Some(slot) = self.rows.get_mut(usize::from(uid)) {
            *slot = row;
            self.dirty.rows.insert(uid);
        }
    }

    /// Appends a neuron at uid `n` with an empty weight row.
    pub(crate) fn push_neuron(&mut self, n: Neuron) {
        let uid = n.uid;
        debug_assert_eq!(usize::from(uid), self.neurons.len());
        self.index_hotkey(&n.hotkey, uid);
        self.neurons.push(n);
        self.rows.push(WeightRow::default());
        self.dirty.neurons.insert(uid);
        self.dirty.rows.insert(uid);
    }

    /// Puts `n` in slot `n.uid`, which must exist, dropping the previous occupant's index
    /// entries and clearing the slot's weight row.
    pub(crate) fn replace_neuron(&mut self, n: Neuron) {
        let uid = n.uid;
        let Some(slot) = self.neurons.get_mut(usize::from(uid)) else { return };
        let old = std::mem::replace(slot, n.clone());
        self.hotkeys.remove(&old.hotkey);
        self.key_cache.remove(&old.hotkey);
        self.index_hotkey(&n.hotkey, uid);
        self.dirty.neurons.insert(uid);
        self.set_row(uid, WeightRow::default());
    }

    fn index_hotkey(&mut self, hotkey: &PublicKey, uid: u16) {
        self.hotkeys.insert(*hotkey, uid);
        if let Some(k) = crate::verify::verifying_key(hotkey) {
            self.key_cache.insert(*hotkey, k);
        }
    }

    pub(crate) fn set_mechanism_state(&mut self, m: MechanismState) {
        self.mech = m;
        self.dirty.bonds = true;
        self.dirty.scaling = true;
    }

    /// Marks every neuron dirty (an epoch rewrites them all).
    pub(crate) fn touch_all_neurons(&mut self) {
        self.dirty.neurons.extend((0..self.neurons.len()).map(|u| u as u16));
    }

    // --- commitment -------------------------------------------------------------------------

    /// Hashes every record changed since the last call into its tree, writes it into a batch,
    /// and returns the new state root with that batch.
    pub(crate) fn finish(&mut self) -> (Hash, WriteBatch) {
        let mut batch = WriteBatch::new();
        let dirty = std::mem::take(&mut self.dirty);

        let mut buckets = BTreeSet::new();
        for pk in &dirty.accounts {
            let key = keys::account(pk);
            match self.accounts.get(pk) {
                Some(a) => batch.put(key, encode(a)),
                None => batch.delete(key),
            }
            buckets.insert(u16::from_be_bytes([pk.0[0], pk.0[1]]));
        }
        for b in buckets {
            let lo = PublicKey({
                let mut k = [0u8; 32];
                k[..2].copy_from_slice(&b.to_be_bytes());
                k
            });
            let mut h = Sha256::new();
            h.update([0x00]);
            h.update(b"account-bucket");
            let mut any = false;
            for (pk, a) in self.accounts.range(lo..) {
                if pk.0[..2] != b.to_be_bytes() {
                    break;
                }
                any = true;
                h.update(pk.0);
                h.update(encode(a));
            }
            let leaf = if any { Hash(h.finalize().into()) } else { Hash::ZERO };
            self.accounts_tree.set(usize::from(b), leaf);
        }

        for &uid in &dirty.neurons {
            let key = keys::uid(keys::NEURON, uid);
            let leaf = match self.neurons.get(usize::from(uid)) {
                Some(n) => {
                    let v = encode(n);
                    let leaf = leaf_hash(b"neuron", &key, &v);
                    batch.put(key, v);
                    leaf
                }
                None => Hash::ZERO,
            };
            self.neurons_tree.set(usize::from(uid), leaf);
        }
        for &uid in &dirty.rows {
            let key = keys::uid(keys::ROW, uid);
            let leaf = match self.rows.get(usize::from(uid)) {
                Some(r) if !r.is_empty() => {
                    let v = r.encode();
                    let leaf = leaf_hash(b"weights", &key, &v);
                    batch.put(key, v);
                    leaf
                }
                _ => {
                    batch.delete(key);
                    Hash::ZERO
                }
            };
            self.rows_tree.set(usize::from(uid), leaf);
        }
        if dirty.bonds {
            // An epoch rewrites the bonds wholesale: rehash every slot of the tree (rows past
            // the matrix are empty and deleted).
            let slots = self.bonds_tree.capacity().min(usize::from(u16::MAX) + 1);
            let n = self.mech.bonds.n();
            for i in 0..slots {
                let key = keys::uid(keys::BOND, i as u16);
                let row = bond_row(&self.mech.bonds, i);
                let leaf = if row.is_empty() {
                    if i < n.max(self.neurons.len()) {
                        batch.delete(key);
                    }
                    Hash::ZERO
                } else {
                    let v = encode(&row);
                    let leaf = leaf_hash(b"bonds", &key, &v);
                    batch.put(key, v);
                    leaf
                };
                self.bonds_tree.set(i, leaf);
            }
        }
        if dirty.scaling {
            let v: Vec<Float> = self.mech.stake_scaling.iter().map(|&x| Float(x)).collect();
            let v = encode(&v);
            self.scaling_hash = sha256(&[b"scaling", &v]);
            batch.put(keys::SCALING.to_vec(), v);
        }
        self.globals.bonds_n = self.mech.bonds.n() as u32;
        let g = encode(&self.globals);
        let globals_hash = sha256(&[b"globals", &g]);
        batch.put(keys::GLOBALS.to_vec(), g);

        let root = sha256(&[
            b"agora/state/v1",
            &globals_hash.0,
            &self.accounts_tree.root().0,
            &self.neurons_tree.root().0,
            &self.rows_tree.root().0,
            &self.bonds_tree.root().0,
            &self.scaling_hash.0,
        ]);
        (root, batch)
    }

    /// Sum of all balances and stakes: must equal `issuance.total()` (conservation).
    pub fn circulating(&self) -> u128 {
        let balances: u128 = self.accounts.values().map(|a| u128::from(a.balance)).sum();
        let stakes: u128 = self.neurons.iter().map(|n| u128::from(n.stake)).sum();
        balances + stakes
    }
}

fn uid_of(key: &[u8]) -> Result<u16, StoreError> {
    match key {
        [_, a, b] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(StoreError::Corrupt {
            key: hex::encode(key),
            reason: "expected a table byte and a u16 uid".into(),
        }),
    }
}
