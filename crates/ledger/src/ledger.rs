//! [`Ledger`]: the state machine behind the `execute block -> commit` boundary.

use crate::block::{
    encode_stored_block, tx_root, Block, BlockHeader, BlockOutcome, EpochReport, Receipt, StoredBlock,
    TxStatus,
};
use crate::epoch::run_epoch;
use crate::error::{BlockError, LedgerError, TxError};
use crate::exec::{authenticate, execute_tx, plan, BlockCtx, SigVerdict};
use crate::genesis::GenesisConfig;
use crate::pow::next_difficulty;
use crate::state::{decode, keys, Issuance, State, SubnetState};
use crate::store::{Store, WriteBatch};
use crate::subnet::{split_block_emission, ROOT_NETUID};
use crate::tx::{signing_message, PreparedTx, SignedTx};
use crate::types::{Account, Hash, Neuron, PublicKey, WeightRow};
use crate::verify::{verify_all, verify_with, verifying_key, SigJob};
use borsh::{BorshDeserialize, BorshSerialize};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

mod admission;

/// The last committed block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ChainHead {
    /// Its height (0 before the first block).
    pub height: u64,
    /// Hash of the block at `height` (the genesis hash at height 0).
    pub hash: Hash,
    /// Its timestamp, in Unix milliseconds (the genesis time at height 0).
    pub timestamp_ms: u64,
    /// The state root after it: what the next block's execution starts from.
    pub state_root: Hash,
}

/// Every `registration.interval` blocks, the selected subnet's difficulty and burn move toward
/// the target registration rate.
fn adjust_registration(state: &mut State, height: u64) {
    let r = state.config().registration.clone();
    if !height.is_multiple_of(r.interval) {
        return;
    }
    let g = &mut state.net_globals;
    g.difficulty = next_difficulty(
        g.difficulty,
        g.registrations_this_interval,
        r.target_per_interval,
        r.min_difficulty,
        r.max_difficulty,
    );
    // Burned registrations follow the same demand (market paper v2: registration costs what
    // the network's popularity makes it cost).
    g.burn =
        next_difficulty(g.burn, g.registrations_this_interval, r.target_per_interval, r.min_burn, r.max_burn);
    g.registrations_this_interval = 0;
}

/// What executing a block produced, before it is staged.
struct Ran {
    root: Hash,
    batch: WriteBatch,
    receipts: Vec<Receipt>,
    epoch: Option<EpochReport>,
    minted: u64,
    burned: u64,
}

struct Pending {
    outcome: BlockOutcome,
    batch: WriteBatch,
}

/// The chain state machine over a [`Store`].
///
/// Contract (the boundary a block producer or a BFT engine drives):
/// - [`Ledger::propose`] (build a block from transactions) and [`Ledger::execute_block`]
///   (check and execute a block received from others) run one block on top of the committed
///   head, in memory. The block is then *pending*: queries see its state, nothing is written.
/// - [`Ledger::commit`] writes the pending block (state changes, block, receipts, head) to the
///   store as one atomic batch; [`Ledger::discard`] drops it and returns to the committed head.
/// - Exactly one block may be pending: propose/execute while one is pending is an error. Calls
///   are stateful and must come in order from one thread; queries (`&self`) may come any time.
/// - Execution is a pure function of the committed state and the block: no clock (time is the
///   block's timestamp), no randomness, the same result for any rayon thread count.
pub struct Ledger<S: Store> {
    store: S,
    state: State,
    head: ChainHead,
    pending: Option<Pending>,
}

impl<S: Store> Ledger<S> {
    /// Writes the genesis state into an empty store.
    pub fn init(mut store: S, genesis: GenesisConfig) -> Result<Self, LedgerError> {
        if store.get(keys::GENESIS)?.is_some() {
            let existing = State::load(&store)?;
            return Err(LedgerError::AlreadyInitialised(existing.globals.genesis_hash));
        }
        let mut state = State::genesis(Arc::new(genesis))?;
        let (root, mut batch) = state.finish();
        let head = ChainHead {
            height: 0,
            hash: state.globals.genesis_hash,
            timestamp_ms: state.globals.timestamp_ms,
            state_root: root,
        };
        batch.put(keys::GENESIS.to_vec(), serde_json::to_vec(state.config()).unwrap_or_default());
        batch.put(keys::HEAD.to_vec(), borsh::to_vec(&head).unwrap_or_default());
        store.commit(batch)?;
        Ok(Ledger { store, state, head, pending: None })
    }

