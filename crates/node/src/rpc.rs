//! The JSON-RPC 2.0 API (HTTP and WebSocket on one port). Methods and examples: `docs/rpc.md`.
//! Every handler parses its parameters into typed values first (a bad parameter is
//! `INVALID_PARAMS` with what was expected), holds the ledger lock only to read, and never
//! panics on input. Handlers are registered as blocking methods: the producer holds the ledger
//! lock for a whole block (an epoch of thousands of neurons takes a while), and waiting for it
//! must not stall the async workers that serve other connections and subscriptions. A past
//! metagraph is rebuilt from a checkpoint ([`crate::history`]) by at most
//! `--rpc-max-historical` calls at once; [`Guard`] tells an HTTP caller that subscriptions need
//! a WebSocket and records each WebSocket call for the idle timeout.

use crate::history::HistoryError;
use crate::mempool::MempoolError;
use crate::server::{Activity, Transport};
use crate::trends::TrendError;
use crate::Shared;
use client::methods;
use client::types::{
    codes, AccountInfo, BlockId, BlockInfo, GenesisInfo, HistoryQuery, HotkeyStakeInfo, MetagraphInfo,
    NetworkInfo, NeuronQuery, NeuronsQuery, StakeInfo, SubnetSummary, TxLookup, BLOCK_TIME_WINDOW,
};
use jsonrpsee::core::middleware::{
    Batch, BatchEntry, BatchEntryErr, Notification, ResponseFuture, RpcServiceT,
};
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::server::middleware::rpc::Request;
use jsonrpsee::server::MethodResponse;
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned, Params};
use jsonrpsee::RpcModule;
use ledger::{Hash, LedgerError, PublicKey};
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How long a past-metagraph call waits for one of the `--rpc-max-historical` slots before it
/// is refused with [`codes::BUSY`] (see [`Expensive`]).
pub const HISTORICAL_WAIT: Duration = Duration::from_secs(10);

/// The subscription methods, which need a WebSocket.
const SUBSCRIPTION_METHODS: [&str; 2] = [methods::SUBSCRIBE_NEW_HEADS, methods::UNSUBSCRIBE_NEW_HEADS];

fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObject::owned(code, message.into(), None::<()>)
}

fn error_with<D: Serialize>(code: i32, message: impl Into<String>, data: D) -> ErrorObjectOwned {
    ErrorObject::owned(code, message.into(), Some(data))
}

fn storage(e: LedgerError) -> ErrorObjectOwned {
    tracing::error!(error = %e, "rpc: storage error");
    error(codes::STORAGE, format!("the node's store failed: {e}"))
}

fn invalid(message: String) -> ErrorObjectOwned {
    error(codes::INVALID_PARAMS, message)
}

/// The one positional parameter, or the named parameters as one object.
fn one<T: serde::de::DeserializeOwned>(params: &Params<'_>, what: &str) -> Result<T, ErrorObjectOwned> {
    let parsed = if params.is_object() { params.parse::<T>() } else { params.one::<T>() };
    parsed.map_err(|e| invalid(format!("expected {what}: {}", e.message())))
}

fn key_param(params: &Params<'_>) -> Result<PublicKey, ErrorObjectOwned> {
    let s: String = one(params, "a public key as 64 hex digits")?;
    s.parse().map_err(invalid)
}

/// A public key, then an optional netuid (0 when absent).
fn key_and_netuid(params: &Params<'_>) -> Result<(PublicKey, u16), ErrorObjectOwned> {
    let (s, netuid): (String, u16) = with_netuid(params, "a public key as 64 hex digits")?;
    Ok((s.parse().map_err(invalid)?, netuid))
}

