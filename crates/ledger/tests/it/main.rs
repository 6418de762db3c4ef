//! Integration tests of the ledger, in one binary (links once).

mod activity;
mod bad_txs;
mod common;
mod determinism;
mod emission;
mod lazy;
mod properties;
mod registration;