    /// Opens a store that holds a chain, at its last committed block.
    pub fn open(store: S) -> Result<Self, LedgerError> {
        let state = State::load(&store)?;
        let head_bytes = store.get(keys::HEAD)?.ok_or(LedgerError::NotInitialised)?;
        let head: ChainHead = decode(keys::HEAD, &head_bytes)?;
        Ok(Ledger { store, state, head, pending: None })
    }

    /// Opens the chain in `store`, or starts it from `genesis` if the store is empty. A store
    /// holding another chain is an error (a data directory reused with a different genesis file).
    pub fn open_or_init(store: S, genesis: GenesisConfig) -> Result<Self, LedgerError> {
        if store.get(keys::GENESIS)?.is_none() {
            return Self::init(store, genesis);
        }
        let ledger = Self::open(store)?;
        let stored = ledger.state.globals.genesis_hash;
        let given = genesis.hash();
        if stored != given {
            return Err(LedgerError::GenesisMismatch { stored, given });
        }
        Ok(ledger)
    }

    // --- the execute / commit boundary -----------------------------------------------------

    /// Builds and executes the next block from `txs`, in the given order (the caller, a mempool,
    /// chooses the order). Every transaction is included; one that fails authentication is
    /// recorded as rejected and changes nothing. The block is left pending.
    pub fn propose(
        &mut self,
        txs: Vec<SignedTx>,
        timestamp_ms: u64,
        proposer: PublicKey,
    ) -> Result<(Block, BlockOutcome), BlockError> {
        let header = BlockHeader {
            height: self.head.height + 1,
            parent_hash: self.head.hash,
            timestamp_ms,
            proposer,
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
        };
        self.check_header(&header, txs.len())?;
        let (prepared, bodies) = prepare_all(&txs);
        let mut header = header;
        header.tx_root = tx_root(&prepared.iter().map(|p| p.id).collect::<Vec<_>>());
        let ran = self.run(&header, &txs, &prepared);
        header.state_root = ran.root;
        let block = Block { header, txs };
        let outcome = self.stage(&block, &bodies, ran);
        Ok((block, outcome))
    }

    /// Checks and executes a block built by someone else. On any error the ledger is left as it
    /// was (a state root mismatch reloads the committed state). On success the block is pending.
    pub fn execute_block(&mut self, block: &Block) -> Result<BlockOutcome, BlockError> {
        self.check_header(&block.header, block.txs.len())?;
        let (prepared, bodies) = prepare_all(&block.txs);
        let computed = tx_root(&prepared.iter().map(|p| p.id).collect::<Vec<_>>());
        if computed != block.header.tx_root {
            return Err(BlockError::TxRootMismatch { computed, got: block.header.tx_root });
        }
        let ran = self.run(&block.header, &block.txs, &prepared);
        if ran.root != block.header.state_root {
            self.state = State::load(&self.store)?;
            return Err(BlockError::StateRootMismatch { computed: ran.root, got: block.header.state_root });
        }
        Ok(self.stage(block, &bodies, ran))
    }

    /// Writes the pending block atomically and makes it the head. If the store fails, the
    /// in-memory state returns to the committed head and the error is returned.
    pub fn commit(&mut self) -> Result<BlockOutcome, LedgerError> {
        self.commit_with(WriteBatch::new())
    }

