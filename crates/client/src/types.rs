//! The JSON-RPC API's types, shared by the node (which serves them) and clients.

use ledger::{
    Account, BlockHeader, ChainHead, Endpoint, GenesisConfig, Hash, Issuance, Metagraph, PublicKey,
    PublishedModel, Receipt, StoredBlock, SubnetParams, SubnetState, WEIGHT_SCALE,
};
use serde::{Deserialize, Serialize};

/// Error codes of the `agora_*` methods. They live in -33000..-33099, apart from the range
/// JSON-RPC reserves (-32768..-32000), whose server part (-32099..-32000) jsonrpsee uses for
/// its own errors: -32011 there is "batch response too large", which clients once could not tell
/// from a full mempool. `data` carries the typed detail where one exists.
pub mod codes {
    /// A transaction failed validation at submission; `data` is the ledger's `TxError` as
    /// JSON (`{"error": "bad_signature", "details": {...}}`).
    pub const TX_REJECTED: i32 = -33010;
    /// The mempool is full; retry later or raise the fee above the lowest pending one.
    pub const MEMPOOL_FULL: i32 = -33011;
    /// Another transaction from the same sender with the same nonce is already pending.
    pub const NONCE_PENDING: i32 = -33012;
    /// The block, neuron or transaction asked for does not exist.
    pub const NOT_FOUND: i32 = -33013;
    /// A metagraph older than the history the node keeps (`--history-blocks`).
    pub const HISTORICAL_STATE_UNAVAILABLE: i32 = -33014;
    /// The node's store failed; the node logs the detail.
    pub const STORAGE: i32 = -33015;
    /// Too many expensive calls (past metagraphs) at once: retry shortly.
    pub const BUSY: i32 = -33016;
    /// A subscription asked for over HTTP: subscriptions need a WebSocket (`ws://`).
    pub const WEBSOCKET_REQUIRED: i32 = -33017;
    /// JSON-RPC's own code for parameters that do not parse (bad hex, wrong length, ...).
    pub const INVALID_PARAMS: i32 = -32602;

    /// Every `agora_*` code above except JSON-RPC's own.
    pub const ALL: [i32; 8] = [
        TX_REJECTED,
        MEMPOOL_FULL,
        NONCE_PENDING,
        NOT_FOUND,
        HISTORICAL_STATE_UNAVAILABLE,
        STORAGE,
        BUSY,
        WEBSOCKET_REQUIRED,
    ];
}

/// `agora_account`: the account of a public key (zero balance and nonce if it never existed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// The account's public key (a coldkey, or any key that holds tokens).
    pub key: PublicKey,
    /// Free balance in base units: tokens not staked, spendable on transfers, fees and stake.
    pub balance: u64,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
}

impl AccountInfo {
    /// The answer for `key` from the ledger's record of it.
    pub fn new(key: PublicKey, a: Account) -> Self {
        AccountInfo { key, balance: a.balance, nonce: a.nonce }
    }
}

/// `agora_nominators`: the stake on a hotkey, broken down (delegation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HotkeyStakeInfo {
    /// The hotkey asked about: the key a neuron signs weights and answers with.
    pub hotkey: PublicKey,
    /// The neuron's uid: its index in the metagraph's vectors.
    pub uid: u16,
    /// The coldkey that owns the hotkey (and sets its take).
    pub owner: PublicKey,
    /// S: all stake on the hotkey, base units.
    pub stake: u64,
    /// The owner's own part of S.
    pub own_stake: u64,
    /// The take in force at the head: the share of what nominated stake earns that the owner
    /// keeps, in parts of 65,535 (as the chain stores it).
    pub take: u16,
    /// The same take as a fraction in [0, 1].
    pub take_fraction: f64,
    /// An announced increase and the block it applies from.
    pub pending_take: Option<ledger::PendingTake>,
    /// Every nominator and its part of S, by coldkey.
    pub nominators: Vec<ledger::Nomination>,
}

