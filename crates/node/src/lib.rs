//! The Agora chain node: runs the `ledger` state machine as a chain.
//!
//! It owns what turns the pure ledger into a service: the embedded store ([`RedbStore`], one
//! redb file under the data directory, opened by [`chain_dir`] and checked at every start), the
//! block producer of the single-validator embedded chain (a block every block time, or as soon
//! as transactions wait in instant mode), the [`mempool`], per-epoch state checkpoints for past
//! metagraphs ([`history`]), the JSON-RPC 2.0 API over HTTP and WebSocket ([`rpc`], documented
//! in `docs/rpc.md`) behind its own accept loop with per-address limits and timeouts
//! ([`server`]), and `/metrics` ([`metrics`]) on the same port.
//!
//! Blocks go through the ledger's own boundary, `propose -> commit`, so a block is durable
//! (one redb write transaction) before it is announced, and a restart resumes from the last
//! committed block. It assumes it is the only validator: a multi-validator engine would replace
//! [`run`]'s producer loop and keep the rest. It never re-implements ledger rules: every check,
//! mempool admission included, is the ledger's.

pub mod chain_dir;
pub mod history;
pub mod mempool;
pub mod metrics;
pub mod rpc;
pub mod server;
pub mod store;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

use client::types::NewHead;
use history::History;
use ledger::{dev_key, public_key, GenesisConfig, Hash, Ledger, LedgerError, TxStatus, UNITS_PER_TOKEN};
use mempool::{Mempool, MempoolError};
use metrics::Metrics;
use server::{Connections, RpcLimits};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub use store::RedbStore;
use thiserror::Error;

/// The names of the funded development accounts of `--dev` (keys from `ledger::dev_key`).
pub const DEV_ACCOUNTS: [&str; 6] = ["alice", "bob", "charlie", "dave", "eve", "ferdie"];
/// Each dev account's genesis balance: one million tokens.
pub const DEV_BALANCE: u64 = 1_000_000 * UNITS_PER_TOKEN;

/// `agora node` options.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Run a single-validator development chain from the dev genesis (funded, insecure keys)
    #[arg(long, conflicts_with = "genesis")]
    pub dev: bool,
    /// Run a single-validator chain from this genesis file (JSON, `ledger::GenesisConfig`)
    #[arg(long, value_name = "FILE")]
    pub genesis: Option<PathBuf>,
    /// Where the chain is stored (reused on restart). A new chain starts only in a missing or
    /// empty directory, or with --new-chain
    #[arg(long, value_name = "DIR", default_value = "agora-data")]
    pub data_dir: PathBuf,
    /// Milliseconds between blocks (empty blocks included)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub block_time_ms: u64,
    /// Produce a block as soon as transactions wait, and no empty blocks (for tests)
    #[arg(long, conflicts_with = "block_time_ms")]
    pub instant: bool,
    /// Address of JSON-RPC (HTTP and WebSocket) and GET /metrics; port 0 picks a free port
    #[arg(long, default_value = "127.0.0.1:9944")]
    pub rpc_addr: SocketAddr,
    /// Most transactions the mempool holds; submissions beyond are refused
    #[arg(long, default_value_t = 10_000)]
    pub mempool_size: usize,
    /// Start a new chain although the data directory exists. Never replaces a readable chain;
    /// an unreadable chain.redb is kept as chain.redb.unreadable-<time>
    #[arg(long)]
    pub new_chain: bool,
    /// How many blocks back agora_metagraph serves past heights (a state checkpoint is kept
    /// every epoch for as long)
    #[arg(long, default_value_t = 10_000)]
    pub history_blocks: u64,
    /// Most RPC connections at once, HTTP and WebSocket
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..), help_heading = "RPC limits")]
    pub rpc_max_connections: u32,
    /// Most RPC connections at once from one IP address
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..), help_heading = "RPC limits")]
    pub rpc_max_connections_per_ip: u32,
    /// Most WebSocket connections at once (counted apart, so subscriptions cannot take every slot)
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..), help_heading = "RPC limits")]
    pub rpc_max_ws: u32,
    /// Most WebSocket connections at once from one IP address
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), help_heading = "RPC limits")]
    pub rpc_max_ws_per_ip: u32,
    /// Seconds a client has to send a request's headers, and again its body; an idle keep-alive
    /// connection is closed after as long
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), help_heading = "RPC limits")]
    pub rpc_request_timeout_secs: u64,
    /// Seconds a WebSocket may stay open with no subscription and no call
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), help_heading = "RPC limits")]
    pub rpc_ws_idle_secs: u64,
    /// Most agora_metagraph calls at a past height running at once (each rebuilds a state);
    /// others wait up to 10 s, then get error -33016
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..), help_heading = "RPC limits")]
    pub rpc_max_historical: u32,
}