    /// [`Ledger::commit`], writing `extra` records of the caller's own in the same atomic batch
    /// (a consensus layer indexes its view of the block beside it, so the two never disagree
    /// after a crash). Every key must start with [`crate::store::EXTERNAL_PREFIX`], which the
    /// ledger never reads; otherwise nothing is written and the block stays pending.
    pub fn commit_with(&mut self, extra: WriteBatch) -> Result<BlockOutcome, LedgerError> {
        if self.pending.is_none() {
            return Err(LedgerError::NothingPending);
        }
        if let Some((key, _)) = extra.iter().find(|(k, _)| k.first() != Some(&crate::store::EXTERNAL_PREFIX))
        {
            return Err(LedgerError::NotExternal(hex::encode(key)));
        }
        let mut p = self.pending.take().ok_or(LedgerError::NothingPending)?;
        p.batch.extend(extra);
        if let Err(e) = self.store.commit(p.batch) {
            self.state = State::load(&self.store)?;
            return Err(e.into());
        }
        let h = &p.outcome.header;
        self.head = ChainHead {
            height: h.height,
            hash: p.outcome.hash,
            timestamp_ms: h.timestamp_ms,
            state_root: h.state_root,
        };
        Ok(p.outcome)
    }

    /// Drops the pending block and returns to the committed head.
    pub fn discard(&mut self) -> Result<(), LedgerError> {
        if self.pending.take().is_none() {
            return Err(LedgerError::NothingPending);
        }
        self.state = State::load(&self.store)?;
        Ok(())
    }

    /// The block that is executed but not yet committed, if any.
    pub fn pending(&self) -> Option<&BlockOutcome> {
        self.pending.as_ref().map(|p| &p.outcome)
    }

    fn check_header(&self, h: &BlockHeader, txs: usize) -> Result<(), BlockError> {
        if let Some(p) = &self.pending {
            return Err(BlockError::Pending(p.outcome.header.height));
        }
        let expected = self.head.height + 1;
        if h.height != expected {
            return Err(BlockError::WrongHeight { expected, got: h.height });
        }
        if h.parent_hash != self.head.hash {
            return Err(BlockError::WrongParent { expected: self.head.hash, got: h.parent_hash });
        }
        if h.timestamp_ms < self.head.timestamp_ms {
            return Err(BlockError::TimestampDecreasing {
                parent: self.head.timestamp_ms,
                got: h.timestamp_ms,
            });
        }
        let max = self.state.config().limits.max_block_txs as usize;
        if txs > max {
            return Err(BlockError::TooManyTransactions { count: txs as u64, max: max as u64 });
        }
        Ok(())
    }

    /// Executes a block's transactions and end-of-block work on the in-memory state.
    fn run(&mut self, header: &BlockHeader, txs: &[SignedTx], prepared: &[PreparedTx]) -> Ran {
        let height = header.height;
        let before = self.state.globals.issuance;
        {
            let window = self.state.config().registration.pow_window as usize;
            let g = &mut self.state.globals;
            g.height = height;
            g.timestamp_ms = header.timestamp_ms;
            g.recent_hashes.push(header.parent_hash);
            if g.recent_hashes.len() > window {
                let excess = g.recent_hashes.len() - window;
                g.recent_hashes.drain(..excess);
            }
        }
        let verdicts = self.verify_signatures(txs, prepared);
        let mut ctx = BlockCtx { height, registrations: 0, parent: None };
        let receipts: Vec<Receipt> = txs
            .iter()
            .zip(prepared)
            .zip(verdicts)
            .map(|((tx, p), v)| execute_tx(&mut self.state, &mut ctx, tx, p, v))
            .collect();

        let epoch = self.end_block_subnets(height);
        let after = self.state.globals.issuance;
        let minted = u64::try_from(after.minted - before.minted).unwrap_or(u64::MAX);
        let burned = u64::try_from(after.burned - before.burned).unwrap_or(u64::MAX);
        let (root, batch) = self.state.finish();
        Ran { root, batch, receipts, epoch, minted, burned }
    }

