//! The `trust` variant (market paper, second version).

use crate::{EpochInput, EpochOutput, MechanismError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrustParams {
    /// Temperature of the trust sigmoid.
    pub temperature: f64,
    /// Longest random walk counted in C.
    pub depth: usize,
    /// kappa: expected visits at which the tanh cut-off crosses 0.
    pub cutoff: f64,
    /// Steepness of the tanh cut-off (large: c_ij is +1 or -1).
    pub sharpness: f64,
    /// Learning rate of the descent on the stake-scaling vector A.
    pub learning_rate: f64,
}

impl Default for TrustParams {
    fn default() -> Self {
        TrustParams { temperature: 10.0, depth: 3, cutoff: 1e-3, sharpness: 1e4, learning_rate: 0.05 }
    }
}

pub fn epoch(_p: &TrustParams, _input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    unimplemented!("trust")
}

/// Dense reference (see [`epoch`]).
pub fn epoch_dense(_p: &TrustParams, _input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    unimplemented!("trust dense")
}
