//! The papers' experiments, run on the real `mechanism` code.

pub mod empirical;
pub mod plot;