    /// The end of a block on every subnet: its share of the block's emission (split by
    /// registered stake, [`crate::subnet`]), its epoch when its tempo divides the height, and
    /// its difficulty and burn adjustment. Returns netuid 0's epoch report.
    fn end_block_subnets(&mut self, height: u64) -> Option<EpochReport> {
        let stakes: Vec<u128> = self.state.subnets().map(SubnetState::registered_stake).collect();
        let netuids: Vec<u16> = self.state.subnets().map(SubnetState::netuid).collect();
        let shares = split_block_emission(self.state.globals.tau, &stakes);
        let mut root_epoch = None;
        for (netuid, share) in netuids.into_iter().zip(shares) {
            self.state.select(netuid);
            let g = &mut self.state.net_globals;
            g.emission_pending = g.emission_pending.saturating_add(share);
            let tempo = self.state.config().tempo;
            let epoch = height.is_multiple_of(tempo).then(|| run_epoch(&mut self.state, height));
            if netuid == ROOT_NETUID {
                root_epoch = epoch;
            }
            adjust_registration(&mut self.state, height);
        }
        self.state.select(ROOT_NETUID);
        root_epoch
    }

    /// Signature verdicts for a block: keys from the cache of registered hotkeys or decompressed,
    /// then batch verification (see [`crate::verify`]).
    fn verify_signatures(&self, txs: &[SignedTx], prepared: &[PreparedTx]) -> Vec<SigVerdict> {
        let state = &self.state;
        let chain_id = &state.config().chain_id;
        let jobs: Vec<SigJob> = txs
            .par_iter()
            .zip(prepared)
            .map(|(tx, p)| {
                let sender = &tx.body.sender;
                let key = state.key_cache.get(sender).copied().or_else(|| verifying_key(sender));
                SigJob { key, msg: signing_message(chain_id, &p.body_hash), sig: tx.signature }
            })
            .collect();
        let ok = verify_all(&jobs);
        jobs.iter()
            .zip(ok)
            .map(|(j, ok)| match (j.key.is_some(), ok) {
                (false, _) => SigVerdict::BadKey,
                (true, true) => SigVerdict::Valid,
                (true, false) => SigVerdict::BadSignature,
            })
            .collect()
    }

    fn stage(&mut self, block: &Block, bodies: &[Vec<u8>], ran: Ran) -> BlockOutcome {
        let Ran { root: _, mut batch, receipts, epoch, minted, burned } = ran;
        let hash = block.header.hash();
        let h = &block.header;
        let head =
            ChainHead { height: h.height, hash, timestamp_ms: h.timestamp_ms, state_root: h.state_root };
        batch.put(keys::block(h.height), encode_stored_block(block, bodies, &receipts, &epoch));
        batch.put(keys::block_hash(&hash), h.height.to_be_bytes().to_vec());
        for (k, r) in receipts.iter().enumerate() {
            if !matches!(r.status, TxStatus::Rejected(_)) {
                let mut loc = h.height.to_be_bytes().to_vec();
                loc.extend_from_slice(&(k as u32).to_be_bytes());
                batch.put(keys::tx(&r.tx_id), loc);
            }
        }
        batch.put(keys::HEAD.to_vec(), borsh::to_vec(&head).unwrap_or_default());
        let outcome = BlockOutcome { header: block.header.clone(), hash, receipts, epoch, minted, burned };
        self.pending = Some(Pending { outcome: outcome.clone(), batch });
        outcome
    }

    // --- transactions before a block --------------------------------------------------------