/// The one parameter object, named or positional, or `None` for no parameter, `[]` or
/// `[null]`. Parsed here rather than by jsonrpsee, whose error drops serde's message (which
/// field is unknown, which values are allowed).
fn optional_object<T: serde::de::DeserializeOwned>(
    params: &Params<'_>,
    expected: &str,
) -> Result<Option<T>, ErrorObjectOwned> {
    let bad = |e: serde_json::Error| invalid(format!("expected {expected}: {e}"));
    let raw: serde_json::Value = match params.as_str() {
        None => return Ok(None),
        Some(raw) => serde_json::from_str(raw).map_err(bad)?,
    };
    let one = match raw {
        serde_json::Value::Array(mut a) if a.len() <= 1 => a.pop().unwrap_or_default(),
        serde_json::Value::Array(a) => {
            return Err(invalid(format!("expected one parameter, {expected}; got {}", a.len())))
        }
        other => other,
    };
    if one.is_null() {
        return Ok(None);
    }
    serde_json::from_value(one).map(Some).map_err(bad)
}

/// The raw parameters as JSON (`null` for none).
fn raw_params(params: &Params<'_>, expected: &str) -> Result<serde_json::Value, ErrorObjectOwned> {
    match params.as_str() {
        None => Ok(serde_json::Value::Null),
        Some(raw) => serde_json::from_str(raw).map_err(|e| invalid(format!("expected {expected}: {e}"))),
    }
}

/// The netuid in a JSON value: absent or `null` is netuid 0.
fn netuid_of(v: Option<serde_json::Value>, expected: &str) -> Result<u16, ErrorObjectOwned> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(0),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| invalid(format!("expected {expected}; the netuid must be 0..=65535: {e}"))),
    }
}

/// A method's main parameter and the subnet it asks about: `[x]` or `[x, netuid]` positionally,
/// or one object holding the parameter's fields and an optional `netuid`. Netuid 0 when absent.
fn with_netuid<T: serde::de::DeserializeOwned>(
    params: &Params<'_>,
    what: &str,
) -> Result<(T, u16), ErrorObjectOwned> {
    let expected = format!("{what}, then an optional netuid");
    let bad = |e: serde_json::Error| invalid(format!("expected {expected}: {e}"));
    match raw_params(params, &expected)? {
        serde_json::Value::Array(a) if (1..=2).contains(&a.len()) => {
            let mut it = a.into_iter();
            let first = serde_json::from_value(it.next().unwrap_or_default()).map_err(bad)?;
            Ok((first, netuid_of(it.next(), &expected)?))
        }
        serde_json::Value::Object(mut o) => {
            let netuid = netuid_of(o.remove("netuid"), &expected)?;
            Ok((serde_json::from_value(serde_json::Value::Object(o)).map_err(bad)?, netuid))
        }
        _ => Err(invalid(format!("expected {expected}"))),
    }
}

/// The only parameter of a method about one subnet: none (netuid 0), `[netuid]` or
/// `{"netuid": k}`.
fn only_netuid(params: &Params<'_>) -> Result<u16, ErrorObjectOwned> {
    let expected = "an optional netuid (0..=65535)";
    match raw_params(params, expected)? {
        serde_json::Value::Array(a) if a.len() <= 1 => netuid_of(a.into_iter().next(), expected),
        serde_json::Value::Object(mut o) => netuid_of(o.remove("netuid"), expected),
        serde_json::Value::Null => Ok(0),
        _ => Err(invalid(format!("expected {expected}"))),
    }
}

/// A network in an error message: "the network" for netuid 0 (the words before subnets).
fn network(netuid: u16) -> String {
    match netuid {
        0 => "the network".into(),
        k => format!("subnet {k}"),
    }
}

/// " in subnet k", or nothing for netuid 0.
fn in_subnet(netuid: u16) -> String {
    match netuid {
        0 => String::new(),
        k => format!(" in subnet {k}"),
    }
}

/// `NOT_FOUND` for a subnet that does not exist.
fn no_subnet(e: LedgerError) -> ErrorObjectOwned {
    match e {
        e @ LedgerError::UnknownSubnet { .. } => error(codes::NOT_FOUND, e.to_string()),
        e => storage(e),
    }
}

