//! A typed JSON-RPC client for an Agora chain node, and the API's types.
//!
//! [`Client::connect`] takes an `http://` or `ws://` URL; each method mirrors one `agora_*` RPC
//! method (documented with example requests in `docs/rpc.md`). Subscriptions
//! ([`Client::subscribe_heads`]) need a WebSocket URL. This crate depends on the `ledger` crate
//! for the transaction and block types but not on the node, so wallets, peers and the CLI use it
//! without linking a server. It assumes a node speaking the same API version.

pub mod methods;
pub mod types;

use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::core::ClientError as RpcClientError;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use ledger::{Hash, PublicKey, Receipt, SignedTx, TxError};
use serde::de::DeserializeOwned;
use std::time::Duration;
use thiserror::Error;
pub use types::*;

/// Why a call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The node refused the transaction at submission, with the ledger's typed reason.
    #[error("transaction rejected: {0}")]
    Rejected(TxError),
    /// The node answered with a JSON-RPC error (codes in [`types::codes`]).
    #[error("node error {code}: {message}")]
    Rpc {
        /// The JSON-RPC error code: the node's own (-33000..-33099, [`types::codes`]) or jsonrpsee's.
        code: i32,
        /// The node's message, for a person to read.
        message: String,
        /// The structured detail the node attached, if any (a rejection reason, a limit).
        data: Option<serde_json::Value>,
    },
    /// The connection or the encoding failed.
    #[error("transport: {0}")]
    Transport(String),
    /// A subscription was asked of a client connected over HTTP, which cannot carry one.
    #[error("subscriptions need a WebSocket URL (ws:// or wss://), not {0}")]
    NeedsWebSocket(String),
    /// [`Client::submit_and_wait`] gave up before the transaction was in a committed block.
    #[error("transaction {id} not included after {waited:?}")]
    Timeout {
        /// The transaction's id, as [`Client::submit`] returned it.
        id: Hash,
        /// How long the client polled.
        waited: Duration,
    },
    /// The URL given to [`Client::connect`] has a scheme the client cannot speak.
    #[error("URL {0} is neither http(s):// nor ws(s)://")]
    BadUrl(String),
}

impl From<RpcClientError> for ClientError {
    fn from(e: RpcClientError) -> Self {
        match e {
            RpcClientError::Call(obj) => {
                let data: Option<serde_json::Value> =
                    obj.data().and_then(|raw| serde_json::from_str(raw.get()).ok());
                if obj.code() == codes::TX_REJECTED {
                    if let Some(reason) = data.clone().and_then(|d| serde_json::from_value(d).ok()) {
                        return ClientError::Rejected(reason);
                    }
                }
                ClientError::Rpc { code: obj.code(), message: obj.message().to_string(), data }
            }
            other => ClientError::Transport(other.to_string()),
        }
    }
}

enum Inner {
    Http(HttpClient),
    Ws(WsClient),
}

/// A connection to one node.
pub struct Client {
    inner: Inner,
    url: String,
    /// How long [`Client::submit_and_wait`] waits for inclusion.
    pub wait_timeout: Duration,
}

