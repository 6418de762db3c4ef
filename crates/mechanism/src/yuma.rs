//! The `yuma` variant: Yuma consensus as the production chain runs it today (subtensor's
//! `run_epoch.rs`), kept as the reference point the papers' variants are measured against.
//!
//! Instead of a sigmoid over "how much stake weights j at all" (`nakamoto`), every column gets
//! a consensus weight: the stake-weighted kappa-quantile of what validators give it (the
//! median at kappa = 1/2). Weights above that level are clipped to it, so a minority that
//! overrates a server gains nothing from it; ranks come from the clipped weights. Bonds are an
//! exponential moving average of clipped weights times stake, and validators earn dividends
//! through the bonds they hold in the servers that earned incentive.
//!
//! The full computation and its choices are written on [`epoch`].

use crate::error::{check_parameter, KAPPA_RANGE, MOVING_AVERAGE_RANGE};
use crate::sparse::{ColumnRuns, Lanes, Parts, RowsBuilder};
use crate::{
    normalized, split_emission, EpochInput, EpochOutput, Extras, MechanismError, MechanismState, SparseMatrix,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

mod quantile;

use quantile::{quantile_by_definition, weighted_quantile, Workspace};

/// Parameters of the `yuma` variant, from the genesis file; missing fields take subtensor's
/// defaults (kappa = 1/2, bond moving average 0.9, half the emission to servers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct YumaParams {
    /// kappa: the share of stake that must agree on a weight for it to count (the median at 1/2).
    pub kappa: f64,
    /// The bonds' moving-average factor m: B <- (1 - m) dB + m B.
    pub bonds_moving_average: f64,
    /// Share of emission paid to servers by incentive; the rest goes to validators by dividends.
    pub server_share: f64,
    /// How validators' dividends follow their bonds (see [`DividendRule`]). A genesis file
    /// without it gets [`DividendRule::Bonds`], the production chain's rule.
    pub dividend_rule: DividendRule,
}

impl Default for YumaParams {
    fn default() -> Self {
        YumaParams {
            kappa: 0.5,
            bonds_moving_average: 0.9,
            server_share: 0.5,
            dividend_rule: DividendRule::Bonds,
        }
    }
}

/// How `yuma` turns bonds B and incentive I into dividends D. Named in a genesis file as
/// `"dividend_rule": "bonds"` or `"dividend_rule": "validator_trust"`.
///
/// Both rules build bonds from clipped weights only (`dB = Wc o s_hat`), so weight above
/// consensus never buys a bond. Under [`DividendRule::Bonds`], with weights held steady
/// (B = dB column-normalised, `B_ij = wc_ij s_i / R_j`) dividends are
/// `D_i = sum_j B_ij I_j = s_i sum_j wc_ij / sum_k R_k`, that is `D ∝ S o VT`: a validator
/// whose weights are half clipped away earns half of what its stake would earn. Clipping
/// only cuts weight *above* consensus, so this is the whole penalty for a validator that
/// overrates a server nobody else rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DividendRule {
    /// `D_i = sum_j B_ij I_j`, normalised (subtensor's `matmul_transpose(B, I)`): what the
    /// production chain pays.
    #[default]
    Bonds,
    /// `D_i ∝ VT_i sum_j B_ij I_j`, normalised: each validator's bond payout scaled by its
    /// validator trust `VT_i = sum_j wc_ij`, the share of its row that survived clipping.
    /// In steady state `D ∝ S o VT^2`: the reward for stake is discounted by validation
    /// quality twice, once through the bonds (what a validator backed) and once through VT
    /// (how much of what it said the stake majority confirmed), so a validator that spends
    /// its row on weights the majority rejects loses dividends faster than under `bonds`,
    /// and stake alone buys less. Clipping is the Yuma paper's defence of incentive against a
    /// minority that overrates its friends; this rule carries the same test over to what
    /// validators are paid for judging.
    ValidatorTrust,
}

impl YumaParams {
    /// kappa in [0, 1], moving average in [0, 1), server share in [0, 1].
    pub fn validate(&self) -> Result<(), MechanismError> {
        let (kappa, m, share) = (self.kappa, self.bonds_moving_average, self.server_share);
        check_parameter("kappa", kappa, (0.0..=1.0).contains(&kappa), KAPPA_RANGE)?;
        check_parameter("bonds_moving_average", m, (0.0..1.0).contains(&m), MOVING_AVERAGE_RANGE)?;
        check_parameter(
            "server_share",
            share,
            (0.0..=1.0).contains(&share),
            "must be a share of emission in [0, 1]",
        )
    }
}

/// One epoch of Yuma consensus, sparse: O(nnz(W) + nnz(B) + n) time, the selections
/// included.
///
/// Steps, in the order of subtensor's `run_epoch.rs`:
/// - peers that do not validate (`input.validators`) lose their rows and count zero stake
///   (subtensor's `validator_forbids` and `active_stake`), see [`EpochInput::validators`].
/// - self-weights are removed (subtensor's `mask_diag`), then W is row-normalised (every
///   non-empty row sums to 1); stake is normalised, `s_hat = S / ||S||_1` (zeros if nobody has
///   stake).
/// - preranks `P = W^T s_hat`.
/// - consensus `c_j`: the largest weight x given to j by a peer with stake such that the peers
///   weighting j at least x hold at least kappa of the stake,
///   `c_j = max { x = w_ij, s_hat_i > 0 : sum_k s_hat_k [w_kj >= x] >= kappa }`, and 0 when
///   no positive x qualifies (subtensor's `weighted_median_col_sparse`, where a missing weight
///   is a 0 with its validator's stake). Choice: candidates are only weights of peers with
///   stake, as subtensor drops zero-stake rows before the median; this matters only at
///   kappa = 0, where c_j is then the largest weight a staked peer gives j. If the stake on
///   the column's non-zero entries is below kappa, `c_j = 0` without selecting anything (at
///   most `k_max / kappa` columns pass this filter, whatever n is); the rest gather their
///   (weight, stake) pairs and run a weighted radix selection on the weights' bits (see
///   `weighted_quantile`: at most 16 rounds of one pass each, whatever the weights, so crafted
///   weights cannot make it slow). Choice: the stake sums compared with kappa are f64 sums
///   over peers in ascending index order; the selection sums in its own order, and its
///   verdict stands only where its sums clear kappa by more than any summation order can
///   differ, the definition deciding the rest (`Selected::confirms`), so c_j does not depend
///   on how it was found. At kappa = 1 a column thus needs every staked peer, and whether
///   their shares add up to 1.0 exactly is decided by those sums.
/// - clipped weights `Wc = min(W, c)` column-wise; validator trust `VT_i = sum_j wc_ij`
///   (subtensor's `row_sum(clipped_weights)`), returned in `validator_trust`.
/// - ranks `R = Wc^T s_hat`; trust `T_j = R_j / P_j` (0 when `P_j = 0`); incentive
///   `I = normalized(R)`.
/// - bonds: `dB` = Wc row-scaled by `s_hat`, column-normalised; the previous bonds
///   column-normalised too (subtensor's `inplace_col_normalize_sparse(bonds)`), so that each
///   column of `B_prev` weighs m whatever it summed to; `B = (1 - m) dB + m B_prev` with
///   `m = bonds_moving_average`, then column-normalised again and returned in `state.bonds`.
///   The stored bonds come out of this step column-normalised, but a ledger that clears rows
///   of them between epochs (a neuron replaced, a permit lost) hands back columns summing to
///   less than 1: without the first normalisation those columns would give this epoch's dB
///   the weight `(1 - m) / ((1 - m) + m sigma_j)` instead of `1 - m`. A column nobody backs
///   this epoch keeps its previous holders' proportions.
/// - dividends `D_i = sum_j B_ij I_j` (subtensor's `matmul_transpose(B, I)`), times `VT_i`
///   under [`DividendRule::ValidatorTrust`], 0 for peers that do not validate, normalised.
/// - emission `E = split_emission(emission, I, D, server_share)`.
///
/// Outputs: `ranks = R`, `trust = T`, `consensus = c`; `stake_scaling` stays empty.
///
/// When no column reaches consensus (`I = 0`, hence `D = B I = 0`), the epoch mints nothing:
/// every entry of `emission` is 0 and a ledger withholds the epoch's emission. Subtensor pays
/// such an epoch to validators by active stake instead. Choice, and why: an epoch pays for
/// what the stake majority recognised as valuable (the papers' premise: new stake goes to the
/// peers the majority values, and to the validators through the bonds they hold in them). A
/// payout by stake when nothing is recognised would give validators the whole emission, where
/// agreeing gives them `1 - server_share` of it: validators holding more than `1 - kappa` of
/// the stake could double their share by withholding agreement (setting weights no majority
/// shares), and stake would earn with no judgement behind it. Withholding leaves the emission
/// unminted (issuance stays below the schedule, never above it).
///
/// Not modelled here (a ledger concern, not the mechanism's): who holds a validator permit or
/// is active (the ledger passes the mask), weights older than a neuron's registration, and
/// liquid alpha / bond penalty (subtensor's defaults give the bonds above). Subtensor clears
/// the bonds of a neuron that loses its permit after the epoch; the ledger clears them before
/// it, so the other holders' shares of those columns grow one epoch earlier (the neuron earns
/// no dividends either way).
///
/// Every sum runs in a fixed order: the stake sums that decide consensus over peers in
/// ascending index order, the sums along a row (W's normalisation, VT, the payout `B I`) and
/// along a column's pairs (P, R) in four interleaved lanes (`Lanes`), so they do not wait on
/// one addition at a time. Columns' selections run on rayon's pool when there are many pairs,
/// each by the same sequential code, so the result is bit-identical for every thread count. It
/// matches [`epoch_dense`] up to rounding: W is normalised by multiplying with `1 / row sum`
/// rather than dividing, and the bonds by reciprocals, which moves values by an ulp (and could,
/// in principle, reorder two weights an ulp apart).
///
/// Cost: two passes over W (the first reads only column indices), a partial transpose of the
/// columns that pass the filter into (weight, stake) pairs, a selection of one or two passes
/// over each column's pairs and one more for P and R, then one pass over the clipped W and the
/// bonds together (new bonds, their normalisation, VT and the payout), after one over the
/// previous bonds for their column sums. When the staked rows are dense (the production
/// chain's shape at n = 256: validators weight everyone), every column gets one slot per
/// staked row and the transpose needs no tally or filter first (see `dense_block`). No copy
/// of W is made, not for the validator mask either. `benches/epoch.rs` times it at the production chain's shapes, beside the dense
/// reference (figures in the README's Benchmark section).
pub fn epoch(p: &YumaParams, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    // Callable directly, not only through `Mechanism::epoch`: check the shared input too.
    input.validate()?;
    p.validate()?;
    Ok(run(p, input))
}