/// The JSON-RPC module: every method of [`client::methods::ALL`] and the new-heads
/// subscription, answering from the node's shared ledger, mempool and history.
pub fn module(shared: Arc<Shared>) -> Result<RpcModule<Arc<Shared>>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(shared);

    m.register_blocking_method(methods::SUBMIT_TRANSACTION, |params, s, _| {
        let hex_tx: String = one(&params, "the signed transaction's bytes as hex")?;
        let bytes = hex::decode(hex_tx.strip_prefix("0x").unwrap_or(&hex_tx))
            .map_err(|e| invalid(format!("transaction is not hex: {e}")))?;
        s.submit(&bytes).map_err(|e| match e {
            MempoolError::Invalid(reason) => error_with(codes::TX_REJECTED, reason.to_string(), reason),
            e @ MempoolError::Full { .. } => error(codes::MEMPOOL_FULL, e.to_string()),
            e @ MempoolError::NoncePending { .. } => error(codes::NONCE_PENDING, e.to_string()),
        })
    })?;

    m.register_blocking_method(methods::GET_TRANSACTION, |params, s, _| {
        let id: Hash = {
            let text: String = one(&params, "a transaction id as 64 hex digits")?;
            text.parse().map_err(invalid)?
        };
        if s.mempool().contains(&id) {
            return Ok::<_, ErrorObjectOwned>(TxLookup::Pending);
        }
        let ledger = s.ledger();
        match ledger.tx_location(&id).map_err(storage)? {
            None => Ok(match s.rejected_in_block(&id) {
                Some((height, index, receipt)) => TxLookup::Included { height, index, receipt },
                None => TxLookup::Unknown,
            }),
            Some((height, index)) => match ledger.transaction(&id).map_err(storage)? {
                Some((_, _, receipt)) => Ok(TxLookup::Included { height, index, receipt }),
                None => Ok(TxLookup::Unknown),
            },
        }
    })?;

    m.register_blocking_method(methods::ACCOUNT, |params, s, _| {
        let key = key_param(&params)?;
        Ok::<_, ErrorObjectOwned>(AccountInfo::new(key, s.ledger().account(&key)))
    })?;

    m.register_blocking_method(methods::NEURON, |params, s, _| {
        let (q, netuid): (NeuronQuery, u16) =
            with_netuid(&params, r#"{"uid": <number>} or {"hotkey": "<64 hex digits>"}"#)?;
        let ledger = s.ledger();
        let net = ledger.subnet(netuid).map_err(no_subnet)?;
        let found = match &q {
            NeuronQuery::Uid { uid } => net.neuron(*uid),
            NeuronQuery::Hotkey { hotkey } => net.uid_of(hotkey).and_then(|u| net.neuron(u)),
        };
        found.cloned().ok_or_else(|| match q {
            NeuronQuery::Uid { uid } => error(
                codes::NOT_FOUND,
                format!("no neuron with uid {uid}: {} has {} neurons", network(netuid), net.n()),
            ),
            NeuronQuery::Hotkey { hotkey } => {
                error(codes::NOT_FOUND, format!("hotkey {hotkey} is not registered{}", in_subnet(netuid)))
            }
        })
    })?;

    m.register_async_method(methods::METAGRAPH, |params, s, _| async move {
        let (height, netuid): (Option<u64>, u16) = if params.is_object() {
            #[derive(serde::Deserialize)]
            struct Named {
                block: Option<u64>,
                #[serde(default)]
                netuid: u16,
            }
            let named = params.parse::<Named>().map_err(|e| invalid(e.message().to_string()))?;
            (named.block, named.netuid)
        } else {
            let mut seq = params.sequence();
            let block = seq
                .optional_next()
                .map_err(|e| invalid(format!("expected a block height or null: {}", e.message())))?;
            let netuid: Option<u16> = seq
                .optional_next()
                .map_err(|e| invalid(format!("expected a netuid (0..=65535) after the block: {}", e.message())))?;
            (block, netuid.unwrap_or(0))
        };
        if netuid != 0 {
            // Past states are rebuilt from netuid 0's checkpoints only: a subnet's metagraph is
            // the latest one.
            let ledger = s.ledger();
            let head = ledger.head().height;
            if height.is_some_and(|h| h != head) {
                return Err(invalid(format!(
                    "past metagraphs are kept for netuid 0 only: ask subnet {netuid} for the latest block (null)"
                )));
            }
            return ledger.subnet_metagraph(netuid).map(|m| MetagraphInfo::from(&m)).map_err(no_subnet);
        }
        // The head and, if that is what is asked for, the latest metagraph, under the ledger's
        // lock on a blocking thread (the producer may hold it for a whole epoch).
        let s2 = s.clone();
        let (head, latest) = tokio::task::spawn_blocking(move || {
            let ledger = s2.ledger();
            let head = ledger.head().height;
            let latest = (height.is_none_or(|h| h == head)).then(|| MetagraphInfo::from(&ledger.metagraph()));
            (head, latest)
        })
        .await
        .map_err(|e| error(codes::STORAGE, format!("the metagraph could not be read: {e}")))?;
        match (height, latest) {
            (_, Some(latest)) => Ok(latest),
            (Some(h), None) if h > head => Err(error_with(
                codes::NOT_FOUND,
                format!("block {h} does not exist yet: the head is block {head}"),
                serde_json::json!({ "head": head, "requested": h }),
            )),
            (h, None) => historical_metagraph(&s, h.unwrap_or(head), head).await,
        }
    })?;

    m.register_blocking_method(methods::BLOCK, |params, s, _| {
        let id: BlockId = one(&params, "a block height (number) or a block hash (64 hex digits)")?;
        let ledger = s.ledger();
        let stored = match &id {
            BlockId::Height(h) => ledger.block(*h),
            BlockId::Hash(h) => ledger.block_by_hash(h),
        }
        .map_err(storage)?;
        match stored {
            Some(stored) => Ok(BlockInfo { hash: stored.block.header.hash(), stored }),
            None => Err(match id {
                BlockId::Height(h) => error(
                    codes::NOT_FOUND,
                    format!(
                        "no block at height {h}: the head is {} (height 0 is genesis, which has no block)",
                        ledger.head().height
                    ),
                ),
                BlockId::Hash(h) => error(codes::NOT_FOUND, format!("no committed block has hash {h}")),
            }),
        }
    })?;

    m.register_blocking_method(methods::NEURONS, |params, s, _| {
        let expected = r#"{"offset": <number>, "limit": 1..=1000, "sort": "<column>", "descending": <bool>}"#;
        // Named, one positional object, or nothing (the first 100 by uid).
        let q: NeuronsQuery = optional_object(&params, expected)?.unwrap_or_default();
        let ledger = s.ledger();
        crate::dashboard::neuron_page(ledger.neurons(), ledger.head().height, &q)
            .map_err(|e| invalid(e.to_string()))
    })?;

    m.register_blocking_method(methods::HISTORY, |params, s, _| {
        let expected = r#"{"uids": [<uid>, ...] (at most 64), "from": <height>, "to": <height>}"#;
        let q: HistoryQuery = optional_object(&params, expected)?.unwrap_or_default();
        let ledger = s.ledger();
        let trends = s.trends.lock().unwrap_or_else(|p| p.into_inner());
        trends.query(&q, ledger.neurons(), ledger.head().height).map_err(|e| match e {
            TrendError::UnknownUid { .. } | TrendError::Future { .. } => {
                error(codes::NOT_FOUND, e.to_string())
            }
            _ => invalid(e.to_string()),
        })
    })?;

    m.register_blocking_method(methods::WEIGHTS, |params, s, _| {
        let (uid, netuid): (u16, u16) = with_netuid(&params, "a uid (number)")?;
        let ledger = s.ledger();
        let net = ledger.subnet(netuid).map_err(no_subnet)?;
        let n = net.n();
        let bonds = ledger.subnet_metagraph(netuid).map_err(no_subnet)?.bonds.get(usize::from(uid)).cloned();
        crate::dashboard::links(n, uid, |i| net.row(i), bonds.unwrap_or_default(), ledger.head().height)
            .ok_or_else(|| {
                error(
                    codes::NOT_FOUND,
                    format!("no neuron with uid {uid}: {} has {n} neurons", network(netuid)),
                )
            })
    })?;

    m.register_blocking_method(methods::LOCALNET, |_, s, _| {
        use crate::dashboard::LocalnetFileError as E;
        crate::dashboard::read_localnet(s.localnet_file.as_deref()).map_err(|e| match e {
            E::NotALocalnet | E::NotWritten(_) => error(codes::NOT_FOUND, e.to_string()),
            e => error(codes::STORAGE, e.to_string()),
        })
    })?;

    m.register_blocking_method(methods::NETWORK, |_, s, _| {
        let latest = s.status().latest;
        let ledger = s.ledger();
        let head = ledger.head();
        let genesis = ledger.genesis();
        // The mean interval over the last blocks (height 0 is genesis and has no timestamp).
        let first = head.height.saturating_sub(BLOCK_TIME_WINDOW).max(1);
        let block_time_ms = match (head.height > first).then(|| ledger.block(first)) {
            Some(r) => r.map_err(storage)?.map(|b| {
                head.timestamp_ms.saturating_sub(b.block.header.timestamp_ms) as f64
                    / (head.height - first) as f64
            }),
            None => None,
        };
        Ok::<_, ErrorObjectOwned>(NetworkInfo {
            chain_id: genesis.chain_id.clone(),
            mechanism: genesis.mechanism.name().to_string(),
            tempo: genesis.tempo,
            n: ledger.neurons().len() as u32,
            head,
            latest,
            issuance: ledger.issuance(),
            tau: ledger.tau(),
            block_time_ms,
        })
    })?;

    m.register_blocking_method(methods::HEAD, |_, s, _| Ok::<_, ErrorObjectOwned>(s.ledger().head()))?;
    m.register_blocking_method(methods::STATUS, |_, s, _| Ok::<_, ErrorObjectOwned>(s.status()))?;
    m.register_blocking_method(methods::GENESIS, |_, s, _| {
        let ledger = s.ledger();
        let config = ledger.genesis().clone();
        Ok::<_, ErrorObjectOwned>(GenesisInfo { hash: config.hash(), config })
    })?;
    m.register_blocking_method(methods::DIFFICULTY, |params, s, _| {
        let netuid = only_netuid(&params)?;
        let ledger = s.ledger();
        Ok::<_, ErrorObjectOwned>(ledger.subnet(netuid).map_err(no_subnet)?.net_globals().difficulty)
    })?;

    m.register_blocking_method(methods::BURN, |params, s, _| {
        let netuid = only_netuid(&params)?;
        let ledger = s.ledger();
        Ok::<_, ErrorObjectOwned>(ledger.subnet(netuid).map_err(no_subnet)?.net_globals().burn)
    })?;

    m.register_blocking_method(methods::SUBNETS, |_, s, _| {
        let ledger = s.ledger();
        Ok::<_, ErrorObjectOwned>(ledger.subnets().map(SubnetSummary::of).collect::<Vec<_>>())
    })?;

    m.register_blocking_method(methods::SUBNET, |params, s, _| {
        let netuid: u16 = one(&params, "a netuid (0..=65535)")?;
        let ledger = s.ledger();
        ledger.subnet(netuid).map(SubnetSummary::of).map_err(no_subnet)
    })?;

    m.register_blocking_method(methods::NOMINATORS, |params, s, _| {
        let (hotkey, netuid) = key_and_netuid(&params)?;
        let ledger = s.ledger();
        let height = ledger.head().height;
        let net = ledger.subnet(netuid).map_err(no_subnet)?;
        net.uid_of(&hotkey).and_then(|u| net.neuron(u)).map(|n| HotkeyStakeInfo::new(n, height)).ok_or_else(
            || error(codes::NOT_FOUND, format!("hotkey {hotkey} is not registered{}", in_subnet(netuid))),
        )
    })?;

    m.register_blocking_method(methods::STAKES, |params, s, _| {
        let (coldkey, netuid) = key_and_netuid(&params)?;
        let ledger = s.ledger();
        let height = ledger.head().height;
        let net = ledger.subnet(netuid).map_err(no_subnet)?;
        let stakes: Vec<StakeInfo> = ledger
            .stakes_in(netuid, &coldkey)
            .map_err(no_subnet)?
            .into_iter()
            .filter_map(|(uid, hotkey, stake)| {
                let n = net.neuron(uid)?;
                let take = ledger::delegation::take_fraction(n.take_at(height));
                Some(StakeInfo { uid, hotkey, stake, owner: n.coldkey == coldkey, take })
            })
            .collect();
        Ok::<_, ErrorObjectOwned>(stakes)
    })?;

    m.register_subscription(
        methods::SUBSCRIBE_NEW_HEADS,
        methods::NEW_HEAD,
        methods::UNSUBSCRIBE_NEW_HEADS,
        |_, pending, s, ext| async move {
            let mut rx = s.heads.subscribe();
            let mut sink = pending.accept().await?;
            // Counted while it runs: a WebSocket with a subscription is not idle.
            let _active = ext.get::<Arc<Activity>>().map(Activity::subscribed);
            loop {
                tokio::select! {
                    _ = sink.closed() => break,
                    item = rx.recv() => match item {
                        // A subscriber that does not read skips heads (its buffer is full) rather
                        // than holding memory or the producer back.
                        Ok(head) => match sink.try_send(serde_json::value::to_raw_value(&head)?) {
                            Ok(()) | Err(jsonrpsee::core::server::TrySendError::Full(_)) => {}
                            Err(jsonrpsee::core::server::TrySendError::Closed(_)) => break,
                        },
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    },
                }
            }
            SubscriptionResult::Ok(())
        },
    )?;
    Ok(m)
}

