//! Emission: running the mechanism every `tempo` blocks, and the lazy payouts.
//!
//! # Per-epoch mode
//! At every height that is a multiple of `tempo`, the selected mechanism runs on
//! - W: every stored row, as integers over [`crate::WEIGHT_SCALE`] (the mechanism normalises
//!   rows itself), minus *outdated* entries: a weight that row i set at or before the block
//!   where uid j was last registered was meant for j's previous occupant, so it is dropped (the
//!   production chain's rule; it avoids touching every row when a uid changes hands);
//! - S: each neuron's stake in base units, as f64;
//! - the emission the schedule allows, `M = tempo * emission_per_block`, cut to what
//!   `max_issuance` still permits;
//! - the bonds and scaling vector kept from the last epoch, with the rows and columns of uids
//!   replaced since then cleared, the rows of neurons without a validator permit cleared, and
//!   the matrix grown to the current neuron count;
//! - which neurons validate ([`mechanism::EpochInput::validators`]): those that are *active*
//!   and hold a *validator permit*. Active: its last accepted `set_weights`, or its
//!   registration before the first, is at most `activity_cutoff` blocks before the epoch's
//!   height (subtensor's `last_update + activity_cutoff >= current_block`). Permit: it is among
//!   the `max_validators` neurons with the most stake, ties to the lower uid (subtensor's
//!   `is_topk(stake)`), over all neurons, active or not. The mechanism then ignores the others'
//!   rows, counts their stake as zero in its shares, pays them no dividends and gives them no
//!   new bonds, so the bonds of an inactive neuron decay; a neuron without a permit loses its
//!   bonds here, as on subtensor. The ledger decides who validates; the mechanism knows no
//!   blocks.
//!
//! Its f64 emission vector is turned into integers by the largest remainder rule
//! ([`crate::apportion()`]), so exactly `M` is minted, credited to stake; or nothing, when the
//! mechanism pays nothing (no weights yet, or the `trust` variant withholding while its chain
//! loss is >= 0). R, T, C, I, D, the integer E, validator trust VT and the two flags (active,
//! validator permit) are stored on each neuron (the metagraph).
//!
//! # Lazy mode (market paper §5 and its second version, "Transactions and Token Inflation")
//! The papers let a peer's pending emission accrue with the blocks since its last transaction,
//! `e_i = tau (a_i s_i) dt`, and pay it "outward" along its row of W when it transacts (the
//! self-loop w_ii being its own share). The mapping onto the mechanism:
//! - The mechanism still runs every `tempo` blocks, exactly as above (R, T, C, I, D, the bonds
//!   and the `trust` variant's scaling vector A are updated; nothing is minted by the epoch).
//! - At each epoch every neuron's accrual rate is fixed until the next one: the per-block
//!   schedule is split in proportion to `a_i * s_i` (A from the mechanism's new state, 1 for
//!   variants without one), in units of 2^-16 base units by the largest remainder rule, so the
//!   rates add up exactly to `emission_per_block`. If the mechanism paid nothing this epoch
//!   (no weights, or `trust` withholding), every rate is zero: nothing accrues.
//! - Pending emission = what accrued at the old rates up to each epoch (settled then, so a rate
//!   change never applies retroactively) + `rate * (blocks since max(last payout, last epoch))`.
//! - When a registered hotkey's transaction is applied, its pending emission is minted and paid
//!   along its current row of W (outdated entries dropped, largest remainder over the integer
//!   row, ties to the lower uid), credited to the receivers' stake; with no usable row it is
//!   paid to itself. The fraction below one base unit carries over. The payout happens before
//!   the transaction's own effect, so it follows the weights in force while it accrued.
//! - Pending emission is a claim, not issuance: it is counted as minted only when paid, so
//!   `genesis + minted - burned` equals balances plus stakes at every height. A neuron that never
//!   transacts never emits (the papers' point: dominance must keep working), and the unpaid
//!   emission of a replaced neuron lapses.

use crate::apportion::apportion;
use crate::block::EpochReport;
use crate::genesis::{EmissionMode, LAZY_FRACTION_BITS};
use crate::state::State;
use crate::types::NeuronScores;
use mechanism::{EpochInput, MechanismError, MechanismState, SparseMatrix};
use std::collections::BTreeSet;

/// Row `i` without its outdated entries (see the module doc).
pub(crate) fn usable_row(state: &State, i: u16) -> Vec<(u16, u16)> {
    let Some(last) = state.neuron(i).and_then(|n| n.last_weights_block) else { return Vec::new() };
    let Some(row) = state.rows.get(usize::from(i)) else { return Vec::new() };
    row.0
        .iter()
        .copied()
        .filter(|&(j, _)| state.neuron(j).is_some_and(|nj| last > nj.registered_at))
        .collect()
}

