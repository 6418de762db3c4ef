//! The Agora chain node, as a library: runs the `ledger` state machine as a chain.
//!
//! [`Node::start`] starts a node over any [`NodeStore`] (the embedded redb file, [`RedbStore`],
//! opened by [`chain_dir`] and checked at every start; or [`SharedMemStore`] in memory) and
//! returns a [`NodeHandle`]: its RPC address, a stop, and the stream of finalized heads. The
//! `agora node` command (crate `cli`) only parses flags, prints, and calls it; tests start nodes
//! in-process the same way.
//!
//! It owns what turns the pure ledger into a service: the block producer of the
//! single-validator embedded chain (a block every block time, or as soon as transactions wait
//! in instant mode), the mempool (`ledger::Mempool`, the same admission code as the in-process
//! `LocalChain`), per-epoch state checkpoints for past metagraphs ([`history`]), the JSON-RPC
//! 2.0 API over HTTP and WebSocket ([`rpc`], documented in `docs/rpc.md`) behind its own accept
//! loop with per-address limits and timeouts ([`server`]), and `/metrics` ([`metrics`]) and the
//! web dashboard ([`dashboard`]) on the same port.
//!
//! Blocks go through the ledger's own boundary, `propose -> commit`, so a block is durable
//! (one store transaction) before it is announced, and a restart resumes from the last
//! committed block. It never re-implements ledger rules: every check, mempool admission
//! included, is the ledger's.

pub mod chain_dir;
pub mod dashboard;
pub mod history;
pub mod metrics;
pub mod rpc;
pub mod server;
pub mod store;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod trends;

/// The mempool moved into the ledger crate; kept under its old path for callers.
pub use ledger::mempool;

use client::types::NewHead;
use history::History;
use ledger::{
    dev_key, public_key, ChainHead, GenesisConfig, Hash, Ledger, LedgerError, TxStatus, UNITS_PER_TOKEN,
};
use ledger::{Mempool, MempoolError};
use metrics::Metrics;
use server::{Connections, RpcLimits};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub use store::{NodeStore, RedbStore, SharedMemStore};
use thiserror::Error;

/// The names of the funded development accounts of `--dev` (keys from `ledger::dev_key`).
pub const DEV_ACCOUNTS: [&str; 6] = ["alice", "bob", "charlie", "dave", "eve", "ferdie"];
/// Each dev account's genesis balance: one million tokens.
pub const DEV_BALANCE: u64 = 1_000_000 * UNITS_PER_TOKEN;

/// The dev chain's genesis (`agora node --dev`).
pub fn dev_genesis() -> GenesisConfig {
    GenesisConfig::dev(&DEV_ACCOUNTS, DEV_BALANCE)
}

/// When the single validator produces a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Production {
    /// A block every interval, empty blocks included.
    Interval(Duration),
    /// A block as soon as transactions wait, and no empty blocks (for tests).
    Instant,
}

/// How a node runs: everything `agora node`'s flags say, once parsed.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The chain; a store holding another chain is refused.
    pub genesis: GenesisConfig,
    /// JSON-RPC (HTTP and WebSocket) and GET /metrics; port 0 picks a free port.
    pub rpc_addr: SocketAddr,
    /// When blocks are made when the node is the single validator (ignored as one of several).
    pub production: Production,
    /// Most transactions the mempool holds.
    pub mempool_size: usize,
    /// How many blocks back past metagraphs are served (a checkpoint every epoch for as long).
    pub history_blocks: u64,
    /// Connection, size and time limits of the RPC server.
    pub rpc_limits: RpcLimits,
    /// The file `agora localnet` writes its roles and judge figures to, served as
    /// `agora_localnet` for the dashboard (`None`: not part of a localnet).
    pub localnet_file: Option<PathBuf>,
    /// One of the genesis' validators (blocks ordered and finalized by the consensus engine
    /// among them), instead of the single-validator producer.
    pub validator: Option<ValidatorConfig>,
}

/// This node as one of several validators.
#[derive(Clone)]
pub struct ValidatorConfig {
    /// The validator's ed25519 secret key (its public key must be in the genesis' set).
    pub secret: [u8; 32],
    /// Where the other validators reach this one, and the others with their keys.
    pub listen: SocketAddr,
    /// The other validators: each one's public key and where to reach it.
    pub peers: Vec<(ledger::PublicKey, SocketAddr)>,
    /// The consensus journal's directory.
    pub storage: PathBuf,
    /// The consensus engine's timeouts, which set the block time.
    pub timeouts: bft::Timeouts,
}

