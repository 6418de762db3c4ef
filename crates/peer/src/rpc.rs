//! [`Chain`] over a node's JSON-RPC API.

use crate::chain::{Chain, ChainError};
use client::{AccountInfo, Client, MetagraphInfo, TxLookup};
use ledger::{ChainHead, GenesisConfig, Hash, PublicKey, Receipt, SignedTx};
use std::time::{Duration, Instant};

/// A node reached through the `client` crate (HTTP or WebSocket URL).
pub struct RpcChain {
    client: Client,
    /// How often `next_block` and `wait_for` poll the node. Polling rather than a subscription
    /// keeps HTTP URLs working and survives a dropped WebSocket without re-subscribing.
    pub poll: Duration,
    /// How long `wait_for` waits for inclusion.
    pub wait_timeout: Duration,
}

impl RpcChain {
    pub async fn connect(url: &str) -> Result<RpcChain, ChainError> {
        let client = Client::connect(url).await?;
        Ok(RpcChain { client, poll: Duration::from_millis(50), wait_timeout: Duration::from_secs(60) })
    }

    /// The underlying client, for calls outside the [`Chain`] trait.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Chain for RpcChain {
    async fn head(&self) -> Result<ChainHead, ChainError> {
        Ok(self.client.head().await?)
    }

    async fn next_block(&self, after: u64) -> Result<ChainHead, ChainError> {
        loop {
            let head = self.client.head().await?;
            if head.height > after {
                return Ok(head);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn genesis(&self) -> Result<GenesisConfig, ChainError> {
        Ok(self.client.genesis().await?.config)
    }

    async fn metagraph(&self) -> Result<MetagraphInfo, ChainError> {
        Ok(self.client.metagraph(None).await?)
    }

    async fn account(&self, key: &PublicKey) -> Result<AccountInfo, ChainError> {
        Ok(self.client.account(key).await?)
    }

    async fn submit(&self, tx: &SignedTx) -> Result<Hash, ChainError> {
        Ok(self.client.submit(tx).await?)
    }

    async fn wait_for(&self, id: Hash) -> Result<(u64, Receipt), ChainError> {
        let start = Instant::now();
        loop {
            match self.client.transaction(&id).await? {
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