impl NodeArgs {
    /// The RPC server's limits from the flags; the largest request holds one transaction of the
    /// genesis' maximum size as hex, plus room for the JSON around it.
    pub fn rpc_limits(&self, genesis: &GenesisConfig) -> RpcLimits {
        RpcLimits {
            max_connections: self.rpc_max_connections as usize,
            max_connections_per_ip: self.rpc_max_connections_per_ip as usize,
            max_ws: self.rpc_max_ws as usize,
            max_ws_per_ip: self.rpc_max_ws_per_ip as usize,
            request_timeout: Duration::from_secs(self.rpc_request_timeout_secs),
            ws_idle_timeout: Duration::from_secs(self.rpc_ws_idle_secs),
            max_request_bytes: genesis.limits.max_tx_bytes.saturating_mul(2).saturating_add(64 * 1024),
            max_historical: self.rpc_max_historical as usize,
        }
    }
}

/// Why the node stopped or could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("which chain? pass --dev for a development chain or --genesis FILE")]
    NoGenesis,
    #[error("cannot read the genesis file {path}: {reason}")]
    GenesisFile { path: PathBuf, reason: String },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("the data directory {path} exists but holds no chain ({found}). A node never starts a new chain over an existing directory: pass --new-chain to start one there, or use another --data-dir")]
    NoChain { path: PathBuf, found: String },
    #[error("the chain store {path} is damaged: {reason}. The node will not build on it: restore the data directory from a backup, or pass --new-chain to keep the damaged file aside and start a new chain")]
    DamagedStore { path: PathBuf, reason: String },
    #[error("--new-chain: {path} holds a chain at height {height}, and --new-chain never replaces a chain: drop the flag to resume it, or use another --data-dir")]
    NewChainOverChain { path: PathBuf, height: u64 },
    #[error("{path} is in use by another process: is another node running on this data directory?")]
    InUse { path: PathBuf },
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("block production failed: {0}")]
    Block(#[from] ledger::BlockError),
    #[error("cannot start the RPC server on {addr}: {source}")]
    Rpc { addr: SocketAddr, source: std::io::Error },
    #[error("runtime: {0}")]
    Runtime(String),
}