impl ValidatorConfig {
    /// A validator with the engine's default timeouts.
    pub fn new(
        secret: [u8; 32],
        listen: SocketAddr,
        peers: Vec<(ledger::PublicKey, SocketAddr)>,
        storage: PathBuf,
    ) -> ValidatorConfig {
        ValidatorConfig { secret, listen, peers, storage, timeouts: bft::Timeouts::default() }
    }
}

/// The secret stays out of logs.
impl std::fmt::Debug for ValidatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorConfig")
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// The defaults of `agora node` for `genesis`: a block a second, RPC on 127.0.0.1:9960.
    pub fn new(genesis: GenesisConfig) -> NodeConfig {
        let rpc_limits = RpcLimits::for_genesis(&genesis);
        NodeConfig {
            genesis,
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 9960)),
            production: Production::Interval(Duration::from_secs(1)),
            mempool_size: 10_000,
            history_blocks: 10_000,
            localnet_file: None,
            rpc_limits,
            validator: None,
        }
    }
}

/// Why the node stopped or could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    /// Neither `--dev` nor `--genesis` said which chain to run.
    #[error("which chain? pass --dev for a development chain or --genesis FILE")]
    NoGenesis,
    #[error("cannot read the genesis file {path}: {reason}")]
    /// The genesis file could not be read or parsed.
    GenesisFile {
        /// The file given with `--genesis`.
        path: PathBuf,
        /// What went wrong reading or parsing it.
        reason: String,
    },
    /// The data directory, or a file in it, could not be created, read or renamed.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory or file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The data directory exists but holds no chain, and `--new-chain` was not passed.
    #[error("the data directory {path} exists but holds no chain ({found}). A node never starts a new chain over an existing directory: pass --new-chain to start one there, or use another --data-dir")]
    NoChain {
        /// The data directory.
        path: PathBuf,
        /// What the directory holds instead, for the message.
        found: String,
    },
    /// The chain store does not open or does not read as a chain.
    #[error("the chain store {path} is damaged: {reason}. The node will not build on it: restore the data directory from a backup, or pass --new-chain to keep the damaged file aside and start a new chain")]
    DamagedStore {
        /// The store's file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `--new-chain` was passed over a directory that already holds a chain.
    #[error("--new-chain: {path} holds a chain at height {height}, and --new-chain never replaces a chain: drop the flag to resume it, or use another --data-dir")]
    NewChainOverChain {
        /// The data directory.
        path: PathBuf,
        /// The height of the chain it holds.
        height: u64,
    },
    /// Another process (another node, most likely) holds the chain store open.
    #[error("{path} is in use by another process: is another node running on this data directory?")]
    InUse {
        /// The store's file.
        path: PathBuf,
    },
    /// The ledger refused to open or resume the chain (another genesis, a failed replay).
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Building or applying a block failed.
    #[error("block production failed: {0}")]
    Block(#[from] ledger::BlockError),
    /// The RPC server's address could not be bound.
    #[error("cannot start the RPC server on {addr}: {source}")]
    Rpc {
        /// The `--rpc-addr` asked for.
        addr: SocketAddr,
        /// The operating system's error (address in use, permission denied).
        source: std::io::Error,
    },
    /// The validators' network (the consensus engine's connections) failed.
    #[error("validator: {0}")]
    Validator(#[from] bft::net::NetError),
    /// A task of the node (the block producer, the engine, the RPC module) failed.
    #[error("runtime: {0}")]
    Runtime(String),
}

/// The node's ledger over whichever store it was started with.
pub type NodeLedger = Ledger<Box<dyn NodeStore>>;

/// What the RPC handlers and the producer share. Lock order: `ledger` before `mempool`.
pub struct Shared {
    /// The ledger and its mempool (shared with the consensus engine's application when the
    /// node is one of several validators).
    chain: Arc<bft::Chain<Box<dyn NodeStore>>>,
    /// Sends admitted transactions to the other validators (validator mode only).
    forward: std::sync::OnceLock<bft::Mailbox>,
    /// How many validators the genesis names (0: the single-validator chain).
    validators: usize,
    heads: tokio::sync::broadcast::Sender<NewHead>,
    new_tx: tokio::sync::Notify,
    /// Transactions a block recorded as rejected (authentication failed at execution, e.g. a
    /// queued transaction whose fee became unpayable): the ledger does not index them, so the
    /// node remembers the recent ones for `agora_getTransaction`, in memory only.
    rejected_in_block: Mutex<HashMap<Hash, (u64, u32, ledger::Receipt)>>,
    /// The counters and gauges served at GET /metrics.
    pub metrics: Metrics,
    /// Checkpoints and past states.
    history: History,
    /// Sampled stake shares, incentives and emissions for the dashboard's charts.
    trends: Mutex<trends::Trends>,
    /// See [`NodeConfig::localnet_file`].
    localnet_file: Option<PathBuf>,
    /// The RPC server's connections and refusals.
    pub rpc: Arc<Connections>,
}

/// Subscriptions one WebSocket may hold.
const MAX_SUBSCRIPTIONS_PER_WS: u32 = 16;
/// Calls in one JSON-RPC batch (they run one after the other).
const MAX_BATCH: u32 = 32;
/// Messages queued for one WebSocket before a subscription skips heads.
const WS_BUFFER: u32 = 64;

/// How many in-block rejections [`Shared`] remembers (cleared when exceeded: they are rare).
const REMEMBERED_REJECTIONS: usize = 10_000;

impl Shared {
    /// What the producer and the RPC handlers of a node over `ledger` share.
    fn new(
        ledger: NodeLedger,
        history: History,
        mempool_size: usize,
        limits: &RpcLimits,
        localnet_file: Option<PathBuf>,
    ) -> Arc<Shared> {
        let height = ledger.head().height;
        let validators = ledger.genesis().validators.len();
        let (heads, _) = tokio::sync::broadcast::channel(256);
        let rpc = Arc::new(Connections::new(limits));
        let shared = Shared {
            chain: Arc::new(bft::Chain::new(ledger, mempool_size)),
            forward: std::sync::OnceLock::new(),
            validators,
            heads,
            new_tx: tokio::sync::Notify::new(),
            rejected_in_block: Mutex::new(HashMap::new()),
            metrics: Metrics::new(&rpc.counters),
            history,
            trends: Mutex::new(trends::Trends::default()),
            localnet_file,
            rpc,
        };
        shared.metrics.height.set(height);
        Arc::new(shared)
    }

    /// Produces one block from the mempool (empty if it is), as the node's producer does.
    pub fn produce_block(&self) -> Result<NewHead, NodeError> {
        self.produce(public_key(&dev_key("validator")), false)?
            .ok_or_else(|| NodeError::Runtime("no block produced".into()))
    }

    /// The ledger, even if a thread panicked while holding it (its state is only changed by
    /// `propose`/`commit`, which leave it consistent or return an error).
    pub(crate) fn ledger(&self) -> MutexGuard<'_, NodeLedger> {
        self.chain.ledger()
    }

    pub(crate) fn mempool(&self) -> MutexGuard<'_, Mempool> {
        self.chain.mempool()
    }

    /// The chain's status: the finalized head, the latest (notarized) height, the validator
    /// count and the equivocations reported.
    pub fn status(&self) -> client::types::ChainStatus {
        let evidence = self
            .chain
            .evidence()
            .into_iter()
            .map(|e| client::types::EvidenceInfo {
                kind: e.kind.to_string(),
                validator: e.validator,
                view: e.view,
            })
            .collect();
        client::types::ChainStatus {
            finalized: self.chain.head(),
            latest: self.chain.latest_height(),
            validators: self.validators as u32,
            evidence,
        }
    }

    /// A transaction a recent block recorded as rejected: `(height, index, receipt)`.
    pub(crate) fn rejected_in_block(&self, id: &Hash) -> Option<(u64, u32, ledger::Receipt)> {
        self.rejected_in_block.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Transactions waiting in the mempool for a block.
    pub fn mempool_len(&self) -> usize {
        self.mempool().len()
    }

    /// Validates and queues a transaction; wakes the producer in instant mode, or sends it to
    /// the other validators.
    pub fn submit(&self, bytes: &[u8]) -> Result<Hash, MempoolError> {
        let (id, new) = self
            .chain
            .admit(bytes)
            .inspect_err(|e| tracing::debug!(reason = %e, "transaction refused at submission"))?;
        if let (true, Some(forward)) = (new, self.forward.get()) {
            forward.forward(bytes.to_vec());
        }
        self.new_tx.notify_one();
        Ok(id)
    }

    /// Proposes, commits and announces one block from the mempool. Returns `None` (and does
    /// nothing) when `skip_empty` and the mempool is empty.
    fn produce(&self, proposer: ledger::PublicKey, skip_empty: bool) -> Result<Option<NewHead>, NodeError> {
        let mut ledger = self.ledger();
        let mut mempool = self.mempool();
        if skip_empty && mempool.is_empty() {
            return Ok(None);
        }
        let start = Instant::now();
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        // The ledger refuses a timestamp before the parent's (a clock stepped back).
        let timestamp = now_ms.max(ledger.head().timestamp_ms);
        let (outcome, _) = mempool.produce_block(&mut ledger, timestamp, proposer)?;
        drop(mempool);
        let took = start.elapsed().as_micros() as u64;
        let head = self.after_commit(&outcome, &ledger, took);
        Ok(Some(head))
    }

    /// What follows every committed block, from the producer or the consensus engine: the
    /// rejections remembered, the checkpoint, the metrics, the head announced.
    fn after_commit(&self, outcome: &ledger::BlockOutcome, ledger: &NodeLedger, took: u64) -> NewHead {
        // Remembered before the mempool forgets them, so a lookup never falls between the two.
        let rejected: Vec<_> = (0u32..)
            .zip(&outcome.receipts)
            .filter(|(_, r)| matches!(r.status, TxStatus::Rejected(_)))
            .map(|(i, r)| (r.tx_id, (outcome.header.height, i, r.clone())))
            .collect();
        if !rejected.is_empty() {
            let mut map = self.rejected_in_block.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() + rejected.len() > REMEMBERED_REJECTIONS {
                map.clear();
            }
            map.extend(rejected);
        }
        // A checkpoint at every epoch block; failing to write one only makes past metagraphs
        // slower (they replay from an earlier one), so it does not stop the chain.
        if let Err(e) = self.history.after_block(outcome.header.height, ledger.store()) {
            tracing::warn!(height = outcome.header.height, error = %e, "checkpoint not written");
        }
        self.trends.lock().unwrap_or_else(|p| p.into_inner()).record(outcome.header.height, ledger.neurons());
        log_block(outcome, took);
        let m = &self.metrics;
        let seconds = took as f64 / 1e6;
        m.height.set(outcome.header.height);
        m.blocks.inc();
        m.last_block.set(seconds);
        for r in &outcome.receipts {
            let counter = match r.status {
                TxStatus::Applied => &m.txs_applied,
                TxStatus::Failed(_) => &m.txs_failed,
                TxStatus::Rejected(_) => &m.txs_rejected,
            };
            counter.inc();
        }
        if outcome.epoch.is_some() {
            m.epochs.inc();
            m.last_epoch_block.set(seconds);
        }
        let head = NewHead {
            height: outcome.header.height,
            hash: outcome.hash,
            header: outcome.header.clone(),
            txs: outcome.receipts.len() as u32,
        };
        // No subscriber is not an error.
        let _ = self.heads.send(head.clone());
        head
    }
}

/// The log line of an epoch: what it minted at info, or why nothing. A chain without neurons
/// (every fresh chain, until the first registration) is normal and says so at info; the
/// mechanism refusing a registered network's input is a warning.
fn log_epoch(epoch: &ledger::EpochReport) {
    let height = epoch.height;
    match &epoch.error {
        // The ledger does not run the mechanism on an empty network (`error` says so).
        Some(_) if epoch.n == 0 => tracing::info!(height, "epoch: no neurons registered, nothing minted"),
        Some(e) => {
            tracing::warn!(height, error = %e, "epoch: the mechanism refused its input, nothing minted")
        }
        None if epoch.withheld => tracing::info!(
            height,
            n = epoch.n,
            "epoch: paid nothing (no weights yet, no consensus among them, or the mechanism withholding)"
        ),
        None => tracing::info!(height, n = epoch.n, minted = %ledger::Tokens::from(epoch.minted), "epoch"),
    }
}

/// The node's log of a committed block (`RUST_LOG`, see the binary): the block at info, its
/// epoch at info (what it minted, or why nothing), each refused or failed transaction with
/// the ledger's reason at debug.
fn log_block(outcome: &ledger::BlockOutcome, took_us: u64) {
    let height = outcome.header.height;
    let count = |f: fn(&TxStatus) -> bool| outcome.receipts.iter().filter(|r| f(&r.status)).count();
    tracing::info!(
        height,
        txs = outcome.receipts.len(),
        applied = count(|s| matches!(s, TxStatus::Applied)),
        failed = count(|s| matches!(s, TxStatus::Failed(_))),
        rejected = count(|s| matches!(s, TxStatus::Rejected(_))),
        took_ms = took_us as f64 / 1e3,
        "block"
    );
    if let Some(epoch) = &outcome.epoch {
        log_epoch(epoch);
    }
    for r in &outcome.receipts {
        match &r.status {
            TxStatus::Applied => {}
            TxStatus::Failed(e) => {
                tracing::debug!(height, tx = %r.tx_id, reason = %e, "transaction failed (fee charged)")
            }
            TxStatus::Rejected(e) => {
                tracing::debug!(height, tx = %r.tx_id, reason = %e, "transaction rejected")
            }
        }
    }
}

/// Opens a ledger over `store` (a new chain from `genesis` if the store holds none) and checks
/// that the store's chain is `genesis`'.
fn open_ledger<S: NodeStore>(store: S, genesis: &GenesisConfig) -> Result<NodeLedger, NodeError> {
    let ledger = Ledger::open_or_init(Box::new(store) as Box<dyn NodeStore>, genesis.clone())?;
    let stored = ledger.state().globals().genesis_hash;
    let given = genesis.hash();
    if stored != given {
        return Err(LedgerError::GenesisMismatch { stored, given }.into());
    }
    Ok(ledger)
}

/// The JSON-RPC API of a node over the chain in `data_dir` (opened or started as `agora node`
/// does), with no server and no block producer: for callers in the same process, such as the
/// fuzz harness (`RpcModule::raw_json_request`). Blocks come from [`Shared::produce_block`].
pub fn api(
    data_dir: &std::path::Path,
    genesis: GenesisConfig,
) -> Result<(jsonrpsee::RpcModule<Arc<Shared>>, Arc<Shared>), NodeError> {
    let config = NodeConfig::new(genesis.clone());
    let (ledger, _) = chain_dir::open(data_dir, genesis.clone(), false)?;
    let ledger = open_ledger(ledger.into_store(), &genesis)?;
    let history = History::new(ledger.store().handle(), genesis, config.history_blocks);
    let shared =
        Shared::new(ledger, history, config.mempool_size, &config.rpc_limits, config.localnet_file.clone());
    let module = rpc::module(shared.clone()).map_err(|e| NodeError::Runtime(e.to_string()))?;
    Ok((module, shared))
}

/// A running node: [`Node::start`] returns it.
pub struct NodeHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    producer: tokio::task::JoinHandle<Result<(), NodeError>>,
    rpc: jsonrpsee::server::ServerHandle,
}

