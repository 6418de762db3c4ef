//! The application behind the engine: it proposes, checks and executes payloads, relays them
//! and the mempool's transactions between validators, and fetches the payloads it missed.
//!
//! One task (`Application::run`) owns the payloads; the engine reaches it through a
//! [`Mailbox`], which is the engine's `Automaton` (propose, verify), `Relay` (send a payload)
//! and `Reporter` (finalizations, equivocation evidence). Requests that need a payload this
//! validator does not hold yet stay pending, as the engine's contract asks, while the payload
//! is fetched from the others (a `Want` every `fetch_retry` until it arrives).
//!
//! Memory holds the payloads of the last `keep_payloads` blocks and those not yet executed;
//! an older one that a lagging validator asks for is rebuilt from the block in the store
//! (found through the payload index `Chain::execute` writes with each block), so a validator
//! any number of blocks behind, or with its data wiped, catches up from the others.

use crate::chain::Chain;
use crate::payload::{digest, genesis_digest, Payload, MAX_PAYLOAD_BYTES};
use crate::{ledger_key, Digest, Scheme, ValidatorKey};
use bytes::Bytes;
use commonware_actor::Feedback;
use commonware_codec::DecodeExt;
use commonware_consensus::simplex::types::{Activity, Attributable, Context};
use commonware_consensus::simplex::Plan;
use commonware_consensus::{Automaton, CertifiableAutomaton, Relay, Reporter, Viewable};
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{Clock, Handle, Spawner};
use commonware_utils::channel::fallible::{FallibleExt, OneshotExt};
use commonware_utils::channel::{mpsc, oneshot};
use ledger::{Hash, MempoolError, SignedTx, Store};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Payloads accepted unasked only this far above the executed head, so a peer cannot fill the
/// memory with payloads nobody will finalize.
const UNSOLICITED_AHEAD: u64 = 256;

/// What the engine and the chain's users ask of the application task.
pub enum Message {
    /// The engine asks for a payload to propose as the round's leader: the next block's transactions from the
    /// mempool.
    Propose {
        /// The round's view, leader and parent.
        context: Context<Digest, ValidatorKey>,
        /// Where the proposed payload's digest goes.
        response: oneshot::Sender<Digest>,
    },
    /// The engine asks whether another leader's payload is a valid next block before voting for it.
    Verify {
        /// The round's view, leader and parent.
        context: Context<Digest, ValidatorKey>,
        /// The digest of the payload to check (its bytes may still be on their way).
        payload: Digest,
        /// The verdict, once the payload's bytes are here and have been checked.
        response: oneshot::Sender<bool>,
    },
    /// The engine asks for a payload's bytes to be sent to the other validators.
    Broadcast {
        /// The payload's digest.
        payload: Digest,
        /// To whom: everyone when proposing, the named validators when forwarding.
        plan: Plan<ValidatorKey>,
    },
    /// A payload the engine finalized (with its ancestors).
    Finalized {
        /// The finalized payload's digest.
        payload: Digest,
    },
    /// A payload the engine notarized: it may still be skipped, but is the latest block.
    Notarized {
        /// The notarized payload's digest.
        payload: Digest,
    },
    /// A validator signed two conflicting messages for one view.
    Evidence(Evidence),
    /// A transaction from a user: admitted to the mempool, then sent to the other validators.
    Submit {
        /// The encoded signed transaction.
        tx: Vec<u8>,
        /// Its hash once admitted, or why the mempool refused it.
        response: oneshot::Sender<Result<Hash, MempoolError>>,
    },
    /// A transaction already admitted here (by [`Chain::admit`]): sent to the other validators.
    Forward {
        /// The encoded signed transaction.
        tx: Vec<u8>,
    },
}

/// Proof that a validator equivocated, as the engine reported it (already verified there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// `conflicting notarize`, `conflicting finalize` or `nullify and finalize`.
    pub kind: &'static str,
    /// The validator's index in the (sorted) validator set.
    pub validator: u32,
    /// The consensus view (round) in which it equivocated.
    pub view: u64,
}

