//! The last synced metagraph and the lookups a running peer makes on it.

use crate::chain::{Chain, ChainError};
use client::MetagraphInfo;
use ledger::{Endpoint, PublicKey};
use std::collections::HashMap;

/// A metagraph as of one block (`info().block`), with lookups by hotkey.
#[derive(Clone, Debug)]
pub struct MetagraphView {
    info: MetagraphInfo,
    by_hotkey: HashMap<PublicKey, u16>,
}

impl MetagraphView {
    /// Indexes a metagraph by hotkey.
    pub fn new(info: MetagraphInfo) -> MetagraphView {
        let by_hotkey = info.hotkeys.iter().enumerate().map(|(uid, hk)| (*hk, uid as u16)).collect();
        MetagraphView { info, by_hotkey }
    }

    /// Reads the metagraph at the chain's head.
    pub async fn sync(chain: &impl Chain) -> Result<MetagraphView, ChainError> {
        Ok(MetagraphView::new(chain.metagraph().await?))
    }

    /// Everything the chain reported: S, R, T, C, I, D, E, W, B, endpoints, last updates.
    pub fn info(&self) -> &MetagraphInfo {
        &self.info
    }

    /// The block this metagraph is the state of.
    pub fn block(&self) -> u64 {
        self.info.block
    }

    /// Number of neurons (uids are `0..n`).
    pub fn n(&self) -> u16 {
        self.info.hotkeys.len() as u16
    }

    /// The uid of a registered hotkey.
    pub fn uid_of(&self, hotkey: &PublicKey) -> Option<u16> {
        self.by_hotkey.get(hotkey).copied()
    }

    /// The hotkey registered at `uid`.
    pub fn hotkey(&self, uid: u16) -> Option<PublicKey> {
        self.info.hotkeys.get(usize::from(uid)).copied()
    }

    /// The stake S of `uid`, in base units (0 for an unknown uid).
    pub fn stake(&self, uid: u16) -> u64 {
        self.info.S.get(usize::from(uid)).copied().unwrap_or(0)
    }

    /// The peers that published an endpoint: `(uid, hotkey, endpoint)` in uid order.
    pub fn serving(&self) -> Vec<(u16, PublicKey, Endpoint)> {
        self.info
            .endpoints
            .iter()
            .zip(&self.info.hotkeys)
            .enumerate()
            .filter_map(|(uid, (e, hk))| e.map(|e| (uid as u16, *hk, e)))
            .collect()
    }

    /// Hotkey bytes -> stake in base units: what the axon's stake-priority queue is fed with.
    pub fn stake_by_hotkey(&self) -> HashMap<[u8; 32], u64> {
        self.info.hotkeys.iter().zip(&self.info.S).map(|(hk, s)| (hk.0, *s)).collect()
    }

    /// The rows of W by hotkey, for the axon's queue (w_ij * s_i, [`wire::StakeTable`]): one
    /// row per neuron that has set weights, each `(callee hotkey, w_ij)`; with `only_to`, each
    /// row keeps only its entry for that uid (an axon needs its own column alone), and stays
    /// present, empty, when it gives that uid nothing.
    pub fn weights_by_hotkey(&self, only_to: Option<u16>) -> Vec<([u8; 32], wire::WeightRow)> {
        let hotkeys = &self.info.hotkeys;
        hotkeys
            .iter()
            .zip(&self.info.weights)
            .filter(|(_, row)| !row.is_empty())
            .map(|(caller, row)| {
                let entries = row
                    .iter()
                    .filter(|(j, _)| only_to.is_none_or(|o| o == *j))
                    .filter_map(|&(j, w)| hotkeys.get(usize::from(j)).map(|hk| (hk.0, w)))
                    .collect();
                (caller.0, entries)
            })
            .collect()
    }

    /// This neuron's row of W as the chain holds it (`(uid, weight)`, summing to 1, or empty).
    pub fn weights_of(&self, uid: u16) -> &[(u16, f64)] {
        self.info.weights.get(usize::from(uid)).map_or(&[], Vec::as_slice)
    }

    /// Block `uid` registered in (0 from a node that does not say, or for an unknown uid).
    pub fn registered_at(&self, uid: u16) -> u64 {
        self.info.registered_at.get(usize::from(uid)).copied().unwrap_or(0)
    }

    /// The model version `uid` last published on chain (`publish_version`), with its step and
    /// block; `None` before its first (or from a node that does not say).
    pub fn model(&self, uid: u16) -> Option<ledger::PublishedModel> {
        self.info.models.get(usize::from(uid)).copied().flatten()
    }

    /// Block of `uid`'s last accepted `set_weights`.
    pub fn last_update(&self, uid: u16) -> Option<u64> {
        self.info.last_update.get(usize::from(uid)).copied().flatten()
    }
}

/// Follows the chain: publishes a fresh [`MetagraphView`] on `tx` after every block, until every
/// receiver is gone (`Ok`) or the chain fails (`Err`; the caller decides whether to retry).
/// The axon's stake-priority queue and the gating layer read the latest view from the
/// receiver without waiting on the chain.
pub async fn follow(
    chain: &impl Chain,
    tx: tokio::sync::watch::Sender<Option<std::sync::Arc<MetagraphView>>>,
) -> Result<(), ChainError> {
    let mut head = chain.head().await?.height;
    loop {
        let view = MetagraphView::sync(chain).await?;
        head = head.max(view.block());
        if tx.send(Some(std::sync::Arc::new(view))).is_err() {
            return Ok(());
        }
        // An on-demand chain answers at once: let the receivers run between blocks.
        tokio::task::yield_now().await;
        head = chain.next_block(head).await?.height;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalChain;

    #[tokio::test(flavor = "current_thread")]
    async fn follow_publishes_every_block_until_nobody_listens() {
        let chain = LocalChain::new(ledger::GenesisConfig::default()).unwrap();
        let (tx, mut rx) = tokio::sync::watch::channel(None);
        let follower = async {
            let mut seen = Vec::new();
            while seen.len() < 3 {
                rx.changed().await.unwrap();
                let view: std::sync::Arc<MetagraphView> = rx.borrow_and_update().clone().unwrap();
                seen.push(view.block());
            }
            drop(rx);
            seen
        };
        let (result, seen) = tokio::join!(follow(&chain, tx), follower);
        result.unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    }
}
