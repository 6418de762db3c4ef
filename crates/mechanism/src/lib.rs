//! The incentive mechanisms of the Bittensor papers, as pure deterministic functions.
//!
//! This crate owns the maths a ledger runs once per epoch: from the weight matrix W (row i is
//! what peer i says each other peer is worth) and the stake vector S, compute ranks R, trust T,
//! consensus C, incentive I, dividends D, bonds B and the emission each peer is owed. It does no
//! I/O, reads no clock and draws no randomness: the same input gives bit-identical output on
//! every machine and for every thread count (transcendental functions come from `libm`, and
//! every sum runs in a fixed order, over peers in ascending index order or along a row in four
//! interleaved lanes, never as a thread-timed reduction).
//!
//! The five variants, chosen by a ledger's genesis configuration through [`Mechanism`]:
//! - [`Mechanism::Basic`]: stake-weighted column sums (intermodel paper §2.4, eq. 5-6).
//! - [`Mechanism::Connectivity`]: ranks regularised by reachability, with stake clipping
//!   (market paper §3-4, eq. 4-8).
//! - [`Mechanism::Trust`]: sigmoid trust over random-walk connectivity, the chain loss and the
//!   stake-scaling vector A (market paper, second version: eq. 4-6 and appendix 12.7).
//! - [`Mechanism::Nakamoto`]: sigmoid consensus over the stake that weights a peer, bonds and
//!   dividends (the 2021-22 production chain, notes 003).
//! - [`Mechanism::Yuma`]: stake-weighted median consensus, clipping, bond moving average,
//!   dividends and a 50/50 server/validator split (the production chain today).
//!
//! A ledger says which peers validate this epoch ([`EpochInput::validators`]: its activity
//! cutoff and validator permits); the others' rows and stake do not count, and they earn no
//! dividends. Every variant reports validator trust (how much of a peer's row survived
//! consensus) where it has a notion of it, for the metagraph to show beside dividends.
//!
//! Inputs are validated up front: a NaN, a negative weight, a length mismatch or an empty
//! network is a [`MechanismError`], never a panic. A [`SparseMatrix`] is valid by
//! construction (deserialising one checks it), so an epoch checks the shapes and the stake,
//! not every weight again; [`SparseMatrix::builder`] brings in rows already sorted by column,
//! as a ledger keeps them, without the sort of [`SparseMatrix::from_rows`].
//!
//! Two choices of [`Mechanism::Yuma`] worth knowing before reading [`yuma::epoch`]: the
//! previous bonds are column-normalised before the moving average, as subtensor does (a ledger
//! that clears bond rows leaves columns summing to less than 1), and an epoch where no column
//! reaches consensus mints nothing, where subtensor pays validators by stake: paying for no
//! recognised value would reward a stake majority for withholding agreement.

// Index loops are how the papers write these sums (and how the dense references must read to
// be obviously right), so clippy's iterator rewrite is not wanted here.
#![allow(clippy::needless_range_loop)]

pub mod basic;
pub mod connectivity;
mod error;
pub mod nakamoto;
mod sparse;
#[cfg(test)]
mod test_support;
pub mod trust;
pub mod walk;
pub mod yuma;

pub use error::MechanismError;
pub use sparse::{SparseMatrix, SparseMatrixBuilder};

use serde::{Deserialize, Serialize};

/// The mechanism a chain runs, with its parameters. This is what a genesis file names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mechanism {
    /// Ranks as stake-weighted column sums of W (intermodel paper §2.4); no trust or bonds.
    Basic(basic::BasicParams),
    /// Ranks regularised by how much stake a peer reaches through W, with stake clipping
    /// against sybils (market paper §3-4).
    Connectivity(connectivity::ConnectivityParams),
    /// Sigmoid trust over random-walk connectivity; an epoch with a non-negative chain loss
    /// mints nothing and moves the stake scaling A instead (market paper, second version).
    Trust(trust::TrustParams),
    /// Sigmoid consensus over the stake that weights a peer, with bonds and dividends (the
    /// 2021-22 production chain).
    Nakamoto(nakamoto::NakamotoParams),
    /// Stake-weighted median consensus, weight clipping, bonds as a moving average, and
    /// emission split between servers' incentive and validators' dividends (today's chain).
    Yuma(yuma::YumaParams),
}

/// The names accepted by [`Mechanism::from_name`], in the order the papers introduce them.
pub const MECHANISM_NAMES: [&str; 5] = ["basic", "connectivity", "trust", "nakamoto", "yuma"];

