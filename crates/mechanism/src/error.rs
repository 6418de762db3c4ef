use thiserror::Error;

/// Why a mechanism refused its input. Every variant names the offending peer or entry, so a
/// ledger can turn it into a rejection reason a user can act on.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MechanismError {
    /// The weight matrix has no rows: an epoch needs at least one peer.
    #[error("the network has no peers (n = 0)")]
    EmptyNetwork,
    /// The stake vector S and the weight matrix W disagree on the number of peers.
    #[error("stake vector has {stake} entries but the weight matrix has {rows} rows")]
    StakeLength {
        /// Entries in the stake vector S.
        stake: usize,
        /// Rows (peers) in the weight matrix W.
        rows: usize,
    },
    /// A per-peer vector other than S has the wrong length.
    #[error("{what} has {got} entries, expected {expected} (one per peer)")]
    VectorLength {
        /// Which vector (the validator mask, stake scaling A, a dense weight row).
        what: &'static str,
        /// Its length as given.
        got: usize,
        /// The number of peers n (one entry per peer).
        expected: usize,
    },
    /// A stake is negative or not finite.
    #[error("stake of peer {peer} is {value}, expected a finite value >= 0")]
    BadStake {
        /// The peer's index (uid).
        peer: usize,
        /// The offending stake: negative, NaN or infinite.
        value: f64,
    },
    /// A weight is negative or not finite.
    #[error("weight w[{row}][{col}] is {value}, expected a finite value >= 0")]
    BadWeight {
        /// The peer that set the weight.
        row: usize,
        /// The peer the weight is about.
        col: usize,
        /// The offending weight: negative, NaN or infinite.
        value: f64,
    },
    /// A weight row names a uid the network does not have.
    #[error("weight row {row} names peer {col}, but the network has only {n} peers")]
    ColumnOutOfRange {
        /// The peer that set the weight.
        row: usize,
        /// The uid it named, at or past `n`.
        col: usize,
        /// The number of peers.
        n: usize,
    },
    /// A weight row names the same peer twice, so its weight would be ambiguous.
    #[error("weight row {row} names peer {col} twice")]
    DuplicateColumn {
        /// The peer that set the weights.
        row: usize,
        /// The uid its row names more than once.
        col: usize,
    },
    /// A square per-peer matrix (weights or previous bonds) has a number of rows other than n.
    #[error("matrix has {rows} rows, expected {expected}")]
    MatrixShape {
        /// Rows given (or, for a matrix being built, the row one past the last allowed).
        rows: usize,
        /// The number of peers n.
        expected: usize,
    },
    /// A per-peer share that must lie in [0, 1] does not.
    #[error("{what} of peer {peer} is {value}, expected a finite value in [0, 1]")]
    BadScaling {
        /// Which vector (the `trust` variant's stake scaling A).
        what: &'static str,
        /// The peer's index (uid).
        peer: usize,
        /// The offending entry, outside [0, 1] or not finite.
        value: f64,
    },
    /// The epoch's emission (new stake to mint) is negative or not finite.
    #[error("emission for the epoch is {0}, expected a finite value >= 0")]
    BadEmission(f64),
    /// A mechanism parameter is out of its range (from the genesis configuration).
    #[error("parameter {name} = {value} is invalid: {reason}")]
    BadParameter {
        /// The parameter's field name in the variant's params (`kappa`, `bond_moving_average`, ...).
        name: &'static str,
        /// The value given.
        value: f64,
        /// The range it must lie in, and why where that is not obvious.
        reason: &'static str,
    },
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
