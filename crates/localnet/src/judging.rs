//! The judge at work in a process localnet: it asks the running peers through a real dendrite,
//! under a key of its own that no chain knows (each peer's axon trusts it by name:
//! `agora peer run --trust-caller`), and runs each consumer from the checkpoint its process
//! keeps saving. Measuring is CPU work and runs on a blocking thread, so the run's sampling
//! goes on meanwhile.

use crate::error::LocalnetError;
use crate::judge::{Answers, Judge, Judgement};
use client::MetagraphInfo;
use ledger::SigningKey;
use nucleus::Nucleus;
use peer::learner::{as_f32, text_tensor};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wire::{Dendrite, Target};

/// How long each peer may take to answer one of the judge's batches.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// The key the judge signs its requests with: derived from a public name like the faucet's,
/// so it is INSECURE by design, and only a localnet's peers trust it.
pub fn judge_key() -> SigningKey {
    ledger::dev_key("localnet-judge")
}

/// The judge of a process localnet.
#[derive(Clone)]
pub struct LiveJudge {
    judge: Arc<Judge>,
    dendrite: Dendrite,
    /// uid -> the directory its process saves checkpoints in.
    checkpoints: BTreeMap<u16, PathBuf>,
    /// uid -> where to reach its axon, where that is not the endpoint on chain (behind a fault
    /// proxy the judge would measure the faults, not the peer).
    addresses: BTreeMap<u16, SocketAddr>,
}

impl LiveJudge {
    /// A judge that runs each uid's checkpoint (from `checkpoints`) as a consumer and asks every axon as a
    /// provider.
    pub fn new(judge: Judge, checkpoints: BTreeMap<u16, PathBuf>) -> LiveJudge {
        LiveJudge {
            judge: Arc::new(judge),
            dendrite: Dendrite::new(judge_key()),
            checkpoints,
            addresses: BTreeMap::new(),
        }
    }

    /// Reaches these uids at these addresses rather than at their endpoints on chain.
    pub fn with_addresses(mut self, addresses: BTreeMap<u16, SocketAddr>) -> LiveJudge {
        self.addresses = addresses;
        self
    }

    /// One measurement at `m.block`: every peer serving in `m` answers every test batch;
    /// every peer with a checkpoint is a consumer. A checkpoint that cannot be read (a peer
    /// that has not saved one yet) leaves that peer out of the consumers, and says so.
    pub async fn measure(&self, m: &MetagraphInfo) -> Result<(Judgement, Vec<String>), LocalnetError> {
        let targets: Vec<(u16, Target)> = m
            .endpoints
            .iter()
            .zip(&m.hotkeys)
            .enumerate()
            .filter_map(|(uid, (e, hk))| {
                let e = (*e)?;
                let uid = uid as u16;
                self.checkpoints.contains_key(&uid).then_some(())?;
                let addr =
                    self.addresses.get(&uid).copied().unwrap_or_else(|| SocketAddr::new(e.ip.into(), e.port));
                Some((uid, Target { hotkey: hk.0, addr }))
            })
            .collect();
        let only: Vec<Target> = targets.iter().map(|(_, t)| *t).collect();
        let mut answers: Vec<Answers> = Vec::new();
        for (_, batch) in self.judge.requests() {
            let got = self.dendrite.forward(&only, &text_tensor(batch), ANSWER_TIMEOUT).await;
            answers.push(
                targets
                    .iter()
                    .zip(got)
                    .map(|((uid, _), r)| {
                        (*uid, if r.is_success() { r.tensor.as_ref().and_then(as_f32) } else { None })
                    })
                    .collect(),
            );
        }
        let judge = self.judge.clone();
        let checkpoints = self.checkpoints.clone();
        let block = m.block;
        tokio::task::spawn_blocking(move || {
            let mut notes = Vec::new();
            let mut models = Vec::new();
            for (uid, dir) in &checkpoints {
                match Nucleus::load_checkpoint(dir) {
                    Ok(n) => models.push((*uid, n)),
                    Err(e) => notes.push(format!("uid {uid}: no consumer model ({e})")),
                }
            }
            let consumers: Vec<(u16, &Nucleus)> = models.iter().map(|(u, n)| (*u, n)).collect();
            judge.measure(block, &answers, &consumers).map(|j| (j, notes))
        })
        .await
        .map_err(|e| LocalnetError::Judge(format!("measuring thread: {e}")))?
    }
}
