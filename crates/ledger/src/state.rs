//! The chain state in memory, its commitment (the state root) and its mapping onto the store.
//!
//! The working state lives in memory (accounts in a sorted map, neurons and weight rows in
//! vectors indexed by uid, the mechanism's bonds and scaling vector). Every mutation goes
//! through a method that marks the record dirty; `State::finish` then encodes each dirty
//! record once, hashes it into its Merkle tree leaf and puts it in the block's write batch.
//! So the cost of a block is proportional to what it changed, not to the size of the state.
//!
//! The per-network part (neurons, weight rows, bonds, scaling, difficulty, burn, the epoch
//! schedule: [`SubnetState`]) exists once per subnet ([`crate::subnet`]); accounts, the
//! issuance and tau are chain-wide ([`Globals`]). The rules read and write the *selected*
//! subnet through `State`'s `Deref` to its [`SubnetState`]: netuid 0 is selected except while
//! a transaction that names another subnet, or another subnet's epoch, runs
//! (`State::select`), so every rule written for one network runs unchanged on each.
//!
//! State root = `SHA-256("agora/state/v2" || H(globals) || accounts || net(0) || subnets)`,
//! where
//! - `accounts` is a Merkle tree over 2^16 buckets (first two bytes of the key); a bucket's leaf
//!   hashes its accounts in key order, so an insert touches one bucket, not a sorted position;
//! - `net(k) = SHA-256("agora/net/v1" || H(subnet globals) || H(creation record) || neurons ||
//!   weights || bonds || H(scaling))` for subnet k, where `neurons`, `weights` and `bonds` are
//!   Merkle trees over uid slots (`max_neurons` rounded up to a power of two), leaf = hash of
//!   the record's canonical (borsh) encoding with its key;
//! - `subnets = SHA-256("agora/subnets/v1" || net(1) || net(2) || ...)`.

use crate::error::LedgerError;
use crate::genesis::GenesisConfig;
use crate::merkle::{leaf_hash, sha256, MerkleTree};
use crate::store::{Store, StoreError, WriteBatch};
use crate::subnet::SubnetInfo;
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
    /// Base units in existence now: `genesis + minted - burned`.
    pub fn total(&self) -> u128 {
        (u128::from(self.genesis) + self.minted).saturating_sub(self.burned)
    }
}

/// Chain-wide values, one record.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Globals {
    /// Hash of the genesis configuration the chain started from.
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
    /// Genesis, minted and burned base units, across every subnet.
    pub issuance: Issuance,
    /// tau: the emission per block in force, in base units (`emission_per_block` unless
    /// adaptive inflation moved it: see [`crate::inflation`]), split between subnets by
    /// [`crate::subnet::split_block_emission`].
    pub tau: u64,
    /// Subnets created besides netuid 0: they are netuids `1..=subnet_count`.
    pub subnet_count: u16,
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

/// One subnet's values, one record per subnet.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct NetGlobals {
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
    /// `sum(diag W) / sum(W)` at the last epoch (`None` before one, or when W was empty).
    pub sparsity: Option<Float>,
    /// The subnet's shares of each block's emission since its last epoch, in base units: what
    /// its next epoch distributes ([`crate::subnet`]).
    pub emission_pending: u64,
}

#[derive(Debug, Default, Clone)]
struct NetDirty {
    neurons: BTreeSet<u16>,
    rows: BTreeSet<u16>,
    bonds: bool,
    scaling: bool,
    info: bool,
}

/// One subnet's part of the state: its configuration, neuron table, weight rows, mechanism
/// state and [`NetGlobals`], with their Merkle trees.
#[derive(Clone)]
pub struct SubnetState {
    pub(crate) netuid: u16,
    /// The chain's genesis for netuid 0; for a created subnet, the genesis with its
    /// [`SubnetParams`](crate::subnet::SubnetParams) (see `SubnetParams::config`).
    pub(crate) cfg: Arc<GenesisConfig>,
    /// The creation record (`None` for netuid 0).
    pub(crate) info: Option<SubnetInfo>,
    /// The neuron table, shared with the copies a mempool check reads (see
    /// [`State::check_view`]); written through `Arc::make_mut`, which copies only while such a
    /// copy is alive.
    pub(crate) neurons: Arc<Vec<Neuron>>,
    /// The weight rows (W), shared as `neurons` is.
    pub(crate) rows: Arc<Vec<WeightRow>>,
    /// hotkey -> uid (derived from `neurons`, not committed separately), shared as `neurons` is.
    pub(crate) hotkeys: Arc<HashMap<PublicKey, u16>>,
    /// Bonds B and scaling vector A, as the mechanism returned them at the last epoch.
    pub(crate) mech: MechanismState,
    pub(crate) net_globals: NetGlobals,
    neurons_tree: MerkleTree,
    rows_tree: MerkleTree,
    bonds_tree: MerkleTree,
    scaling_hash: Hash,
    dirty: NetDirty,
}