impl HotkeyStakeInfo {
    /// The breakdown of neuron `n`'s stake, with the take in force at block `height`.
    pub fn new(n: &ledger::Neuron, height: u64) -> Self {
        let take = n.take_at(height);
        HotkeyStakeInfo {
            hotkey: n.hotkey,
            uid: n.uid,
            owner: n.coldkey,
            stake: n.stake,
            own_stake: n.own_stake(),
            take,
            take_fraction: ledger::delegation::take_fraction(take),
            pending_take: n.pending_take.filter(|p| p.effective_at > height),
            nominators: n.nominations.clone(),
        }
    }
}

/// `agora_stakes`: one hotkey a coldkey has stake on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StakeInfo {
    /// The hotkey's neuron uid.
    pub uid: u16,
    /// The hotkey the stake is on.
    pub hotkey: PublicKey,
    /// The coldkey's stake on it, base units: its own stake if it owns the hotkey, else its
    /// nomination.
    pub stake: u64,
    /// Whether the coldkey owns the hotkey (else it nominates).
    pub owner: bool,
    /// The hotkey's take in force, as a fraction.
    pub take: f64,
}

/// `agora_getTransaction`: where a transaction is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TxLookup {
    /// Accepted into the mempool, not yet in a block.
    Pending,
    /// In the committed block `height` at `index`, with what it did. A block may record a
    /// transaction as rejected (it changed nothing); the ledger does not index those, so only
    /// the node that produced the block reports them, and only until it restarts.
    Included {
        /// The block's height.
        height: u64,
        /// The transaction's position in the block.
        index: u32,
        /// What applying it did: applied, failed (its fee paid) or rejected.
        receipt: Receipt,
    },
    /// Not in the mempool and not in any committed block (never submitted, or dropped from the
    /// mempool because an earlier block made it invalid).
    Unknown,
}

/// `agora_neuron` parameter: by uid or by hotkey.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NeuronQuery {
    /// The neuron holding this uid now.
    Uid {
        /// Its index in the metagraph.
        uid: u16,
    },
    /// The neuron registered under this hotkey.
    Hotkey {
        /// The key the neuron signs with.
        hotkey: PublicKey,
    },
}

/// `agora_block` parameter: a height or a block hash (hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BlockId {
    /// The committed block at this height.
    Height(u64),
    /// The committed block with this hash.
    Hash(Hash),
}

/// `agora_block`: a committed block with its hash, receipts and epoch report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// The block's hash (of its header).
    pub hash: Hash,
    #[serde(flatten)]
    /// The block as the node stores it: header and transactions, receipts, and the epoch
    /// report if the block ran one.
    pub stored: StoredBlock,
}

/// `agora_genesis`: the chain's genesis configuration and its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenesisInfo {
    /// The hash of the genesis configuration: two nodes with the same hash run the same chain.
    pub hash: Hash,
    /// Chain id, initial accounts, mechanism and its parameters, tempo, fees and limits.
    pub config: GenesisConfig,
}

/// An item of `agora_subscribeNewHeads`: a block just committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewHead {
    /// The block's height.
    pub height: u64,
    /// The block's hash.
    pub hash: Hash,
    /// Its header (parent, proposer, timestamp, transaction and state roots).
    pub header: BlockHeader,
    /// Transactions in the block.
    pub txs: u32,
}