/// [`epoch`] on an input and parameters already validated.
pub(crate) fn run(p: &YumaParams, input: &EpochInput<'_>) -> EpochOutput {
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let out = run_in(p, input, &mut scratch);
    if scratch.bytes() <= SCRATCH_KEPT_BYTES {
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
    }
    out
}

/// An epoch's largest working memory, kept per thread from one epoch to the next: a fresh
/// allocation of that size costs a page fault per 4 KB on first touch (in this project's VM,
/// about a third of the n = 256 epoch), and the allocator hands such blocks back to the system
/// when they are freed. The results never depend on what it held: every element is written
/// before it is read.
#[derive(Default)]
struct Scratch {
    /// The columns' (weight, stake) pairs.
    pairs: Vec<(f64, f64)>,
    /// The vectors of the restricted W.
    restricted: Parts,
    /// The weighted quantile's buckets, for the columns selected on the calling thread (24 KB
    /// cleared on creation: more than the selections of a small epoch cost).
    quantile: Workspace,
}

impl Scratch {
    fn bytes(&self) -> usize {
        16 * self.pairs.capacity() + self.restricted.capacity_bytes()
    }
}

/// Scratch larger than this is let go after the epoch (an epoch of 65,536 peers weighting
/// 256 each needs ~110 MB).
const SCRATCH_KEPT_BYTES: usize = 1 << 28;

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

fn run_in(p: &YumaParams, input: &EpochInput<'_>, scratch: &mut Scratch) -> EpochOutput {
    // s_hat over the validating stake; the rows of peers that do not validate are skipped
    // below instead of being removed from a copy of W.
    let s = input.validating_stake();

    // W restricted to the columns that can have consensus (Wc is this clipped on the fly) and,
    // per column, consensus, preranks and ranks.
    let Consensus { consensus, preranks, ranks, restricted } = if dense_block(input, &s) {
        consensus_by_columns(input, &s, p.kappa, scratch)
    } else {
        consensus(input, &s, p.kappa, scratch)
    };

    // R_j > 0 only where c_j > 0, and there `consensus` computed P_j; elsewhere T_j = 0.
    let trust: Vec<f64> =
        ranks.iter().zip(&preranks).map(|(&r, &pr)| if r > 0.0 && pr > 0.0 { r / pr } else { 0.0 }).collect();
    let incentive = normalized(&ranks);

    let Bonds { bonds, payout, validator_trust } = bonds::<true>(
        p.bonds_moving_average,
        &input.state.bonds,
        &restricted,
        &s,
        &consensus,
        &ranks,
        &incentive,
    );
    scratch.restricted = restricted.into_parts();
    let dividends = dividends(p, input, payout, &validator_trust);

    let emission = split_emission(input.emission, &incentive, &dividends, p.server_share);
    EpochOutput {
        ranks,
        trust,
        consensus,
        incentive,
        dividends,
        validator_trust,
        emission,
        state: MechanismState { bonds, stake_scaling: Vec::new() },
        extras: Extras::None,
    }
}

/// D from the bond payouts `B I`, by the rule of `p` and the validator mask of `input`.
fn dividends(
    p: &YumaParams,
    input: &EpochInput<'_>,
    mut payout: Vec<f64>,
    validator_trust: &[f64],
) -> Vec<f64> {
    if p.dividend_rule == DividendRule::ValidatorTrust {
        for (d, vt) in payout.iter_mut().zip(validator_trust) {
            *d *= vt;
        }
    }
    input.keep_validators(&mut payout);
    normalized(&payout)
}

/// Per column, what pass 1 of [`epoch`] learns: the stake of the staked peers that weight j,
/// and how many they are.
#[derive(Debug, Clone, Copy, Default)]
struct ColumnTally {
    stake: f64,
    /// Entries from peers with stake: the column's (weight, stake) pairs for the median.
    staked: u32,
}

/// What pass 2 of [`epoch`] computes.
struct Consensus {
    /// `c_j` for every column.
    consensus: Vec<f64>,
    /// `P_j` for the columns that can have consensus (0 elsewhere, where `R_j = 0` and trust
    /// is 0 whatever `P_j` is).
    preranks: Vec<f64>,
    /// `R_j = sum_i min(w_ij, c_j) s_hat_i` (0 outside the columns that can have consensus).
    ranks: Vec<f64>,
    /// Normalised W restricted to the columns that can have consensus, over the rows of the
    /// peers that validate (zero-stake ones too), not yet clipped.
    restricted: SparseMatrix,
}

/// Whether the staked peers' rows fill at least half of the block they span (staked rows x n
/// columns), and that block is small: then [`consensus_by_columns`] transposes the block with
/// a fixed room per column (one slot per staked row) instead of the general path's tally of
/// the columns, filter and bitmap. At n = 256 with 64 validators weighting everyone that
/// saves the column tally and the per-entry lookups (a quarter of the epoch).
fn dense_block(input: &EpochInput<'_>, s: &[f64]) -> bool {
    let w = input.weights;
    let (mut rows, mut entries) = (0usize, 0usize);
    for (i, &si) in s.iter().enumerate() {
        if si > 0.0 {
            rows += 1;
            entries += w.row(i).0.len();
        }
    }
    let cells = rows.saturating_mul(w.n());
    cells <= DENSE_BLOCK_CELLS && 2 * entries >= cells
}

/// The largest block of staked rows x columns [`consensus_by_columns`] takes (4 M cells: 64 MB
/// of pairs, were they gathered at once; they are gathered a band of columns at a time).
const DENSE_BLOCK_CELLS: usize = 1 << 22;

/// [`consensus`] for a dense block of staked rows (see [`dense_block`]): W is normalised row by
/// row into the restricted W (all its columns), then transposed a band of columns at a time
/// into each column's (weight, stake) pairs, in ascending peer order (the same pairs as the
/// general path gathers), and the band's columns select while their pairs are in cache.
/// Columns run on the calling thread: the block is small.
fn consensus_by_columns(input: &EpochInput<'_>, s: &[f64], kappa: f64, scratch: &mut Scratch) -> Consensus {
    consensus_by_bands(input, s, kappa, scratch, GATHER_BAND_PAIRS)
}

