//! Emission: running the mechanism every `tempo` blocks, and the lazy payouts.
//!
//! # Per-epoch mode
//! At every height that is a multiple of `tempo`, the selected mechanism runs on
//! - W: the stored row of every neuron that validates (see below; the mechanism ignores the
//!   others' rows, so they are left empty), as integers over [`crate::WEIGHT_SCALE`] (the
//!   mechanism normalises rows itself), minus *outdated* entries: a weight that row i set at or
//!   before the block where uid j was last registered was meant for j's previous occupant, so
//!   it is dropped (the production chain's rule; it avoids touching every row when a uid
//!   changes hands);
//! - S: each neuron's stake in base units, as f64;
//! - the emission the schedule allows: the subnet's shares of the blocks' emission since its
//!   last epoch ([`crate::subnet`]; `M = tempo * emission_per_block` when netuid 0 is the
//!   only subnet), cut to what `max_issuance` still permits;
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
//! ([`crate::apportion()`]), so exactly `M` is minted, credited to stake (each hotkey's part
//! split between its owner and its nominators: [`crate::delegation`]); or nothing, when the
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
//!   row, ties to the lower uid), credited to the receivers' stake (split with their nominators
//!   as in per-epoch mode); with no usable row it is
//!   paid to itself. The fraction below one base unit carries over. The payout happens before
//!   the transaction's own effect, so it follows the weights in force while it accrued.
//! - Pending emission is a claim, not issuance: it is counted as minted only when paid, so
//!   `genesis + minted - burned` equals balances plus stakes at every height. A neuron that never
//!   transacts never emits (the papers' point: dominance must keep working), and the unpaid
//!   emission of a replaced neuron lapses.

use crate::apportion::apportion;
use crate::block::EpochReport;
use crate::genesis::{EmissionMode, LAZY_FRACTION_BITS};
use crate::inflation;
use crate::state::State;
use crate::types::{Float, NeuronScores};
use mechanism::{EpochInput, MechanismError, MechanismState, SparseMatrix};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

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
/// variant keeps one) grown with 1s and reset to 1 for replaced uids. Borrowed as it is when
/// none of this changes anything (the usual epoch), so the bonds are not copied.
fn carried_state<'a>(
    m: &'a MechanismState,
    n: usize,
    replaced: &BTreeSet<u16>,
    permit: &[bool],
) -> Result<Cow<'a, MechanismState>, MechanismError> {
    let b = &m.bonds;
    let keep = |j: usize| u16::try_from(j).is_ok_and(|j| !replaced.contains(&j));
    let has_permit = |i: usize| permit.get(i).copied().unwrap_or(true);
    let unpermitted_bonds = (0..b.n().min(n)).any(|i| !has_permit(i) && !b.row(i).0.is_empty());
    let a = &m.stake_scaling;
    let same_scaling = a.is_empty() || (a.len() == n && replaced.is_empty());
    if b.n() == n && replaced.is_empty() && !unpermitted_bonds && same_scaling {
        return Ok(Cow::Borrowed(m));
    }
    let bonds = if b.n() == n && replaced.is_empty() && !unpermitted_bonds {
        b.clone()
    } else {
        let mut out = SparseMatrix::builder(n, b.nnz());
        for i in 0..n {
            if i < b.n() && keep(i) && has_permit(i) {
                let (cols, vals) = b.row(i);
                out.push_row(
                    cols.iter().zip(vals).map(|(&j, &v)| (j, v)).filter(|&(j, _)| keep(j as usize)),
                )?;
            } else {
                out.push_row([])?;
            }
        }
        out.finish()?
    };
    let mut a = a.clone();
    if !a.is_empty() {
        a.resize(n, 1.0);
        for &u in replaced {
            if let Some(x) = a.get_mut(usize::from(u)) {
                *x = 1.0;
            }
        }
    }
    Ok(Cow::Owned(MechanismState { bonds, stake_scaling: a }))
}