/// At most `max` expensive calls (past metagraphs) run at once, each on a blocking thread;
/// a call waits up to [`HISTORICAL_WAIT`] for its turn and is refused with [`codes::BUSY`] after.
pub struct Expensive {
    slots: Arc<tokio::sync::Semaphore>,
    max: usize,
    wait: Duration,
    running: AtomicUsize,
    /// The most that ran at once since the node started (`/metrics`).
    pub peak: AtomicUsize,
}

impl Expensive {
    /// `max` slots, a call waiting at most `wait` for one.
    pub fn new(max: usize, wait: Duration) -> Expensive {
        Expensive {
            slots: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
            wait,
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Runs `f` when a slot is free (within the wait), on a blocking thread.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ErrorObjectOwned> {
        let permit = match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                return Err(error(
                    codes::BUSY,
                    format!(
                        "{} past-metagraph calls are running and none finished within {} s: retry shortly",
                        self.max,
                        self.wait.as_secs_f64()
                    ),
                ))
            }
        };
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let now = me.running.fetch_add(1, Ordering::SeqCst) + 1;
            me.peak.fetch_max(now, Ordering::SeqCst);
            let out = f();
            me.running.fetch_sub(1, Ordering::SeqCst);
            out
        })
        .await
        .map_err(|e| error(codes::STORAGE, format!("the call failed: {e}")))
    }
}

