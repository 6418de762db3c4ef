//! Integration tests of the ledger, in one binary (links once).

mod activity;
mod bad_txs;
mod commit_reveal;
mod common;
mod delegation;
mod determinism;
mod emission;
mod free_weights;
mod inflation;
mod lazy;
mod properties;
mod registration;
mod subnets;
