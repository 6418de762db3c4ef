//! What a run measured, computed from its [`RunData`] alone: pure functions, no files.
//!
//! Two truths, stated beside every figure that uses one:
//! - the **judge's value** (`judge.csv`, see [`crate::judge`]): each peer's marginal value to
//!   the others on test data no peer has seen, measured by the orchestrator; the yardstick;
//! - the **peers' own estimate** (their `final.json`): the sum over peers of the increase of
//!   their held-out loss without the peer, measured by the same estimator the chain aggregates.
//!   Kept as a second column, never the yardstick when the judge measured.

use super::load::RunData;
use crate::error::LocalnetError;
use crate::judge::JudgeRow;
use crate::monitor::MetagraphRow;
use crate::scenario::Role;
use peer::files::FinalReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Spearman's rho with average ranks for ties, as the experiments compute it. `None` when
/// undefined (a constant side, < 2 points).
pub use figures::spearman;

/// The peers' own estimate per uid: the sum over reports of the held-out loss increase when
/// the uid is removed. A uid no report names gets 0. Keys that are not uids below `n` are an
/// error: they would silently drop a measurement.
pub fn true_values(reports: &[FinalReport], n: usize) -> Result<Vec<f64>, LocalnetError> {
    let mut v = vec![0.0; n];
    for r in reports {
        for (k, x) in &r.ablation {
            let uid: usize = k.parse().ok().filter(|&u: &usize| u < n).ok_or_else(|| {
                LocalnetError::Report(format!("final.json of uid {} names uid {k:?} (n = {n})", r.uid))
            })?;
            if !x.is_finite() {
                return Err(LocalnetError::Report(format!(
                    "final.json of uid {}: ablation of {k} is {x}",
                    r.uid
                )));
            }
            v[uid] += x;
        }
    }
    Ok(v)
}

/// The judge's values per uid `0..n` in one judgement (0 for a uid it did not ask: a peer that
/// was gone).
pub fn judge_values(rows: &[JudgeRow], n: usize) -> Vec<f64> {
    let mut v = vec![0.0; n];
    for r in rows {
        if let Some(x) = v.get_mut(usize::from(r.uid)) {
            *x = r.value;
        }
    }
    v
}

/// What the run measured: the numbers of the report's head and of the `--compare` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The mechanism variant the chain ran.
    pub mechanism: String,
    /// The first sampled block.
    pub first_block: u64,
    /// The last sampled block.
    pub last_block: u64,
    /// Peers in the metagraph.
    pub peers: usize,
    /// Peers whose final.json was read.
    pub reports: usize,
    /// `judge` when the Spearman figures below compare with the independent judge's value,
    /// `peers` when no judgement was found and they fall back to the peers' own estimate.
    pub truth: String,
    /// Judgements in `judge.csv`.
    pub judgements: usize,
    /// Spearman(final incentive, the truth): does the market pay peers by their value?
    pub spearman_incentive: Option<f64>,
    /// Spearman(final rank, the truth).
    pub spearman_rank: Option<f64>,
    /// Spearman of the mean incentive over the epochs of the run's second half.
    pub spearman_mean_incentive: Option<f64>,
    /// Spearman of each peer's share of all emission over the run.
    pub spearman_emission: Option<f64>,
    /// Spearman(final incentive, the peers' own estimate): the old yardstick, for comparison.
    pub spearman_incentive_own: Option<f64>,
    /// Noise peers' share of all emission over the run: serving (incentive) and validating
    /// (dividends) together.
    pub noise_emission_share: Option<f64>,
    /// Noise peers' share of the serving part of the emission over the run.
    pub noise_serving_share: Option<f64>,
    /// Noise peers' mean share of the incentive over the epochs that paid any.
    pub noise_incentive_share: Option<f64>,
    /// Copycats' mean share of the incentive over the epochs that paid any (issue 16: copy
    /// detection must keep it under 1%).
    #[serde(default)]
    pub copycat_incentive_share: Option<f64>,
    /// The mean share of the incentive of the peers the copycats copy.
    #[serde(default)]
    pub copied_incentive_share: Option<f64>,
    /// Duplicates' mean share of the incentive (an exact copy of another peer's model at the
    /// start, trained on its own since).
    #[serde(default)]
    pub duplicate_incentive_share: Option<f64>,
    /// Copy detection's verdicts from the peers' `final.json`: of the reports, how many found
    /// a copycat copying (`(flagged by, reports)`; `None` without a copycat).
    #[serde(default)]
    pub copycat_flagged_by: Option<(u64, u64)>,
    /// Of the reports, how many flagged a duplicate as a copier (`(flagged by, reports)`).
    #[serde(default)]
    pub duplicate_flagged_by: Option<(u64, u64)>,
    /// The offline peers' share of all emission in the epochs after they left plus the
    /// activity cutoff (`None` without an offline peer or a cutoff).
    pub offline_share_after_cutoff: Option<f64>,
    /// Cabal's share of stake at the first sampled block.
    pub cabal_share_start: Option<f64>,
    /// Cabal's share of stake at the last sampled block.
    pub cabal_share_end: Option<f64>,
    /// Epoch-to-epoch transitions where the cabal's share fell, out of all transitions.
    pub cabal_share_falls: (usize, usize),
}