/// The whole state of the chain at one height.
#[derive(Clone)]
pub struct State {
    /// The chain's genesis (netuid 0's configuration).
    pub(crate) chain: Arc<GenesisConfig>,
    pub(crate) accounts: BTreeMap<PublicKey, Account>,
    /// Decompressed keys of registered hotkeys: the senders of most transactions, so their
    /// point decompression is paid once at registration, not per transaction.
    pub(crate) key_cache: HashMap<PublicKey, VerifyingKey>,
    pub(crate) globals: Globals,
    /// The selected subnet (netuid 0 between transactions and epochs).
    pub(crate) net: SubnetState,
    /// Every other subnet, by netuid.
    pub(crate) parked: BTreeMap<u16, SubnetState>,
    accounts_tree: MerkleTree,
    dirty_accounts: BTreeSet<PublicKey>,
}

impl std::ops::Deref for State {
    type Target = SubnetState;
    /// The selected subnet: the rules of one network read it as `state.neurons`, etc.
    fn deref(&self) -> &SubnetState {
        &self.net
    }
}

impl std::ops::DerefMut for State {
    fn deref_mut(&mut self) -> &mut SubnetState {
        &mut self.net
    }
}

/// Buckets of the account tree (first two key bytes).
const ACCOUNT_BUCKETS: usize = 1 << 16;

pub(crate) mod keys {
    use crate::types::PublicKey;

    pub(crate) const ACCOUNT: u8 = b'a';
    pub(crate) const NEURON: u8 = b'n';
    pub(crate) const ROW: u8 = b'w';
    pub(crate) const BOND: u8 = b'b';
    pub(crate) const SCALING: &[u8] = b"m";
    pub(crate) const GLOBALS: &[u8] = b"g";
    /// A subnet's [`super::NetGlobals`] (under the subnet's prefix, see [`net`]).
    pub(crate) const NET_GLOBALS: &[u8] = b"l";
    /// A subnet's creation record.
    pub(crate) const NET_INFO: &[u8] = b"i";
    /// Prefix of the records of subnets other than netuid 0.
    pub(crate) const SUBNET: u8 = b's';
    pub(crate) const GENESIS: &[u8] = b"c";
    pub(crate) const HEAD: &[u8] = b"h";
    pub(crate) const BLOCK: u8 = b'B';
    pub(crate) const BLOCK_HASH: u8 = b'H';
    pub(crate) const TX: u8 = b'T';

    pub(crate) fn account(pk: &PublicKey) -> Vec<u8> {
        let mut k = Vec::with_capacity(33);
        k.push(ACCOUNT);
        k.extend_from_slice(&pk.0);
        k
    }

    pub(crate) fn uid(table: u8, uid: u16) -> Vec<u8> {
        let b = uid.to_be_bytes();
        vec![table, b[0], b[1]]
    }

    /// The key of a subnet's record `key`: as it is for netuid 0 (the layout before subnets),
    /// `'s' || netuid || key` for the others.
    pub(crate) fn net(netuid: u16, key: &[u8]) -> Vec<u8> {
        if netuid == 0 {
            return key.to_vec();
        }
        let mut k = Vec::with_capacity(3 + key.len());
        k.push(SUBNET);
        k.extend_from_slice(&netuid.to_be_bytes());
        k.extend_from_slice(key);
        k
    }

    pub(crate) fn block(height: u64) -> Vec<u8> {
        let mut k = vec![BLOCK];
        k.extend_from_slice(&height.to_be_bytes());
        k
    }

    pub(crate) fn tx(id: &crate::types::Hash) -> Vec<u8> {
        let mut k = vec![TX];
        k.extend_from_slice(&id.0);
        k
    }