/// W as the mechanism reads it at an epoch (see the module doc): the stored integer rows of
/// the neurons that validate, without their outdated entries, as f64 units of
/// 1/[`crate::WEIGHT_SCALE`]. The rows of neurons that do not validate are left empty: the
/// mechanism ignores them anyway ([`EpochInput::validators`]), so converting them would be
/// wasted work.
///
/// Rows are stored sorted by uid, so they go straight into the matrix (checked, not sorted),
/// and a row set after the newest registration has no outdated entry to look for: at
/// n = 256 with 64 validators of 256 weights this costs a few microseconds, next to the
/// hundreds the sorting path took.
fn weights(state: &State, validators: &[bool]) -> Result<SparseMatrix, MechanismError> {
    let n = state.n();
    let registered: Vec<u64> = state.neurons.iter().map(|x| x.registered_at).collect();
    let newest = registered.iter().copied().max().unwrap_or(0);
    let last_update = |i: usize| {
        state.neurons[i].last_weights_block.filter(|_| validators.get(i).copied().unwrap_or(false))
    };
    let nnz =
        (0..n).filter(|&i| last_update(i).is_some()).map(|i| state.rows.get(i).map_or(0, |r| r.len())).sum();
    let mut w = SparseMatrix::builder(n, nnz);
    for i in 0..n {
        let row = state.rows.get(i).map_or(&[][..], |r| &r.0[..]);
        let entries = row.iter().map(|&(j, v)| (u32::from(j), f64::from(v)));
        match last_update(i) {
            None => w.push_row([])?,
            // Every uid was registered before this row was set.
            Some(last) if last > newest => w.push_row(entries)?,
            Some(last) => {
                w.push_row(entries.filter(|&(j, _)| registered.get(j as usize).is_some_and(|&r| last > r)))?
            }
        }
    }
    w.finish()
}

/// What the mechanism reads at an epoch: its input apart from the emission, and the two flags
/// stored on each neuron. Built by [`State::epoch_inputs`].
#[derive(Debug, Clone)]
pub struct EpochInputs<'a> {
    /// W: see [`State::epoch_inputs`].
    pub weights: SparseMatrix,
    /// S: each neuron's stake in base units.
    pub stake: Vec<f64>,
    /// The state the mechanism carries between epochs, as `carried_state` leaves it.
    pub state: Cow<'a, MechanismState>,
    /// Whether each neuron is active: it set weights (or registered) within
    /// `activity_cutoff` blocks of the epoch.
    pub active: Vec<bool>,
    /// Whether each neuron holds a validator permit: among the `max_validators` with the
    /// most stake.
    pub permit: Vec<bool>,
    /// Both active and permitted: the neurons whose weights and stake count in validation.
    pub validators: Vec<bool>,
}

impl EpochInputs<'_> {
    /// The mechanism's input for an epoch that may mint `emission` base units.
    pub fn input(&self, emission: f64) -> EpochInput<'_> {
        EpochInput::new(&self.weights, &self.stake, emission, &self.state).with_validators(&self.validators)
    }
}