/// One peer at the end of the run, with what it earned over the run and what it was worth.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerLine {
    /// Its uid.
    pub uid: u16,
    /// Its name in the scenario.
    pub name: String,
    /// Its role in the scenario.
    pub role: Role,
    /// Its share of all stake at the end.
    pub stake_share: f64,
    /// Rank R in the last epoch.
    pub rank: f64,
    /// Incentive I in the last epoch.
    pub incentive: f64,
    /// Dividends D in the last epoch.
    pub dividends: f64,
    /// Validator trust in the last epoch: how much of its weight survived the consensus clipping.
    pub validator_trust: f64,
    /// Whether it counted as a validator in the last epoch (active and holding a permit).
    pub validating: bool,
    /// Its share over the run of all emission.
    pub emission_share: Option<f64>,
    /// Its share over the run of the serving part (incentive).
    pub serving_share: Option<f64>,
    /// Its share over the run of the validating part (dividends).
    pub validating_share: Option<f64>,
    /// The judge's last value of it: the consumers' test-loss increase without it.
    pub value: Option<f64>,
    /// The judge's last quality of its answers (test loss, nats/byte).
    pub quality: Option<f64>,
    /// The peers' own estimate.
    pub own_estimate: Option<f64>,
    /// Its final held-out loss, from its `final.json`.
    pub heldout_loss: Option<f64>,
}

/// Everything the report shows.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// The figures of the report's head.
    pub summary: Summary,
    /// One line per peer, in uid order.
    pub peers: Vec<PeerLine>,
    /// Per sampled block: time and each role's share of stake.
    pub stake_shares: Vec<(u64, f64, BTreeMap<Role, f64>)>,
    /// The cabal's share of stake at each epoch (epoch, share).
    pub cabal_epochs: Vec<(u64, f64)>,
    /// Per judgement: its block and Spearman(incentive at that block, the judge's value then).
    pub running: Vec<(u64, Option<f64>)>,
}

/// Groups metagraph rows by block, in block order, each block's rows in uid order.
pub fn by_block(rows: &[MetagraphRow]) -> BTreeMap<u64, Vec<&MetagraphRow>> {
    let mut m: BTreeMap<u64, Vec<&MetagraphRow>> = BTreeMap::new();
    for r in rows {
        m.entry(r.block).or_default().push(r);
    }
    for rs in m.values_mut() {
        rs.sort_by_key(|r| r.uid);
    }
    m
}

/// Share of stake per role at one block (only the roles present).
pub fn role_shares(rows: &[&MetagraphRow]) -> BTreeMap<Role, f64> {
    let total: u64 = rows.iter().map(|r| r.stake).sum();
    let mut out = BTreeMap::new();
    for role in Role::ALL {
        if rows.iter().any(|r| r.role == role) {
            let s: u64 = rows.iter().filter(|r| r.role == role).map(|r| r.stake).sum();
            out.insert(role, if total == 0 { 0.0 } else { s as f64 / total as f64 });
        }
    }
    out
}

/// Emission over the run per uid, split into its serving part (paid by incentive) and its
/// validating part (paid by dividends), in base units: at each epoch block the minted total M
/// is split by [`mechanism::split_shares`] as the mechanism split it.
pub fn emission_parts(
    blocks: &BTreeMap<u64, Vec<&MetagraphRow>>,
    tempo: u64,
    server_share: f64,
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (mut serving, mut validating) = (vec![0.0; n], vec![0.0; n]);
    for (b, rs) in blocks {
        if b % tempo.max(1) != 0 {
            continue;
        }
        let minted: f64 = rs.iter().map(|r| r.emission as f64).sum();
        let incentive: Vec<f64> = rs.iter().map(|r| r.incentive).collect();
        let dividends: Vec<f64> = rs.iter().map(|r| r.dividends).collect();
        let (wi, wd) = mechanism::split_shares(&incentive, &dividends, server_share);
        for r in rs {
            let u = usize::from(r.uid);
            if u < n {
                serving[u] += minted * wi * r.incentive;
                validating[u] += minted * wd * r.dividends;
            }
        }
    }
    (serving, validating)
}

