use thiserror::Error;

/// Why a mechanism refused its input. Every variant names the offending peer or entry, so a
/// ledger can turn it into a rejection reason a user can act on.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MechanismError {
    #[error("the network has no peers (n = 0)")]
    EmptyNetwork,
    #[error("stake vector has {stake} entries but the weight matrix has {rows} rows")]
    StakeLength { stake: usize, rows: usize },
    #[error("{what} has {got} entries, expected {expected} (one per peer)")]
    VectorLength { what: &'static str, got: usize, expected: usize },
    #[error("stake of peer {peer} is {value}, expected a finite value >= 0")]
    BadStake { peer: usize, value: f64 },
    #[error("weight w[{row}][{col}] is {value}, expected a finite value >= 0")]
    BadWeight { row: usize, col: usize, value: f64 },
    #[error("weight row {row} names peer {col}, but the network has only {n} peers")]
    ColumnOutOfRange { row: usize, col: usize, n: usize },
    #[error("weight row {row} names peer {col} twice")]
    DuplicateColumn { row: usize, col: usize },
    #[error("matrix has {rows} rows, expected {expected}")]
    MatrixShape { rows: usize, expected: usize },
    #[error("{what} of peer {peer} is {value}, expected a finite value in [0, 1]")]
    BadScaling { what: &'static str, peer: usize, value: f64 },
    #[error("emission for the epoch is {0}, expected a finite value >= 0")]
    BadEmission(f64),
    #[error("parameter {name} = {value} is invalid: {reason}")]
    BadParameter { name: &'static str, value: f64, reason: &'static str },
}

/// `Ok` when `ok` holds and `value` is finite, else [`MechanismError::BadParameter`]. Every
/// variant's parameter checks go through here so their messages read alike.
pub(crate) fn check_parameter(
    name: &'static str,
    value: f64,
    ok: bool,
    reason: &'static str,
) -> Result<(), MechanismError> {
    if value.is_finite() && ok {
        Ok(())
    } else {
        Err(MechanismError::BadParameter { name, value, reason })
    }
}

pub(crate) const KAPPA_RANGE: &str = "must be a share of stake in [0, 1]";
pub(crate) const MOVING_AVERAGE_RANGE: &str = "must be in [0, 1): at 1 the bonds would never change";