/// The node: see [`Node::start`].
pub struct Node;

impl Node {
    /// Starts a node over `store` (a new chain from `config.genesis` if the store holds none;
    /// a store holding another chain is refused): binds the RPC address, then produces blocks
    /// until [`NodeHandle::stop`]. Must be called within a tokio runtime (multi-threaded: block
    /// execution runs on its blocking pool).
    pub async fn start<S: NodeStore>(config: NodeConfig, store: S) -> Result<NodeHandle, NodeError> {
        let ledger = open_ledger(store, &config.genesis)?;
        let head = ledger.head();
        let history = History::new(ledger.store().handle(), config.genesis.clone(), config.history_blocks);
        // The checkpoint of the head, if a crash came between its block and its checkpoint.
        if let Err(e) = history.after_block(head.height, ledger.store()) {
            tracing::warn!(height = head.height, error = %e, "checkpoint not written");
        }
        let limits = config.rpc_limits.clone();
        let shared = Shared::new(ledger, history, config.mempool_size, &limits, config.localnet_file.clone());
        let running = match config.validator.clone() {
            Some(v) => Some(start_validator(&shared, v)?),
            None => None,
        };
        let module = rpc::module(shared.clone()).map_err(|e| NodeError::Runtime(e.to_string()))?;
        let server_config = jsonrpsee::server::ServerConfig::builder()
            // jsonrpsee counts HTTP calls in flight and WebSockets under this one limit; the
            // accept loop's limits (at most one call in flight per connection) are the binding
            // ones.
            .max_connections(limits.max_connections as u32)
            .max_subscriptions_per_connection(MAX_SUBSCRIPTIONS_PER_WS)
            .set_batch_request_config(jsonrpsee::server::BatchRequestConfig::Limit(MAX_BATCH))
            .max_request_body_size(limits.max_request_bytes)
            .set_message_buffer_capacity(WS_BUFFER)
            // Closes WebSockets whose client stopped answering pings (a dead peer).
            .enable_ws_ping(
                jsonrpsee::server::PingConfig::new()
                    .ping_interval(Duration::from_secs(30))
                    .inactive_limit(Duration::from_secs(60)),
            )
            .build();
        let svc_builder = jsonrpsee::server::Server::builder()
            .set_config(server_config)
            .set_http_middleware(tower::ServiceBuilder::new().layer(metrics::MetricsLayer(shared.clone())))
            .set_rpc_middleware(
                jsonrpsee::server::middleware::rpc::RpcServiceBuilder::new().layer_fn(rpc::Guard),
            )
            .to_service_builder();
        let listener = tokio::net::TcpListener::bind(config.rpc_addr)
            .await
            .map_err(|source| NodeError::Rpc { addr: config.rpc_addr, source })?;
        let addr =
            listener.local_addr().map_err(|source| NodeError::Rpc { addr: config.rpc_addr, source })?;
        let (stop_rpc, rpc) = jsonrpsee::server::stop_channel();
        tokio::spawn(server::serve(
            listener,
            svc_builder,
            module.into(),
            limits,
            shared.rpc.clone(),
            stop_rpc,
        ));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let producer = match running {
            None => tokio::spawn(produce_blocks(shared.clone(), config.production, stopped)),
            // The engine decides the blocks; the node only stops it.
            Some(running) => tokio::spawn(async move {
                let _ = stopped.wait_for(|s| *s).await;
                tokio::task::spawn_blocking(move || running.stop())
                    .await
                    .map_err(|e| NodeError::Runtime(format!("validator: {e}")))
            }),
        };
        Ok(NodeHandle { addr, shared, stop, producer, rpc })
    }
}