/// [`consensus_by_columns`], transposing about `band_pairs` pairs at a time (a parameter so
/// that the tests can cut a small block into several bands).
fn consensus_by_bands(
    input: &EpochInput<'_>,
    s: &[f64],
    kappa: f64,
    scratch: &mut Scratch,
    band_pairs: usize,
) -> Consensus {
    let w = input.weights;
    let n = w.n();
    let validating: usize = (0..n).filter(|&i| input.validates(i)).map(|i| w.row(i).0.len()).sum();
    let mut restricted = RowsBuilder::reusing(n, validating, std::mem::take(&mut scratch.restricted));
    for i in 0..n {
        if input.validates(i) {
            restricted.push_normalized(w, i, None);
        }
        restricted.end_row();
    }
    let restricted = restricted.finish_in_place();

    // Per staked row: where its cursor and its end are in the restricted W, and its stake.
    let mut rows: Vec<(usize, usize, f64)> = (0..n)
        .filter(|&i| s[i] > 0.0)
        .map(|i| (restricted.row_start(i), restricted.row_start(i + 1), s[i]))
        .collect();
    let (cols, vals) = restricted.entries();
    let mut consensus = vec![0.0; n];
    let mut preranks = vec![0.0; n];
    let mut ranks = vec![0.0; n];
    if vals.is_empty() {
        return Consensus { consensus, preranks, ranks, restricted };
    }
    // The block is transposed a band of columns at a time: every staked row, in ascending
    // order, hands its entries in the band to their columns, each of which holds at most one
    // pair per staked row (plus a spare slot, so that the columns' starts do not all fall
    // into the same few cache sets); then the band's columns select while their pairs are in
    // cache. One step per entry, where gathering each column by walking a cursor in every
    // row took one per cell and several more instructions.
    let stride = rows.len() + 1;
    let band = (band_pairs / stride).clamp(1, n);
    if scratch.pairs.len() < band * stride {
        scratch.pairs.resize(band * stride, (0.0, 0.0));
    }
    let pairs = &mut scratch.pairs[..band * stride];
    let mut next = vec![0; band];
    let ws = &mut scratch.quantile;
    for first in (0..n).step_by(band) {
        let end = (first + band).min(n);
        for (q, at) in next.iter_mut().enumerate() {
            *at = q * stride;
        }
        for row in rows.iter_mut() {
            let (start, stop, si) = *row;
            // This row's entries in the band: from its cursor up to the first column past it.
            let split = start + cols[start..stop].partition_point(|&j| (j as usize) < end);
            for (&j, &v) in cols[start..split].iter().zip(&vals[start..split]) {
                let at = &mut next[j as usize - first];
                pairs[*at] = (v, si);
                *at += 1;
            }
            row.0 = split;
        }
        for (q, j) in (first..end).enumerate() {
            let column = &pairs[q * stride..next[q]];
            // No stake filter here (the block is dense: most columns qualify); a column whose
            // weights carry too little stake selects c = 0, which `Selected::confirms`
            // accepts when the stake is short of kappa by more than rounding.
            if !column.is_empty() {
                let c = ColumnConsensus::new(column, ws, kappa);
                (consensus[j], preranks[j], ranks[j]) = (c.consensus, c.prerank, c.rank);
            }
        }
    }
    Consensus { consensus, preranks, ranks, restricted }
}

/// The pairs [`consensus_by_columns`] transposes at a time (512 KB, within L2).
const GATHER_BAND_PAIRS: usize = 1 << 15;

/// The consensus weight of every column (see [`epoch`]), in one more pass over W.
///
/// Only a column whose non-zero entries carry at least kappa of the stake can have `c_j > 0`;
/// since `sum_j stake_j = sum_i s_hat_i k_i <= max_i k_i`, at most `k_max / kappa` columns
/// qualify, whatever n is. Their (weight, stake) pairs are gathered into one buffer (a
/// partial transpose, in ascending row order) while the preranks are summed row by row, then
/// each column selects its quantile, independently and in parallel.
fn consensus(input: &EpochInput<'_>, s: &[f64], kappa: f64, scratch: &mut Scratch) -> Consensus {
    let w = input.weights;
    let n = w.n();
    // Pass 1 over W, reading only its column indices: for each column the stake and number
    // of staked peers weighting it, which decide whether it needs a median and size its
    // buffer. Side by side, so each visit touches one cache line. A stored entry counts even
    // if normalising would underflow it to 0: that only lets a column through the filter
    // that then selects among its true values, so the result is unchanged.
    let mut tally = vec![ColumnTally::default(); n];
    for (i, &si) in s.iter().enumerate() {
        if si > 0.0 {
            for &j in w.row(i).0 {
                let j = j as usize;
                if j != i {
                    let t = &mut tally[j];
                    t.stake += si;
                    t.staked += 1;
                }
            }
        }
    }

    let mut consensus = vec![0.0; n];
    let mut preranks = vec![0.0; n];
    let mut ranks = vec![0.0; n];
    let columns: Vec<usize> = (0..n).filter(|&j| tally[j].staked > 0 && tally[j].stake >= kappa).collect();
    if columns.is_empty() {
        return Consensus {
            consensus,
            ranks: preranks.clone(),
            preranks,
            restricted: SparseMatrix::zeros(n),
        };
    }

    // A bitmap of the qualifying columns (8 KB at n = 65,536: it stays in L1, where a lookup
    // table of n entries would miss cache on most of the 75-100% of entries that are not
    // qualifying); start[q] is where the pairs of column `columns[q]` begin, next[j] where
    // column j's next pair goes.
    let mut qualifies = vec![0u64; n.div_ceil(64)];
    let mut start = Vec::with_capacity(columns.len() + 1);
    let mut next = vec![0; n];
    let mut total = 0;
    for &j in &columns {
        qualifies[j / 64] |= 1 << (j % 64);
        start.push(total);
        next[j] = total;
        // One spare pair per column: with every column 2^k pairs long, the columns' write
        // positions in the gather below would fall into the same few cache sets.
        total += tally[j].staked as usize + 1;
    }
    start.push(total);
    // The restricted W holds the pairs' entries plus those of validating rows without stake
    // (bounded by their lengths).
    let unstaked: usize =
        (0..n).filter(|&i| s[i] == 0.0 && input.validates(i)).map(|i| w.row(i).0.len()).sum();
    // Every pair a column reads is written first, so kept scratch needs no clearing.
    if scratch.pairs.len() < total {
        scratch.pairs.resize(total, (0.0, 0.0));
    }
    let pairs = &mut scratch.pairs[..total];
    let mut restricted = RowsBuilder::reusing(n, total + unstaked, std::mem::take(&mut scratch.restricted));
    // Positions of a row's entries in qualifying columns. Collected without branching (write
    // every position, advance only on a hit): a hit is a coin flip the branch predictor
    // cannot learn, and most entries are misses that need nothing else. When every column
    // qualifies (small networks where validators weight everyone) every entry is a hit.
    let every_column = columns.len() == n;
    let mut hits = Vec::new();
    for (i, &si) in s.iter().enumerate() {
        if !input.validates(i) {
            restricted.end_row();
            continue;
        }
        let keep = if every_column {
            None
        } else {
            let cols = w.row(i).0;
            hits.resize(cols.len() + 1, 0u32);
            let mut found = 0;
            for (k, &j) in cols.iter().enumerate() {
                hits[found] = k as u32;
                found += (qualifies[j as usize / 64] >> (j % 64) & 1) as usize;
            }
            Some(&hits[..found])
        };
        let first = restricted.push_normalized(w, i, keep);
        if si > 0.0 {
            let (cols, vals) = restricted.since(first);
            for (&j, &wij) in cols.iter().zip(vals) {
                let next = &mut next[j as usize];
                pairs[*next] = (wij, si);
                *next += 1;
            }
        }
        restricted.end_row();
    }

    // Each column's pairs, in ascending peer order (entries whose normalised value
    // underflowed were counted but not gathered). The columns select in parallel, each by
    // the same sequential code.
    let column = |q: usize| &pairs[start[q]..next[columns[q]]];
    let one = |ws: &mut Workspace, q: usize| ColumnConsensus::new(column(q), ws, kappa);
    let per_column: Vec<ColumnConsensus> = if total < PARALLEL_PAIRS {
        let ws = &mut scratch.quantile;
        (0..columns.len()).map(|q| one(ws, q)).collect()
    } else {
        (0..columns.len()).into_par_iter().with_min_len(64).map_init(Workspace::default, one).collect()
    };
    for (&j, c) in columns.iter().zip(per_column) {
        (consensus[j], preranks[j], ranks[j]) = (c.consensus, c.prerank, c.rank);
    }
    Consensus { consensus, preranks, ranks, restricted: restricted.finish_in_place() }
}

/// Below this many (weight, stake) pairs the columns select on the calling thread: handing
/// them to rayon's pool and waiting for it costs tens of microseconds (two thread switches),
/// as much as selecting ~10,000 pairs.
const PARALLEL_PAIRS: usize = 1 << 16;

/// One column's share of the epoch, from its (weight, stake) pairs in ascending peer order.
struct ColumnConsensus {
    consensus: f64,
    /// `P_j = sum_i w_ij s_hat_i` and `R_j = sum_i min(w_ij, c_j) s_hat_i`, in [`Lanes`] over
    /// the column's pairs in ascending peer order (peers without stake would add zeros).
    prerank: f64,
    rank: f64,
}

impl ColumnConsensus {
    fn new(column: &[(f64, f64)], ws: &mut Workspace, kappa: f64) -> ColumnConsensus {
        let selected = weighted_quantile(column, ws, kappa);
        let c = if selected.confirms(kappa, column.len()) {
            selected.value
        } else {
            // A near-tie (see `Selected::confirms`): rare, settled by the definition.
            quantile_by_definition(column, kappa)
        };
        let (prerank, rank) = Lanes::sum2_over(column, |_, (w, s)| (w * s, clip(w, c) * s));
        ColumnConsensus { consensus: c, prerank, rank }
    }
}

/// `min(w, c)` for the clipped weights, where neither is NaN: one comparison and a select,
/// where `f64::min`'s handling of NaN costs a few more instructions on every weight of the
/// epoch's hot loops. The same value as `w.min(c)` for every non-NaN pair.
#[inline]
fn clip(w: f64, c: f64) -> f64 {
    if w < c {
        w
    } else {
        c
    }
}

/// A steady-state bond entry: the weight `w` clipped to the column's consensus `c`, and the
/// new bond `wc s_hat_i fresh_j + b_prev kept_j` (the moving average, normalised per column).
/// Both ways of walking a row compute it here, so they give the same bits.
#[inline(always)]
fn bond_entry(w: f64, c: f64, si: f64, fresh: f64, previous: f64, kept: f64) -> (f64, f64) {
    let wc = clip(w, c);
    (wc, wc * si * fresh + previous * kept)
}