    /// Would `tx` be applied if it were the first transaction of the next block? `Ok` means
    /// applied; `Err` carries the reason (authentication failures and call failures alike). For
    /// a mempool: it reads the current state (including a pending block) and changes nothing.
    /// The nonce must be the sender's next nonce exactly.
    pub fn check_tx(&self, tx: &SignedTx) -> Result<PreparedTx, TxError> {
        let p = tx.prepare();
        let sig = match self
            .state
            .key_cache
            .get(&tx.body.sender)
            .copied()
            .or_else(|| verifying_key(&tx.body.sender))
        {
            None => SigVerdict::BadKey,
            Some(k) => {
                let msg = signing_message(&self.state.config().chain_id, &p.body_hash);
                if verify_with(&k, &msg, &tx.signature) {
                    SigVerdict::Valid
                } else {
                    SigVerdict::BadSignature
                }
            }
        };
        let (height, parent) = match &self.pending {
            Some(pd) => (pd.outcome.header.height + 1, (pd.outcome.header.height, pd.outcome.hash)),
            None => (self.head.height + 1, (self.head.height, self.head.hash)),
        };
        let ctx = BlockCtx { height, registrations: 0, parent: Some(parent) };
        let netuid = tx.body.call.netuid();
        if netuid == ROOT_NETUID {
            authenticate(&self.state, &ctx, &tx.body, p.size, sig)?;
            plan(&self.state, &ctx, &tx.body)?;
        } else {
            let view = self
                .state
                .check_view(netuid, &tx.body.sender)
                .ok_or(TxError::UnknownSubnet { netuid, count: self.state.globals.subnet_count })?;
            authenticate(&view, &ctx, &tx.body, p.size, sig)?;
            plan(&view, &ctx, &tx.body)?;
        }
        Ok(p)
    }

    /// Decodes and checks a transaction received as bytes (size limit first).
    pub fn check_tx_bytes(&self, bytes: &[u8]) -> Result<SignedTx, TxError> {
        let tx = SignedTx::decode(bytes, self.state.config().limits.max_tx_bytes as usize)?;
        self.check_tx(&tx)?;
        Ok(tx)
    }

    // --- queries ----------------------------------------------------------------------------

    /// The last committed block.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// The state the ledger holds (the pending block's, if one is pending).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The chain's genesis configuration.
    pub fn genesis(&self) -> &GenesisConfig {
        self.state.chain_config()
    }

    /// The chain id every transaction's signature must cover.
    pub fn chain_id(&self) -> &str {
        &self.state.config().chain_id
    }

    /// `key`'s account (zero balance and nonce if it never appeared).
    pub fn account(&self, key: &PublicKey) -> Account {
        self.state.account(key)
    }

    /// Neuron `uid` of netuid 0.
    pub fn neuron(&self, uid: u16) -> Option<&Neuron> {
        self.state.neuron(uid)
    }

    /// The neuron `hotkey` is registered as on netuid 0.
    pub fn neuron_by_hotkey(&self, hotkey: &PublicKey) -> Option<&Neuron> {
        self.state.uid_of(hotkey).and_then(|u| self.state.neuron(u))
    }

    /// Netuid 0's neuron table, in uid order.
    pub fn neurons(&self) -> &[Neuron] {
        &self.state.neurons
    }

    /// Row `uid` of W as stored (integers over [`crate::WEIGHT_SCALE`]).
    pub fn weights(&self, uid: u16) -> Option<&WeightRow> {
        self.state.rows.get(usize::from(uid))
    }

    /// Row `uid` of the bonds matrix as of the last epoch.
    pub fn bonds(&self, uid: u16) -> Vec<(u16, f64)> {
        bonds_row(&self.state, uid)
    }

    /// The chain's issuance accounts: genesis, minted and burned, in base units.
    pub fn issuance(&self) -> Issuance {
        self.state.globals.issuance
    }

    /// Current proof-of-work difficulty for `register` on netuid 0.
    pub fn difficulty(&self) -> u64 {
        self.state.net_globals.difficulty
    }

    /// The emission per block in force (the genesis' `emission_per_block`, moved at each epoch
    /// under adaptive inflation), base units.
    pub fn tau(&self) -> u64 {
        self.state.globals.tau
    }

    /// What a burned registration on netuid 0 burns now, in base units.
    pub fn burn(&self) -> u64 {
        self.state.net_globals.burn
    }

    /// The neurons `coldkey` has stake on in netuid 0, as `(uid, hotkey, stake)`: its own stake
    /// on the hotkeys it owns, its nomination on the others'.
    pub fn stakes_of(&self, coldkey: &PublicKey) -> Vec<(u16, PublicKey, u64)> {
        stakes_in(&self.state, coldkey)
    }

    /// [`Ledger::stakes_of`] in subnet `netuid`.
    pub fn stakes_in(
        &self,
        netuid: u16,
        coldkey: &PublicKey,
    ) -> Result<Vec<(u16, PublicKey, u64)>, LedgerError> {
        Ok(stakes_in(self.subnet(netuid)?, coldkey))
    }