/// Starts this node's validator: the engine executes final blocks into the node's ledger
/// and the node announces them as its producer's.
fn start_validator(shared: &Arc<Shared>, v: ValidatorConfig) -> Result<bft::net::Running, NodeError> {
    let weak = Arc::downgrade(shared);
    shared.chain.on_commit(Box::new(move |outcome, ledger| {
        if let Some(s) = weak.upgrade() {
            s.after_commit(outcome, ledger, 0);
        }
    }));
    let peers = v
        .peers
        .iter()
        .map(|(k, a)| Ok((bft::validator_key(k)?, *a)))
        .collect::<Result<Vec<_>, bft::KeyError>>()
        .map_err(bft::net::NetError::from)?;
    let net = bft::net::NetConfig { listen: v.listen, peers, storage: v.storage, timeouts: v.timeouts };
    let running = bft::net::spawn(shared.chain.clone(), bft::signing_key(&v.secret), net)?;
    let _ = shared.forward.set(running.mailbox.clone());
    Ok(running)
}

/// The single validator's loop: a block every interval (or when transactions wait) until
/// `stop` turns true; the block being produced is finished first.
async fn produce_blocks(
    shared: Arc<Shared>,
    production: Production,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let proposer = public_key(&dev_key("validator"));
    let instant = production == Production::Instant;
    let period = match production {
        Production::Interval(d) => d,
        Production::Instant => Duration::from_secs(3600),
    };
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Checked first: once asked to stop, start no new block.
            biased;
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = shared.new_tx.notified(), if instant => {}
            _ = interval.tick(), if !instant => {}
        }
        // Runs to completion even if a stop arrives meanwhile: the stop is seen above, between
        // blocks, so the current block is always finished.
        let s = shared.clone();
        match tokio::task::spawn_blocking(move || s.produce(proposer, instant)).await {
            // A block holds at most `max_block_txs`; in instant mode the rest must not wait for
            // the next submission to wake the producer.
            Ok(Ok(_)) if instant && shared.mempool_len() > 0 => shared.new_tx.notify_one(),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(NodeError::Runtime(format!("block producer: {e}"))),
        }
    }
}