fn finite(x: Option<&f64>) -> f64 {
    x.copied().filter(|v| v.is_finite()).unwrap_or(0.0)
}

/// Base units the cap still allows.
fn headroom(state: &State) -> u128 {
    u128::from(state.config().max_issuance).saturating_sub(state.globals.issuance.total())
}

/// The mechanism state for `n` neurons: bonds rows and columns of replaced uids cleared, rows of
/// neurons without a validator permit cleared, bonds grown to n x n, the scaling vector (if the
/// variant keeps one) grown with 1s and reset to 1 for replaced uids.
fn carried_state(
    m: MechanismState,
    n: usize,
    replaced: &BTreeSet<u16>,
    permit: &[bool],
) -> Result<MechanismState, MechanismError> {
    let b = m.bonds;
    let keep = |j: usize| u16::try_from(j).is_ok_and(|j| !replaced.contains(&j));
    let has_permit = |i: usize| permit.get(i).copied().unwrap_or(true);
    let unpermitted_bonds = (0..b.n().min(n)).any(|i| !has_permit(i) && !b.row(i).0.is_empty());
    let bonds = if b.n() == n && replaced.is_empty() && !unpermitted_bonds {
        b
    } else {
        let rows = (0..n).map(|i| {
            if i < b.n() && keep(i) && has_permit(i) {
                let (cols, vals) = b.row(i);
                cols.iter().zip(vals).map(|(&j, &v)| (j as usize, v)).filter(|&(j, _)| keep(j)).collect()
            } else {
                Vec::new()
            }
        });
        SparseMatrix::from_rows(n, rows.collect::<Vec<Vec<(usize, f64)>>>())?
    };
    let mut a = m.stake_scaling;
    if !a.is_empty() {
        a.resize(n, 1.0);
        for &u in replaced {
            if let Some(x) = a.get_mut(usize::from(u)) {
                *x = 1.0;
            }
        }
    }
    Ok(MechanismState { bonds, stake_scaling: a })
}

/// Whether each neuron is active at `height`: its last `set_weights`, or its registration before
/// the first, is at most `activity_cutoff` blocks back.
fn activity(state: &State, height: u64) -> Vec<bool> {
    let cutoff = state.cfg.activity_cutoff;
    state
        .neurons
        .iter()
        .map(|x| {
            let last_update = x.last_weights_block.map_or(x.registered_at, |w| w.max(x.registered_at));
            height.saturating_sub(last_update) <= cutoff
        })
        .collect()
}

/// Validator permits: the `max_validators` neurons with the most stake, ties to the lower uid.
fn permits(state: &State) -> Vec<bool> {
    let n = state.n();
    let k = usize::try_from(state.cfg.max_validators).unwrap_or(usize::MAX);
    let mut permit = vec![true; n];
    if k < n {
        let mut order: Vec<(u64, u16)> = state.neurons.iter().map(|x| (x.stake, x.uid)).collect();
        // Stake descending, then uid ascending.
        order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, uid) in &order[k..] {
            permit[usize::from(uid)] = false;
        }
    }
    permit
}