/// The engine's handle on the application (cheap to clone).
#[derive(Clone)]
pub struct Mailbox {
    sender: mpsc::UnboundedSender<Message>,
}

impl Mailbox {
    /// Submits a transaction (encoded) to this validator: it is checked by the ledger's rules,
    /// queued, and sent to the other validators, whichever of them proposes next.
    pub async fn submit(&self, tx: Vec<u8>) -> Result<Hash, SubmitError> {
        let (response, receiver) = oneshot::channel();
        if !self.sender.send_lossy(Message::Submit { tx, response }) {
            return Err(SubmitError::Stopped);
        }
        receiver.await.map_err(|_| SubmitError::Stopped)?.map_err(SubmitError::Mempool)
    }

    /// Sends a transaction that [`Chain::admit`] took as new to the other validators (for
    /// callers that admit it themselves, such as a node's RPC handler).
    pub fn forward(&self, tx: Vec<u8>) {
        self.sender.send_lossy(Message::Forward { tx });
    }
}

/// Why a submission was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The ledger's rules or the mempool's bounds refused the transaction.
    #[error("{0}")]
    Mempool(MempoolError),
    /// The validator's application task has ended, so nothing can be queued.
    #[error("the validator is stopped")]
    Stopped,
}

impl Automaton for Mailbox {
    type Context = Context<Digest, ValidatorKey>;
    type Digest = Digest;

    async fn propose(&mut self, context: Self::Context) -> oneshot::Receiver<Digest> {
        let (response, receiver) = oneshot::channel();
        self.sender.send_lossy(Message::Propose { context, response });
        receiver
    }

    async fn verify(&mut self, context: Self::Context, payload: Digest) -> oneshot::Receiver<bool> {
        let (response, receiver) = oneshot::channel();
        self.sender.send_lossy(Message::Verify { context, payload, response });
        receiver
    }
}

/// Every verified payload is certified (the default): validity does not depend on anything
/// that could arrive between notarization and finalization.
impl CertifiableAutomaton for Mailbox {}

impl Relay for Mailbox {
    type Digest = Digest;
    type PublicKey = ValidatorKey;
    type Plan = Plan<ValidatorKey>;

    fn broadcast(&mut self, payload: Digest, plan: Plan<ValidatorKey>) -> Feedback {
        match self.sender.send_lossy(Message::Broadcast { payload, plan }) {
            true => Feedback::Ok,
            false => Feedback::Closed,
        }
    }
}

impl Reporter for Mailbox {
    type Activity = Activity<Scheme, Digest>;

    /// Keeps what the chain uses (finalizations, notarizations, evidence) and drops the rest
    /// (single votes) before it reaches the task.
    fn report(&mut self, activity: Self::Activity) -> Feedback {
        let evidence =
            |kind, validator: u32, view: u64| Message::Evidence(Evidence { kind, validator, view });
        let message = match activity {
            Activity::Finalization(f) => Message::Finalized { payload: f.proposal.payload },
            Activity::Notarization(n) => Message::Notarized { payload: n.proposal.payload },
            Activity::ConflictingNotarize(c) => {
                evidence("conflicting notarize", c.signer().get(), c.view().get())
            }
            Activity::ConflictingFinalize(c) => {
                evidence("conflicting finalize", c.signer().get(), c.view().get())
            }
            Activity::NullifyFinalize(c) => {
                evidence("nullify and finalize", c.signer().get(), c.view().get())
            }
            _ => return Feedback::Ok,
        };
        match self.sender.send_lossy(message) {
            true => Feedback::Ok,
            false => Feedback::Closed,
        }
    }
}

/// What validators send each other besides the engine's own messages.
enum Wire {
    /// An encoded payload.
    Payload(Bytes),
    /// A request for the payload with this digest.
    Want(Digest),
    /// An encoded transaction for the mempool.
    Tx(Bytes),
}