    /// The metagraph of netuid 0 at the current state (as the bittensor metagraph exposes it).
    pub fn metagraph(&self) -> Metagraph {
        self.metagraph_of(&self.state)
    }

    /// The metagraph of subnet `netuid`.
    pub fn subnet_metagraph(&self, netuid: u16) -> Result<Metagraph, LedgerError> {
        Ok(self.metagraph_of(self.subnet(netuid)?))
    }

    fn metagraph_of(&self, net: &SubnetState) -> Metagraph {
        let n = net.n();
        Metagraph {
            block: self.state.globals.height,
            n: n as u32,
            neurons: net.neurons.to_vec(),
            weights: net.rows.to_vec(),
            bonds: (0..n).map(|u| bonds_row(net, u as u16)).collect(),
            issuance: self.issuance(),
            difficulty: net.net_globals.difficulty,
            burn: net.net_globals.burn,
            tau: self.state.globals.tau,
            sparsity: net.net_globals.sparsity.map(|s| s.0),
        }
    }

    /// Subnet `netuid` (0 is the genesis network).
    pub fn subnet(&self, netuid: u16) -> Result<&SubnetState, LedgerError> {
        self.state
            .subnet(netuid)
            .ok_or(LedgerError::UnknownSubnet { netuid, count: self.state.globals.subnet_count })
    }

    /// Every subnet, in netuid order.
    pub fn subnets(&self) -> impl Iterator<Item = &SubnetState> {
        self.state.subnets()
    }

    /// A committed block with its receipts.
    pub fn block(&self, height: u64) -> Result<Option<StoredBlock>, LedgerError> {
        crate::integrity::stored_block(&self.store, height)
    }

    /// A committed block by its hash, with its receipts.
    pub fn block_by_hash(&self, hash: &Hash) -> Result<Option<StoredBlock>, LedgerError> {
        let key = keys::block_hash(hash);
        match self.store.get(&key)? {
            Some(v) => {
                let h: [u8; 8] = v.as_slice().try_into().map_err(|_| crate::store::StoreError::Corrupt {
                    key: hex::encode(&key),
                    reason: "block height is not 8 bytes".into(),
                })?;
                self.block(u64::from_be_bytes(h))
            }
            None => Ok(None),
        }
    }

    /// Where a committed transaction is: `(height, index in the block)`. Only transactions
    /// that were applied or failed are indexed (a rejected one changed nothing).
    pub fn tx_location(&self, id: &Hash) -> Result<Option<(u64, u32)>, LedgerError> {
        let key = keys::tx(id);
        let Some(v) = self.store.get(&key)? else { return Ok(None) };
        match v.as_slice() {
            [h @ .., a, b, c, d] if h.len() == 8 => {
                let mut hb = [0u8; 8];
                hb.copy_from_slice(h);
                Ok(Some((u64::from_be_bytes(hb), u32::from_be_bytes([*a, *b, *c, *d]))))
            }
            _ => Err(crate::store::StoreError::Corrupt {
                key: hex::encode(&key),
                reason: "transaction location is not 12 bytes".into(),
            }
            .into()),
        }
    }

    /// A committed transaction with its receipt and block height.
    pub fn transaction(&self, id: &Hash) -> Result<Option<(u64, SignedTx, Receipt)>, LedgerError> {
        let Some((height, index)) = self.tx_location(id)? else { return Ok(None) };
        let Some(stored) = self.block(height)? else { return Ok(None) };
        let k = index as usize;
        Ok(stored.block.txs.get(k).cloned().zip(stored.receipts.get(k).cloned()).map(|(t, r)| (height, t, r)))
    }

    /// The store the ledger commits to.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back (to reopen it, or inspect it after a test).
    pub fn into_store(self) -> S {
        self.store
    }
}

