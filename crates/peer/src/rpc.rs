//! [`Chain`] over a node's JSON-RPC API, reconnecting when the connection drops.

use crate::chain::{Chain, ChainError};
use client::{AccountInfo, Client, ClientError, MetagraphInfo, TxLookup};
use ledger::{ChainHead, GenesisConfig, Hash, PublicKey, Receipt, SignedTx};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A node reached through the `client` crate (HTTP or WebSocket URL).
///
/// A call that fails in the transport (the node restarted, the WebSocket dropped) is retried
/// on a fresh connection for up to `reconnect_for`, so a peer rides out a node restart instead
/// of exiting. Answers from the node (a refused transaction, an RPC error) are never retried.
pub struct RpcChain {
    url: String,
    client: RwLock<Arc<Client>>,
    /// How often `next_block` and `wait_for` poll the node. Polling rather than a subscription
    /// keeps HTTP URLs working and survives a dropped WebSocket without re-subscribing.
    pub poll: Duration,
    /// How long `wait_for` waits for inclusion.
    pub wait_timeout: Duration,
    /// How long a call keeps reconnecting before it reports the transport error.
    pub reconnect_for: Duration,
    /// The subnet whose difficulty and metagraph [`Chain::difficulty`] and [`Chain::metagraph`]
    /// read (0, the genesis network, by default). Transactions are sent as they are signed:
    /// a call on a subnet carries its netuid itself (`ledger::Call::on_subnet`).
    pub netuid: u16,
}

impl RpcChain {
    /// Connects to a node's JSON-RPC at `url`.
    pub async fn connect(url: &str) -> Result<RpcChain, ChainError> {
        Ok(RpcChain::over(url, Arc::new(Client::connect(url).await?)))
    }

    /// Over `client`, a connection already open to `url` (reconnections go to `url`), so a
    /// caller that holds one for other calls does not open a second.
    pub fn over(url: &str, client: Arc<Client>) -> RpcChain {
        RpcChain {
            url: url.to_string(),
            client: RwLock::new(client),
            poll: Duration::from_millis(50),
            wait_timeout: Duration::from_secs(60),
            reconnect_for: Duration::from_secs(60),
            netuid: 0,
        }
    }

    /// The client of the current connection, for calls outside the [`Chain`] trait.
    pub fn client(&self) -> Arc<Client> {
        self.client.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `call` on the current connection; on a transport error, on new connections (every
    /// half second, up to `reconnect_for`) until it gets an answer.
    async fn with_client<T, F, Fut>(&self, call: F) -> Result<T, ChainError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let start = Instant::now();
        let mut client = self.client();
        loop {
            match call(client.clone()).await {
                Err(ClientError::Transport(_)) if start.elapsed() < self.reconnect_for => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    // Still down: the next turn calls the old connection, fails the same way
                    // and tries again, until `reconnect_for` has passed.
                    if let Ok(fresh) = Client::connect(&self.url).await {
                        client = Arc::new(fresh);
                        *self.client.write().unwrap_or_else(|e| e.into_inner()) = client.clone();
                    }
                }
                other => return other.map_err(ChainError::from),
            }
        }
    }
}

impl Chain for RpcChain {
    async fn head(&self) -> Result<ChainHead, ChainError> {
        self.with_client(|c| async move { c.head().await }).await
    }

    async fn difficulty(&self) -> Result<u64, ChainError> {
        let netuid = self.netuid;
        match netuid {
            0 => self.with_client(|c| async move { c.difficulty().await }).await,
            k => self.with_client(|c| async move { c.difficulty_of(k).await }).await,
        }
    }

    async fn next_block(&self, after: u64) -> Result<ChainHead, ChainError> {
        loop {
            let head = self.head().await?;
            if head.height > after {
                return Ok(head);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn genesis(&self) -> Result<GenesisConfig, ChainError> {
        Ok(self.with_client(|c| async move { c.genesis().await }).await?.config)
    }

    async fn metagraph(&self) -> Result<MetagraphInfo, ChainError> {
        match self.netuid {
            0 => self.with_client(|c| async move { c.metagraph(None).await }).await,
            k => self.with_client(|c| async move { c.subnet_metagraph(k).await }).await,
        }
    }

    async fn account(&self, key: &PublicKey) -> Result<AccountInfo, ChainError> {
        self.with_client(|c| async move { c.account(key).await }).await
    }

    async fn submit(&self, tx: &SignedTx) -> Result<Hash, ChainError> {
        self.with_client(|c| async move { c.submit(tx).await }).await
    }

    async fn wait_for(&self, id: Hash) -> Result<(u64, Receipt), ChainError> {
        let start = Instant::now();
        loop {
            match self.with_client(|c| async move { c.transaction(&id).await }).await? {
                TxLookup::Included { height, receipt, .. } => return Ok((height, receipt)),
                // Unknown right after acceptance can be a block that rejected it and a restart
                // that forgot: keep polling until the timeout either way.
                TxLookup::Pending | TxLookup::Unknown => {}
            }
            if start.elapsed() > self.wait_timeout {
                return Err(ChainError::Timeout { id, waited: self.wait_timeout });
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