impl Wire {
    fn encode(&self) -> Bytes {
        let (tag, body): (u8, &[u8]) = match self {
            Wire::Payload(b) => (0, b),
            Wire::Want(d) => (1, d.as_ref()),
            Wire::Tx(b) => (2, b),
        };
        let mut out = Vec::with_capacity(1 + body.len());
        out.push(tag);
        out.extend_from_slice(body);
        out.into()
    }

    fn decode(bytes: &[u8]) -> Option<Wire> {
        let (tag, body) = bytes.split_first()?;
        match tag {
            0 => Some(Wire::Payload(Bytes::copy_from_slice(body))),
            1 => Digest::decode(Bytes::copy_from_slice(body)).ok().map(Wire::Want),
            2 => Some(Wire::Tx(Bytes::copy_from_slice(body))),
            _ => None,
        }
    }
}

/// How the application runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// This validator.
    pub me: ValidatorKey,
    /// How often payloads still missing are asked for again.
    pub fetch_retry: Duration,
    /// The least time between a proposal's timestamp and its parent's
    /// ([`crate::Timeouts::block_time`]).
    pub block_time: Duration,
    /// Executed payloads kept in memory below the head ([`crate::Timeouts::keep_payloads`]).
    pub keep_payloads: u64,
}

/// Why a proposal cannot be built yet.
enum NotYet {
    /// Its parent payload is missing (asked for).
    Parent(Digest),
    /// The block time since the parent has not passed: until this Unix time in milliseconds.
    Until(u64),
}

/// The application task's state; see the module doc.
pub struct Application<St: Store, S: Sender<PublicKey = ValidatorKey>, R: Receiver<PublicKey = ValidatorKey>>
{
    chain: Arc<Chain<St>>,
    config: Config,
    genesis: Digest,
    mailbox: mpsc::UnboundedReceiver<Message>,
    sender: S,
    receiver: R,
    /// Payloads by digest: proposed here or received, each decoded and within limits.
    payloads: HashMap<Digest, (Payload, Bytes)>,
    /// Digests whose bytes are not a payload: permanently invalid.
    invalid: HashSet<Digest>,
    /// Payloads asked for and not yet received.
    wanted: BTreeSet<Digest>,
    proposals: Vec<(Context<Digest, ValidatorKey>, oneshot::Sender<Digest>)>,
    verifications: Vec<(Context<Digest, ValidatorKey>, Digest, oneshot::Sender<bool>)>,
    /// Finalized payloads not yet executed (their ancestors may be missing).
    finalized: Vec<Digest>,
    /// For a finalized payload not yet executed, the lowest payload its walk down to the head
    /// has reached: the next walk resumes there, so a validator thousands of blocks behind
    /// walks each payload once, not once per message it receives.
    reached: HashMap<Digest, Digest>,
    /// When the earliest proposal held for the block time is due (Unix milliseconds).
    propose_at: Option<u64>,
}

