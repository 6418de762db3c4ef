//! The papers' experiments, run on the real `mechanism` code.

pub mod plot;