/// Per column, what the bonds pass reads for each entry: side by side, so an entry costs one
/// bounds check and one cache line instead of four.
#[derive(Clone, Copy, Default)]
struct BondColumn {
    /// c_j.
    consensus: f64,
    /// What multiplies `wc_ij s_hat_i`: `((1 - m) / R_j) / tau_j`.
    fresh: f64,
    /// What multiplies `b_prev_ij`: `(m / sigma_j) / tau_j`.
    kept: f64,
    /// I_j.
    incentive: f64,
}

/// What [`bonds`] computes.
struct Bonds {
    /// B, column-normalised.
    bonds: SparseMatrix,
    /// `(B I)_i`, in [`Lanes`] along row i.
    payout: Vec<f64>,
    /// `VT_i = sum_j min(w_ij, c_j)`, in [`Lanes`] along row i.
    validator_trust: Vec<f64>,
}

/// The new bonds, the bond payouts `B I` and validator trust, in one pass over the clipped W
/// and the previous bonds, row by row.
///
/// `dB_ij = wc_ij s_hat_i` and the column sums of dB are exactly R (the same products summed
/// over i ascending), so `dB_ij / R_j` is dB column-normalised; the previous bonds are
/// column-normalised by their column sums `sigma_j`, from a pass over them first. Both
/// normalised columns sum to 1 where they are not empty, so the column sums of
/// `(1 - m) dB + m B_prev` are `tau_j = (1 - m) [R_j > 0] + m [sigma_j > 0]` and the final
/// normalisation divides by tau_j as each entry is written: no pass to sum the new columns,
/// none to divide them. (Dividing by the computed sums instead would move entries by a few
/// ulps; the stored columns sum to 1 within rounding either way.) The payout `(B I)_i` and
/// `VT_i` are summed while the row is in cache. `BY_RUNS` (always on outside the tests) takes
/// rows of long column runs (see [`ColumnRuns`]) by slices: the same bits either way.
fn bonds<const BY_RUNS: bool>(
    m: f64,
    previous: &SparseMatrix,
    restricted: &SparseMatrix,
    s: &[f64],
    consensus: &[f64],
    ranks: &[f64],
    incentive: &[f64],
) -> Bonds {
    let n = restricted.n();
    let prev_sums = previous.col_sums();
    // Per column, what multiplies `wc_ij s_hat_i` and `b_prev_ij`: ((1 - m) / R_j) / tau_j and
    // (m / sigma_j) / tau_j.
    let (mut fresh, mut kept) = (vec![0.0; n], vec![0.0; n]);
    for j in 0..n {
        let (has_fresh, has_kept) = (ranks[j] > 0.0, prev_sums[j] > 0.0);
        let tau = if has_fresh { 1.0 - m } else { 0.0 } + if has_kept { m } else { 0.0 };
        if has_fresh {
            fresh[j] = (1.0 - m) / ranks[j] / tau;
        }
        if has_kept {
            kept[j] = m / prev_sums[j] / tau;
        }
    }
    let columns: Vec<BondColumn> = (0..n)
        .map(|j| BondColumn {
            consensus: consensus[j],
            fresh: fresh[j],
            kept: kept[j],
            incentive: incentive[j],
        })
        .collect();

    let mut payout = vec![0.0; n];
    let mut validator_trust = vec![0.0; n];
    // Per entry of a row taken by runs: its clipped weight and its term of the payout.
    let longest = (0..n).map(|i| restricted.row(i).0.len()).max().unwrap_or(0);
    let mut row_terms = (vec![0.0; longest], vec![0.0; longest]);
    // Room for the larger of the two: exact in the steady state (bonds where the weights
    // are), and the vectors grow if the union is larger. Reserving for the sum instead and
    // shrinking at the end had the allocator map, remap and unmap fresh pages every epoch (a
    // page fault per 4 KB touched).
    let mut bonds = RowsBuilder::with_capacity(n, previous.nnz().max(restricted.nnz()));
    for (i, &si) in s.iter().enumerate() {
        let (pc, pv) = previous.row(i);
        let (rc, rv) = restricted.row(i);
        let first = bonds.len();
        let row_payout = |bonds: &RowsBuilder| {
            let (cols, vals) = bonds.since(first);
            Lanes::sum_by(cols.len(), |k| vals[k] * incentive[cols[k] as usize])
        };
        if pc == rc {
            // The steady state: a validator holds bonds exactly where it weights. No merge, and
            // VT and the payout summed in the same loop.
            let out = bonds.append_columns(rc);
            let len = rc.len();
            let (rv, pv, out) = (&rv[..len], &pv[..len], &mut out[..len]);
            (validator_trust[i], payout[i]) = match ColumnRuns::long(rc).filter(|_| BY_RUNS) {
                // A row over (nearly) every column: per run, the columns' vectors are read as
                // slices and the entries computed in a loop the compiler vectorises, the terms
                // of VT and the payout kept; then summed in the same lanes as below.
                Some(runs) => {
                    let (clipped, paid) = (&mut row_terms.0[..len], &mut row_terms.1[..len]);
                    for run in runs {
                        let (k, j) = (run.entries(), run.columns());
                        let (rv, pv, out) = (&rv[k.clone()], &pv[k.clone()], &mut out[k.clone()]);
                        let (clipped, paid) = (&mut clipped[k.clone()], &mut paid[k]);
                        let (c, f, kp, inc) =
                            (&consensus[j.clone()], &fresh[j.clone()], &kept[j.clone()], &incentive[j]);
                        for t in 0..run.len {
                            (clipped[t], out[t]) = bond_entry(rv[t], c[t], si, f[t], pv[t], kp[t]);
                            paid[t] = out[t] * inc[t];
                        }
                    }
                    Lanes::sum2_by(len, |k| (clipped[k], paid[k]))
                }
                None => Lanes::sum2_by(len, |k| {
                    let col = &columns[rc[k] as usize];
                    let (wc, b) = bond_entry(rv[k], col.consensus, si, col.fresh, pv[k], col.kept);
                    out[k] = b;
                    (wc, b * col.incentive)
                }),
            };
            if bonds.drop_zeros_since(first) {
                // Entries that underflowed (rare) shift the lanes of the rest.
                payout[i] = row_payout(&bonds);
            }
        } else {
            let (mut p, mut r) = (0, 0);
            // Two sorted rows merged; an entry present in one only reads the other as 0.
            while p < pc.len() || r < rc.len() {
                let jp = pc.get(p).map_or(usize::MAX, |&j| j as usize);
                let jr = rc.get(r).map_or(usize::MAX, |&j| j as usize);
                let j = jp.min(jr);
                let mut b = 0.0;
                if jr == j {
                    // 0 where c_j = 0 clips the weight away.
                    b = clip(rv[r], consensus[j]) * si * fresh[j];
                    r += 1;
                }
                if jp == j {
                    b += pv[p] * kept[j];
                    p += 1;
                }
                if b > 0.0 {
                    bonds.push(j, b);
                }
            }
            validator_trust[i] = Lanes::sum_by(rc.len(), |k| clip(rv[k], consensus[rc[k] as usize]));
            payout[i] = row_payout(&bonds);
        }
        bonds.end_row();
    }
    Bonds { bonds: bonds.finish(), payout, validator_trust }
}