/// `agora_metagraph` at a past height: rebuilt from the latest checkpoint as an [`Expensive`]
/// call.
async fn historical_metagraph(s: &Arc<Shared>, h: u64, head: u64) -> Result<MetagraphInfo, ErrorObjectOwned> {
    let history = s.history.clone();
    let rebuilt = s.rpc.historical.run(move || history.metagraph_at(h, head)).await.inspect_err(|e| {
        if e.code() == codes::BUSY {
            s.rpc.counters.busy.inc();
        }
    })?;
    match rebuilt {
        Ok(m) => Ok(MetagraphInfo::from(&m)),
        Err(HistoryError::TooOld { oldest, .. }) => Err(error_with(
            codes::HISTORICAL_STATE_UNAVAILABLE,
            format!(
                "the node keeps the state of blocks {oldest}..={head} (--history-blocks): block {h} is older"
            ),
            serde_json::json!({ "head": head, "requested": h, "oldest": oldest }),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "rpc: past metagraph");
            Err(error(codes::STORAGE, format!("rebuilding block {h} failed: {e}")))
        }
    }
}

/// JSON-RPC middleware: subscriptions over HTTP get [`codes::WEBSOCKET_REQUIRED`] (jsonrpsee
/// answered -32603 "Internal error"), and every call counts as WebSocket activity.
#[derive(Clone)]
pub struct Guard<S>(pub S);