impl Mechanism {
    /// The variant called `name` with its default parameters.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Some(match name {
            "basic" => Mechanism::Basic(Default::default()),
            "connectivity" => Mechanism::Connectivity(Default::default()),
            "trust" => Mechanism::Trust(Default::default()),
            "nakamoto" => Mechanism::Nakamoto(Default::default()),
            "yuma" => Mechanism::Yuma(Default::default()),
            _ => return None,
        })
    }

    /// Every variant with default parameters.
    pub fn all() -> Vec<Mechanism> {
        MECHANISM_NAMES.iter().map(|n| Mechanism::from_name(n).expect("known name")).collect()
    }

    /// The variant's name in a genesis file and on the command line (one of
    /// [`MECHANISM_NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Basic(_) => "basic",
            Mechanism::Connectivity(_) => "connectivity",
            Mechanism::Trust(_) => "trust",
            Mechanism::Nakamoto(_) => "nakamoto",
            Mechanism::Yuma(_) => "yuma",
        }
    }

    /// The share of an epoch's emission paid by incentive when dividends are paid too (see
    /// [`split_emission`]): `server_share` for `yuma`, 1/2 for `nakamoto`, 1 for the variants
    /// without dividends.
    pub fn server_share(&self) -> f64 {
        match self {
            Mechanism::Yuma(p) => p.server_share,
            Mechanism::Nakamoto(_) => nakamoto::SERVER_SHARE,
            Mechanism::Basic(_) | Mechanism::Connectivity(_) | Mechanism::Trust(_) => 1.0,
        }
    }

    /// Runs one epoch. Validates the input, then dispatches to the variant.
    pub fn epoch(&self, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
        input.validate()?;
        match self {
            Mechanism::Basic(p) => basic::epoch(p, input),
            Mechanism::Connectivity(p) => connectivity::epoch(p, input),
            Mechanism::Trust(p) => trust::epoch(p, input),
            Mechanism::Nakamoto(p) => nakamoto::epoch(p, input),
            Mechanism::Yuma(p) => {
                p.validate()?;
                Ok(yuma::run(p, input))
            }
        }
    }

    /// The same epoch computed by each variant's straightforward dense reference
    /// (`epoch_dense` in its module): O(n^2) memory, textbook loops, written apart from the
    /// sparse code so tests can compare the two. For tests and benchmarks only.
    pub fn epoch_dense(&self, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
        input.validate()?;
        match self {
            Mechanism::Basic(p) => basic::epoch_dense(p, input),
            Mechanism::Connectivity(p) => connectivity::epoch_dense(p, input),
            Mechanism::Trust(p) => trust::epoch_dense(p, input),
            Mechanism::Nakamoto(p) => nakamoto::epoch_dense(p, input),
            Mechanism::Yuma(p) => yuma::epoch_dense(p, input),
        }
    }
}

/// State a mechanism carries from one epoch to the next. A ledger stores it and hands it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MechanismState {
    /// Bonds B (`nakamoto`, `yuma`): `b[i][j]` is peer i's bond in peer j. Other variants leave
    /// it empty.
    pub bonds: SparseMatrix,
    /// The stake-scaling vector A of the `trust` variant, each entry in [0, 1]; empty means
    /// "all ones" (the state at genesis). Other variants leave it empty.
    pub stake_scaling: Vec<f64>,
}

impl MechanismState {
    /// The state at genesis for a network of `n` peers: no bonds, no scaling.
    pub fn genesis(n: usize) -> Self {
        MechanismState { bonds: SparseMatrix::zeros(n), stake_scaling: Vec::new() }
    }
}

/// Everything one epoch reads.
#[derive(Debug, Clone, Copy)]
pub struct EpochInput<'a> {
    /// W, n x n, row i set by peer i. Rows need not be normalised: every variant normalises
    /// each non-empty row to sum to 1 first (the ledger stores them normalised anyway).
    pub weights: &'a SparseMatrix,
    /// S, one entry per peer, in any unit (the mechanisms only use proportions of it).
    pub stake: &'a [f64],
    /// The amount of new stake this epoch may mint, in the same unit as `stake`.
    pub emission: f64,
    /// What the previous epoch returned in [`EpochOutput::state`].
    pub state: &'a MechanismState,
    /// Which peers validate this epoch (a ledger's activity cutoff and validator permits); empty
    /// means every peer does. A peer with `validators[i] == false`, in every variant:
    /// - its row of W is ignored, as if it had set no weights;
    /// - its stake counts zero wherever stake weighs an opinion: every variant computes with
    ///   S where `s_i = 0`, so shares are of the validating stake only (subtensor's "active
    ///   stake": an absent whale neither blocks consensus nor dilutes it);
    /// - it earns no dividends (`D_i = 0`, D renormalised over the others) and gains no new
    ///   bonds, so its bonds decay by the moving average (`yuma`) or stand still while others'
    ///   grow (`nakamoto`).
    ///
    /// Its stake is not otherwise touched (the mechanism returns no stake), its column is
    /// untouched (others' weights on it count: a server need not validate), and its
    /// `validator_trust` is 0.
    pub validators: &'a [bool],
}