/// What the RPC handlers and the producer share. Lock order: `ledger` before `mempool`.
pub struct Shared {
    ledger: Mutex<Ledger<RedbStore>>,
    mempool: Mutex<Mempool>,
    heads: tokio::sync::broadcast::Sender<NewHead>,
    new_tx: tokio::sync::Notify,
    /// Transactions a block recorded as rejected (authentication failed at execution, e.g. a
    /// queued transaction whose fee became unpayable): the ledger does not index them, so the
    /// node remembers the recent ones for `agora_getTransaction`, in memory only.
    rejected_in_block: Mutex<HashMap<Hash, (u64, u32, ledger::Receipt)>>,
    pub metrics: Metrics,
    /// Checkpoints and past states.
    history: History,
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
        ledger: Ledger<RedbStore>,
        history: History,
        mempool_size: usize,
        limits: &RpcLimits,
    ) -> Arc<Shared> {
        let height = ledger.head().height;
        let (heads, _) = tokio::sync::broadcast::channel(256);
        let shared = Shared {
            ledger: Mutex::new(ledger),
            mempool: Mutex::new(Mempool::new(mempool_size)),
            heads,
            new_tx: tokio::sync::Notify::new(),
            rejected_in_block: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            history,
            rpc: Arc::new(Connections::new(limits)),
        };
        shared.metrics.height.store(height, Ordering::Relaxed);
        Arc::new(shared)
    }

    /// Produces one block from the mempool (empty if it is), as the node's producer does.
    pub fn produce_block(&self) -> Result<NewHead, NodeError> {
        self.produce(public_key(&dev_key("validator")), false)?
            .ok_or_else(|| NodeError::Runtime("no block produced".into()))
    }

    /// The ledger, even if a thread panicked while holding it (its state is only changed by
    /// `propose`/`commit`, which leave it consistent or return an error).
    pub(crate) fn ledger(&self) -> MutexGuard<'_, Ledger<RedbStore>> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn mempool(&self) -> MutexGuard<'_, Mempool> {
        self.mempool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A transaction a recent block recorded as rejected: `(height, index, receipt)`.
    pub(crate) fn rejected_in_block(&self, id: &Hash) -> Option<(u64, u32, ledger::Receipt)> {
        self.rejected_in_block.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    pub fn mempool_len(&self) -> usize {
        self.mempool().len()
    }

    /// Validates and queues a transaction; wakes the producer in instant mode.
    pub fn submit(&self, bytes: &[u8]) -> Result<Hash, MempoolError> {
        let ledger = self.ledger();
        let id = self.mempool().insert(&ledger, bytes)?;
        drop(ledger);
        self.new_tx.notify_one();
        Ok(id)
    }

    /// Proposes, commits and announces one block from the mempool. Returns `None` (and does
    /// nothing) when `skip_empty` and the mempool is empty.
    fn produce(&self, proposer: ledger::PublicKey, skip_empty: bool) -> Result<Option<NewHead>, NodeError> {
        let mut ledger = self.ledger();
        let limit = ledger.genesis().limits.max_block_txs as usize;
        let txs = self.mempool().select(limit);
        if skip_empty && txs.is_empty() {
            return Ok(None);
        }
        let start = Instant::now();
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        // The ledger refuses a timestamp before the parent's (a clock stepped back).
        let timestamp = now_ms.max(ledger.head().timestamp_ms);
        let ids: Vec<Hash> = txs.iter().map(ledger::SignedTx::id).collect();
        ledger.propose(txs, timestamp, proposer)?;
        let outcome = ledger.commit()?;
        let took = start.elapsed().as_micros() as u64;
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
        self.mempool().after_block(&ledger, &ids);
        // A checkpoint at every epoch block; failing to write one only makes past metagraphs
        // slower (they replay from an earlier one), so it does not stop the chain.
        if let Err(e) = self.history.after_block(outcome.header.height, ledger.store()) {
            eprintln!("checkpoint at block {}: {e}", outcome.header.height);
        }
        drop(ledger);

        let m = &self.metrics;
        m.height.store(outcome.header.height, Ordering::Relaxed);
        m.blocks.fetch_add(1, Ordering::Relaxed);
        m.last_block_us.store(took, Ordering::Relaxed);
        for r in &outcome.receipts {
            let counter = match r.status {
                TxStatus::Applied => &m.txs_applied,
                TxStatus::Failed(_) => &m.txs_failed,
                TxStatus::Rejected(_) => &m.txs_rejected,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.epoch.is_some() {
            m.epochs.fetch_add(1, Ordering::Relaxed);
            m.last_epoch_block_us.store(took, Ordering::Relaxed);
        }
        let head = NewHead {
            height: outcome.header.height,
            hash: outcome.hash,
            header: outcome.header.clone(),
            txs: outcome.receipts.len() as u32,
        };
        // No subscriber is not an error.
        let _ = self.heads.send(head.clone());
        Ok(Some(head))
    }
}

/// The genesis the arguments name: the dev genesis for `--dev`, else the `--genesis` file.
pub fn genesis_of(args: &NodeArgs) -> Result<GenesisConfig, NodeError> {
    if args.dev {
        return Ok(GenesisConfig::dev(&DEV_ACCOUNTS, DEV_BALANCE));
    }
    let path = args.genesis.as_ref().ok_or(NodeError::NoGenesis)?;
    let bad = |reason: String| NodeError::GenesisFile { path: path.clone(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    // `from_json` also validates (supply, mechanism parameters, limits).
    GenesisConfig::from_json(&text).map_err(|e| bad(e.to_string()))
}

/// The JSON-RPC API of a node over the chain in `data_dir` (opened or started as `agora node`
/// does), with no server and no block producer: for callers in the same process, such as the
/// fuzz harness (`RpcModule::raw_json_request`). Blocks come from [`Shared::produce_block`].
pub fn api(
    data_dir: &std::path::Path,
    genesis: GenesisConfig,
) -> Result<(jsonrpsee::RpcModule<Arc<Shared>>, Arc<Shared>), NodeError> {
    let args = <NodeArgs as clap::FromArgMatches>::from_arg_matches(
        &<NodeArgs as clap::Args>::augment_args(clap::Command::new("node")).get_matches_from(["node"]),
    )
    .map_err(|e| NodeError::Runtime(e.to_string()))?;
    let limits = args.rpc_limits(&genesis);
    let (ledger, _) = chain_dir::open(data_dir, genesis.clone(), false)?;
    let history = History::new(ledger.store().clone(), genesis, args.history_blocks);
    let shared = Shared::new(ledger, history, args.mempool_size, &limits);
    let module = rpc::module(shared.clone()).map_err(|e| NodeError::Runtime(e.to_string()))?;
    Ok((module, shared))
}

/// Runs the node until Ctrl-C or SIGTERM; the block being produced is finished first.
pub fn run(args: NodeArgs) -> Result<(), NodeError> {
    // Before starting anything: a bad genesis file is a usage error.
    genesis_of(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| NodeError::Runtime(e.to_string()))?;
    rt.block_on(run_async(args))
}

async fn run_async(args: NodeArgs) -> Result<(), NodeError> {
    let genesis = genesis_of(&args)?;
    let limits = args.rpc_limits(&genesis);
    let (ledger, opened) = chain_dir::open(&args.data_dir, genesis.clone(), args.new_chain)?;
    let head = ledger.head();
    let history = History::new(ledger.store().clone(), genesis, args.history_blocks);
    // The checkpoint of the head, if a crash came between its block and its checkpoint.
    if let Err(e) = history.after_block(head.height, ledger.store()) {
        eprintln!("checkpoint at block {}: {e}", head.height);
    }

    println!("agora node: chain {} (genesis {})", ledger.chain_id(), ledger.genesis().hash());
    println!("data directory: {}", args.data_dir.display());
    match opened {
        chain_dir::Opened::Resumed => {
            println!("resuming at height {} (state root {}), store checked", head.height, head.state_root)
        }
        chain_dir::Opened::Started => println!("new chain at height 0 (state root {})", head.state_root),
        chain_dir::Opened::StartedOver { kept } => println!(
            "new chain at height 0 (state root {}); the unreadable chain file was kept as {}",
            head.state_root,
            kept.display()
        ),
    }
    if args.dev {
        println!(
            "funded dev accounts ({} tokens each). INSECURE: their secret keys derive from the",
            DEV_BALANCE / UNITS_PER_TOKEN
        );
        println!("  names (ledger::dev_key), so anyone can spend them; use them on dev chains only:");
        for name in DEV_ACCOUNTS {
            println!("  {name:<8} {}", public_key(&dev_key(name)));
        }
    }

    let shared = Shared::new(ledger, history, args.mempool_size, &limits);
    let module = rpc::module(shared.clone()).map_err(|e| NodeError::Runtime(e.to_string()))?;
    let config = jsonrpsee::server::ServerConfig::builder()
        // jsonrpsee counts HTTP calls in flight and WebSockets under this one limit; the
        // accept loop's limits (at most one call in flight per connection) are the binding ones.
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
        .set_config(config)
        .set_http_middleware(tower::ServiceBuilder::new().layer(metrics::MetricsLayer(shared.clone())))
        .set_rpc_middleware(jsonrpsee::server::middleware::rpc::RpcServiceBuilder::new().layer_fn(rpc::Guard))
        .to_service_builder();
    let listener = tokio::net::TcpListener::bind(args.rpc_addr)
        .await
        .map_err(|source| NodeError::Rpc { addr: args.rpc_addr, source })?;
    let addr = listener.local_addr().map_err(|source| NodeError::Rpc { addr: args.rpc_addr, source })?;
    let shutdown = shutdown_signal();
    let (stop, handle) = jsonrpsee::server::stop_channel();
    tokio::spawn(server::serve(listener, svc_builder, module.into(), limits, shared.rpc.clone(), stop));
    // Tests and scripts parse this line for the bound address (port 0 picks a free one).
    println!("rpc listening on http://{addr} (WebSocket: ws://{addr}, metrics: http://{addr}/metrics)");
    match args.instant {
        true => println!("producing a block as soon as transactions arrive (instant mode)"),
        false => println!("producing a block every {} ms", args.block_time_ms),
    }

    let proposer = public_key(&dev_key("validator"));
    let mut interval = tokio::time::interval(Duration::from_millis(args.block_time_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            // Checked first: once asked to stop, start no new block.
            biased;
            _ = &mut shutdown => break Ok(()),
            _ = shared.new_tx.notified(), if args.instant => {}
            _ = interval.tick(), if !args.instant => {}
        }
        // Runs to completion even if a signal arrives meanwhile: the signal is seen above,
        // between blocks, so the current block is always finished.
        let s = shared.clone();
        let produced = tokio::task::spawn_blocking(move || s.produce(proposer, args.instant)).await;
        match produced {
            Ok(Ok(_)) => {
                // A block holds at most `max_block_txs`; in instant mode the rest must not wait
                // for the next submission to wake the producer.
                if args.instant && shared.mempool_len() > 0 {
                    shared.new_tx.notify_one();
                }
            }
            Ok(Err(e)) => break Err(e),
            Err(e) => break Err(NodeError::Runtime(format!("block producer: {e}"))),
        }
    };
    let _ = handle.stop();
    handle.stopped().await;
    let head = shared.ledger().head();
    println!("stopped at height {} (state root {})", head.height, head.state_root);
    result
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled: a signal sent right after the node printed its address
/// must stop it cleanly, not kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeArgs,
    }

    fn args(a: &[&str]) -> NodeArgs {
        Cli::try_parse_from(std::iter::once("node").chain(a.iter().copied())).expect("parses").node
    }

    #[test]
    fn the_chain_comes_from_dev_or_a_genesis_file() {
        assert_eq!(genesis_of(&args(&["--dev"])).unwrap(), GenesisConfig::dev(&DEV_ACCOUNTS, DEV_BALANCE));
        assert!(matches!(genesis_of(&args(&[])), Err(NodeError::NoGenesis)));
        let dir = std::env::temp_dir().join(format!("agora-node-genesis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("genesis.json");
        let mut g = GenesisConfig::dev(&["zed"], 7);
        g.chain_id = "agora-test".into();
        std::fs::write(&file, g.to_json_pretty()).unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(genesis_of(&args(&["--genesis", path])).unwrap(), g);
        std::fs::write(&file, "{").unwrap();
        assert!(matches!(genesis_of(&args(&["--genesis", path])), Err(NodeError::GenesisFile { .. })));
        assert!(Cli::try_parse_from(["node", "--dev", "--genesis", path]).is_err(), "one chain at a time");
        assert!(Cli::try_parse_from(["node", "--dev", "--instant", "--block-time-ms", "5"]).is_err());
        assert!(Cli::try_parse_from(["node", "--dev", "--block-time-ms", "0"]).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