impl NodeHandle {
    /// The bound JSON-RPC address (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for `client::Client::connect`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The last committed (final) block.
    pub fn head(&self) -> ChainHead {
        self.shared.ledger().head()
    }

    /// Every finalized block from now on, in order (a slow receiver skips, see
    /// `tokio::sync::broadcast`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<NewHead> {
        self.shared.heads.subscribe()
    }

    /// Waits until a block at `height` or above is final; returns the head then.
    pub async fn wait_for_height(&self, height: u64) -> ChainHead {
        let mut heads = self.subscribe();
        loop {
            let head = self.head();
            if head.height >= height {
                return head;
            }
            // Lagged or closed: look at the head again.
            let _ = heads.recv().await;
        }
    }

    /// What the RPC handlers and the producer share (metrics, the mempool, the ledger).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs until `signal` resolves or the producer fails, then stops as [`NodeHandle::stop`].
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<ChainHead, NodeError> {
        let ended = tokio::select! {
            _ = signal => None,
            r = &mut self.producer => Some(r),
        };
        let Some(r) = ended else { return self.stop().await };
        let _ = self.rpc.stop();
        self.rpc.clone().stopped().await;
        r.map_err(|e| NodeError::Runtime(format!("block producer: {e}")))??;
        Ok(self.head())
    }

    /// Stops producing (the block in progress is finished and committed), then the RPC
    /// server; returns the last committed head, or the producer's error.
    pub async fn stop(self) -> Result<ChainHead, NodeError> {
        let _ = self.stop.send(true);
        let produced = self.producer.await;
        let _ = self.rpc.stop();
        self.rpc.stopped().await;
        produced.map_err(|e| NodeError::Runtime(format!("block producer: {e}")))??;
        Ok(self.shared.ledger().head())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{Call, TxBody, TxError};

    fn transfer(nonce: u64, amount: u64) -> ledger::SignedTx {
        let k = dev_key("alice");
        TxBody {
            sender: public_key(&k),
            nonce,
            fee: 10_000,
            call: Call::Transfer { to: public_key(&dev_key("bob")), amount },
        }
        .sign(&k, "agora-dev")
    }

    /// What `f` logs at debug and above, as the binary's formatter writes it (no colours).
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// An epoch on a chain without neurons (every fresh chain) is normal: info, not a warning;
    /// the mechanism refusing a registered network's input still warns.
    #[test]
    fn an_empty_chains_epoch_logs_at_info_and_a_refusal_warns() {
        let report = |n: u32, error: &str| ledger::EpochReport {
            height: 100,
            mechanism: "yuma".into(),
            n,
            minted: 0,
            withheld: true,
            error: Some(error.into()),
        };
        let empty = logged(|| log_epoch(&report(0, "no neurons registered")));
        assert!(empty.contains(" INFO ") && empty.contains("no neurons registered"), "{empty}");
        assert!(!empty.contains("WARN"), "{empty}");
        let refused =
            logged(|| log_epoch(&report(3, "weight row 0 names peer 9, but the network has only 3 peers")));
        assert!(refused.contains(" WARN ") && refused.contains("refused its input"), "{refused}");
        assert!(refused.contains("names peer 9"), "the reason is in the line: {refused}");
    }

    fn config(production: Production) -> NodeConfig {
        NodeConfig {
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            production,
            ..NodeConfig::new(dev_genesis())
        }
    }

    /// A node started in-process over memory: its address comes from the handle, a
    /// transaction goes through RPC, mempool and a block, and a stop returns the head it kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_starts_in_process_serves_and_stops() {
        let store = SharedMemStore::new();
        let node = Node::start(config(Production::Instant), store.clone()).await.expect("starts");
        assert_ne!(node.addr().port(), 0, "the bound port, not the asked one");
        let c = client::Client::connect(&node.http_url()).await.expect("connect");
        let (height, receipt) = c.submit_and_wait(&transfer(0, 5)).await.expect("included");
        assert!(receipt.is_applied(), "{receipt:?}");
        assert_eq!(node.wait_for_height(height).await.height, height);
        let mut heads = node.subscribe();
        c.submit(&transfer(1, 5)).await.expect("queued");
        assert_eq!(heads.recv().await.expect("a head").height, height + 1);
        let stopped = node.stop().await.expect("stops cleanly");
        assert_eq!(stopped.height, height + 1);

        // The same store resumes where it stopped; another chain's genesis is refused.
        let again = Node::start(config(Production::Interval(Duration::from_millis(20))), store.clone())
            .await
            .expect("resumes");
        assert!(again.head().height > height);
        again.wait_for_height(height + 3).await;
        again.stop().await.expect("stops");
        let other = NodeConfig {
            genesis: GenesisConfig { chain_id: "other".into(), ..dev_genesis() },
            ..config(Production::Instant)
        };
        assert!(matches!(
            Node::start(other, store).await,
            Err(NodeError::Ledger(LedgerError::GenesisMismatch { .. }))
        ));
    }

    /// Issue 16 through RPC: a neuron's `publish_version` lands in a block, and the client
    /// reads it back with the block in `agora_metagraph` (`models`) and `agora_neuron`; the
    /// same version again, and one signed for another hotkey, are refused at submission with
    /// their typed reasons.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_published_model_version_reaches_the_metagraph() {
        let g = test_utils::neuron_genesis("agora-versions", 100);
        let cfg = NodeConfig {
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            production: Production::Instant,
            ..NodeConfig::new(g.clone())
        };
        let node = Node::start(cfg, SharedMemStore::new()).await.expect("starts");
        let c = client::Client::connect(&node.http_url()).await.expect("connect");
        let n1 = dev_key("n1");
        let publish = |nonce, version: [u8; 32]| {
            TxBody {
                sender: public_key(&n1),
                nonce,
                fee: g.fees.serve,
                call: Call::PublishVersion { version: ledger::Hash(version), step: 77 },
            }
            .sign(&n1, &g.chain_id)
        };
        let (height, receipt) = c.submit_and_wait(&publish(0, [5; 32])).await.expect("included");
        assert!(receipt.is_applied(), "{receipt:?}");
        let want =
            Some(ledger::PublishedModel { version: ledger::Hash([5; 32]), step: 77, published_at: height });
        let m = c.metagraph(None).await.expect("metagraph");
        assert_eq!(m.models, vec![None, want, None]);
        assert_eq!(c.neuron(1).await.expect("neuron").model, want);
        // The mempool checks the call against the state: the same version is refused at once.
        match c.submit(&publish(1, [5; 32])).await {
            Err(client::ClientError::Rejected(TxError::ModelVersionUnchanged { published_at, .. }))
                if published_at == height => {}
            other => panic!("the same version again: {other:?}"),
        }
        let mut forged = publish(1, [6; 32]);
        forged.body.sender = public_key(&dev_key("n2"));
        match c.submit(&forged).await {
            Err(client::ClientError::Rejected(TxError::BadSignature { .. })) => {}
            other => panic!("a version signed by another hotkey: {other:?}"),
        }
        node.stop().await.expect("stops");
    }

    /// `run_until` ends on its signal like `stop`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_until_stops_on_the_signal() {
        let node =
            Node::start(config(Production::Interval(Duration::from_millis(10))), SharedMemStore::new())
                .await
                .expect("starts");
        let head = node.run_until(tokio::time::sleep(Duration::from_millis(200))).await.expect("clean stop");
        assert!(head.height >= 2, "blocks every 10 ms for 200 ms: {}", head.height);
    }

    /// Four nodes, each one of the genesis' four validators, in this process on loopback: a
    /// transfer submitted over RPC to one is final on all, with the same blocks, and
    /// `agora_status` tells finalized from latest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn four_validator_nodes_finalize_the_same_chain() {
        let free =
            || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let secret = |i: usize| dev_key(&format!("validator-{i}")).to_bytes();
        let mut genesis = dev_genesis();
        genesis.validators = (0..4)
            .map(|i| ledger::GenesisValidator {
                key: public_key(&dev_key(&format!("validator-{i}"))),
                power: 1,
            })
            .collect();
        let p2p: Vec<SocketAddr> = (0..4).map(|_| free()).collect();
        let dir = std::env::temp_dir().join(format!("agora-node-validators-{}", std::process::id()));
        let mut nodes = Vec::new();
        for i in 0..4 {
            let peers = (0..4)
                .filter(|&j| j != i)
                .map(|j| (public_key(&dev_key(&format!("validator-{j}"))), p2p[j]))
                .collect();
            let validator = ValidatorConfig {
                secret: secret(i),
                listen: p2p[i],
                peers,
                storage: dir.join(i.to_string()),
                timeouts: bft::Timeouts::default(),
            };
            let config = NodeConfig {
                rpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                validator: Some(validator),
                ..NodeConfig::new(genesis.clone())
            };
            nodes.push(Node::start(config, SharedMemStore::new()).await.expect("starts"));
        }
        let c = client::Client::connect(&nodes[1].http_url()).await.expect("connect");
        let k = dev_key("alice");
        let tx = TxBody {
            sender: public_key(&k),
            nonce: 0,
            fee: 10_000,
            call: Call::Transfer { to: public_key(&dev_key("bob")), amount: 5 },
        }
        .sign(&k, &genesis.chain_id);
        let (height, receipt) = c.submit_and_wait(&tx).await.expect("included");
        assert!(receipt.is_applied(), "{receipt:?}");
        for n in &nodes {
            tokio::time::timeout(Duration::from_secs(60), n.wait_for_height(height + 1))
                .await
                .expect("final everywhere");
        }
        let status = c.status().await.expect("status");
        assert_eq!(status.validators, 4);
        assert!(status.latest >= status.finalized.height && status.evidence.is_empty(), "{status:?}");
        let mut blocks = Vec::new();
        for n in &nodes {
            let c = client::Client::connect(&n.http_url()).await.expect("connect");
            blocks.push(c.block(height).await.expect("block").hash);
        }
        assert!(blocks.windows(2).all(|w| w[0] == w[1]), "{blocks:?}");
        for n in nodes {
            n.stop().await.expect("stops");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