impl<'a> EpochInput<'a> {
    /// An epoch where every peer validates.
    pub fn new(
        weights: &'a SparseMatrix,
        stake: &'a [f64],
        emission: f64,
        state: &'a MechanismState,
    ) -> Self {
        EpochInput { weights, stake, emission, state, validators: &[] }
    }

    /// The same epoch with only the peers marked `true` validating (see
    /// [`EpochInput::validators`]).
    pub fn with_validators(self, validators: &'a [bool]) -> Self {
        EpochInput { validators, ..self }
    }

    /// Checks the shapes and values shared by every variant.
    pub fn validate(&self) -> Result<(), MechanismError> {
        let n = self.weights.n();
        if n == 0 {
            return Err(MechanismError::EmptyNetwork);
        }
        // The values of W and B need no check: a `SparseMatrix` is valid by construction.
        if self.stake.len() != n {
            return Err(MechanismError::StakeLength { stake: self.stake.len(), rows: n });
        }
        if let Some((peer, &value)) = self.stake.iter().enumerate().find(|(_, s)| !s.is_finite() || **s < 0.0)
        {
            return Err(MechanismError::BadStake { peer, value });
        }
        if !self.emission.is_finite() || self.emission < 0.0 {
            return Err(MechanismError::BadEmission(self.emission));
        }
        if self.state.bonds.n() != n {
            return Err(MechanismError::MatrixShape { rows: self.state.bonds.n(), expected: n });
        }
        if !self.validators.is_empty() && self.validators.len() != n {
            return Err(MechanismError::VectorLength {
                what: "validators",
                got: self.validators.len(),
                expected: n,
            });
        }
        let a = &self.state.stake_scaling;
        if !a.is_empty() {
            if a.len() != n {
                return Err(MechanismError::VectorLength {
                    what: "stake scaling A",
                    got: a.len(),
                    expected: n,
                });
            }
            if let Some((peer, &value)) = a.iter().enumerate().find(|(_, x)| !(0.0..=1.0).contains(*x)) {
                return Err(MechanismError::BadScaling { what: "stake scaling a", peer, value });
            }
        }
        Ok(())
    }

    /// The number of peers n: the rows of W, which every per-peer vector must match.
    pub fn n(&self) -> usize {
        self.weights.n()
    }

    /// Whether peer `i` validates this epoch (see [`EpochInput::validators`]).
    pub fn validates(&self, i: usize) -> bool {
        self.validators.get(i).copied().unwrap_or(true)
    }

    /// W without the rows of the peers that do not validate and S with their stake at 0, as
    /// copies, or nothing to copy when every peer validates. A variant starts with
    /// `let masked = input.masked(); let input = &masked.apply(input);` and then reads W and S
    /// from `input` as usual; it still honours the dividend part of the mask itself
    /// ([`EpochInput::keep_validators`]). Call after [`EpochInput::validate`].
    pub(crate) fn masked(&self) -> Masked {
        if self.validators.iter().all(|&v| v) {
            return Masked { weights: None, stake: None };
        }
        let weights = self.weights.without_rows(|i| !self.validates(i));
        let stake =
            self.stake.iter().enumerate().map(|(i, &s)| if self.validates(i) { s } else { 0.0 }).collect();
        Masked { weights: Some(weights), stake: Some(stake) }
    }

    /// `s_hat`: the stake of the peers that validate, normalised to sum to 1, 0 for the others
    /// (all zeros when they hold none). The same as `normalized` of the masked stake of
    /// [`EpochInput::masked`], without the copy of W.
    pub(crate) fn validating_stake(&self) -> Vec<f64> {
        if self.validators.is_empty() {
            return normalized(self.stake);
        }
        let masked: Vec<f64> =
            self.stake.iter().zip(self.validators).map(|(&s, &v)| if v { s } else { 0.0 }).collect();
        normalized(&masked)
    }

    /// Zeroes the entries of peers that do not validate (their dividends, before the variant
    /// normalises them).
    pub(crate) fn keep_validators(&self, x: &mut [f64]) {
        for (i, v) in x.iter_mut().enumerate() {
            if !self.validates(i) {
                *v = 0.0;
            }
        }
    }
}

/// The masked copies of W and S made by [`EpochInput::masked`].
pub(crate) struct Masked {
    weights: Option<SparseMatrix>,
    stake: Option<Vec<f64>>,
}

impl Masked {
    /// `input` reading W and S from the masked copies (the mask itself is kept).
    pub(crate) fn apply<'b>(&'b self, input: &EpochInput<'b>) -> EpochInput<'b> {
        EpochInput {
            weights: self.weights.as_ref().unwrap_or(input.weights),
            stake: self.stake.as_deref().unwrap_or(input.stake),
            ..*input
        }
    }
}