impl State {
    /// Everything the mechanism reads at the epoch at `height` apart from the emission (see
    /// the module doc): W from the stored integer rows of the neurons that validate (outdated
    /// entries dropped), S, the mask of validators and the carried mechanism state. What an
    /// epoch converts from the ledger's state before it runs the mechanism, public so the
    /// benchmarks can time the two together.
    pub fn epoch_inputs(&self, height: u64) -> Result<EpochInputs<'_>, MechanismError> {
        let active = activity(self, height);
        let permit = permits(self);
        let validators: Vec<bool> = active.iter().zip(&permit).map(|(&a, &p)| a && p).collect();
        let weights = weights(self, &validators)?;
        let stake = self.neurons.iter().map(|x| x.stake as f64).collect();
        let state = carried_state(&self.mech, self.n(), &self.net_globals.replaced_since_epoch, &permit)?;
        Ok(EpochInputs { weights, stake, state, active, permit, validators })
    }
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
    // The subnet's shares of the blocks' emission since its last epoch ([`crate::subnet`]):
    // `tempo * tau` when netuid 0 is the only subnet. What this epoch does not pay lapses.
    let pending = std::mem::take(&mut state.net_globals.emission_pending);
    if n == 0 {
        report.error = Some("no neurons registered".into());
        return report;
    }
    let tau = state.globals.tau;
    let amount = u128::from(pending).min(headroom(state));
    // amount <= max_issuance <= u64::MAX.
    let amount = u64::try_from(amount).unwrap_or(u64::MAX);

    // The inputs borrow the stored state, so a refused epoch leaves it as it was.
    let result = state.epoch_inputs(height).and_then(|inputs| {
        let out = cfg.mechanism.epoch(&inputs.input(amount as f64))?;
        Ok((out, inputs.active, inputs.permit, inflation::sparsity(&inputs.weights)))
    });
    let (out, active, permit, sparsity) = match result {
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
                    // Split between the hotkey's owner and nominators (delegation.rs).
                    if let Some(x) = state.neuron_mut(uid as u16) {
                        x.credit_stake(e, height);
                    }
                    minted = minted.saturating_add(e);
                }
            }
            state.globals.issuance.minted += u128::from(minted);
            report.minted = minted;
        }
        EmissionMode::Lazy => {
            let since_epoch = state.net_globals.last_epoch_block;
            let rates: Vec<u64> = if paid {
                let a = &out.state.stake_scaling;
                let shares: Vec<f64> = state
                    .neurons
                    .iter()
                    .enumerate()
                    .map(|(i, x)| x.stake as f64 * if a.is_empty() { 1.0 } else { finite(a.get(i)) })
                    .collect();
                apportion(tau << LAZY_FRACTION_BITS, &shares).unwrap_or_else(|| vec![0; n])
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

    for (i, x) in Arc::make_mut(&mut state.neurons).iter_mut().enumerate() {
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
    state.net_globals.replaced_since_epoch.clear();
    state.net_globals.last_epoch_block = height;
    // Adaptive inflation steers the next epochs' tau by this epoch's W (see `inflation.rs`).
    state.net_globals.sparsity = sparsity.map(Float);
    if let Some(a) = &cfg.adaptive_inflation {
        state.globals.tau = a.next_tau(tau, sparsity, cfg.emission_per_block);
    }
    report
}

/// Lazy mode: mints and pays neuron `uid`'s pending emission at `height` along its row (see the
/// module doc). Returns the base units minted.
pub(crate) fn settle(state: &mut State, uid: u16, height: u64) -> u64 {
    let since_epoch = state.net_globals.last_epoch_block;
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
                y.credit_stake(p, height);
            }
        }
    }
    state.globals.issuance.minted += u128::from(pay);
    pay
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{GenesisConfig, GenesisNeuron};
    use crate::types::{PublicKey, WeightRow};
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A state of `n` neurons with the given stakes, registration blocks, last weights blocks
    /// and rows, previous bonds, and uids replaced since the last epoch.
    #[derive(Debug)]
    struct Setup {
        stake: Vec<u64>,
        registered: Vec<u64>,
        last_weights: Vec<Option<u64>>,
        rows: Vec<Vec<(u16, u16)>>,
        bonds: Vec<Vec<(usize, f64)>>,
        bonds_n: usize,
        replaced: BTreeSet<u16>,
        max_validators: u32,
        activity_cutoff: u64,
    }

    impl Setup {
        fn state(&self) -> State {
            let n = self.stake.len();
            let neurons = (0..n)
                .map(|i| GenesisNeuron {
                    hotkey: PublicKey([i as u8 + 1; 32]),
                    coldkey: PublicKey([200; 32]),
                    stake: self.stake[i],
                    endpoint: None,
                })
                .collect();
            let cfg = GenesisConfig {
                neurons,
                max_neurons: 64,
                max_validators: self.max_validators,
                activity_cutoff: self.activity_cutoff,
                ..Default::default()
            };
            let mut s = State::genesis(Arc::new(cfg)).unwrap();
            for i in 0..n {
                let x = s.neuron_mut(i as u16).unwrap();
                x.registered_at = self.registered[i];
                x.last_weights_block = self.last_weights[i];
                s.set_row(i as u16, WeightRow(self.rows[i].clone()));
            }
            s.mech.bonds = SparseMatrix::from_rows(self.bonds_n, &self.bonds).unwrap();
            s.net_globals.replaced_since_epoch = self.replaced.clone();
            s
        }
    }

    /// The conversion as it was before it was made cheap: every usable row of a validator,
    /// copied into lists of `(usize, f64)` and sorted by `from_rows`; the bonds rebuilt the
    /// same way.
    fn reference(state: &State, height: u64) -> (SparseMatrix, MechanismState) {
        let n = state.n();
        let active = activity(state, height);
        let permit = permits(state);
        let rows: Vec<Vec<(usize, f64)>> = (0..n)
            .map(|i| {
                if !(active[i] && permit[i]) {
                    return Vec::new();
                }
                usable_row(state, i as u16).into_iter().map(|(j, v)| (usize::from(j), f64::from(v))).collect()
            })
            .collect();
        let replaced = &state.net_globals.replaced_since_epoch;
        let keep = |j: usize| !replaced.contains(&(j as u16));
        let b = &state.mech.bonds;
        let bonds: Vec<Vec<(usize, f64)>> = (0..n)
            .map(|i| {
                if i >= b.n() || !keep(i) || !permit[i] {
                    return Vec::new();
                }
                b.row(i)
                    .0
                    .iter()
                    .zip(b.row(i).1)
                    .map(|(&j, &v)| (j as usize, v))
                    .filter(|&(j, _)| keep(j))
                    .collect()
            })
            .collect();
        let bonds = SparseMatrix::from_rows(n, bonds).unwrap();
        (SparseMatrix::from_rows(n, rows).unwrap(), MechanismState { bonds, stake_scaling: Vec::new() })
    }

    fn setup() -> impl Strategy<Value = Setup> {
        (2..24usize).prop_flat_map(|n| {
            let row = proptest::collection::btree_map(0..n as u16, 1..=u16::MAX, 0..=n)
                .prop_map(|r| r.into_iter().collect::<Vec<_>>());
            let bonds_n = n.saturating_sub(3)..=n;
            (
                proptest::collection::vec(1..1_000u64, n),
                proptest::collection::vec(0..20u64, n),
                proptest::collection::vec(proptest::option::of(0..30u64), n),
                proptest::collection::vec(row, n),
                bonds_n.prop_flat_map(|bn| {
                    let bond_row = proptest::collection::btree_map(0..bn, 0.01..1.0f64, 0..=bn)
                        .prop_map(|r| r.into_iter().collect::<Vec<_>>());
                    (Just(bn), proptest::collection::vec(bond_row, bn))
                }),
                proptest::collection::btree_set(0..n as u16, 0..3),
                1..=n as u32,
                prop_oneof![Just(1_000u64), 1..15u64],
            )
                .prop_map(
                    |(
                        stake,
                        registered,
                        last_weights,
                        rows,
                        (bonds_n, bonds),
                        replaced,
                        max_validators,
                        activity_cutoff,
                    )| {
                        Setup {
                            stake,
                            registered,
                            last_weights,
                            rows,
                            bonds,
                            bonds_n,
                            replaced,
                            max_validators,
                            activity_cutoff,
                        }
                    },
                )
        })
    }

    #[test]
    fn an_epoch_without_consensus_mints_nothing() {
        // Validators 0, 1, 2 (stake 100 each), servers 3, 4, 5; every row set at block 1.
        let state_with = |rows: Vec<Vec<(u16, u16)>>| {
            Setup {
                stake: vec![100, 100, 100, 1, 1, 1],
                registered: vec![0; 6],
                last_weights: (0..6).map(|i| (i < 3).then_some(1)).collect(),
                rows,
                bonds: vec![Vec::new(); 6],
                bonds_n: 6,
                replaced: BTreeSet::new(),
                max_validators: 3,
                activity_cutoff: 1_000,
            }
            .state()
        };
        let third = u16::MAX / 3;
        let agree: Vec<Vec<(u16, u16)>> =
            (0..6).map(|i| if i < 3 { vec![(3, third), (4, third), (5, third)] } else { vec![] }).collect();
        // Each validator backs a different server: no column carries half the stake.
        let withhold: Vec<Vec<(u16, u16)>> =
            (0..6u16).map(|i| if i < 3 { vec![(i + 3, u16::MAX)] } else { vec![] }).collect();
        let height = 100;
        let schedule = 100 * crate::UNITS_PER_TOKEN;

        let mut agreed = state_with(agree);
        agreed.net_globals.emission_pending = schedule;
        let report = run_epoch(&mut agreed, height);
        assert!(!report.withheld && report.error.is_none(), "{report:?}");
        assert_eq!((report.minted, agreed.globals.issuance.minted), (schedule, u128::from(schedule)));

        let mut withheld = state_with(withhold);
        withheld.net_globals.emission_pending = schedule;
        let stakes_before: Vec<u64> = withheld.neurons.iter().map(|x| x.stake).collect();
        let report = run_epoch(&mut withheld, height);
        assert!(report.withheld && report.error.is_none(), "{report:?}");
        assert_eq!((report.minted, withheld.globals.issuance.minted), (0, 0));
        assert_eq!(withheld.neurons.iter().map(|x| x.stake).collect::<Vec<_>>(), stakes_before);
        assert!(withheld.neurons.iter().all(|x| x.scores.emission == 0 && x.scores.dividends == 0.0));
    }

    proptest! {
        #[test]
        fn cheap_conversion_matches_the_sorting_one(setup in setup(), height in 10..40u64) {
            let state = setup.state();
            let inputs = state.epoch_inputs(height).unwrap();
            let (weights, carried) = reference(&state, height);
            prop_assert_eq!(&inputs.weights, &weights);
            prop_assert_eq!(&inputs.state.bonds, &carried.bonds);
            // Nothing to clear or grow: the stored state is lent, not copied.
            let unchanged = setup.bonds_n == setup.stake.len()
                && setup.replaced.is_empty()
                && inputs.permit.iter().zip(&setup.bonds).all(|(&p, row)| p || row.is_empty());
            prop_assert_eq!(matches!(inputs.state, Cow::Borrowed(_)), unchanged);
        }
    }
}