/// `agora_metagraph`: the network as the bittensor metagraph exposes it. Every vector is indexed
/// by uid (`0..n`); S and E are in base units; W and B are sparse rows of `[uid, value]`, W
/// normalised to sum to 1 per row (the chain stores integers over 65,535, converted here).
/// R, T, C, I, D, E, VT, `active` and `validator_permit` are those of the last epoch; the last
/// three are read as empty from a node that predates them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct MetagraphInfo {
    /// Registered neurons: the length of every per-uid vector.
    pub n: u32,
    /// The height the metagraph was read at.
    pub block: u64,
    /// Each neuron's hotkey: the key it sets weights and signs answers with.
    pub hotkeys: Vec<PublicKey>,
    /// Each neuron's coldkey: the account that owns the hotkey and its stake.
    pub coldkeys: Vec<PublicKey>,
    /// Where each neuron's axon listens (`serve`); `None` before it served.
    pub endpoints: Vec<Option<Endpoint>>,
    /// Stake S, base units: what weighs a neuron's weights and earns its dividends.
    pub S: Vec<u64>,
    /// Ranks R: the stake-weighted value the network's weights give each neuron.
    pub R: Vec<f64>,
    /// Trust T: how far the stake backs each neuron (the mechanism's own definition).
    pub T: Vec<f64>,
    /// Consensus C: for yuma, the weight level the stake majority agrees on for each neuron.
    pub C: Vec<f64>,
    /// Incentive I: each neuron's share of the servers' part of the emission.
    pub I: Vec<f64>,
    /// Dividends D: each validator's share of the validators' part, earned through bonds.
    pub D: Vec<f64>,
    /// Emission of the last epoch, base units.
    pub E: Vec<u64>,
    /// Validator trust: how much of each neuron's weight row survived the mechanism's consensus
    /// (yuma: the row sum of its clipped weights), 0 for a neuron that did not validate. Set
    /// beside D, it shows whether dividends follow validation quality or only stake.
    #[serde(default)]
    pub VT: Vec<f64>,
    /// Whether each neuron set weights (or registered) within the chain's `activity_cutoff`
    /// blocks of the last epoch.
    #[serde(default)]
    pub active: Vec<bool>,
    /// Whether each neuron held one of the chain's `max_validators` permits (top stake) at the
    /// last epoch. Only neurons both active and permitted validate and earn dividends.
    #[serde(default)]
    pub validator_permit: Vec<bool>,
    /// Block of each neuron's last `set_weights` (bittensor's `last_update`).
    pub last_update: Vec<Option<u64>>,
    /// Block each neuron registered in (its uid's current holder); empty from a node that
    /// predates it. Copy detection flags the later registered of two peers answering alike.
    #[serde(default)]
    pub registered_at: Vec<u64>,
    /// The model version each neuron last published (`publish_version`, issue 16) with its
    /// step and the block it was published at; `None` before the first. Empty from a node that
    /// predates it. Validators compare it with the version signed into each answer.
    #[serde(default)]
    pub models: Vec<Option<PublishedModel>>,
    /// Delegation: the take each hotkey's owner keeps of what its stake earns, as a fraction,
    /// in force at `block` (an announced increase shows once in force). Empty from a node that
    /// predates it.
    #[serde(default)]
    pub take: Vec<f64>,
    /// The part of each S held by nominators (the rest is the owner's), base units.
    #[serde(default)]
    pub nominated: Vec<u64>,
    /// W: each neuron's weight row as `(uid, weight)`, summing to 1.
    pub weights: Vec<Vec<(u16, f64)>>,
    /// B: each neuron's bond row as `(uid, bond)`, as of the last epoch.
    pub bonds: Vec<Vec<(u16, f64)>>,
    /// Tokens at genesis, minted by emission and burned since, base units.
    pub issuance: Issuance,
    /// The proof-of-work difficulty a `register` must meet now.
    pub difficulty: u64,
    /// What a burned registration burns now, base units; 0 from a node that predates it.
    #[serde(default)]
    pub burn: u64,
    /// tau: the emission per block in force, in base units (adaptive inflation moves it each
    /// epoch); 0 from a node that predates it.
    #[serde(default)]
    pub tau: u64,
    /// `sum(diag W) / sum(W)` at the last epoch (what adaptive inflation steers toward its
    /// target); `None` before an epoch with weights.
    #[serde(default)]
    pub sparsity: Option<f64>,
}