/// Runs the epoch at `height` (the caller checks `height % tempo == 0`).
pub(crate) fn run_epoch(state: &mut State, height: u64) -> EpochReport {
    let cfg = state.cfg.clone();
    let n = state.n();
    let mut report = EpochReport {
        height,
        mechanism: cfg.mechanism.name().to_string(),
        n: n as u32,
        minted: 0,
        withheld: true,
        error: None,
    };
    if n == 0 {
        report.error = Some("no neurons registered".into());
        return report;
    }
    let amount =
        u128::from(cfg.tempo).saturating_mul(u128::from(cfg.emission_per_block)).min(headroom(state));
    // amount <= max_issuance <= u64::MAX.
    let amount = u64::try_from(amount).unwrap_or(u64::MAX);

    let rows: Vec<Vec<(usize, f64)>> = (0..n)
        .map(|i| {
            usable_row(state, i as u16).into_iter().map(|(j, v)| (usize::from(j), f64::from(v))).collect()
        })
        .collect();
    let stake: Vec<f64> = state.neurons.iter().map(|x| x.stake as f64).collect();
    let active = activity(state, height);
    let permit = permits(state);
    let validators: Vec<bool> = active.iter().zip(&permit).map(|(&a, &p)| a && p).collect();
    // A copy, so a refused epoch leaves the stored state as it was (O(nnz(B)), small next to
    // the epoch itself).
    let previous = state.mech.clone();
    let result = SparseMatrix::from_rows(n, rows).and_then(|w| {
        let mstate = carried_state(previous, n, &state.globals.replaced_since_epoch, &permit)?;
        let input = EpochInput::new(&w, &stake, amount as f64, &mstate).with_validators(&validators);
        cfg.mechanism.epoch(&input)
    });
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            // Leave the epoch as if it had not run: no mint, no score or rate change.
            report.error = Some(e.to_string());
            return report;
        }
    };

    let paid = out.emission.iter().any(|&e| e.is_finite() && e > 0.0);
    report.withheld = !paid;
    let e_int = apportion(amount, &out.emission).filter(|_| paid).unwrap_or_else(|| vec![0; n]);

    match cfg.emission_mode {
        EmissionMode::PerEpoch => {
            let mut minted: u64 = 0;
            for (uid, &e) in e_int.iter().enumerate() {
                if e > 0 {
                    if let Some(x) = state.neuron_mut(uid as u16) {
                        x.stake = x.stake.saturating_add(e);
                    }
                    minted = minted.saturating_add(e);
                }
            }
            state.globals.issuance.minted += u128::from(minted);
            report.minted = minted;
        }
        EmissionMode::Lazy => {
            let since_epoch = state.globals.last_epoch_block;
            let rates: Vec<u64> = if paid {
                let a = &out.state.stake_scaling;
                let shares: Vec<f64> = state
                    .neurons
                    .iter()
                    .enumerate()
                    .map(|(i, x)| x.stake as f64 * if a.is_empty() { 1.0 } else { finite(a.get(i)) })
                    .collect();
                apportion(cfg.emission_per_block << LAZY_FRACTION_BITS, &shares).unwrap_or_else(|| vec![0; n])
            } else {
                vec![0; n]
            };
            for (uid, &rate) in rates.iter().enumerate() {
                if let Some(x) = state.neuron_mut(uid as u16) {
                    let start = x.last_emission_block.max(since_epoch);
                    let blocks = u128::from(height.saturating_sub(start));
                    x.pending_emission =
                        x.pending_emission.saturating_add(u128::from(x.emission_rate) * blocks);
                    x.emission_rate = rate;
                }
            }
        }
    }

    for (i, x) in state.neurons.iter_mut().enumerate() {
        x.scores = NeuronScores {
            rank: finite(out.ranks.get(i)),
            trust: finite(out.trust.get(i)),
            consensus: finite(out.consensus.get(i)),
            incentive: finite(out.incentive.get(i)),
            dividends: finite(out.dividends.get(i)),
            emission: e_int.get(i).copied().unwrap_or(0),
            validator_trust: finite(out.validator_trust.get(i)),
            active: active[i],
            validator_permit: permit[i],
        };
    }
    state.touch_all_neurons();
    state.set_mechanism_state(out.state);
    state.globals.replaced_since_epoch.clear();
    state.globals.last_epoch_block = height;
    report
}

/// Lazy mode: mints and pays neuron `uid`'s pending emission at `height` along its row (see the
/// module doc). Returns the base units minted.
pub(crate) fn settle(state: &mut State, uid: u16, height: u64) -> u64 {
    let since_epoch = state.globals.last_epoch_block;
    let room = headroom(state);
    let Some(x) = state.neuron_mut(uid) else { return 0 };
    let start = x.last_emission_block.max(since_epoch);
    let blocks = u128::from(height.saturating_sub(start));
    let accrued = x.pending_emission.saturating_add(u128::from(x.emission_rate) * blocks);
    let whole = accrued >> LAZY_FRACTION_BITS;
    let pay = whole.min(room).min(u128::from(u64::MAX)) as u64;
    // What the cap refused lapses; the fraction below one unit carries over.
    x.pending_emission = accrued & ((1u128 << LAZY_FRACTION_BITS) - 1);
    x.last_emission_block = height;
    if pay == 0 {
        return 0;
    }
    let row = usable_row(state, uid);
    let shares: Vec<f64> = row.iter().map(|&(_, v)| f64::from(v)).collect();
    let parts: Vec<(u16, u64)> = match apportion(pay, &shares) {
        Some(p) => row.iter().map(|&(j, _)| j).zip(p).collect(),
        None => vec![(uid, pay)],
    };
    for (j, p) in parts {
        if p > 0 {
            if let Some(y) = state.neuron_mut(j) {
                y.stake = y.stake.saturating_add(p);
            }
        }
    }
    state.globals.issuance.minted += u128::from(pay);
    pay
}