/// What one epoch computes. Every vector has one entry per peer. A variant that has no notion
/// of some vector (the `basic` variant has no trust) leaves it at zero and says so in its doc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochOutput {
    /// R, as the variant's rank equation defines it (see each variant for its scale).
    pub ranks: Vec<f64>,
    /// T: how far the network's stake backs each peer, in [0, 1] (`nakamoto`: the share of
    /// stake weighting it at all; `yuma`: the share of its rank left after clipping;
    /// `connectivity`: the share of stake reaching it; `trust`: the sigmoid of eq. 4).
    pub trust: Vec<f64>,
    /// C (per-peer consensus; for `yuma` the consensus weight of each column).
    pub consensus: Vec<f64>,
    /// I: sums to 1 when anything is to be paid, to 0 otherwise.
    pub incentive: Vec<f64>,
    /// D: sums to 1 for the variants with bonds when anything is to be paid, else all zero.
    pub dividends: Vec<f64>,
    /// VT: how much of each peer's normalised weight row survived the variant's consensus
    /// (`yuma`: row sums of the clipped weights; `nakamoto`: the consensus-weighted share of
    /// the row). Zero for the variants without validators apart from servers (`basic`,
    /// `connectivity`, `trust`) and for peers that do not validate.
    pub validator_trust: Vec<f64>,
    /// New stake owed to each peer this epoch: sums to `input.emission`, or to 0 when the epoch
    /// pays nothing (no usable weights, or the `trust` variant withholding emission).
    pub emission: Vec<f64>,
    /// State for the next epoch.
    pub state: MechanismState,
    /// What only one variant computes.
    pub extras: Extras,
}

/// Per-variant outputs a user may want to inspect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Extras {
    /// The variant computes nothing beyond [`EpochOutput`]'s vectors.
    None,
    /// The `connectivity` variant's stake clipping and reachability.
    Connectivity {
        /// s*_i of eq. (8), normalised to sum to 1 (all zero if nobody has stake).
        clipped_stake: Vec<f64>,
        /// sum_j c_ij / ||S||_1: the share of stake peer i reaches.
        reach: Vec<f64>,
    },
    /// The `trust` variant's chain loss, which decides whether the epoch mints.
    Trust {
        /// L = -R . (T - 1/2).
        chain_loss: f64,
        /// True when L >= 0: the epoch minted nothing and moved A instead.
        emission_withheld: bool,
    },
}

/// `x / sum(x)`, or all zeros when the sum is zero.
pub fn normalized(x: &[f64]) -> Vec<f64> {
    let sum: f64 = x.iter().sum();
    if sum > 0.0 {
        x.iter().map(|v| v / sum).collect()
    } else {
        vec![0.0; x.len()]
    }
}

/// Dense-reference support: W as n x n rows, each non-empty row divided by its sum (plain
/// division, independent of the sparse code's normalisation). `drop_self` zeroes w_ii first.
pub(crate) fn dense_rows_normalized(w: &SparseMatrix, drop_self: bool) -> Vec<Vec<f64>> {
    let mut rows = w.to_dense();
    for (i, row) in rows.iter_mut().enumerate() {
        if drop_self {
            row[i] = 0.0;
        }
        let sum: f64 = row.iter().sum();
        if sum > 0.0 {
            for v in row.iter_mut() {
                *v /= sum;
            }
        }
    }
    rows
}

/// The logistic function `1 / (1 + e^{-x})`, with `libm::exp` so every platform agrees.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + libm::exp(-x))
}

/// Splits `emission` between incentive I and dividends D in the proportion `server_share` :
/// `1 - server_share`. When one of the two is all zero its part goes to the other; when both
/// are zero nothing is paid.
pub fn split_emission(emission: f64, incentive: &[f64], dividends: &[f64], server_share: f64) -> Vec<f64> {
    let (wi, wd) = split_shares(incentive, dividends, server_share);
    incentive.iter().zip(dividends).map(|(i, d)| emission * (wi * i + wd * d)).collect()
}

/// The shares of an epoch's emission that [`split_emission`] pays by incentive (serving) and
/// by dividends (validating): `(server_share, 1 - server_share)`, or all to the side that is
/// not all zero, or `(0, 0)` when both are. Peer i's serving part is `emission * wi * I_i`,
/// its validating part `emission * wd * D_i`.
pub fn split_shares(incentive: &[f64], dividends: &[f64], server_share: f64) -> (f64, f64) {
    let has_i = incentive.iter().any(|&x| x > 0.0);
    let has_d = dividends.iter().any(|&x| x > 0.0);
    match (has_i, has_d) {
        (true, true) => (server_share, 1.0 - server_share),
        (true, false) => (1.0, 0.0),
        (false, true) => (0.0, 1.0),
        (false, false) => (0.0, 0.0),
    }
}