impl From<&Metagraph> for MetagraphInfo {
    fn from(m: &Metagraph) -> Self {
        let scale = f64::from(WEIGHT_SCALE);
        MetagraphInfo {
            n: m.n,
            block: m.block,
            hotkeys: m.neurons.iter().map(|n| n.hotkey).collect(),
            coldkeys: m.neurons.iter().map(|n| n.coldkey).collect(),
            endpoints: m.neurons.iter().map(|n| n.endpoint).collect(),
            S: m.stake(),
            R: m.ranks(),
            T: m.trust(),
            C: m.consensus(),
            I: m.incentive(),
            D: m.dividends(),
            E: m.emission(),
            VT: m.validator_trust(),
            active: m.active(),
            validator_permit: m.validator_permit(),
            last_update: m.neurons.iter().map(|n| n.last_weights_block).collect(),
            registered_at: m.neurons.iter().map(|n| n.registered_at).collect(),
            models: m.neurons.iter().map(|n| n.model).collect(),
            take: m.neurons.iter().map(|n| ledger::delegation::take_fraction(n.take_at(m.block))).collect(),
            nominated: m.neurons.iter().map(|n| n.nominated()).collect(),
            weights: m
                .weights
                .iter()
                .map(|row| row.0.iter().map(|&(j, w)| (j, f64::from(w) / scale)).collect())
                .collect(),
            bonds: m.bonds.clone(),
            issuance: m.issuance,
            difficulty: m.difficulty,
            burn: m.burn,
            tau: m.tau,
            sparsity: m.sparsity,
        }
    }
}

/// `agora_head`.
pub type HeadInfo = ChainHead;

/// `agora_status`: where the chain is. With several validators the latest block (notarized by
/// the engine) can be ahead of the finalized one; with one they are the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainStatus {
    /// The last final (executed and committed) block: what every other method reads.
    pub finalized: ChainHead,
    /// The height of the latest block the engine notarized (at or above `finalized.height`).
    pub latest: u64,
    /// Validators in the genesis (0: the single-validator chain).
    pub validators: u32,
    /// Equivocations the engine proved (two conflicting signed messages for one view).
    pub evidence: Vec<EvidenceInfo>,
}

/// One equivocation: which validator (index in the sorted validator set), in which view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceInfo {
    /// `conflicting notarize`, `conflicting finalize` or `nullify and finalize`.
    pub kind: String,
    /// The offender's index in the validator set, sorted by key.
    pub validator: u32,
    /// The consensus view it signed twice in.
    pub view: u64,
}

/// Most neurons one `agora_neurons` call returns.
pub const MAX_NEURONS_PER_PAGE: u32 = 1000;

/// What `agora_neurons` sorts by: the neuron table's columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeuronSort {
    /// uid order (the metagraph's).
    #[default]
    Uid,
    /// Stake S.
    Stake,
    /// Rank R.
    Rank,
    /// Trust T.
    Trust,
    /// Consensus C.
    Consensus,
    /// Incentive I.
    Incentive,
    /// Dividends D.
    Dividends,
    /// Last epoch's emission E.
    Emission,
    /// Validator trust VT.
    ValidatorTrust,
    /// Block of the last `set_weights` (a neuron that never set weights sorts lowest).
    LastUpdate,
}

/// `agora_neurons` parameters: one page of the neuron table, sorted on the node so that a
/// browser never loads 10,000 rows to show 50.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeuronsQuery {
    /// Rows skipped (after sorting).
    #[serde(default)]
    pub offset: u32,
    /// Rows returned, 1..=[`MAX_NEURONS_PER_PAGE`].
    #[serde(default = "NeuronsQuery::default_limit")]
    pub limit: u32,
    #[serde(default)]
    /// The column to sort by (default uid).
    pub sort: NeuronSort,
    /// Largest first (ties keep uid order).
    #[serde(default)]
    pub descending: bool,
}

impl NeuronsQuery {
    fn default_limit() -> u32 {
        100
    }
}

impl Default for NeuronsQuery {
    fn default() -> Self {
        NeuronsQuery { offset: 0, limit: Self::default_limit(), sort: NeuronSort::Uid, descending: false }
    }
}

/// `agora_neurons`: a page of the neuron table at `block`, out of `n` neurons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronPage {
    /// The height the table was read at.
    pub block: u64,
    /// All registered neurons, not only this page's.
    pub n: u32,
    /// Rows skipped before this page (as asked).
    pub offset: u32,
    /// This page's rows, each as `agora_neuron` returns it.
    pub neurons: Vec<ledger::Neuron>,
}