/// Hashes every transaction (in parallel: pure per transaction), keeping the encoded bodies.
/// Row `uid` of a subnet's bonds matrix as of its last epoch.
fn bonds_row(net: &SubnetState, uid: u16) -> Vec<(u16, f64)> {
    let b = &net.mech.bonds;
    if usize::from(uid) >= b.n() {
        return Vec::new();
    }
    let (cols, vals) = b.row(usize::from(uid));
    cols.iter().zip(vals).map(|(&j, &v)| (j as u16, v)).collect()
}

/// The neurons of `net` that `coldkey` has stake on (see [`Ledger::stakes_of`]).
fn stakes_in(net: &SubnetState, coldkey: &PublicKey) -> Vec<(u16, PublicKey, u64)> {
    net.neurons
        .iter()
        .filter_map(|n| {
            let s = if n.coldkey == *coldkey { n.own_stake() } else { n.nomination(coldkey) };
            (s > 0 || n.coldkey == *coldkey).then_some((n.uid, n.hotkey, s))
        })
        .collect()
}

fn prepare_all(txs: &[SignedTx]) -> (Vec<PreparedTx>, Vec<Vec<u8>>) {
    txs.par_iter().map(SignedTx::prepare_encoded).unzip()
}

/// The network as the last epoch and the current state describe it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metagraph {
    /// Height of the state it describes.
    pub block: u64,
    /// Neurons in the table.
    pub n: u32,
    /// One per uid, in uid order: hotkey, coldkey, stake S, endpoint, last update, and the last
    /// epoch's R, T, C, I, D, E, VT, active and validator permit in `scores`.
    pub neurons: Vec<Neuron>,
    /// W, one row per uid.
    pub weights: Vec<WeightRow>,
    /// B, one row per uid (empty for variants without bonds).
    pub bonds: Vec<Vec<(u16, f64)>>,
    /// The chain's issuance (genesis, minted, burned), across every subnet.
    pub issuance: Issuance,
    /// The subnet's proof-of-work registration difficulty now.
    pub difficulty: u64,
    /// What a burned registration burns now (base units).
    #[serde(default)]
    pub burn: u64,
    /// tau: the emission per block in force (base units); moved each epoch by adaptive
    /// inflation when the genesis turns it on ([`crate::inflation`]).
    #[serde(default)]
    pub tau: u64,
    /// `sum(diag W) / sum(W)` at the last epoch, the quantity adaptive inflation steers.
    #[serde(default)]
    pub sparsity: Option<f64>,
}

impl Metagraph {
    /// S per uid, in base units (own stake plus nominations).
    pub fn stake(&self) -> Vec<u64> {
        self.neurons.iter().map(|n| n.stake).collect()
    }
    /// R per uid.
    pub fn ranks(&self) -> Vec<f64> {
        self.neurons.iter().map(|n| n.scores.rank).collect()
    }
    /// T per uid.
    pub fn trust(&self) -> Vec<f64> {
        self.neurons.iter().map(|n| n.scores.trust).collect()
    }
    /// C per uid.
    pub fn consensus(&self) -> Vec<f64> {
        self.neurons.iter().map(|n| n.scores.consensus).collect()
    }
    /// I per uid.
    pub fn incentive(&self) -> Vec<f64> {
        self.neurons.iter().map(|n| n.scores.incentive).collect()
    }
    /// D per uid.
    pub fn dividends(&self) -> Vec<f64> {
        self.neurons.iter().map(|n| n.scores.dividends).collect()
    }
    /// E per uid, in base units.
    pub fn emission(&self) -> Vec<u64> {
        self.neurons.iter().map(|n| n.scores.emission).collect()
    }
    /// VT per uid.
    pub fn validator_trust(&self) -> Vec<f64> {
        self.neurons.iter().map(|n| n.scores.validator_trust).collect()
    }
    /// Per uid, whether it was active at the last epoch.
    pub fn active(&self) -> Vec<bool> {
        self.neurons.iter().map(|n| n.scores.active).collect()
    }
    /// Per uid, whether it held a validator permit at the last epoch.
    pub fn validator_permit(&self) -> Vec<bool> {
        self.neurons.iter().map(|n| n.scores.validator_permit).collect()
    }
}