/// Dense reference of [`epoch`]: the same equations as textbook loops over n x n matrices,
/// written apart from the sparse code so the tests can compare the two. The consensus of a
/// column bisects its distinct weights, summing the stake at or above each over all peers.
/// O(n^2 log n) time, O(n^2) memory; for tests and benchmarks.
pub fn epoch_dense(p: &YumaParams, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    // Callable directly, not only through `Mechanism::epoch`: check the shared input too.
    input.validate()?;
    p.validate()?;
    let masked = input.masked();
    let input = &masked.apply(input);
    let n = input.n();
    let s = normalized(input.stake);
    // Self-weights masked as in the sparse path (subtensor's mask_diag).
    let w = crate::dense_rows_normalized(input.weights, true);

    let mut preranks = vec![0.0; n];
    for j in 0..n {
        for i in 0..n {
            preranks[j] += w[i][j] * s[i];
        }
    }

    // c_j: the largest x among the weights staked peers give j with
    // sum_i s_i [w_ij >= x] >= kappa (i ascending). That stake grows as x falls, so bisect
    // the distinct weights sorted from the top.
    let mut consensus = vec![0.0; n];
    for j in 0..n {
        let mut candidates: Vec<f64> =
            (0..n).filter(|&i| s[i] > 0.0 && w[i][j] > 0.0).map(|i| w[i][j]).collect();
        candidates.sort_by(|a, b| b.total_cmp(a));
        candidates.dedup();
        let stake_at = |x: f64| {
            let mut stake = 0.0;
            for i in 0..n {
                if s[i] > 0.0 && w[i][j] >= x {
                    stake += s[i];
                }
            }
            stake
        };
        let (mut lo, mut hi) = (0, candidates.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if stake_at(candidates[mid]) >= p.kappa {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if lo < candidates.len() {
            consensus[j] = candidates[lo];
        }
    }

    let mut clipped = w.clone();
    for row in &mut clipped {
        for (j, v) in row.iter_mut().enumerate() {
            *v = v.min(consensus[j]);
        }
    }
    let validator_trust: Vec<f64> = clipped.iter().map(|row| row.iter().sum()).collect();
    let mut ranks = vec![0.0; n];
    for j in 0..n {
        for i in 0..n {
            ranks[j] += clipped[i][j] * s[i];
        }
    }
    let trust: Vec<f64> =
        (0..n).map(|j| if preranks[j] > 0.0 { ranks[j] / preranks[j] } else { 0.0 }).collect();
    let rank_total: f64 = ranks.iter().sum();
    let incentive: Vec<f64> =
        ranks.iter().map(|&r| if rank_total > 0.0 { r / rank_total } else { 0.0 }).collect();

    let column_normalise = |m: &mut Vec<Vec<f64>>| {
        for j in 0..n {
            let mut sum = 0.0;
            for row in m.iter() {
                sum += row[j];
            }
            if sum > 0.0 {
                for row in m.iter_mut() {
                    row[j] /= sum;
                }
            }
        }
    };
    let mut delta = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..n {
            delta[i][j] = clipped[i][j] * s[i];
        }
    }
    column_normalise(&mut delta);
    // The previous bonds column-normalised first, as subtensor does: a ledger may have cleared
    // some of their rows.
    let mut prev = input.state.bonds.to_dense();
    column_normalise(&mut prev);
    let m = p.bonds_moving_average;
    let mut bonds = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..n {
            bonds[i][j] = (1.0 - m) * delta[i][j] + m * prev[i][j];
        }
    }
    column_normalise(&mut bonds);

    let mut dividends = vec![0.0; n];
    for i in 0..n {
        if !input.validates(i) {
            continue;
        }
        for j in 0..n {
            dividends[i] += bonds[i][j] * incentive[j];
        }
        if p.dividend_rule == DividendRule::ValidatorTrust {
            dividends[i] *= validator_trust[i];
        }
    }
    let total: f64 = dividends.iter().sum();
    for d in &mut dividends {
        *d = if total > 0.0 { *d / total } else { 0.0 };
    }

    let emission = split_emission(input.emission, &incentive, &dividends, p.server_share);
    Ok(EpochOutput {
        ranks,
        trust,
        consensus,
        incentive,
        dividends,
        validator_trust,
        emission,
        state: MechanismState { bonds: SparseMatrix::from_dense(&bonds)?, stake_scaling: Vec::new() },
        extras: Extras::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{arb_input, assert_close, assert_outputs_close, bits, random_input};
    use crate::Mechanism;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn run(
        p: &YumaParams,
        w: &SparseMatrix,
        stake: &[f64],
        emission: f64,
        state: &MechanismState,
    ) -> EpochOutput {
        let input = EpochInput::new(w, stake, emission, state);
        let out = Mechanism::Yuma(p.clone()).epoch(&input).unwrap();
        let dense = Mechanism::Yuma(p.clone()).epoch_dense(&input).unwrap();
        assert_outputs_close(&out, &dense, 1e-12);
        out
    }

    fn validator_trust(out: &EpochOutput) -> &[f64] {
        &out.validator_trust
    }

    /// Four peers, S = [4, 3, 2, 1]. Raw rows (peer 0 also weights itself, which is masked):
    ///   peer 0: {0: 2, 2: 1, 3: 1} -> {2: 0.5, 3: 0.5}
    ///   peer 1: {2: 0.75, 3: 0.25}
    ///   peer 2: {1: 0.25, 3: 0.75}
    ///   peer 3: {0: 1}
    fn four_peers() -> (SparseMatrix, [f64; 4]) {
        let w = SparseMatrix::from_rows(
            4,
            [
                vec![(0, 2.0), (2, 1.0), (3, 1.0)],
                vec![(2, 0.75), (3, 0.25)],
                vec![(1, 0.25), (3, 0.75)],
                vec![(0, 1.0)],
            ],
        )
        .unwrap();
        (w, [4.0, 3.0, 2.0, 1.0])
    }

    #[test]
    fn four_peers_by_hand() {
        // s_hat = [0.4, 0.3, 0.2, 0.1]
        // P = W^T s_hat: P_0 = 0.1*1 = 0.1; P_1 = 0.2*0.25 = 0.05;
        //   P_2 = 0.4*0.5 + 0.3*0.75 = 0.425; P_3 = 0.4*0.5 + 0.3*0.25 + 0.2*0.75 = 0.425
        // consensus, kappa = 0.5:
        //   col 0: stake on non-zero weights 0.1 < 0.5 -> 0; col 1: 0.2 < 0.5 -> 0
        //   col 2: 0.75 (0.3) -> 0.3; then 0.5 (0.4) -> 0.7 >= 0.5 -> c_2 = 0.5
        //   col 3: 0.75 (0.2) -> 0.2; then 0.5 (0.4) -> 0.6 >= 0.5 -> c_3 = 0.5
        // Wc: peer 0 {2: 0.5, 3: 0.5}; peer 1 {2: 0.5, 3: 0.25}; peer 2 {3: 0.5}; peer 3 {}
        //   validator trust = [1, 0.75, 0.5, 0]
        // R = Wc^T s_hat: R_2 = 0.2 + 0.15 = 0.35; R_3 = 0.2 + 0.075 + 0.1 = 0.375
        // T = R / P = [0, 0, 0.35/0.425 = 14/17, 0.375/0.425 = 15/17]
        // I = R / 0.725 = [0, 0, 14/29, 15/29]
        // dB: peer 0 {2: 0.2, 3: 0.2}, peer 1 {2: 0.15, 3: 0.075}, peer 2 {3: 0.1}
        //   column-normalised: col 2 -> [4/7, 3/7, 0], col 3 -> [8/15, 3/15, 4/15]
        // B = 0.1 dB + 0.9 * 0, column-normalised -> the same as dB
        // D = B I: D_0 = 4/7*14/29 + 8/15*15/29 = 16/29; D_1 = 6/29 + 3/29 = 9/29; D_2 = 4/29
        // E (emission 58, half each) = 29 (I + D) = [16, 9, 14 + 4, 15] = [16, 9, 18, 15]
        let (w, stake) = four_peers();
        let out = run(&YumaParams::default(), &w, &stake, 58.0, &MechanismState::genesis(4));
        let t = 1e-12;
        assert_close(&out.consensus, &[0.0, 0.0, 0.5, 0.5], t);
        assert_close(validator_trust(&out), &[1.0, 0.75, 0.5, 0.0], t);
        assert_close(&out.ranks, &[0.0, 0.0, 0.35, 0.375], t);
        assert_close(&out.trust, &[0.0, 0.0, 14.0 / 17.0, 15.0 / 17.0], t);
        assert_close(&out.incentive, &[0.0, 0.0, 14.0 / 29.0, 15.0 / 29.0], t);
        assert_close(&out.dividends, &[16.0 / 29.0, 9.0 / 29.0, 4.0 / 29.0, 0.0], t);
        assert_close(&out.emission, &[16.0, 9.0, 18.0, 15.0], t);
        let b = out.state.bonds.to_dense();
        assert_close(
            &[b[0][2], b[1][2], b[0][3], b[1][3], b[2][3]],
            &[4.0 / 7.0, 3.0 / 7.0, 8.0 / 15.0, 3.0 / 15.0, 4.0 / 15.0],
            t,
        );
        assert_eq!(out.state.bonds.nnz(), 5);
    }

    #[test]
    fn cleared_bond_rows_do_not_inflate_this_epochs_bonds() {
        // four_peers, after a ledger cleared bond entries of replaced neurons: peer 2's bond in
        // column 2 and peer 3's in column 3 (0.25 each) are gone, so both columns of B_prev
        // sum to 0.75: B_prev = {0: {2: 0.5, 3: 0.25}, 1: {2: 0.25, 3: 0.25}, 2: {3: 0.25}}.
        // Normalised first (subtensor's inplace_col_normalize_sparse), B_prev's column 2 is
        // [2/3, 1/3, 0], column 3 [1/3, 1/3, 1/3]; dB (four_peers_by_hand) is [4/7, 3/7, 0] and
        // [8/15, 3/15, 4/15].
        // col 2: B = 0.1 dB + 0.9 B_prev = [4/70 + 42/70, 3/70 + 21/70, 0] = [23/35, 12/35, 0]
        // col 3: [8/150 + 45/150, 3/150 + 45/150, 4/150 + 45/150] = [53/150, 48/150, 49/150]
        // Both already sum to 1. With I = [0, 0, 14/29, 15/29]:
        // D_0 = 23/35 14/29 + 53/150 15/29 = (9.2 + 5.3) / 29 = 14.5 / 29
        // D_1 = 12/35 14/29 + 48/150 15/29 = (4.8 + 4.8) / 29 = 9.6 / 29
        // D_2 = 49/150 15/29 = 4.9 / 29
        // Mixed in unnormalised, each column would weigh dB by 0.1 / (0.1 + 0.9 * 0.75) = 0.129
        // instead of 0.1, and D_0 would come out as 14.548 / 29.
        let (w, stake) = four_peers();
        let prev = MechanismState {
            bonds: SparseMatrix::from_rows(
                4,
                [vec![(2, 0.5), (3, 0.25)], vec![(2, 0.25), (3, 0.25)], vec![(3, 0.25)], vec![]],
            )
            .unwrap(),
            stake_scaling: Vec::new(),
        };
        let out = run(&YumaParams::default(), &w, &stake, 1.0, &prev);
        let t = 1e-12;
        assert_close(&out.dividends, &[14.5 / 29.0, 9.6 / 29.0, 4.9 / 29.0, 0.0], t);
        let b = out.state.bonds.to_dense();
        assert_close(
            &[b[0][2], b[1][2], b[0][3], b[1][3], b[2][3]],
            &[23.0 / 35.0, 12.0 / 35.0, 53.0 / 150.0, 48.0 / 150.0, 49.0 / 150.0],
            t,
        );
        // Only the proportions within B_prev's columns matter, not what they sum to.
        let tripled: Vec<Vec<(usize, f64)>> = (0..4)
            .map(|i| {
                prev.bonds
                    .row(i)
                    .0
                    .iter()
                    .map(|&j| (j as usize, 3.0 * prev.bonds.get(i, j as usize)))
                    .collect()
            })
            .collect();
        let tripled = MechanismState { bonds: SparseMatrix::from_rows(4, tripled).unwrap(), ..prev.clone() };
        assert_close(&run(&YumaParams::default(), &w, &stake, 1.0, &tripled).dividends, &out.dividends, t);
    }

    #[test]
    fn bonds_move_by_the_moving_average() {
        // As above, but peer 2 held all of peer 2's bonds before: B_prev = {peer 2: {2: 1}}.
        // col 2: B = 0.1 [4/7, 3/7, 0] + 0.9 [0, 0, 1] = [0.4/7, 0.3/7, 0.9], already summing to 1
        // col 3: B = 0.1 dB, normalised -> [8/15, 3/15, 4/15]
        // D (in 1/29): col 2 pays 14 * B_i2 = [0.8, 0.6, 12.6]; col 3 pays 15 * B_i3 = [8, 3, 4]
        //   -> D = [8.8, 3.6, 16.6, 0] / 29
        let (w, stake) = four_peers();
        let prev = MechanismState {
            bonds: SparseMatrix::from_rows(4, [vec![], vec![], vec![(2, 1.0)], vec![]]).unwrap(),
            stake_scaling: Vec::new(),
        };
        let out = run(&YumaParams::default(), &w, &stake, 1.0, &prev);
        assert_close(&out.dividends, &[8.8 / 29.0, 3.6 / 29.0, 16.6 / 29.0, 0.0], 1e-12);
        assert_close(&out.state.bonds.to_dense()[2], &[0.0, 0.0, 0.9, 4.0 / 15.0], 1e-12);
    }

    #[test]
    fn a_column_without_consensus_keeps_its_bond_proportions() {
        // Only peer 0 (stake 1 of 4) weights peer 3 now: c_3 = 0, so dB has nothing in column 3
        // and B_3 = 0.9 B_prev_3 renormalises to B_prev_3's proportions [0.25, 0.75].
        let w = SparseMatrix::from_rows(4, [vec![(3, 1.0)], vec![(0, 1.0)], vec![(0, 1.0)], vec![(0, 1.0)]])
            .unwrap();
        let prev = MechanismState {
            bonds: SparseMatrix::from_rows(4, [vec![(3, 0.5)], vec![(3, 1.5)], vec![], vec![]]).unwrap(),
            stake_scaling: Vec::new(),
        };
        let out = run(&YumaParams::default(), &w, &[1.0; 4], 1.0, &prev);
        assert_eq!(out.consensus[3], 0.0);
        assert_close(&[out.state.bonds.get(0, 3), out.state.bonds.get(1, 3)], &[0.25, 0.75], 1e-15);
        // Column 0 has consensus 1 (stake 3/4 gives it 1): I = [1, 0, 0, 0]. Its bonds are this
        // epoch's dB only, so D = [0, 1/3, 1/3, 1/3] and I and D each take half.
        assert_close(&out.incentive, &[1.0, 0.0, 0.0, 0.0], 1e-15);
        assert_close(&out.dividends, &[0.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0], 1e-15);
    }

    #[test]
    fn consensus_ties_are_settled_by_ascending_sums() {
        // s_hat = [0.1, 0.2, 0.3, 0.4]; column 3 gets 0.2 from peer 0, 0.5 from peer 1 and 1.0
        // from peer 2. Summed in peer order, 0.1 + 0.2 + 0.3 = 0.6000000000000001; summed from
        // the largest weight down (as the selection does), 0.3 + 0.2 + 0.1 = 0.6. With kappa
        // set to the former, the definition takes all three peers: c_3 = 0.2 (the selection
        // alone would have found no weight with enough stake).
        let kappa = 0.1 + 0.2 + 0.3;
        assert!(0.3 + 0.2 + 0.1 < kappa);
        let w = SparseMatrix::from_rows(
            4,
            [vec![(1, 0.8), (3, 0.2)], vec![(0, 0.5), (3, 0.5)], vec![(3, 1.0)], vec![(0, 1.0)]],
        )
        .unwrap();
        let p = YumaParams { kappa, ..Default::default() };
        let out = run(&p, &w, &[1.0, 2.0, 3.0, 4.0], 1.0, &MechanismState::genesis(4));
        assert_eq!(out.consensus[3], 0.2);
        assert_eq!(quantile_by_definition(&[(0.2, 0.1), (0.5, 0.2), (1.0, 0.3)], kappa), 0.2);
        assert_eq!(
            weighted_quantile(&[(0.2, 0.1), (0.5, 0.2), (1.0, 0.3)], &mut Workspace::default(), kappa).value,
            0.0
        );
    }

    #[test]
    fn one_peer_cannot_weight_itself() {
        // The only weight is a self-weight, which is masked: nothing to pay.
        let w = SparseMatrix::from_rows(1, [vec![(0, 1.0)]]).unwrap();
        let out = run(&YumaParams::default(), &w, &[5.0], 3.0, &MechanismState::genesis(1));
        assert_eq!((out.incentive, out.emission), (vec![0.0], vec![0.0]));
    }

    #[test]
    fn nobody_weights_or_nobody_has_stake_pays_nothing() {
        let prev = MechanismState {
            bonds: SparseMatrix::from_rows(3, [vec![(1, 2.0)], vec![], vec![(1, 2.0)]]).unwrap(),
            stake_scaling: Vec::new(),
        };
        for (w, stake) in [
            (SparseMatrix::zeros(3), [1.0, 2.0, 3.0]),
            (SparseMatrix::from_rows(3, [vec![(1, 1.0)], vec![(0, 1.0)], vec![(1, 1.0)]]).unwrap(), [0.0; 3]),
        ] {
            let out = run(&YumaParams::default(), &w, &stake, 7.0, &prev);
            assert_eq!(out.incentive, vec![0.0; 3]);
            assert_eq!(out.dividends, vec![0.0; 3]);
            assert_eq!(out.emission, vec![0.0; 3]);
            // No new bonds: the old ones decay by m and are renormalised back to [1/2, 1/2].
            assert_eq!(out.state.bonds.to_dense()[0], vec![0.0, 0.5, 0.0]);
        }
    }

    #[test]
    fn no_consensus_mints_nothing_so_withholding_agreement_does_not_pay() {
        // Validators 0, 1 and 2 (stake 1 each) and servers 3, 4, 5. Agreeing, each validator
        // weights all three servers alike: every column reaches consensus, servers take half the
        // emission by incentive and the validators the other half by dividends.
        let agree = SparseMatrix::from_rows(
            6,
            (0..6).map(|i| if i < 3 { vec![(3, 1.0), (4, 1.0), (5, 1.0)] } else { vec![] }),
        )
        .unwrap();
        // Withholding agreement, each backs a different server: no column carries kappa = 1/2
        // of the stake, so no column has consensus.
        let withhold =
            SparseMatrix::from_rows(6, (0..6).map(|i| if i < 3 { vec![(i + 3, 1.0)] } else { vec![] }))
                .unwrap();
        let stake = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        let genesis = MechanismState::genesis(6);
        let validators_share = |out: &EpochOutput| out.emission[..3].iter().sum::<f64>();

        let agreed = run(&YumaParams::default(), &agree, &stake, 30.0, &genesis);
        assert_close(&agreed.emission, &[5.0, 5.0, 5.0, 5.0, 5.0, 5.0], 1e-12);
        assert!((validators_share(&agreed) - 15.0).abs() < 1e-12);

        // The epoch without consensus pays nobody: no incentive, no dividends, no emission
        // (subtensor would pay all 30 to the validators by stake, twice what agreeing earns).
        let withheld = run(&YumaParams::default(), &withhold, &stake, 30.0, &genesis);
        assert_eq!(withheld.consensus, vec![0.0; 6]);
        assert_eq!((withheld.incentive.clone(), withheld.dividends.clone()), (vec![0.0; 6], vec![0.0; 6]));
        assert_eq!(withheld.emission, vec![0.0; 6]);
        assert_eq!(validators_share(&withheld), 0.0);
        // Nothing is clipped to a consensus of 0 that was not chosen: the validators' rows
        // simply find no majority, so their validator trust is 0 too.
        assert_eq!(withheld.validator_trust, vec![0.0; 6]);
        // Through `Mechanism::epoch` too, which a ledger calls.
        let input = EpochInput::new(&withhold, &stake, 30.0, &genesis);
        assert_eq!(Mechanism::from_name("yuma").unwrap().epoch(&input).unwrap().emission, vec![0.0; 6]);
    }

    /// Validators 0, 1 and 2 with one unit of stake each; servers 3, 4 and 5 without. Validators
    /// 0 and 1 split their rows between servers 3 and 4; validator 2 gives 1/4 to server 3 and
    /// 3/4 to server 5, which nobody else rates.
    fn one_validator_mostly_clipped() -> (SparseMatrix, [f64; 6]) {
        let w = SparseMatrix::from_rows(
            6,
            [
                vec![(3, 0.5), (4, 0.5)],
                vec![(3, 0.5), (4, 0.5)],
                vec![(3, 0.25), (5, 0.75)],
                vec![],
                vec![],
                vec![],
            ],
        )
        .unwrap();
        (w, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    }

    #[test]
    fn dividend_rules_by_hand() {
        // s_hat = [1/3, 1/3, 1/3, 0, 0, 0]
        // consensus (kappa 1/2): col 3 gets 0.5, 0.5, 0.25: 2/3 of the stake at >= 0.5 -> c_3 = 0.5
        //   col 4 gets 0.5, 0.5 -> c_4 = 0.5; col 5 only 0.75 from 1/3 of the stake -> c_5 = 0
        // Wc: peers 0 and 1 {3: 0.5, 4: 0.5}, peer 2 {3: 0.25}: VT = [1, 1, 1/4, 0, 0, 0]
        // R_3 = (0.5 + 0.5 + 0.25) / 3 = 5/12, R_4 = 1/3: I = [0, 0, 0, 5/9, 4/9, 0]
        // B = dB column-normalised: col 3 -> [2/5, 2/5, 1/5], col 4 -> [1/2, 1/2, 0]
        // B I = [2/5 5/9 + 1/2 4/9, the same, 1/5 5/9] = [4/9, 4/9, 1/9]
        // bonds:           D = [4/9, 4/9, 1/9]  (= S o VT normalised: [1, 1, 1/4] / 9/4)
        // validator_trust: D ∝ [4/9, 4/9, 1/36] = [16, 16, 1] / 36 -> D = [16/33, 16/33, 1/33]
        // E (emission 18, half each) = 9 (I + D)
        let (w, stake) = one_validator_mostly_clipped();
        let genesis = MechanismState::genesis(6);
        let bonds = run(&YumaParams::default(), &w, &stake, 18.0, &genesis);
        let p = YumaParams { dividend_rule: DividendRule::ValidatorTrust, ..Default::default() };
        let by_trust = run(&p, &w, &stake, 18.0, &genesis);
        let t = 1e-12;
        for out in [&bonds, &by_trust] {
            assert_close(&out.consensus, &[0.0, 0.0, 0.0, 0.5, 0.5, 0.0], t);
            assert_close(&out.validator_trust, &[1.0, 1.0, 0.25, 0.0, 0.0, 0.0], t);
            assert_close(&out.incentive, &[0.0, 0.0, 0.0, 5.0 / 9.0, 4.0 / 9.0, 0.0], t);
        }
        // The rule changes D only: same bonds.
        assert_eq!(bonds.state.bonds, by_trust.state.bonds);
        assert_close(&bonds.dividends, &[4.0 / 9.0, 4.0 / 9.0, 1.0 / 9.0, 0.0, 0.0, 0.0], t);
        assert_close(&by_trust.dividends, &[16.0 / 33.0, 16.0 / 33.0, 1.0 / 33.0, 0.0, 0.0, 0.0], t);
        assert_close(&bonds.emission, &[4.0, 4.0, 1.0, 5.0, 4.0, 0.0], t);
        assert_close(&by_trust.emission, &[48.0 / 11.0, 48.0 / 11.0, 3.0 / 11.0, 5.0, 4.0, 0.0], t);
        // The validator whose weights were mostly clipped earns less than one with equal stake
        // whose weights survived: a quarter under `bonds`, a sixteenth under `validator_trust`.
        let ratio = |out: &EpochOutput| out.dividends[2] / out.dividends[0];
        assert!((ratio(&bonds) - 0.25).abs() < t && (ratio(&by_trust) - 1.0 / 16.0).abs() < t);
        // Named in a genesis file as a string; a file without it gets the production rule.
        let json = r#"{"kappa": 0.5, "dividend_rule": "validator_trust"}"#;
        assert_eq!(
            serde_json::from_str::<YumaParams>(json).unwrap().dividend_rule,
            DividendRule::ValidatorTrust
        );
        assert_eq!(serde_json::from_str::<YumaParams>("{}").unwrap(), YumaParams::default());
        assert!(serde_json::from_str::<YumaParams>(r#"{"dividend_rule": "stake"}"#).is_err());
    }

    #[test]
    fn an_absent_whale_neither_blocks_nor_dilutes_consensus() {
        // Peer 0 holds 60% of the stake; its stale row gives everything to peer 4. Peers 1 and 2
        // (20% each) give everything to peer 3. Counted, the whale's stale weight alone reaches
        // kappa: I = [0, 0, 0, 0, 1], and the 40% behind peer 3 is not enough for it.
        let w = SparseMatrix::from_rows(5, [vec![(4, 1.0)], vec![(3, 1.0)], vec![(3, 1.0)], vec![], vec![]])
            .unwrap();
        let stake = [6.0, 2.0, 2.0, 0.0, 0.0];
        let genesis = MechanismState::genesis(5);
        let counted = run(&YumaParams::default(), &w, &stake, 1.0, &genesis);
        assert_close(&counted.incentive, &[0.0, 0.0, 0.0, 0.0, 1.0], 1e-15);
        // Not validating, its row is ignored and its stake leaves the shares: peers 1 and 2
        // hold all the validating stake, c_3 = 1, I = [0, 0, 0, 1, 0], D = [0, 1/2, 1/2, 0, 0].
        let mask = [false, true, true, true, true];
        let input = EpochInput::new(&w, &stake, 1.0, &genesis).with_validators(&mask);
        let masked = epoch(&YumaParams::default(), &input).unwrap();
        assert_outputs_close(&masked, &epoch_dense(&YumaParams::default(), &input).unwrap(), 1e-12);
        assert_close(&masked.consensus, &[0.0, 0.0, 0.0, 1.0, 0.0], 1e-15);
        assert_close(&masked.incentive, &[0.0, 0.0, 0.0, 1.0, 0.0], 1e-15);
        assert_close(&masked.dividends, &[0.0, 0.5, 0.5, 0.0, 0.0], 1e-15);
        assert_eq!(masked.validator_trust[0], 0.0);
    }

    #[test]
    fn a_masked_validator_earns_nothing_and_its_bonds_decay() {
        // four_peers with peer 1 masked and holding every bond before: B_prev = {1: {2: 1, 3: 1}}.
        // s_hat = [4, 0, 2, 1] / 7. Consensus: col 2 has only peer 0's 0.5 (4/7 of the stake)
        // -> c_2 = 0.5; col 3 has 0.75 (2/7) and 0.5 (4/7) -> c_3 = 0.5; cols 0 and 1 too little.
        // Wc: peer 0 {2: 0.5, 3: 0.5}, peer 2 {3: 0.5}; R_2 = 2/7, R_3 = 3/7: I = [0, 0, 2/5, 3/5]
        // dB: col 2 -> peer 0: 1; col 3 -> peer 0: 2/3, peer 2: 1/3
        // B = 0.1 dB + 0.9 B_prev: col 2 [0.1, 0.9, 0, 0]; col 3 [1/15, 0.9, 1/30, 0] (sums are 1)
        // B I = [0.04 + 0.04, 0.9, 0.02, 0]; peer 1 masked -> D = [0.08, 0, 0.02, 0] / 0.1
        let (w, stake) = four_peers();
        let mask = [true, false, true, true];
        let mut state = MechanismState {
            bonds: SparseMatrix::from_rows(4, [vec![], vec![(2, 1.0), (3, 1.0)], vec![], vec![]]).unwrap(),
            stake_scaling: Vec::new(),
        };
        let input = EpochInput::new(&w, &stake, 1.0, &state).with_validators(&mask);
        let out = epoch(&YumaParams::default(), &input).unwrap();
        assert_outputs_close(&out, &epoch_dense(&YumaParams::default(), &input).unwrap(), 1e-12);
        assert_close(&out.incentive, &[0.0, 0.0, 0.4, 0.6], 1e-12);
        assert_close(&out.dividends, &[0.8, 0.0, 0.2, 0.0], 1e-12);
        assert_close(&out.validator_trust, &[1.0, 0.0, 0.5, 0.0], 1e-12);
        // Negative control: the same network stripped by hand but not masked pays peer 1 its
        // bonds, 0.9 of D.
        let stripped_w = w.without_rows(|i| i == 1);
        let stripped = run(&YumaParams::default(), &stripped_w, &[4.0, 0.0, 2.0, 1.0], 1.0, &state);
        assert_close(&stripped.dividends, &[0.08, 0.9, 0.02, 0.0], 1e-12);
        // Epoch over epoch the masked validator's bond share decays by m = 0.9.
        for k in 1..=4 {
            let input = EpochInput::new(&w, &stake, 1.0, &state).with_validators(&mask);
            let out = epoch(&YumaParams::default(), &input).unwrap();
            assert_eq!(out.dividends[1], 0.0);
            assert!((out.state.bonds.get(1, 2) - 0.9f64.powi(k)).abs() < 1e-12, "epoch {k}");
            state = out.state;
        }
    }

    #[test]
    fn server_share_splits_the_emission() {
        // All to validators: E = 58 D = [32, 18, 8, 0] (D from four_peers_by_hand).
        let (w, stake) = four_peers();
        let p = YumaParams { server_share: 0.0, ..Default::default() };
        let out = run(&p, &w, &stake, 58.0, &MechanismState::genesis(4));
        assert_close(&out.emission, &[32.0, 18.0, 8.0, 0.0], 1e-12);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        let (w, stake) = four_peers();
        let state = MechanismState::genesis(4);
        let input = EpochInput::new(&w, &stake, 1.0, &state);
        let bad = [
            (YumaParams { kappa: -0.1, ..Default::default() }, "kappa"),
            (YumaParams { kappa: f64::NAN, ..Default::default() }, "kappa"),
            (YumaParams { bonds_moving_average: 1.0, ..Default::default() }, "bonds_moving_average"),
            (YumaParams { bonds_moving_average: f64::NAN, ..Default::default() }, "bonds_moving_average"),
            (YumaParams { server_share: 1.01, ..Default::default() }, "server_share"),
        ];
        for (p, which) in bad {
            for result in [epoch(&p, &input), epoch_dense(&p, &input)] {
                match result {
                    Err(MechanismError::BadParameter { name, .. }) => assert_eq!(name, which),
                    other => panic!("{p:?}: expected BadParameter({which}), got {other:?}"),
                }
            }
        }
        // Called directly rather than through `Mechanism::epoch`, bad input is still an error.
        let short = EpochInput { stake: &[1.0], ..input };
        for result in [epoch(&YumaParams::default(), &short), epoch_dense(&YumaParams::default(), &short)] {
            assert!(matches!(result, Err(MechanismError::StakeLength { stake: 1, .. })), "{result:?}");
        }
    }

    #[test]
    fn same_bits_for_any_thread_count() {
        let (w, stake, state) = random_input(300, 40, 11);
        let input = EpochInput::new(&w, &stake, 1.0, &state);
        let p = YumaParams::default();
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| epoch(&p, &input).unwrap())
        };
        let one = on(1);
        // The input must exercise the median: several columns reach consensus.
        assert!(one.consensus.iter().filter(|&&c| c > 0.0).count() >= 5, "{:?}", one.consensus);
        assert_eq!(bits(&one), bits(&on(2)));
        assert_outputs_close(&one, &epoch_dense(&p, &input).unwrap(), 1e-9);

        // Large enough that the columns select on rayon's pool: 3,500 peers whose rows all
        // weight the same 24 popular servers (random_input's first k / 4 columns), so those
        // columns alone hold ~75,000 staked pairs, and too sparse for the column walk.
        let n = 3500;
        let (w, stake, state) = random_input(n, 96, 12);
        let staked_pairs: usize = (0..n)
            .filter(|&i| stake[i] > 0.0)
            .map(|i| w.row(i).0.iter().filter(|&&j| j < 24 && j as usize != i).count())
            .sum();
        assert!(staked_pairs >= PARALLEL_PAIRS, "{staked_pairs}");
        let input = EpochInput::new(&w, &stake, 1.0, &state);
        assert!(!dense_block(&input, &input.validating_stake()));
        let one = on_input(&p, &input, 1);
        assert!(one.consensus[..24].iter().all(|&c| c > 0.0), "{:?}", &one.consensus[..24]);
        for threads in [2, 3] {
            assert_eq!(bits(&one), bits(&on_input(&p, &input, threads)), "{threads} threads");
        }
    }

    fn on_input(p: &YumaParams, input: &EpochInput<'_>, threads: usize) -> EpochOutput {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| epoch(p, input).unwrap())
    }

    proptest! {
        #[test]
        fn clip_is_min_without_nan(
            // Weights, consensus values and the edge cases among them: 0, equal values,
            // subnormals and infinity.
            w in prop_oneof![Just(0.0), Just(f64::MIN_POSITIVE / 4.0), Just(f64::INFINITY), 0.0..1.0f64],
            c in prop_oneof![Just(0.0), Just(f64::MIN_POSITIVE / 4.0), Just(f64::INFINITY), 0.0..1.0f64],
        ) {
            prop_assert_eq!(clip(w, c).to_bits(), w.min(c).to_bits());
            prop_assert_eq!(clip(w, w).to_bits(), w.to_bits());
        }
    }

    proptest! {
        #[test]
        fn column_walk_matches_the_transpose(
            (w, stake, state) in arb_input(14),
            kappa in prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0..=1.0f64],
            masked in proptest::collection::vec(any::<bool>(), 14),
            band_pairs in prop_oneof![Just(GATHER_BAND_PAIRS), 1..120usize],
        ) {
            // The two ways `run` gathers the columns' pairs, on the same input: every c_j, R_j
            // and (where a column has consensus) P_j agree bit for bit, whether the dense block
            // is transposed at once or in bands of a few columns (down to one).
            let mask: Vec<bool> = masked[..w.n()].iter().map(|&m| !m).collect();
            let input = EpochInput::new(&w, &stake, 1.0, &state).with_validators(&mask);
            let s = input.validating_stake();
            let by_transpose = consensus(&input, &s, kappa, &mut Scratch::default());
            let by_columns = consensus_by_bands(&input, &s, kappa, &mut Scratch::default(), band_pairs);
            let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&by_transpose.consensus), bits(&by_columns.consensus));
            prop_assert_eq!(bits(&by_transpose.ranks), bits(&by_columns.ranks));
            for j in 0..w.n() {
                if by_transpose.consensus[j] > 0.0 {
                    prop_assert_eq!(by_transpose.preranks[j].to_bits(), by_columns.preranks[j].to_bits());
                }
            }
        }

        #[test]
        fn bonds_by_runs_are_the_bonds_by_entries(
            n in 34..80usize,
            seed in any::<u64>(),
            m in 0.0..1.0f64,
        ) {
            // Validators weighting every column but their own (rows of two runs), a few rows
            // missing a column more, previous bonds on the same columns (the steady state) or
            // elsewhere, consensus 0 on some columns: both paths must give the same bits.
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let rows = |rng: &mut ChaCha8Rng, scale: f64| -> Vec<Vec<(usize, f64)>> {
                (0..n)
                    .map(|i| {
                        let gap = if rng.gen_bool(0.3) { rng.gen_range(0..n) } else { i };
                        (0..n).filter(|&j| j != i && j != gap).map(|j| (j, scale * rng.gen_range(0.01..1.0))).collect()
                    })
                    .collect()
            };
            let restricted = SparseMatrix::from_rows(n, rows(&mut rng, 1.0 / n as f64)).unwrap();
            let previous = if rng.gen_bool(0.7) {
                SparseMatrix::from_rows(n, (0..n).map(|i| {
                    let (cols, _) = restricted.row(i);
                    cols.iter().map(|&j| (j as usize, rng.gen_range(0.0..1.0))).collect::<Vec<_>>()
                }))
                .unwrap()
            } else {
                SparseMatrix::from_rows(n, rows(&mut rng, 1.0)).unwrap()
            };
            let s: Vec<f64> = (0..n).map(|_| if rng.gen_bool(0.2) { 0.0 } else { rng.gen_range(0.0..1.0) }).collect();
            let consensus: Vec<f64> =
                (0..n).map(|_| if rng.gen_bool(0.2) { 0.0 } else { rng.gen_range(0.0..0.05) }).collect();
            let ranks: Vec<f64> = consensus.iter().map(|&c| if c > 0.0 { rng.gen_range(0.1..1.0) } else { 0.0 }).collect();
            let incentive = normalized(&ranks);
            prop_assert!((0..n).any(|i| ColumnRuns::long(restricted.row(i).0).is_some()));
            let by_runs = bonds::<true>(m, &previous, &restricted, &s, &consensus, &ranks, &incentive);
            let by_entries = bonds::<false>(m, &previous, &restricted, &s, &consensus, &ranks, &incentive);
            prop_assert_eq!(&by_runs.bonds, &by_entries.bonds);
            let bits_of = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits_of(by_runs.bonds.entries().1), bits_of(by_entries.bonds.entries().1));
            prop_assert_eq!(bits_of(&by_runs.payout), bits_of(&by_entries.payout));
            prop_assert_eq!(bits_of(&by_runs.validator_trust), bits_of(&by_entries.validator_trust));
        }

        #[test]
        fn sparse_matches_dense(
            (w, stake, state) in arb_input(12),
            emission in 0.0..1e3f64,
            kappa in prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0..=1.0f64],
            m in 0.0..1.0f64,
            server_share in 0.0..=1.0f64,
            by_trust in any::<bool>(),
        ) {
            let dividend_rule = if by_trust { DividendRule::ValidatorTrust } else { DividendRule::Bonds };
            let p = YumaParams { kappa, bonds_moving_average: m, server_share, dividend_rule };
            let input = EpochInput::new(&w, &stake, emission, &state);
            let sparse = epoch(&p, &input).unwrap();
            let dense = epoch_dense(&p, &input).unwrap();
            assert_outputs_close(&sparse, &dense, 1e-9);
        }

    }
}
