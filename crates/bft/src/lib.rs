//! Several validators order and finalise the ledger's blocks with commonware's simplex
//! consensus (BFT: safe with fewer than a third of the validators faulty, live once the
//! network delivers).
//!
//! The engine orders opaque digests; this crate is the application behind them. A leader
//! proposes a [`payload::Payload`] (the next block's transactions from its mempool), the
//! others check it is well formed and extends its parent, and once the engine reports the
//! payload finalized every validator executes it through the ledger's own boundary,
//! `Ledger::propose -> commit`. Execution is deterministic, so every validator reaches the same
//! state root at every height without the roots being voted on.
//!
//! [`start`] runs one validator (the engine, on three channels of the network, and the
//! [`app::Application`] on a fourth) over a [`chain::Chain`]; it works on any commonware
//! runtime and network: the deterministic simulation in the tests, the tokio runtime and the
//! authenticated p2p network in a node.

pub mod app;
#[cfg(any(test, feature = "test-utils"))]
pub mod byzantine;
pub mod chain;
pub mod net;
pub mod payload;

pub use app::{Evidence, Mailbox, SubmitError};
pub use chain::{Chain, ExecuteError, StoredPayloadError};

use commonware_codec::{DecodeExt, Encode};
use commonware_consensus::simplex::{
    self, elector::RoundRobin, Floor, ForwardPolicy, SkipBudget, SkipPolicy,
};
use commonware_consensus::types::{Epoch, ViewDelta};
use commonware_cryptography::ed25519;
use commonware_p2p::{Blocker, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage};
use commonware_utils::{ordered::Set, NZDuration, NZUsize, NZU16};
use ledger::Store;
use rand_core::CryptoRng;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// What the engine orders: the SHA-256 digest of an encoded [`payload::Payload`].
pub type Digest = commonware_cryptography::sha256::Digest;
/// A validator's identity: its ed25519 key, the same bytes as the ledger's `PublicKey`.
pub type ValidatorKey = ed25519::PublicKey;
/// The engine's signatures: ed25519 votes, certificates listing each signer.
pub type Scheme = simplex::scheme::ed25519::Scheme;

/// Executed payloads kept in memory below the head by default ([`Timeouts::keep_payloads`]);
/// older ones are rebuilt from the stored blocks when a lagging validator asks for them.
pub const KEEP_PAYLOADS: u64 = 4096;

/// The engine's channels on the network, and the application's.
pub mod channels {
    /// The engine's votes (notarize, nullify, finalize).
    pub const VOTES: u64 = 0;
    /// The engine's certificates (notarizations, nullifications, finalizations).
    pub const CERTIFICATES: u64 = 1;
    /// Requests for missing certificates by a lagging validator.
    pub const RESOLVER: u64 = 2;
    /// The application's payloads and forwarded transactions.
    pub const APPLICATION: u64 = 3;
}

/// The ledger's key of a validator.
pub fn ledger_key(k: &ValidatorKey) -> ledger::PublicKey {
    let mut out = [0u8; 32];
    let bytes = k.encode();
    out.copy_from_slice(&bytes[..32]);
    ledger::PublicKey(out)
}

/// Why a key cannot be a validator's.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// The 32 bytes do not decode to a point of the ed25519 curve.
    #[error("validator key {0} is not an ed25519 point")]
    NotAPoint(ledger::PublicKey),
    /// A genesis with no validators cannot run consensus.
    #[error("the validator set of the genesis is empty")]
    NoValidators,
    /// This node's key is not one of the genesis' validators.
    #[error("key {0} is not in the genesis' validator set")]
    NotAValidator(ledger::PublicKey),
}

/// The engine's key of a ledger key (an ed25519 public key).
pub fn validator_key(k: &ledger::PublicKey) -> Result<ValidatorKey, KeyError> {
    ValidatorKey::decode(bytes::Bytes::copy_from_slice(&k.0)).map_err(|_| KeyError::NotAPoint(*k))
}

/// The engine's signing key of a validator, from its ed25519 secret key bytes (the ledger's
/// and the wallet's key type, `SigningKey::to_bytes`).
pub fn signing_key(secret: &[u8; 32]) -> ed25519::PrivateKey {
    ed25519::PrivateKey::decode(bytes::Bytes::copy_from_slice(secret))
        .expect("any 32 bytes are an ed25519 secret key")
}

/// The validator set of a genesis, as the engine's sorted participant set.
pub fn participants(genesis: &ledger::GenesisConfig) -> Result<Set<ValidatorKey>, KeyError> {
    if genesis.validators.is_empty() {
        return Err(KeyError::NoValidators);
    }
    let keys = genesis.validators.iter().map(|v| validator_key(&v.key)).collect::<Result<Vec<_>, _>>()?;
    Ok(Set::from_iter_dedup(keys))
}

