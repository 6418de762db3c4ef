//! The papers' experiments, run on the real `mechanism` code.
//!
//! Each experiment is a library function that takes its options and an output directory and
//! writes a CSV table, PNG charts and a short markdown summary there, returning a report with
//! the numbers (the `agora sim` subcommands only parse flags, call these and print):
//! - [`cabal`]: the printed cabal-decay tables of the market paper (000 §10 with the
//!   `connectivity` variant, 002 "Collusion" with `trust`), as the paper's closed form and on
//!   the real mechanism side by side.
//! - [`descent`]: the chain-loss descent of 002 appendix 12.7 (repaired) on the `trust`
//!   variant, including an honest majority split into two disconnected halves.
//! - [`compare`]: one 49% cabal attack through every mechanism variant.
//! - [`empirical`]: the competitive-equilibrium model of the intermodel paper §3.2-3.3.
//! - [`all`]: everything above, joined into one `summary.md`.
//!
//! Assumptions: runs are deterministic for a given seed; nothing here reads a clock.

pub mod all;
pub mod cabal;
pub mod compare;
pub mod descent;
pub mod empirical;
mod error;
pub mod network;
pub mod report;

pub use error::SimError;
