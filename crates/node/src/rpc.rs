//! The JSON-RPC 2.0 API (HTTP and WebSocket on one port). Methods and examples: `docs/rpc.md`.
//! Every handler parses its parameters into typed values first (a bad parameter is
//! `INVALID_PARAMS` with what was expected), holds the ledger lock only to read, and never
//! panics on input. Handlers are registered as blocking methods: the producer holds the ledger
//! lock for a whole block (an epoch of thousands of neurons takes a while), and waiting for it
//! must not stall the async workers that serve other connections and subscriptions.

use crate::mempool::MempoolError;
use crate::Shared;
use client::types::{
    codes, AccountInfo, BlockId, BlockInfo, GenesisInfo, MetagraphInfo, NeuronQuery, TxLookup,
};
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned, Params};
use jsonrpsee::RpcModule;
use ledger::{Hash, LedgerError, PublicKey};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// Deepest history `agora_metagraph` rebuilds by replay (the cost grows with the height).
pub const MAX_REPLAY_BLOCKS: u64 = 100_000;

/// The metagraph as it stood after block `height`. The node keeps only the latest state, but
/// the state at any height is a pure function of the genesis and the blocks: replay the stored
/// blocks into a fresh in-memory ledger, taking the node's lock for one block read at a time.
fn metagraph_at(
    s: &Shared,
    genesis: ledger::GenesisConfig,
    height: u64,
) -> Result<ledger::Metagraph, ErrorObjectOwned> {
    let storage =
        |e: &dyn std::fmt::Display| error(codes::STORAGE, format!("replaying to block {height}: {e}"));
    let mut replay = ledger::Ledger::init(ledger::MemStore::new(), genesis).map_err(|e| storage(&e))?;
    for h in 1..=height {
        let stored = s.ledger().block(h).map_err(|e| storage(&e))?;
        let stored = stored.ok_or_else(|| storage(&format!("block {h} is missing from the store")))?;
        replay.execute_block(&stored.block).map_err(|e| storage(&e))?;
        replay.commit().map_err(|e| storage(&e))?;
    }
    Ok(replay.metagraph())
}

fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObject::owned(code, message.into(), None::<()>)
}

fn error_with<D: Serialize>(code: i32, message: impl Into<String>, data: D) -> ErrorObjectOwned {
    ErrorObject::owned(code, message.into(), Some(data))
}

fn storage(e: LedgerError) -> ErrorObjectOwned {
    eprintln!("rpc: storage error: {e}");
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

pub fn module(shared: Arc<Shared>) -> Result<RpcModule<Arc<Shared>>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(shared);

    m.register_blocking_method("agora_submitTransaction", |params, s, _| {
        let hex_tx: String = one(&params, "the signed transaction's bytes as hex")?;
        let bytes = hex::decode(hex_tx.strip_prefix("0x").unwrap_or(&hex_tx))
            .map_err(|e| invalid(format!("transaction is not hex: {e}")))?;
        s.submit(&bytes).map_err(|e| match e {
            MempoolError::Invalid(reason) => error_with(codes::TX_REJECTED, reason.to_string(), reason),
            e @ MempoolError::Full { .. } => error(codes::MEMPOOL_FULL, e.to_string()),
            e @ MempoolError::NoncePending { .. } => error(codes::NONCE_PENDING, e.to_string()),
        })
    })?;

    m.register_blocking_method("agora_getTransaction", |params, s, _| {
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

    m.register_blocking_method("agora_account", |params, s, _| {
        let key = key_param(&params)?;
        Ok::<_, ErrorObjectOwned>(AccountInfo::new(key, s.ledger().account(&key)))
    })?;

    m.register_blocking_method("agora_neuron", |params, s, _| {
        let q: NeuronQuery = one(&params, r#"{"uid": <number>} or {"hotkey": "<64 hex digits>"}"#)?;
        let ledger = s.ledger();
        let found = match &q {
            NeuronQuery::Uid { uid } => ledger.neuron(*uid),
            NeuronQuery::Hotkey { hotkey } => ledger.neuron_by_hotkey(hotkey),
        };
        found.cloned().ok_or_else(|| match q {
            NeuronQuery::Uid { uid } => error(
                codes::NOT_FOUND,
                format!("no neuron with uid {uid}: the network has {} neurons", ledger.neurons().len()),
            ),
            NeuronQuery::Hotkey { hotkey } => {
                error(codes::NOT_FOUND, format!("hotkey {hotkey} is not registered"))
            }
        })
    })?;

    m.register_blocking_method("agora_metagraph", |params, s, _| {
        let height: Option<u64> = if params.is_object() {
            #[derive(serde::Deserialize)]
            struct Named {
                block: Option<u64>,
            }
            params.parse::<Named>().map_err(|e| invalid(e.message().to_string()))?.block
        } else {
            params.sequence().optional_next().map_err(|e| invalid(format!("expected a block height or null: {}", e.message())))?
        };
        let ledger = s.ledger();
        let head = ledger.head().height;
        match height {
            Some(h) if h > head => Err(error_with(
                codes::NOT_FOUND,
                format!("block {h} does not exist yet: the head is block {head}"),
                serde_json::json!({ "head": head, "requested": h }),
            )),
            Some(h) if h > MAX_REPLAY_BLOCKS && h < head => Err(error_with(
                codes::HISTORICAL_STATE_UNAVAILABLE,
                format!(
                    "the metagraph at block {h} would need a replay of {h} blocks (at most {MAX_REPLAY_BLOCKS}); \
                     omit the height for the latest"
                ),
                serde_json::json!({ "head": head, "requested": h }),
            )),
            Some(h) if h < head => {
                // Release the producer's lock: the replay runs on its own in-memory ledger.
                let genesis = ledger.genesis().clone();
                drop(ledger);
                metagraph_at(&s, genesis, h).map(|m| MetagraphInfo::from(&m))
            }
            _ => Ok(MetagraphInfo::from(&ledger.metagraph())),
        }
    })?;

    m.register_blocking_method("agora_block", |params, s, _| {
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

    m.register_blocking_method("agora_head", |_, s, _| Ok::<_, ErrorObjectOwned>(s.ledger().head()))?;
    m.register_blocking_method("agora_genesis", |_, s, _| {
        let ledger = s.ledger();
        let config = ledger.genesis().clone();
        Ok::<_, ErrorObjectOwned>(GenesisInfo { hash: config.hash(), config })
    })?;
    m.register_blocking_method("agora_difficulty", |_, s, _| {
        Ok::<_, ErrorObjectOwned>(s.ledger().difficulty())
    })?;

    m.register_subscription(
        "agora_subscribeNewHeads",
        "agora_newHead",
        "agora_unsubscribeNewHeads",
        |_, pending, s, _| async move {
            let mut rx = s.heads.subscribe();
            let sink = pending.accept().await?;
            loop {
                tokio::select! {
                    _ = sink.closed() => break,
                    item = rx.recv() => match item {
                        Ok(head) => sink.send(serde_json::value::to_raw_value(&head)?).await?,
                        // A slow subscriber skips heads rather than holding the producer back.
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