/// The share of `role` in `values` (by uid), `None` if the total is zero or no peer has it.
fn role_share(last: &[&MetagraphRow], values: &[f64], role: Role) -> Option<f64> {
    let total: f64 = values.iter().sum();
    let any = last.iter().any(|r| r.role == role);
    let mine: f64 = last.iter().filter(|r| r.role == role).map(|r| values[usize::from(r.uid)]).sum();
    (any && total > 0.0).then(|| mine / total)
}

/// Analyses a run of a scenario with epochs of `tempo` blocks, whose mechanism pays
/// `server_share` of an epoch by incentive when it pays dividends too.
pub fn analyse(
    data: &RunData,
    mechanism: &str,
    tempo: u64,
    server_share: f64,
) -> Result<Analysis, LocalnetError> {
    let blocks = by_block(&data.rows);
    let (Some((&first_block, _)), Some((&last_block, last))) =
        (blocks.first_key_value(), blocks.last_key_value())
    else {
        return Err(LocalnetError::Report("metagraph.csv has no samples".into()));
    };
    let last: Vec<&MetagraphRow> = last.clone();
    let n = last.len();
    let tempo = tempo.max(1);

    let own = if data.finals.is_empty() { None } else { Some(true_values(&data.finals, n)?) };
    let final_judgement = data.judgements.last();
    let judged = final_judgement.map(|(_, rows)| judge_values(rows, n));
    let (truth_name, truth) = match (&judged, &own) {
        (Some(v), _) => ("judge", Some(v.clone())),
        (None, Some(v)) => ("peers", Some(v.clone())),
        (None, None) => ("none", None),
    };
    let incentive: Vec<f64> = last.iter().map(|r| r.incentive).collect();
    let ranks: Vec<f64> = last.iter().map(|r| r.rank).collect();
    let against = |x: &[f64]| truth.as_ref().and_then(|t| spearman(x, t));

    // The mean incentive over the epochs of the run's second half: what the chain paid once
    // the peers had settled, where the last block is one epoch's snapshot.
    let second_half: Vec<&Vec<&MetagraphRow>> = blocks
        .iter()
        .filter(|(b, _)| *b % tempo == 0 && 2 * (*b - first_block) >= last_block - first_block)
        .map(|(_, rs)| rs)
        .collect();
    let mean_incentive: Vec<f64> = (0..n)
        .map(|u| {
            let sum: f64 = second_half
                .iter()
                .filter_map(|rs| rs.iter().find(|r| usize::from(r.uid) == u))
                .map(|r| r.incentive)
                .sum();
            sum / second_half.len().max(1) as f64
        })
        .collect();

    let (serving, validating) = emission_parts(&blocks, tempo, server_share, n);
    let emitted: Vec<f64> = serving.iter().zip(&validating).map(|(a, b)| a + b).collect();
    let share = |v: &[f64], u: usize| {
        let t: f64 = v.iter().sum();
        (t > 0.0).then(|| v[u] / t)
    };

    // The mean over the epochs that paid any incentive of the share the peers `chosen` got.
    let incentive_share = |chosen: &dyn Fn(&MetagraphRow) -> bool| {
        let per_epoch: Vec<f64> = blocks
            .iter()
            .filter(|(b, _)| **b % tempo == 0)
            .filter_map(|(_, rs)| {
                let total: f64 = rs.iter().map(|r| r.incentive).sum();
                let mine: f64 = rs.iter().filter(|r| chosen(r)).map(|r| r.incentive).sum();
                (total > 0.0).then(|| mine / total)
            })
            .collect();
        let any = last.iter().any(|r| chosen(r));
        (any && !per_epoch.is_empty()).then(|| per_epoch.iter().sum::<f64>() / per_epoch.len() as f64)
    };
    let noise_incentive_share = incentive_share(&|r| r.role == Role::Noise);
    let copycat_incentive_share = incentive_share(&|r| r.role == Role::Copycat);
    let duplicate_incentive_share = incentive_share(&|r| r.role == Role::Duplicate);
    // How many peers' reports name a peer of `role` as a copier.
    let flagged_by = |role: Role| {
        let uids: Vec<u16> = last.iter().filter(|r| r.role == role).map(|r| r.uid).collect();
        (!uids.is_empty()).then(|| {
            let by = data.finals.iter().filter(|f| f.copies.iter().any(|c| uids.contains(&c.copier))).count();
            (by as u64, data.finals.len() as u64)
        })
    };
    let copycat_flagged_by = flagged_by(Role::Copycat);
    let duplicate_flagged_by = flagged_by(Role::Duplicate);
    let copied = data.info.as_ref().map_or(&[][..], |i| i.copied.as_slice());
    let copied_incentive_share = incentive_share(&|r| copied.contains(&r.name));

    let offline_share_after_cutoff = data.info.as_ref().and_then(|info| {
        let from = info.leaves_at?.checked_add(info.activity_cutoff?)?;
        last.iter().any(|r| r.role == Role::Offline).then_some(())?;
        let after: BTreeMap<u64, Vec<&MetagraphRow>> =
            blocks.iter().filter(|(b, _)| **b > from).map(|(b, rs)| (*b, rs.clone())).collect();
        let (s, v) = emission_parts(&after, tempo, server_share, n);
        let all: Vec<f64> = s.iter().zip(&v).map(|(a, b)| a + b).collect();
        let total: f64 = all.iter().sum();
        (total > 0.0).then(|| {
            last.iter().filter(|r| r.role == Role::Offline).map(|r| all[usize::from(r.uid)]).sum::<f64>()
                / total
        })
    });

    let mut stake_shares = Vec::with_capacity(blocks.len());
    let mut cabal_epochs = Vec::new();
    for (b, rs) in &blocks {
        let sh = role_shares(rs);
        if b % tempo == 0 {
            if let Some(c) = sh.get(&Role::Cabal) {
                cabal_epochs.push((b / tempo, *c));
            }
        }
        stake_shares.push((*b, rs.first().map_or(0.0, |r| r.time_s), sh));
    }
    let falls = cabal_epochs.windows(2).filter(|w| w[1].1 < w[0].1).count();
    let cabal_share_start = blocks.values().next().and_then(|rs| role_shares(rs).get(&Role::Cabal).copied());
    let cabal_share_end = role_shares(&last).get(&Role::Cabal).copied();

    let running = data
        .judgements
        .iter()
        .map(|(jb, rows)| {
            let at = blocks.range(..=jb).next_back().map(|(_, rs)| rs);
            let rho = at.and_then(|rs| {
                let inc: Vec<f64> = (0..n)
                    .map(|u| rs.iter().find(|r| usize::from(r.uid) == u).map_or(0.0, |r| r.incentive))
                    .collect();
                spearman(&inc, &judge_values(rows, n))
            });
            (*jb, rho)
        })
        .collect();

    let total_stake: u64 = last.iter().map(|r| r.stake).sum::<u64>().max(1);
    let peers = last
        .iter()
        .map(|r| {
            let u = usize::from(r.uid);
            let judged_row = final_judgement.and_then(|(_, rows)| rows.iter().find(|x| x.uid == r.uid));
            PeerLine {
                uid: r.uid,
                name: r.name.clone(),
                role: r.role,
                stake_share: r.stake as f64 / total_stake as f64,
                rank: r.rank,
                incentive: r.incentive,
                dividends: r.dividends,
                validator_trust: r.validator_trust,
                validating: r.validating,
                emission_share: share(&emitted, u),
                serving_share: share(&serving, u),
                validating_share: share(&validating, u),
                value: judged.as_ref().map(|v| v[u]),
                quality: judged_row.and_then(|x| x.quality),
                own_estimate: own.as_ref().map(|v| v[u]),
                heldout_loss: data.finals.iter().find(|f| f.uid == r.uid).map(|f| f.heldout_loss),
            }
        })
        .collect();

    let summary = Summary {
        mechanism: mechanism.to_string(),
        first_block,
        last_block,
        peers: n,
        reports: data.finals.len(),
        truth: truth_name.into(),
        judgements: data.judgements.len(),
        spearman_incentive: against(&incentive),
        spearman_rank: against(&ranks),
        spearman_mean_incentive: against(&mean_incentive),
        spearman_emission: against(&emitted),
        spearman_incentive_own: own.as_ref().and_then(|o| spearman(&incentive, o)),
        noise_emission_share: role_share(&last, &emitted, Role::Noise),
        noise_serving_share: role_share(&last, &serving, Role::Noise),
        noise_incentive_share,
        copycat_incentive_share,
        copied_incentive_share,
        duplicate_incentive_share,
        copycat_flagged_by,
        duplicate_flagged_by,
        offline_share_after_cutoff,
        cabal_share_start,
        cabal_share_end,
        cabal_share_falls: (falls, cabal_epochs.len().saturating_sub(1)),
    };
    Ok(Analysis { summary, peers, stake_shares, cabal_epochs, running })
}
