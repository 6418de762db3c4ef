//! A whole Agora network on one machine (issue 6): `agora localnet`.
//!
//! It owns the orchestration and the report, not the participants: it writes a genesis for the
//! run ([`genesis()`]: the scenario's mechanism, short epochs, cheap registration, a faucet),
//! starts `agora node` as a child process, creates one throwaway wallet per peer (cheap KDF,
//! public password: [`setup::PASSWORD`]), funds, registers (proof of work, through the `peer`
//! crate) and stakes them so the cabal holds exactly its share, starts one `agora peer run`
//! process per peer ([`process::peer_argv`] is the only place that maps a role onto flags),
//! samples the metagraph every block into `DIR/metagraph.csv` with a live table, stops every
//! child on the end or Ctrl-C (SIGTERM, then SIGKILL after a grace period; a dropped handle
//! kills), and writes `DIR/report.md` with CSVs and PNG plots ([`report`]).
//!
//! With [`RunOptions::validators`] above one, the chain is that many validator processes
//! ([`validators`]) and the peers are spread over them, each talking to one validator.
//!
//! It assumes an `agora` binary with the `node` and `peer run` subcommands (its path is passed
//! in), loopback networking, and peers that write `status.csv` and, on SIGTERM, `final.json`
//! in their `--out` directory. Plots and Spearman's rho are the `sim` crate's.

/// Why a run or its report failed: [`error::LocalnetError`].
pub mod error;
mod genesis;
pub mod judge;
pub mod judging;
pub mod market;
pub mod monitor;
pub mod process;
pub mod report;
mod run;
pub mod scenario;
pub mod setup;
pub mod validators;

pub use error::LocalnetError;
pub use genesis::{faucet_key, genesis, CHAIN_ID, FEE_BUDGET};
pub use judge::{Judge, JudgeConfig, Judgement};
pub use market::{run_market, MarketOptions, MarketOutcome, WeightsPolicy};
pub use process::{check_dataset, peer_argv, PeerLaunch};
pub use report::{compare_markdown, write_compare, write_report, Summary};
pub use run::{compare, run, RunOptions, RunOutcome};
pub use scenario::{ModelSize, PeerSpec, Role, Scenario};
/// The faults `RunOptions::chaos` injects between peers (the wire crate's fault proxy).
pub use wire::chaos::FaultConfig;