impl Client {
    /// Connects to `url` (`http://host:port` or `ws://host:port`).
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        let inner = if url.starts_with("ws://") || url.starts_with("wss://") {
            Inner::Ws(WsClientBuilder::default().build(url).await?)
        } else if url.starts_with("http://") || url.starts_with("https://") {
            Inner::Http(HttpClientBuilder::default().build(url)?)
        } else {
            return Err(ClientError::BadUrl(url.to_string()));
        };
        Ok(Client { inner, url: url.to_string(), wait_timeout: Duration::from_secs(60) })
    }

    async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        params: jsonrpsee::core::params::ArrayParams,
    ) -> Result<R, ClientError> {
        Ok(match &self.inner {
            Inner::Http(c) => c.request(method, params).await?,
            Inner::Ws(c) => c.request(method, params).await?,
        })
    }

    /// `agora_submitTransaction`: returns the transaction id once the mempool accepted it.
    pub async fn submit(&self, tx: &SignedTx) -> Result<Hash, ClientError> {
        self.submit_bytes(&tx.encode()).await
    }

    /// `agora_submitTransaction` with raw encoded bytes (for tools that relay transactions).
    pub async fn submit_bytes(&self, bytes: &[u8]) -> Result<Hash, ClientError> {
        self.call(methods::SUBMIT_TRANSACTION, rpc_params![hex::encode(bytes)]).await
    }

    /// `agora_getTransaction`.
    pub async fn transaction(&self, id: &Hash) -> Result<TxLookup, ClientError> {
        self.call(methods::GET_TRANSACTION, rpc_params![id]).await
    }

    /// Submits `tx` and polls until a block includes it: `(height, receipt)`. The receipt may
    /// say the call failed (it paid its fee); a refusal at submission is [`ClientError::Rejected`].
    pub async fn submit_and_wait(&self, tx: &SignedTx) -> Result<(u64, Receipt), ClientError> {
        let id = self.submit(tx).await?;
        let start = std::time::Instant::now();
        loop {
            match self.transaction(&id).await? {
                TxLookup::Included { height, receipt, .. } => return Ok((height, receipt)),
                // Unknown after acceptance: dropped because an earlier block invalidated it, or a
                // block recorded it as rejected; keep polling until the timeout either way.
                TxLookup::Pending | TxLookup::Unknown => {}
            }
            if start.elapsed() > self.wait_timeout {
                return Err(ClientError::Timeout { id, waited: self.wait_timeout });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `agora_account`.
    pub async fn account(&self, key: &PublicKey) -> Result<AccountInfo, ClientError> {
        self.call(methods::ACCOUNT, rpc_params![key]).await
    }

    /// `agora_neuron` by uid.
    pub async fn neuron(&self, uid: u16) -> Result<ledger::Neuron, ClientError> {
        self.call(methods::NEURON, rpc_params![NeuronQuery::Uid { uid }]).await
    }

    /// `agora_neuron` by hotkey.
    pub async fn neuron_by_hotkey(&self, hotkey: &PublicKey) -> Result<ledger::Neuron, ClientError> {
        self.call(methods::NEURON, rpc_params![NeuronQuery::Hotkey { hotkey: *hotkey }]).await
    }

    /// `agora_metagraph` at the latest block (`None`) or a given height.
    pub async fn metagraph(&self, block: Option<u64>) -> Result<MetagraphInfo, ClientError> {
        self.call(methods::METAGRAPH, rpc_params![block]).await
    }

    /// `agora_block` by height.
    pub async fn block(&self, height: u64) -> Result<BlockInfo, ClientError> {
        self.call(methods::BLOCK, rpc_params![BlockId::Height(height)]).await
    }

    /// `agora_block` by hash.
    pub async fn block_by_hash(&self, hash: &Hash) -> Result<BlockInfo, ClientError> {
        self.call(methods::BLOCK, rpc_params![BlockId::Hash(*hash)]).await
    }

    /// `agora_head`: the last committed block.
    pub async fn head(&self) -> Result<HeadInfo, ClientError> {
        self.call(methods::HEAD, rpc_params![]).await
    }

    /// `agora_status`: the finalized head, the latest height, the validators, the evidence.
    pub async fn status(&self) -> Result<types::ChainStatus, ClientError> {
        self.call(methods::STATUS, rpc_params![]).await
    }

    /// `agora_genesis`.
    pub async fn genesis(&self) -> Result<GenesisInfo, ClientError> {
        self.call(methods::GENESIS, rpc_params![]).await
    }

    /// `agora_neurons`: one sorted page of the neuron table.
    pub async fn neurons(&self, query: NeuronsQuery) -> Result<NeuronPage, ClientError> {
        self.call(methods::NEURONS, rpc_params![query]).await
    }

    /// `agora_network`: chain id, mechanism, n, head, issuance, block time.
    pub async fn network(&self) -> Result<NetworkInfo, ClientError> {
        self.call(methods::NETWORK, rpc_params![]).await
    }

    /// `agora_history`: stake share, incentive and emission per neuron over blocks.
    pub async fn history(&self, query: HistoryQuery) -> Result<HistorySeries, ClientError> {
        self.call(methods::HISTORY, rpc_params![query]).await
    }

    /// `agora_weights`: a neuron's weights given and received and its bonds.
    pub async fn weights(&self, uid: u16) -> Result<NeuronLinks, ClientError> {
        self.call(methods::WEIGHTS, rpc_params![uid]).await
    }

    /// `agora_localnet`: the roles and the judge's figures of the localnet this node runs.
    pub async fn localnet(&self) -> Result<LocalnetStatus, ClientError> {
        self.call(methods::LOCALNET, rpc_params![]).await
    }

    /// `agora_difficulty`: the current proof-of-work difficulty of `register`.
    pub async fn difficulty(&self) -> Result<u64, ClientError> {
        self.call(methods::DIFFICULTY, rpc_params![]).await
    }

    /// `agora_burn`: what a burned registration burns now, base units.
    pub async fn burn(&self) -> Result<u64, ClientError> {
        self.call(methods::BURN, rpc_params![]).await
    }

    /// `agora_nominators`: the stake on a registered hotkey, owner's part and nominators'.
    pub async fn nominators(&self, hotkey: &PublicKey) -> Result<types::HotkeyStakeInfo, ClientError> {
        self.call(methods::NOMINATORS, rpc_params![hotkey]).await
    }

    /// `agora_stakes`: the hotkeys a coldkey has stake on (its own and its nominations).
    pub async fn stakes(&self, coldkey: &PublicKey) -> Result<Vec<types::StakeInfo>, ClientError> {
        self.call(methods::STAKES, rpc_params![coldkey]).await
    }

    /// `agora_subnets`: every subnet, netuid 0 first.
    pub async fn subnets(&self) -> Result<Vec<types::SubnetSummary>, ClientError> {
        self.call(methods::SUBNETS, rpc_params![]).await
    }

    /// `agora_subnet`: one subnet.
    pub async fn subnet(&self, netuid: u16) -> Result<types::SubnetSummary, ClientError> {
        self.call(methods::SUBNET, rpc_params![netuid]).await
    }

    /// `agora_metagraph` of subnet `netuid` at the latest block (past blocks are kept for
    /// netuid 0 only: [`Client::metagraph`]).
    pub async fn subnet_metagraph(&self, netuid: u16) -> Result<MetagraphInfo, ClientError> {
        self.call(methods::METAGRAPH, rpc_params![Option::<u64>::None, netuid]).await
    }

    /// `agora_neuron` by uid in subnet `netuid`.
    pub async fn neuron_in(&self, netuid: u16, uid: u16) -> Result<ledger::Neuron, ClientError> {
        self.call(methods::NEURON, rpc_params![NeuronQuery::Uid { uid }, netuid]).await
    }

    /// `agora_neuron` by hotkey in subnet `netuid`.
    pub async fn neuron_by_hotkey_in(
        &self,
        netuid: u16,
        hotkey: &PublicKey,
    ) -> Result<ledger::Neuron, ClientError> {
        self.call(methods::NEURON, rpc_params![NeuronQuery::Hotkey { hotkey: *hotkey }, netuid]).await
    }

    /// `agora_difficulty` of subnet `netuid`.
    pub async fn difficulty_of(&self, netuid: u16) -> Result<u64, ClientError> {
        self.call(methods::DIFFICULTY, rpc_params![netuid]).await
    }

    /// `agora_burn` of subnet `netuid`.
    pub async fn burn_of(&self, netuid: u16) -> Result<u64, ClientError> {
        self.call(methods::BURN, rpc_params![netuid]).await
    }

    /// `agora_nominators` of a hotkey in subnet `netuid`.
    pub async fn nominators_in(
        &self,
        netuid: u16,
        hotkey: &PublicKey,
    ) -> Result<types::HotkeyStakeInfo, ClientError> {
        self.call(methods::NOMINATORS, rpc_params![hotkey, netuid]).await
    }

    /// `agora_stakes` of a coldkey in subnet `netuid`.
    pub async fn stakes_in(
        &self,
        netuid: u16,
        coldkey: &PublicKey,
    ) -> Result<Vec<types::StakeInfo>, ClientError> {
        self.call(methods::STAKES, rpc_params![coldkey, netuid]).await
    }

    /// `agora_subscribeNewHeads`: every committed block from now on (WebSocket only).
    pub async fn subscribe_heads(&self) -> Result<Subscription<NewHead>, ClientError> {
        match &self.inner {
            Inner::Ws(c) => Ok(c
                .subscribe(methods::SUBSCRIBE_NEW_HEADS, rpc_params![], methods::UNSUBSCRIBE_NEW_HEADS)
                .await?),
            Inner::Http(_) => Err(ClientError::NeedsWebSocket(self.url.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonrpsee::types::ErrorObject;

    #[test]
    fn rejections_decode_to_the_ledgers_reason_and_other_errors_keep_their_code() {
        let reason = TxError::NonceReused { sender: PublicKey([1; 32]), expected: 2, got: 1 };
        let e =
            RpcClientError::Call(ErrorObject::owned(codes::TX_REJECTED, reason.to_string(), Some(&reason)));
        match ClientError::from(e) {
            ClientError::Rejected(r) => assert_eq!(r, reason),
            other => panic!("{other:?}"),
        }
        let e = RpcClientError::Call(ErrorObject::owned(codes::MEMPOOL_FULL, "full", None::<()>));
        match ClientError::from(e) {
            ClientError::Rpc { code, message, data: None } => {
                assert_eq!((code, message.as_str()), (codes::MEMPOOL_FULL, "full"))
            }
            other => panic!("{other:?}"),
        }
    }

    /// Issue 13: -32011 meant both "mempool full" (ours) and "batch response too large"
    /// (jsonrpsee's). Our codes stay out of JSON-RPC's reserved range, where jsonrpsee's live.
    #[test]
    fn our_error_codes_are_distinct_and_outside_the_reserved_range() {
        use jsonrpsee::types::error as j;
        let theirs = [
            j::PARSE_ERROR_CODE,
            j::INVALID_REQUEST_CODE,
            j::METHOD_NOT_FOUND_CODE,
            j::INTERNAL_ERROR_CODE,
            j::CALL_EXECUTION_FAILED_CODE,
            j::UNKNOWN_ERROR_CODE,
            j::BATCHES_NOT_SUPPORTED_CODE,
            j::TOO_MANY_SUBSCRIPTIONS_CODE,
            j::OVERSIZED_REQUEST_CODE,
            j::OVERSIZED_RESPONSE_CODE,
            j::SERVER_IS_BUSY_CODE,
            j::TOO_BIG_BATCH_REQUEST_CODE,
            j::TOO_BIG_BATCH_RESPONSE_CODE,
        ];
        for (k, code) in codes::ALL.iter().enumerate() {
            assert!(!(-32768..=-32000).contains(code), "{code} is in JSON-RPC's reserved range");
            assert!(!theirs.contains(code), "{code} is also a jsonrpsee code");
            assert!(!codes::ALL[..k].contains(code), "{code} twice");
        }
    }

    #[test]
    fn urls_need_a_known_scheme() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        assert!(matches!(rt.block_on(Client::connect("ftp://x")), Err(ClientError::BadUrl(_))));
    }
}