/// `agora_network`: the figures at the top of the dashboard, read in one call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// The genesis' chain id, which every signed transaction names.
    pub chain_id: String,
    /// The incentive mechanism's name (`yuma`, `nakamoto`, ...).
    pub mechanism: String,
    /// Blocks per epoch.
    pub tempo: u64,
    /// Registered neurons.
    pub n: u32,
    /// The last final block.
    pub head: ChainHead,
    /// The latest notarized height (see [`ChainStatus::latest`]).
    pub latest: u64,
    /// Tokens at genesis, minted by emission and burned since, base units.
    pub issuance: Issuance,
    /// Emission per block in force, base units.
    pub tau: u64,
    /// Mean milliseconds between the last (up to) [`BLOCK_TIME_WINDOW`] blocks' timestamps;
    /// `None` before block 2.
    pub block_time_ms: Option<f64>,
}

/// Blocks over which [`NetworkInfo::block_time_ms`] is averaged.
pub const BLOCK_TIME_WINDOW: u64 = 10;

/// `agora_history` parameters: which neurons (default: the 10 with the most stake now) over
/// which blocks (default: everything the node kept up to the head).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    #[serde(default)]
    /// The neurons to follow (at most 64); `None`: the 10 with the most stake now.
    pub uids: Option<Vec<u16>>,
    #[serde(default)]
    /// First height of the range; `None`: the oldest sample kept.
    pub from: Option<u64>,
    #[serde(default)]
    /// Last height of the range, at most the head; `None`: the head.
    pub to: Option<u64>,
}

/// `agora_history`: the sampled heights in `from..=to` (every `stride` blocks) and, per
/// neuron, its values at each of them (`null` where the uid was not registered yet).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistorySeries {
    /// First height of the range answered.
    pub from: u64,
    /// Last height of the range answered.
    pub to: u64,
    /// Blocks between samples: doubles each time the node thins its 256 samples.
    pub stride: u64,
    /// The sampled heights in the range, ascending.
    pub heights: Vec<u64>,
    /// One series per neuron asked for, each with a value per entry of `heights`.
    pub neurons: Vec<NeuronHistory>,
}

/// One neuron's series in [`HistorySeries`]: its uid and today's hotkey of that uid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronHistory {
    /// The neuron's uid.
    pub uid: u16,
    /// The hotkey holding the uid now.
    pub hotkey: PublicKey,
    /// Its stake over the total stake.
    pub stake_share: Vec<Option<f32>>,
    /// I of the last epoch.
    pub incentive: Vec<Option<f32>>,
    /// E of the last epoch, base units.
    pub emission: Vec<Option<u64>>,
}

/// `agora_weights`: one neuron's place in W and its bonds, for the dashboard's neuron page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronLinks {
    /// The neuron asked about.
    pub uid: u16,
    /// The height read (the head).
    pub block: u64,
    /// Its row of W: `[uid, weight]` it sets on others (weights sum to 1).
    pub given: Vec<(u16, f64)>,
    /// Its column of W: `[uid, weight]` others set on it.
    pub received: Vec<(u16, f64)>,
    /// Its row of bonds B: `[uid, bond]`.
    pub bonds: Vec<(u16, f64)>,
}

/// `agora_localnet`: what `agora localnet` knows beyond the chain, written by it each block to
/// the file the node was started with (`--localnet-file`) and served by the node as it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalnetStatus {
    /// The run's blocks done so far.
    pub done: u64,
    /// The run's blocks planned in all.
    pub blocks: u64,
    /// Epochs since the run started (blocks done over the tempo).
    pub epoch: u64,
    /// The block the judge's values were measured at (`None` before the first measurement).
    pub judge_block: Option<u64>,
    /// Spearman of the incentive now against the judge's values.
    pub spearman_incentive: Option<f64>,
    /// Every peer of the scenario, by uid.
    pub peers: Vec<LocalnetPeer>,
}

