//! The `nakamoto` variant: the 2021-22 production chain (notes 003).
//!
//! TODO(helper): implement; see the spec in the doc of [`epoch`].

use crate::{EpochInput, EpochOutput, MechanismError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NakamotoParams {
    /// rho: steepness of the consensus sigmoid.
    pub rho: f64,
    /// kappa: the share of stake at which consensus is 1/2.
    pub kappa: f64,
    /// `None`: bonds accumulate, B <- B + W.S (notes 003). `Some(m)`: moving average
    /// B <- (1 - m) (W.S) + m B with m in [0, 1).
    pub bonds_moving_average: Option<f64>,
}

impl Default for NakamotoParams {
    fn default() -> Self {
        NakamotoParams { rho: 10.0, kappa: 0.5, bonds_moving_average: None }
    }
}

pub fn epoch(_p: &NakamotoParams, _input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    unimplemented!("nakamoto")
}

/// Dense reference (see [`epoch`]).
pub fn epoch_dense(_p: &NakamotoParams, _input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    unimplemented!("nakamoto dense")
}
