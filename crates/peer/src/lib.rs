//! A running participant's link to the chain (the "peer" box of DESIGN.md, chain side).
//!
//! It owns how a peer reaches the ledger and what it does there: one small async trait,
//! [`Chain`] (head, next block, genesis, metagraph, account, submit, wait), implemented by
//! [`RpcChain`] over the JSON-RPC client (a real `agora node`) and by [`LocalChain`] over an
//! in-process ledger on a `MemStore` that produces blocks on demand (fast, deterministic
//! tests). On top of it: [`Participant`] (a hotkey's transactions: register by proof of work or
//! skip when registered, serve an endpoint, set weights within the chain's rate limit, read its
//! balance), [`MetagraphView`] (the last synced metagraph with the lookups the axon and the
//! gating layer need) and [`WeightSetter`] (scores -> a weight row the chain accepts, submitted
//! every `interval` blocks; the localnet's cabal override).
//!
//! On that link sits the participant itself (`agora peer run`): [`run::run`] registers, serves
//! the nucleus on a `wire` axon through [`serve::ModelHandler`] (f_i for Forward; bounded,
//! stake-weighted gradients for Backward; the axon's stake-priority queue fed from each
//! metagraph sync), and loops: sample a batch, route it to k peers with the dendrite, train,
//! send each peer its gradient, set weights every few blocks, log a status row, checkpoint.
//! [`preset`] holds the model sizes every peer of a network agrees on.
//!
//! It assumes the chain's rules are the ledger's: everything it checks locally (rate limit,
//! row length, bounded change) is read from the chain's genesis, never hard-coded, and the
//! ledger remains the judge. The maths of learning and scoring is the `nucleus` crate's; the
//! tensor RPC is the `wire` crate's. [`files`] defines what a
//! peer process leaves on disk for the localnet report (`status.csv`, `final.json`).

mod chain;
pub mod copies;
pub mod files;
pub mod learner;
mod local;
mod metagraph;
pub mod metrics_http;
pub mod neighbours;
mod participant;
pub mod pow;
pub mod preset;
mod rpc;
pub mod run;
pub mod serve;
pub mod version;
mod weights;

pub use chain::{Chain, ChainError};
pub use learner::Learner;
pub use local::LocalChain;
pub use metagraph::{follow, MetagraphView};
pub use neighbours::{InProcess, Neighbours, Switchboard};
pub use participant::{applied, sign, transact, Participant, RateLimitPolicy, WeightsOutcome};
pub use rpc::RpcChain;
pub use version::{VersionPublisher, DEFAULT_VERSION_INTERVAL};
pub use weights::{StepError, WeightRowError, WeightSetter};
/// The axon's competitive masking, as `RunConfig` and the switchboard take it.
pub use wire::MaskingConfig;

pub use preset::{nucleus_preset, ModelSize};
