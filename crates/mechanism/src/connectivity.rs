//! The `connectivity` variant (market paper §3-4).

use crate::{EpochInput, EpochOutput, MechanismError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectivityParams {
    /// rho: the fixed stake size of eq. (6); the connectivity term is weighted by it.
    pub rho: f64,
    /// Expected visits from i to j (walks of at most `depth` steps) above which c_ij = s_j.
    pub threshold: f64,
    /// Longest walk considered when computing reachability.
    pub depth: usize,
    /// Apply the stake clipping of eq. (8).
    pub stake_clipping: bool,
}

impl Default for ConnectivityParams {
    fn default() -> Self {
        ConnectivityParams { rho: 10.0, threshold: 1e-3, depth: 3, stake_clipping: true }
    }
}

pub fn epoch(_p: &ConnectivityParams, _input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    unimplemented!("connectivity")
}

/// Dense reference (see [`epoch`]).
pub fn epoch_dense(_p: &ConnectivityParams, _input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    unimplemented!("connectivity dense")
}