/// Timing of the engine (simplex's timeouts, see its docs: a leader that proposes nothing
/// within `leader` is skipped; a view that does not certify within `certification` is
/// skipped), of the application's proposals, and how many payloads it keeps in memory.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// How long a leader has to propose before its view is skipped.
    pub leader: Duration,
    /// How long a view has to certify before it is skipped.
    pub certification: Duration,
    /// How often a validator stuck in a view says so again.
    pub retry: Duration,
    /// How often missing payloads and certificates are asked for again.
    pub fetch: Duration,
    /// The least time between a block's timestamp and its parent's: a leader holds its
    /// proposal until then. Zero: as fast as the engine goes (on loopback, tens of empty
    /// blocks a second). Only honest leaders wait; validators do not refuse a quicker block,
    /// so this paces the chain, it does not bound it.
    pub block_time: Duration,
    /// Not a time but the memory's horizon: executed payloads kept in memory below the head
    /// ([`KEEP_PAYLOADS`] by default). Any size is safe, older payloads are served from the
    /// store; smaller costs a store read per payload a lagging validator asks for.
    pub keep_payloads: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            leader: Duration::from_secs(1),
            certification: Duration::from_secs(2),
            retry: Duration::from_secs(5),
            fetch: Duration::from_millis(500),
            block_time: Duration::ZERO,
            keep_payloads: KEEP_PAYLOADS,
        }
    }
}

impl Timeouts {
    /// The defaults with a block every `block_time` at most; the leader and certification
    /// timeouts are lengthened by as much, since a view now lasts at least `block_time` and a
    /// leader waiting for it must not be skipped.
    pub fn paced(block_time: Duration) -> Timeouts {
        let d = Timeouts::default();
        Timeouts {
            leader: d.leader + block_time,
            certification: d.certification + block_time,
            block_time,
            ..d
        }
    }
}

/// A running validator: the engine's task, the application's task, and the mailbox that
/// takes transactions.
pub struct Validator {
    /// The consensus engine's task.
    pub engine: Handle<()>,
    /// The application's task: mempool, proposals, verification, execution.
    pub application: Handle<()>,
    /// Where users submit transactions.
    pub mailbox: Mailbox,
}

impl Validator {
    /// Stops both tasks (a crash: nothing is flushed beyond what each already made durable).
    pub fn abort(self) {
        self.engine.abort();
        self.application.abort();
    }
}

/// Starts validator `key` of `chain` on `context`, with the engine's journal in storage
/// partition `partition` (a restart with the same partition resumes its votes).
#[allow(clippy::too_many_arguments)]
pub fn start<E, St, B, S1, R1, S2, R2, S3, R3, S4, R4>(
    context: E,
    chain: Arc<Chain<St>>,
    key: ed25519::PrivateKey,
    timeouts: Timeouts,
    partition: String,
    blocker: B,
    votes: (S1, R1),
    certificates: (S2, R2),
    resolver: (S3, R3),
    application: (S4, R4),
) -> Result<Validator, KeyError>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics,
    St: Store + Send + 'static,
    B: Blocker<PublicKey = ValidatorKey>,
    S1: Sender<PublicKey = ValidatorKey>,
    R1: Receiver<PublicKey = ValidatorKey>,
    S2: Sender<PublicKey = ValidatorKey>,
    R2: Receiver<PublicKey = ValidatorKey>,
    S3: Sender<PublicKey = ValidatorKey>,
    R3: Receiver<PublicKey = ValidatorKey>,
    S4: Sender<PublicKey = ValidatorKey>,
    R4: Receiver<PublicKey = ValidatorKey>,
{
    use commonware_cryptography::Signer;
    let (genesis, namespace, participants) = {
        let ledger = chain.ledger();
        let genesis = ledger.genesis();
        (genesis.hash(), format!("agora/{}", genesis.chain_id).into_bytes(), participants(genesis)?)
    };
    let me = key.public_key();
    let scheme =
        Scheme::signer(&namespace, participants, key).ok_or(KeyError::NotAValidator(ledger_key(&me)))?;
    let (app, mailbox) = app::Application::new(
        chain,
        app::Config {
            me,
            fetch_retry: timeouts.fetch,
            block_time: timeouts.block_time,
            keep_payloads: timeouts.keep_payloads,
        },
        application,
    );
    let application = app.start(context.child("application"));
    let config = simplex::Config {
        scheme,
        elector: RoundRobin::<commonware_cryptography::Sha256>::default(),
        blocker,
        automaton: mailbox.clone(),
        relay: mailbox.clone(),
        reporter: mailbox.clone(),
        strategy: Sequential,
        partition,
        mailbox_size: NZUsize!(1024),
        epoch: Epoch::zero(),
        floor: Floor::Genesis(payload::genesis_digest(&genesis)),
        leader_timeout: timeouts.leader,
        certification_timeout: timeouts.certification,
        timeout_retry: timeouts.retry,
        fetch_timeout: NZDuration!(Duration::from_secs(1)),
        fetch_retry_delay: timeouts.fetch,
        view_retention: ViewDelta::new(10),
        skip: SkipPolicy::Enabled { timeout: timeouts.retry * 2, budget: SkipBudget::Participants },
        replay_buffer: NZUsize!(1024 * 1024),
        write_buffer: NZUsize!(1024 * 1024),
        page_cache: CacheRef::new(NZU16!(1024), NZUsize!(10)),
        forward: ForwardPolicy::Disabled,
        track_historical_votes: false,
    };
    let engine = simplex::Engine::new(context.child("engine"), config).start(votes, certificates, resolver);
    Ok(Validator { engine, application, mailbox })
}