/// One peer of a localnet: its uid, its name and role in the scenario, and the independent
/// judge's last value of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalnetPeer {
    /// The peer's neuron uid.
    pub uid: u16,
    /// Its name in the scenario (as in the run's report and loss curves).
    pub name: String,
    /// Its role: `honest`, `duplicate`, `noise`, `offline`, `cabal`, `lazy`, `copycat` or
    /// `python`.
    pub role: String,
    /// The judge's last value of it: its marginal value to the market (how much the others'
    /// test loss rises when its answers are shuffled); `None` before the first measurement.
    pub judge: Option<f64>,
    /// Its held-out loss over the run, `[block, loss]`, down-sampled (empty before it reports).
    #[serde(default)]
    pub loss: Vec<(u64, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{Neuron, NeuronScores, WeightRow};

    fn neuron(uid: u16, scores: NeuronScores) -> Neuron {
        let mut n = Neuron::new(uid, PublicKey([uid as u8; 32]), PublicKey([9; 32]), 100, 0, 0);
        n.last_weights_block = Some(3);
        n.scores = scores;
        n
    }

    #[test]
    fn the_metagraph_carries_validator_trust_activity_and_permits() {
        let validating = NeuronScores {
            dividends: 0.75,
            validator_trust: 0.5,
            active: true,
            validator_permit: true,
            ..Default::default()
        };
        let absent = NeuronScores { validator_permit: true, ..Default::default() };
        let m = Metagraph {
            block: 10,
            n: 2,
            neurons: vec![neuron(0, validating), neuron(1, absent)],
            weights: vec![WeightRow::default(); 2],
            bonds: vec![Vec::new(); 2],
            issuance: Issuance::default(),
            difficulty: 1,
            burn: 2,
            tau: 5,
            sparsity: None,
        };
        let info = MetagraphInfo::from(&m);
        assert_eq!(info.VT, vec![0.5, 0.0]);
        assert_eq!(info.active, vec![true, false]);
        assert_eq!(info.validator_permit, vec![true, true]);
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["VT"], serde_json::json!([0.5, 0.0]));
        assert_eq!(json["active"], serde_json::json!([true, false]));
        // An answer from a node that predates the three reads them as empty.
        let mut old = json.clone();
        for field in ["VT", "active", "validator_permit"] {
            old.as_object_mut().unwrap().remove(field);
        }
        let read: MetagraphInfo = serde_json::from_value(old).unwrap();
        assert!(read.VT.is_empty() && read.active.is_empty() && read.validator_permit.is_empty());
        assert_eq!(read.D, info.D);
    }
}

/// One subnet as `agora_subnets` and `agora_subnet` describe it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubnetSummary {
    /// Its number: 0 for the genesis network, then 1, 2, ... in order of creation.
    pub netuid: u16,
    /// The coldkey that created it (`None` for netuid 0, the genesis network).
    pub owner: Option<PublicKey>,
    /// Height of the block that created it (0 for netuid 0).
    pub created_at: u64,
    /// Its mechanism, tempo, table size, immunity, initial difficulty, weights rate limit and
    /// commit-reveal.
    pub params: SubnetParams,
    /// Neurons registered.
    pub n: u32,
    /// The stake of its registered hotkeys, base units: what its share of each block's
    /// emission is in proportion to.
    pub stake: u128,
    /// Current proof-of-work difficulty of a `register` there.
    pub difficulty: u64,
    /// What a burned registration there burns now, base units.
    pub burn: u64,
    /// Emission accrued since its last epoch, base units: what its next epoch distributes.
    pub emission_pending: u64,
    /// Height of its last epoch.
    pub last_epoch_block: u64,
}

impl SubnetSummary {
    /// The summary of one subnet's state.
    pub fn of(net: &SubnetState) -> SubnetSummary {
        let g = net.net_globals();
        SubnetSummary {
            netuid: net.netuid(),
            owner: net.info().map(|i| i.owner),
            created_at: net.info().map_or(0, |i| i.created_at),
            params: net.info().map_or_else(|| SubnetParams::of_genesis(net.config()), |i| i.params.clone()),
            n: net.n() as u32,
            stake: net.registered_stake(),
            difficulty: g.difficulty,
            burn: g.burn,
            emission_pending: g.emission_pending,
            last_epoch_block: g.last_epoch_block,
        }
    }
}