fn over_http(ext: &jsonrpsee::Extensions) -> bool {
    ext.get::<Transport>() == Some(&Transport::Http)
}

fn needs_websocket(method: &str) -> ErrorObjectOwned {
    error(
        codes::WEBSOCKET_REQUIRED,
        format!(
            "{method} is a subscription: connect over WebSocket (ws://host:port); HTTP carries single calls"
        ),
    )
}

impl<S> RpcServiceT for Guard<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync,
{
    type MethodResponse = MethodResponse;
    type BatchResponse = MethodResponse;
    type NotificationResponse = MethodResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        if let Some(a) = req.extensions().get::<Arc<Activity>>() {
            a.touch();
        }
        if over_http(req.extensions()) && SUBSCRIPTION_METHODS.contains(&req.method_name()) {
            let rp = MethodResponse::error(req.id().into_owned(), needs_websocket(req.method_name()));
            return ResponseFuture::ready(rp);
        }
        ResponseFuture::future(self.0.call(req))
    }

    fn batch<'a>(&self, mut batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        for entry in batch.iter_mut() {
            let refused = match entry {
                Ok(BatchEntry::Call(req))
                    if over_http(req.extensions()) && SUBSCRIPTION_METHODS.contains(&req.method_name()) =>
                {
                    Some((req.id().into_owned(), needs_websocket(req.method_name())))
                }
                _ => None,
            };
            if let Some((id, e)) = refused {
                *entry = Err(BatchEntryErr::new(id, e));
            }
        }
        if let Some(a) = batch.extensions().get::<Arc<Activity>>() {
            a.touch();
        }
        self.0.batch(batch)
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.0.notification(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every slot taken, a call waits its time and is refused BUSY; a freed slot serves it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expensive_calls_run_a_few_at_once_and_the_rest_are_told_to_retry() {
        let limit = Arc::new(Expensive::new(2, Duration::from_millis(200)));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Arc::new(std::sync::Mutex::new(hold));
        let mut running = Vec::new();
        for _ in 0..2 {
            let (l, h) = (limit.clone(), hold.clone());
            running.push(tokio::spawn(async move { l.run(move || h.lock().unwrap().recv().ok()).await }));
        }
        while limit.running.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let refused = limit.run(|| ()).await.unwrap_err();
        assert_eq!(refused.code(), codes::BUSY);
        release.send(()).unwrap();
        release.send(()).unwrap();
        for r in running {
            assert!(r.await.unwrap().is_ok());
        }
        assert!(limit.run(|| 7).await.is_ok_and(|v| v == 7));
        assert!(limit.peak.load(Ordering::SeqCst) <= 2);
    }

    /// The node registers exactly the methods `client::methods` declares: a method added on one
    /// side only fails here.
    #[test]
    fn the_node_answers_exactly_the_declared_methods() {
        let dir = std::env::temp_dir().join(format!("agora-rpc-methods-{}", std::process::id()));
        let (module, _) = crate::api(&dir, ledger::GenesisConfig::default()).unwrap();
        let registered: std::collections::BTreeSet<&str> = module.method_names().collect();
        let declared: std::collections::BTreeSet<&str> = methods::ALL.into_iter().collect();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(registered, declared);
    }
}