    pub(crate) fn block_hash(hash: &crate::types::Hash) -> Vec<u8> {
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

impl SubnetState {
    fn new(netuid: u16, cfg: Arc<GenesisConfig>, info: Option<SubnetInfo>, net_globals: NetGlobals) -> Self {
        let slots = cfg.max_neurons as usize;
        SubnetState {
            netuid,
            info,
            neurons: Arc::default(),
            rows: Arc::default(),
            hotkeys: Arc::default(),
            mech: MechanismState::genesis(0),
            net_globals,
            neurons_tree: MerkleTree::new(slots),
            rows_tree: MerkleTree::new(slots),
            bonds_tree: MerkleTree::new(slots),
            scaling_hash: Hash::ZERO,
            dirty: NetDirty { info: true, ..NetDirty::default() },
            cfg,
        }
    }

    /// A new subnet's state: no neurons, the configuration's initial difficulty and burn.
    pub(crate) fn created(cfg: Arc<GenesisConfig>, info: SubnetInfo) -> Self {
        let g = NetGlobals {
            difficulty: cfg.registration.difficulty,
            registrations_this_interval: 0,
            burn: cfg.registration.burn,
            last_epoch_block: 0,
            replaced_since_epoch: BTreeSet::new(),
            bonds_n: 0,
            sparsity: None,
            emission_pending: 0,
        };
        let mut s = SubnetState::new(info.netuid, cfg, Some(info), g);
        s.dirty.bonds = true;
        s.dirty.scaling = true;
        s
    }

    /// Loads subnet `netuid`'s records from a store; `cfg` is its configuration.
    fn load<S: Store>(
        store: &S,
        netuid: u16,
        cfg: Arc<GenesisConfig>,
        info: Option<SubnetInfo>,
    ) -> Result<SubnetState, LedgerError> {
        let gkey = keys::net(netuid, keys::NET_GLOBALS);
        let g: NetGlobals = decode(&gkey, &store.get(&gkey)?.ok_or(LedgerError::NotInitialised)?)?;
        let mut s = SubnetState::new(netuid, cfg, info, g);
        let mut neurons = Vec::new();
        store.scan_prefix(&keys::net(netuid, &[keys::NEURON]), &mut |k, v| {
            let n: Neuron = decode(k, v)?;
            if usize::from(n.uid) != neurons.len()
                || k != keys::net(netuid, &keys::uid(keys::NEURON, n.uid)).as_slice()
            {
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
        let prefix = keys::net(netuid, &[]).len();
        store.scan_prefix(&keys::net(netuid, &[keys::ROW]), &mut |k, v| {
            let uid = uid_of(&k[prefix..])?;
            let row: WeightRow = decode(k, v)?;
            let slot =
                Arc::make_mut(&mut s.rows).get_mut(usize::from(uid)).ok_or_else(|| StoreError::Corrupt {
                    key: hex::encode(k),
                    reason: format!("weight row for uid {uid} but only {n} neurons"),
                })?;
            *slot = row;
            Ok(())
        })?;
        let bonds_n = s.net_globals.bonds_n as usize;
        let mut bond_rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); bonds_n];
        store.scan_prefix(&keys::net(netuid, &[keys::BOND]), &mut |k, v| {
            let uid = uid_of(&k[prefix..])?;
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
        let skey = keys::net(netuid, keys::SCALING);
        let scaling: Vec<Float> = match store.get(&skey)? {
            Some(v) => decode(&skey, &v)?,
            None => Vec::new(),
        };
        s.mech = MechanismState { bonds, stake_scaling: scaling.into_iter().map(|x| x.0).collect() };
        s.mark_all_dirty();
        Ok(s)
    }

    /// What the transaction rules read (configuration, neurons, rows, hotkeys, the subnet's
    /// values), without the Merkle trees and the bonds, which only commitment and epochs read:
    /// what a check of one transaction sees. The table, rows and index are shared, not copied.
    fn rules_view(&self) -> SubnetState {
        SubnetState {
            netuid: self.netuid,
            cfg: self.cfg.clone(),
            info: self.info.clone(),
            neurons: self.neurons.clone(),
            rows: self.rows.clone(),
            hotkeys: self.hotkeys.clone(),
            mech: MechanismState::genesis(0),
            net_globals: self.net_globals.clone(),
            neurons_tree: MerkleTree::new(1),
            rows_tree: MerkleTree::new(1),
            bonds_tree: MerkleTree::new(1),
            scaling_hash: Hash::ZERO,
            dirty: NetDirty::default(),
        }
    }

    fn mark_all_dirty(&mut self) {
        // uids, not `0..len as u16`: a full table of 65,536 would wrap to an empty range.
        self.dirty.neurons.extend((0..self.neurons.len()).map(|u| u as u16));
        self.dirty.rows.extend((0..self.rows.len()).map(|u| u as u16));
        self.dirty.bonds = true;
        self.dirty.scaling = true;
        self.dirty.info = true;
    }

    /// Appends a neuron at uid `n` with an empty weight row (the hotkey key cache is the
    /// caller's: see [`State::push_neuron`]).
    fn push_neuron(&mut self, n: Neuron) {
        let uid = n.uid;
        debug_assert_eq!(usize::from(uid), self.neurons.len());
        Arc::make_mut(&mut self.hotkeys).insert(n.hotkey, uid);
        Arc::make_mut(&mut self.neurons).push(n);
        Arc::make_mut(&mut self.rows).push(WeightRow::default());
        self.dirty.neurons.insert(uid);
        self.dirty.rows.insert(uid);
    }

    // --- reads -----------------------------------------------------------------------------

    /// This subnet's netuid.
    pub fn netuid(&self) -> u16 {
        self.netuid
    }

    /// The configuration the subnet's rules read (the chain's genesis for netuid 0).
    pub fn config(&self) -> &GenesisConfig {
        &self.cfg
    }

    /// The creation record (`None` for netuid 0).
    pub fn info(&self) -> Option<&SubnetInfo> {
        self.info.as_ref()
    }

    /// The subnet's neuron table, in uid order.
    pub fn neurons(&self) -> &[Neuron] {
        &self.neurons
    }

    /// The uid `hotkey` holds on the subnet.
    pub fn uid_of(&self, hotkey: &PublicKey) -> Option<u16> {
        self.hotkeys.get(hotkey).copied()
    }

    /// Neuron `uid` of the subnet.
    pub fn neuron(&self, uid: u16) -> Option<&Neuron> {
        self.neurons.get(usize::from(uid))
    }

    /// Neurons registered on the subnet.
    pub fn n(&self) -> usize {
        self.neurons.len()
    }

    /// Row `uid` of W as stored.
    pub fn row(&self, uid: u16) -> Option<&WeightRow> {
        self.rows.get(usize::from(uid))
    }

    /// The bonds and scaling vector of the last epoch.
    pub fn mechanism_state(&self) -> &MechanismState {
        &self.mech
    }

    /// The subnet's own counters (difficulty, burn, pending emission, ...).
    pub fn net_globals(&self) -> &NetGlobals {
        &self.net_globals
    }

    /// Stake of every neuron registered here (what the emission split reads).
    pub fn registered_stake(&self) -> u128 {
        self.neurons.iter().map(|n| u128::from(n.stake)).sum()
    }

    // --- commitment -------------------------------------------------------------------------

    /// Hashes the subnet's changed records into its trees and the batch; returns `net(k)`.
    fn finish(&mut self, batch: &mut WriteBatch) -> Hash {
        let netuid = self.netuid;
        let dirty = std::mem::take(&mut self.dirty);
        for &uid in &dirty.neurons {
            let key = keys::net(netuid, &keys::uid(keys::NEURON, uid));
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
            let key = keys::net(netuid, &keys::uid(keys::ROW, uid));
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
                let key = keys::net(netuid, &keys::uid(keys::BOND, i as u16));
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
            batch.put(keys::net(netuid, keys::SCALING), v);
        }
        if dirty.info {
            if let Some(info) = &self.info {
                batch.put(keys::net(netuid, keys::NET_INFO), encode(info));
            }
        }
        self.net_globals.bonds_n = self.mech.bonds.n() as u32;
        let g = encode(&self.net_globals);
        let globals_hash = sha256(&[b"net-globals", &g]);
        batch.put(keys::net(netuid, keys::NET_GLOBALS), g);
        let info_hash = self.info.as_ref().map_or(Hash::ZERO, |i| sha256(&[b"net-info", &encode(i)]));
        sha256(&[
            b"agora/net/v1",
            &globals_hash.0,
            &info_hash.0,
            &self.neurons_tree.root().0,
            &self.rows_tree.root().0,
            &self.bonds_tree.root().0,
            &self.scaling_hash.0,
        ])
    }
}

impl State {
    /// The state at height 0.
    pub fn genesis(cfg: Arc<GenesisConfig>) -> Result<State, LedgerError> {
        cfg.validate()?;
        let issuance = cfg.issuance()?;
        let genesis_hash = cfg.hash();
        let globals = Globals {
            genesis_hash,
            height: 0,
            timestamp_ms: cfg.genesis_time_ms,
            recent_hashes: Vec::new(),
            issuance: Issuance { genesis: issuance, minted: 0, burned: 0 },
            tau: cfg.emission_per_block,
            subnet_count: 0,
        };
        let net_globals = NetGlobals {
            difficulty: cfg.registration.difficulty,
            registrations_this_interval: 0,
            burn: cfg.registration.burn,
            last_epoch_block: 0,
            replaced_since_epoch: BTreeSet::new(),
            bonds_n: cfg.neurons.len() as u32,
            sparsity: None,
            emission_pending: 0,
        };
        let mut s = State::empty(cfg.clone(), globals, SubnetState::new(0, cfg.clone(), None, net_globals));
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
        s.net.mech = MechanismState::genesis(cfg.neurons.len());
        s.net.dirty.bonds = true;
        s.net.dirty.scaling = true;
        Ok(s)
    }

    fn empty(chain: Arc<GenesisConfig>, globals: Globals, net: SubnetState) -> State {
        State {
            chain,
            accounts: BTreeMap::new(),
            key_cache: HashMap::new(),
            globals,
            net,
            parked: BTreeMap::new(),
            accounts_tree: MerkleTree::new(ACCOUNT_BUCKETS),
            dirty_accounts: BTreeSet::new(),
        }
    }

    /// Loads the committed state from a store.
    pub fn load<S: Store>(store: &S) -> Result<State, LedgerError> {
        let cfg_bytes = store.get(keys::GENESIS)?.ok_or(LedgerError::NotInitialised)?;
        let cfg: GenesisConfig = serde_json::from_slice(&cfg_bytes)
            .map_err(|e| StoreError::Corrupt { key: "c (genesis)".into(), reason: e.to_string() })?;
        // Refuse a stored configuration no chain could have started from (a damaged store).
        cfg.validate()?;
        let cfg = Arc::new(cfg);
        let globals_bytes = store.get(keys::GLOBALS)?.ok_or(LedgerError::NotInitialised)?;
        let globals: Globals = decode(keys::GLOBALS, &globals_bytes)?;
        let net0 = SubnetState::load(store, 0, cfg.clone(), None)?;
        let count = globals.subnet_count;
        let mut s = State::empty(cfg.clone(), globals, net0);
        for netuid in 1..=count {
            let ikey = keys::net(netuid, keys::NET_INFO);
            let info: SubnetInfo = decode(&ikey, &store.get(&ikey)?.ok_or(LedgerError::NotInitialised)?)?;
            let sub = info.params.config(&cfg).map_err(|reason| StoreError::Corrupt {
                key: hex::encode(&ikey),
                reason: format!("subnet {netuid}'s parameters are refused: {reason}"),
            })?;
            let net = SubnetState::load(store, netuid, Arc::new(sub), Some(info))?;
            s.parked.insert(netuid, net);
        }
        store.scan_prefix(&[keys::ACCOUNT], &mut |k, v| {
            let pk = PublicKey(k[1..].try_into().map_err(|_| StoreError::Corrupt {
                key: hex::encode(k),
                reason: "account key is not 32 bytes".into(),
            })?);
            s.accounts.insert(pk, decode(k, v)?);
            s.dirty_accounts.insert(pk);
            Ok(())
        })?;
        let hotkeys: Vec<PublicKey> = s.subnets().flat_map(|n| n.neurons.iter().map(|x| x.hotkey)).collect();
        for h in hotkeys {
            s.cache_key(&h);
        }
        // Rebuild every tree; the batch this produces is discarded (the store already holds it).
        s.finish();
        Ok(s)
    }

    pub(crate) fn mark_all_dirty(&mut self) {
        self.dirty_accounts.extend(self.accounts.keys().copied());
        self.net.mark_all_dirty();
        for n in self.parked.values_mut() {
            n.mark_all_dirty();
        }
    }

    // --- subnets ----------------------------------------------------------------------------

    /// Makes subnet `netuid` the one the rules read and write (see the module doc); false,
    /// changing nothing, if there is no such subnet.
    pub(crate) fn select(&mut self, netuid: u16) -> bool {
        if self.net.netuid == netuid {
            return true;
        }
        let Some(mut other) = self.parked.remove(&netuid) else { return false };
        std::mem::swap(&mut self.net, &mut other);
        self.parked.insert(other.netuid, other);
        true
    }

    /// Subnet `netuid`, whichever is selected.
    pub fn subnet(&self, netuid: u16) -> Option<&SubnetState> {
        if self.net.netuid == netuid {
            Some(&self.net)
        } else {
            self.parked.get(&netuid)
        }
    }

    /// Every subnet, in netuid order.
    pub fn subnets(&self) -> impl Iterator<Item = &SubnetState> {
        let netuids = 0..=self.globals.subnet_count;
        netuids.filter_map(|k| self.subnet(k))
    }

    /// Opens a subnet (its parameters checked by the caller).
    pub(crate) fn add_subnet(&mut self, net: SubnetState) {
        self.globals.subnet_count = self.globals.subnet_count.max(net.netuid);
        self.parked.insert(net.netuid, net);
    }

    /// A copy of the state restricted to what a check of a transaction by `sender` on subnet
    /// `netuid` reads (the sender's account, the chain globals, that subnet selected), or
    /// `None` for an unknown subnet. Checking works on a view because the rules read the
    /// selected subnet and a check must not change the state; the view shares the subnet's
    /// table, rows and hotkey index (`Arc`s, copied on write only while a view is alive) and
    /// holds one account, so a check costs the same whatever the subnet's size.
    pub(crate) fn check_view(&self, netuid: u16, sender: &PublicKey) -> Option<State> {
        let net = self.subnet(netuid)?.rules_view();
        let mut accounts = BTreeMap::new();
        if let Some(a) = self.accounts.get(sender) {
            accounts.insert(*sender, *a);
        }
        Some(State {
            chain: self.chain.clone(),
            accounts,
            key_cache: HashMap::new(),
            globals: self.globals.clone(),
            net,
            parked: BTreeMap::new(),
            accounts_tree: MerkleTree::new(1),
            dirty_accounts: BTreeSet::new(),
        })
    }

    // --- reads -----------------------------------------------------------------------------

    /// The chain's genesis configuration (netuid 0's).
    pub fn chain_config(&self) -> &GenesisConfig {
        &self.chain
    }

    /// `pk`'s account (zero balance and nonce if it never appeared).
    pub fn account(&self, pk: &PublicKey) -> Account {
        self.accounts.get(pk).copied().unwrap_or_default()
    }

    /// Every account in key order.
    pub fn accounts(&self) -> impl Iterator<Item = (&PublicKey, &Account)> {
        self.accounts.iter()
    }

    /// The chain-wide values (height, recent hashes, issuance, tau, subnet count).
    pub fn globals(&self) -> &Globals {
        &self.globals
    }

    // --- writes (each marks what it touched) ------------------------------------------------

    pub(crate) fn set_account(&mut self, pk: PublicKey, a: Account) {
        self.accounts.insert(pk, a);
        self.dirty_accounts.insert(pk);
    }

    /// Mutable access to a neuron of the selected subnet, marking it dirty. `None` for an
    /// unknown uid.
    pub(crate) fn neuron_mut(&mut self, uid: u16) -> Option<&mut Neuron> {
        let net = &mut self.net;
        let n = Arc::make_mut(&mut net.neurons).get_mut(usize::from(uid))?;
        net.dirty.neurons.insert(uid);
        Some(n)
    }

    pub(crate) fn set_row(&mut self, uid: u16, row: WeightRow) {
        let net = &mut self.net;
        if let Some(slot) = Arc::make_mut(&mut net.rows).get_mut(usize::from(uid)) {
            *slot = row;
            net.dirty.rows.insert(uid);
        }
    }

    /// Appends a neuron at uid `n` of the selected subnet with an empty weight row.
    pub(crate) fn push_neuron(&mut self, n: Neuron) {
        self.cache_key(&n.hotkey);
        self.net.push_neuron(n);
    }

    /// Puts `n` in slot `n.uid`, which must exist, dropping the previous occupant's index
    /// entries and clearing the slot's weight row.
    pub(crate) fn replace_neuron(&mut self, n: Neuron) {
        let uid = n.uid;
        let Some(slot) = Arc::make_mut(&mut self.net.neurons).get_mut(usize::from(uid)) else { return };
        let old = std::mem::replace(slot, n.clone());
        Arc::make_mut(&mut self.net.hotkeys).remove(&old.hotkey);
        // The key stays cached while the hotkey is registered in another subnet.
        if !self.subnets().any(|s| s.hotkeys.contains_key(&old.hotkey)) {
            self.key_cache.remove(&old.hotkey);
        }
        Arc::make_mut(&mut self.net.hotkeys).insert(n.hotkey, uid);
        self.cache_key(&n.hotkey);
        self.net.dirty.neurons.insert(uid);
        self.set_row(uid, WeightRow::default());
    }

    fn cache_key(&mut self, hotkey: &PublicKey) {
        if let Some(k) = crate::verify::verifying_key(hotkey) {
            self.key_cache.insert(*hotkey, k);
        }
    }

    pub(crate) fn set_mechanism_state(&mut self, m: MechanismState) {
        self.net.mech = m;
        self.net.dirty.bonds = true;
        self.net.dirty.scaling = true;
    }

    /// Marks every neuron of the selected subnet dirty (an epoch rewrites them all).
    pub(crate) fn touch_all_neurons(&mut self) {
        let net = &mut self.net;
        net.dirty.neurons.extend((0..net.neurons.len()).map(|u| u as u16));
    }

    // --- commitment -------------------------------------------------------------------------

    /// Hashes every record changed since the last call into its tree, writes it into a batch,
    /// and returns the new state root with that batch. Netuid 0 must be selected.
    pub(crate) fn finish(&mut self) -> (Hash, WriteBatch) {
        debug_assert_eq!(self.net.netuid, 0, "a subnet left selected");
        let mut batch = WriteBatch::new();
        let dirty = std::mem::take(&mut self.dirty_accounts);

        let mut buckets = BTreeSet::new();
        for pk in &dirty {
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

        let net0 = self.net.finish(&mut batch);
        let mut subnets = Sha256::new();
        subnets.update(b"agora/subnets/v1");
        for net in self.parked.values_mut() {
            subnets.update(net.finish(&mut batch).0);
        }
        let subnets = Hash(subnets.finalize().into());

        let g = encode(&self.globals);
        let globals_hash = sha256(&[b"globals", &g]);
        batch.put(keys::GLOBALS.to_vec(), g);

        let root =
            sha256(&[b"agora/state/v2", &globals_hash.0, &self.accounts_tree.root().0, &net0.0, &subnets.0]);
        (root, batch)
    }

    /// Sum of all balances and stakes (in every subnet): must equal `issuance.total()`
    /// (conservation).
    pub fn circulating(&self) -> u128 {
        let balances: u128 = self.accounts.values().map(|a| u128::from(a.balance)).sum();
        let stakes: u128 = self.subnets().map(SubnetState::registered_stake).sum();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::GenesisNeuron;

    /// A mempool check reads a view of a subnet; the view must share the subnet's table, rows
    /// and hotkey index rather than copy them (a copy per check made every submitted subnet
    /// transaction, even one with a bad signature, cost a copy of the whole subnet), and a
    /// write to the state while a view is alive must not show through it.
    #[test]
    fn a_check_view_shares_the_subnet_and_a_later_write_does_not_reach_it() {
        let neurons = (0..3u8)
            .map(|i| GenesisNeuron {
                hotkey: PublicKey([i + 1; 32]),
                coldkey: PublicKey([200; 32]),
                stake: 100,
                endpoint: None,
            })
            .collect();
        let cfg = GenesisConfig { chain_id: "t".into(), max_neurons: 8, neurons, ..Default::default() };
        let mut s = State::genesis(Arc::new(cfg)).unwrap();
        s.set_row(0, WeightRow(vec![(1, 7)]));
        let view = s.check_view(0, &PublicKey([1; 32])).unwrap();
        assert!(Arc::ptr_eq(&view.net.neurons, &s.net.neurons));
        assert!(Arc::ptr_eq(&view.net.rows, &s.net.rows));
        assert!(Arc::ptr_eq(&view.net.hotkeys, &s.net.hotkeys));

        s.neuron_mut(1).unwrap().stake = 5;
        s.set_row(0, WeightRow(vec![(2, 9)]));
        assert_eq!(view.net.neurons[1].stake, 100);
        assert_eq!(view.net.rows[0], WeightRow(vec![(1, 7)]));
        assert_eq!(s.net.neurons[1].stake, 5);
        assert_eq!(s.net.rows[0], WeightRow(vec![(2, 9)]));
        assert!(view.check_view(9, &PublicKey([1; 32])).is_none());
    }
}
