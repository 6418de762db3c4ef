//! The `yuma` variant: Yuma consensus as the production chain runs it today.
//!
//! TODO(helper): implement; see the spec in the doc of [`epoch`].

use crate::{EpochInput, EpochOutput, MechanismError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct YumaParams {
    /// kappa: the share of stake that must agree on a weight for it to count (the median at 1/2).
    pub kappa: f64,
    /// The bonds' moving-average factor m: B <- (1 - m) dB + m B.
    pub bonds_moving_average: f64,
    /// Share of emission paid to servers by incentive; the rest goes to validators by dividends.
    pub server_share: f64,
}

impl Default for YumaParams {
    fn default() -> Self {
        YumaParams { kappa: 0.5, bonds_moving_average: 0.9, server_share: 0.5 }
    }
}

pub fn epoch(_p: &YumaParams, _input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    unimplemented!("yuma")
}

/// Dense reference (see [`epoch`]).
pub fn epoch_dense(_p: &YumaParams, _input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    unimplemented!("yuma dense")
}