impl<St, S, R> Application<St, S, R>
where
    St: Store + Send + 'static,
    S: Sender<PublicKey = ValidatorKey>,
    R: Receiver<PublicKey = ValidatorKey>,
{
    /// The application of `chain`, talking to the other validators over `network` (a channel
    /// of its own beside the engine's).
    pub fn new(chain: Arc<Chain<St>>, config: Config, network: (S, R)) -> (Self, Mailbox) {
        let (sender, mailbox) = mpsc::unbounded_channel();
        let genesis = genesis_digest(&chain.genesis_hash());
        let app = Application {
            chain,
            config,
            genesis,
            mailbox,
            sender: network.0,
            receiver: network.1,
            payloads: HashMap::new(),
            invalid: HashSet::new(),
            wanted: BTreeSet::new(),
            proposals: Vec::new(),
            verifications: Vec::new(),
            finalized: Vec::new(),
            reached: HashMap::new(),
            propose_at: None,
        };
        (app, Mailbox { sender })
    }

    /// Runs the task until its mailbox or network closes.
    pub fn start<E: Clock + Spawner>(self, context: E) -> Handle<()> {
        context.spawn(move |context| self.run(context))
    }

    async fn run<E: Clock>(mut self, context: E) {
        let mut next_fetch = context.current() + self.config.fetch_retry;
        loop {
            let wake = self.wake(next_fetch);
            select! {
                message = self.mailbox.recv() => {
                    let Some(message) = message else { return };
                    self.on_message(message);
                },
                received = self.receiver.recv() => {
                    let Ok((from, bytes)) = received else { return };
                    self.on_network(from, bytes.as_ref());
                },
                _ = context.sleep_until(wake) => {
                    if context.current() >= next_fetch {
                        next_fetch = context.current() + self.config.fetch_retry;
                        for d in self.wanted.clone() {
                            self.send(Recipients::All, Wire::Want(d));
                        }
                    }
                },
            }
            self.progress(unix_ms(context.current()));
        }
    }

    /// The next time the task must wake by itself: the next fetch, or a held proposal.
    fn wake(&self, next_fetch: SystemTime) -> SystemTime {
        match self.propose_at {
            Some(ms) => next_fetch.min(UNIX_EPOCH + Duration::from_millis(ms)),
            None => next_fetch,
        }
    }

    fn send(&mut self, to: Recipients<ValidatorKey>, message: Wire) {
        // Delivery is best effort: a payload that does not arrive is asked for again.
        let _ = self.sender.send(to, message.encode(), false);
    }

    fn want(&mut self, d: Digest) {
        if d != self.genesis && !self.payloads.contains_key(&d) && self.wanted.insert(d) {
            self.send(Recipients::All, Wire::Want(d));
        }
    }

    fn on_message(&mut self, message: Message) {
        match message {
            Message::Propose { context, response } => self.proposals.push((context, response)),
            Message::Verify { context, payload, response } => {
                self.verifications.push((context, payload, response))
            }
            Message::Broadcast { payload, plan } => {
                let to = match plan {
                    Plan::Prepare { .. } | Plan::Propose { .. } => Recipients::All,
                    Plan::Forward { recipients, .. } => recipients,
                };
                if let Some((_, bytes)) = self.payloads.get(&payload) {
                    let bytes = bytes.clone();
                    self.send(to, Wire::Payload(bytes));
                }
            }
            Message::Finalized { payload } => self.finalized.push(payload),
            Message::Notarized { payload } => {
                if let Some((p, _)) = self.payloads.get(&payload) {
                    self.chain.notarized(p.height);
                }
            }
            Message::Evidence(e) => {
                tracing::warn!(kind = e.kind, validator = e.validator, view = e.view, "equivocation");
                self.chain.record_evidence(e);
            }
            Message::Submit { tx, response } => {
                let result = self.chain.admit(&tx);
                if let Ok((_, true)) = result {
                    self.send(Recipients::All, Wire::Tx(tx.into()));
                }
                response.send_lossy(result.map(|(id, _)| id));
            }
            Message::Forward { tx } => self.send(Recipients::All, Wire::Tx(tx.into())),
        }
    }

    fn on_network(&mut self, from: ValidatorKey, bytes: &[u8]) {
        match Wire::decode(bytes) {
            Some(Wire::Payload(bytes)) => self.receive_payload(bytes),
            Some(Wire::Want(d)) => {
                let bytes = match self.payloads.get(&d) {
                    Some((_, bytes)) => Some(bytes.clone()),
                    // Not kept in memory: rebuilt from the store if executed here, and not
                    // kept (the lagging validator is the one that needs it).
                    None => match self.chain.stored_payload(&d) {
                        Ok(found) => found.map(|(_, bytes)| bytes),
                        Err(e) => {
                            tracing::warn!(digest = ?d, error = %e, "a stored payload cannot be served");
                            None
                        }
                    },
                };
                if let Some(bytes) = bytes {
                    self.send(Recipients::One(from), Wire::Payload(bytes));
                }
            }
            Some(Wire::Tx(tx)) => {
                // Forwarded once, the first time it is seen, so it reaches validators the
                // submitter's message missed; a refused one goes no further.
                if let Ok((_, true)) = self.chain.admit(&tx) {
                    self.send(Recipients::All, Wire::Tx(tx));
                }
            }
            None => tracing::debug!(?from, "undecodable message"),
        }
    }

    fn receive_payload(&mut self, bytes: Bytes) {
        let d = digest(&bytes);
        if self.payloads.contains_key(&d) || self.invalid.contains(&d) {
            return;
        }
        let asked = self.wanted.remove(&d);
        let (max_tx_bytes, max_txs) = self.chain.limits();
        match Payload::decode(&bytes, max_tx_bytes, max_txs) {
            Ok(p) => {
                if !asked && p.height > self.chain.head().height + UNSOLICITED_AHEAD {
                    return;
                }
                self.payloads.insert(d, (p, bytes));
            }
            // Bytes are named by their hash: these can never become a valid payload.
            Err(e) if asked => {
                tracing::warn!(digest = ?d, error = %e, "invalid payload");
                self.invalid.insert(d);
            }
            Err(_) => {}
        }
    }

    /// The height of the payload `d`, if it is known (genesis is height 0): in memory, or
    /// executed here (after a restart, memory is empty but the head's payload is in the store).
    fn height_of(&self, d: &Digest) -> Option<u64> {
        if *d == self.genesis {
            return Some(0);
        }
        match self.payloads.get(d) {
            Some((p, _)) => Some(p.height),
            None => self.executed_height(d),
        }
    }

    /// The height of payload `d` if this validator executed it (a store failure reads as not
    /// executed: the payload is then fetched, which costs time, not safety).
    fn executed_height(&self, d: &Digest) -> Option<u64> {
        self.chain.executed_height(d).unwrap_or_else(|e| {
            tracing::warn!(digest = ?d, error = %e, "payload index unreadable");
            None
        })
    }

    /// Answers what can be answered now and executes what is final.
    fn progress(&mut self, now_ms: u64) {
        self.execute_finalized();
        self.propose_at = None;
        for (context, response) in std::mem::take(&mut self.proposals) {
            if response.is_closed() {
                continue;
            }
            match self.build(&context, now_ms) {
                Ok(d) => response.send_lossy(d),
                Err(NotYet::Parent(parent)) => {
                    self.want(parent);
                    self.proposals.push((context, response));
                    continue;
                }
                Err(NotYet::Until(ms)) => {
                    self.propose_at = Some(self.propose_at.map_or(ms, |at| at.min(ms)));
                    self.proposals.push((context, response));
                    continue;
                }
            };
        }
        for (context, d, response) in std::mem::take(&mut self.verifications) {
            if response.is_closed() {
                continue;
            }
            match self.check(&context, &d) {
                Ok(valid) => {
                    response.send_lossy(valid);
                }
                Err(missing) => {
                    self.want(missing);
                    self.verifications.push((context, d, response));
                }
            }
        }
    }

    /// A payload for `context` from the mempool, or why not yet: its parent is unknown, or
    /// the block time since the parent's timestamp has not passed.
    fn build(&mut self, context: &Context<Digest, ValidatorKey>, now_ms: u64) -> Result<Digest, NotYet> {
        let parent = context.parent.1;
        let height = self.height_of(&parent).ok_or(NotYet::Parent(parent))? + 1;
        if let Some((p, _)) = self.payloads.get(&parent) {
            let due = p.timestamp_ms.saturating_add(self.config.block_time.as_millis() as u64);
            if now_ms < due {
                return Err(NotYet::Until(due));
            }
        }
        // Transactions in payloads above the executed head are on their way to a block:
        // proposing them again would only get them rejected as replays.
        let head = self.chain.head().height;
        let mut on_the_way = HashSet::new();
        let mut at = parent;
        while let Some((p, _)) = self.payloads.get(&at) {
            if p.height <= head {
                break;
            }
            on_the_way.extend(p.txs.iter().map(SignedTx::id));
            at = p.parent;
        }
        let (_, max_txs) = self.chain.limits();
        let mut size = Payload::header_bytes();
        let mut txs = Vec::new();
        for tx in self.chain.select(max_txs + on_the_way.len()) {
            if txs.len() == max_txs {
                break;
            }
            if on_the_way.contains(&tx.id()) {
                continue;
            }
            let bytes = tx.encode().len() + 4;
            if size + bytes > MAX_PAYLOAD_BYTES {
                break;
            }
            size += bytes;
            txs.push(tx);
        }
        let payload =
            Payload { parent, height, timestamp_ms: now_ms, proposer: ledger_key(&self.config.me), txs };
        let bytes: Bytes = payload.encode().into();
        let d = digest(&bytes);
        self.payloads.insert(d, (payload, bytes));
        Ok(d)
    }

    /// Whether payload `d` is valid in `context`, or the digest of a payload still missing.
    /// Valid: it extends the context's parent by one height and names the round's leader as
    /// its proposer (well-formedness and limits were checked when it was received).
    fn check(&self, context: &Context<Digest, ValidatorKey>, d: &Digest) -> Result<bool, Digest> {
        if self.invalid.contains(d) {
            return Ok(false);
        }
        let (p, _) = self.payloads.get(d).ok_or(*d)?;
        if p.parent != context.parent.1 {
            return Ok(false);
        }
        let parent_height = self.height_of(&p.parent).ok_or(p.parent)?;
        Ok(p.height == parent_height + 1 && p.proposer == ledger_key(&context.leader))
    }

    /// Whether every payload from `target` down to the head is here; if not, asks for the
    /// highest missing one. Resumes from where the last walk from `target` stopped.
    fn reaches_head(&mut self, target: Digest, head: u64) -> bool {
        let mut at = target;
        let complete = loop {
            // A payload some earlier walk passed: jump to the lowest point it reached.
            if let Some(&lowest) = self.reached.get(&at) {
                at = lowest;
            }
            let Some((p, _)) = self.payloads.get(&at) else {
                // Genesis, or a payload executed here and since dropped from memory: the
                // walk has reached what is already in the ledger.
                if at == self.genesis || self.executed_height(&at).is_some() {
                    break true;
                }
                self.want(at);
                break false;
            };
            if p.height <= head + 1 {
                break true;
            }
            let parent = p.parent;
            self.reached.insert(target, at);
            at = parent;
        };
        complete
    }

    /// Executes every finalized payload whose ancestors down to the head are all here, in
    /// height order; asks for the missing ones.
    fn execute_finalized(&mut self) {
        let mut waiting = Vec::new();
        for target in std::mem::take(&mut self.finalized) {
            let head = self.chain.head().height;
            if !self.reaches_head(target, head) {
                waiting.push(target);
                continue;
            }
            let mut chain = Vec::new();
            let mut at = target;
            while let Some((p, _)) = self.payloads.get(&at) {
                if p.height <= head {
                    break;
                }
                chain.push(at);
                at = p.parent;
            }
            for d in chain.into_iter().rev() {
                let (p, _) = &self.payloads[&d];
                if let Err(e) = self.chain.execute(&d, p) {
                    // Every honest validator fails the same way (execution is deterministic),
                    // so the chain stops here rather than fork; the error says why.
                    tracing::error!(height = p.height, error = %e, "a final payload did not execute");
                    return;
                }
            }
        }
        self.reached.retain(|d, _| waiting.contains(d));
        self.finalized = waiting;
        // Keep the recent payloads (what lagging validators most often ask for, and parents of
        // proposals); older ones are served from the store.
        let head = self.chain.head().height;
        let keep = self.config.keep_payloads;
        self.payloads.retain(|_, (p, _)| p.height.saturating_add(keep) > head);
    }
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
