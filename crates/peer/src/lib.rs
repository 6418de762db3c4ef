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
//! It assumes the chain's rules are the ledger's: everything it checks locally (rate limit,
//! row length, bounded change) is read from the chain's genesis, never hard-coded, and the
//! ledger remains the judge. It knows nothing of tensors or models (the `wire` and `nucleus`
//! crates), so the training loop plugs in through `Vec<(uid, score)>`. [`files`] defines what a
//! peer process leaves on disk for the localnet report (`status.csv`, `final.json`).

mod chain;
pub mod files;
mod local;
mod metagraph;
mod participant;
mod rpc;
mod weights;

pub use chain::{Chain, ChainError};
pub use local::LocalChain;
pub use metagraph::{follow, MetagraphView};
pub use participant::{applied, sign, transact, Participant, RateLimitPolicy, WeightsOutcome};
pub use rpc::RpcChain;
pub use weights::{StepError, WeightRowError, WeightSetter};
pub mod preset;
pub mod run;
pub mod serve;

pub use preset::{nucleus_preset, ModelSize};
