//! The report of a run: `DIR/report.md`, CSV tables and PNG plots, from the files the run left
//! (`DIR/metagraph.csv`, each peer's `DIR/peers/NAME/status.csv` and `final.json`), so it can be
//! rebuilt from a directory alone.
//!
//! Ranking truth (issue 6, the papers' eq. 2 made empirical): each peer's `final.json` gives the
//! increase of its held-out loss when a uid is removed from its gate; the true value of uid j is
//! the sum of those increases over every peer that reported. The report compares it with the
//! chain's incentive and ranks at the end by Spearman's rho (average ranks for ties).

use crate::error::LocalnetError;
use crate::monitor::{read_metagraph_csv, MetagraphRow};
use crate::scenario::{Role, Scenario};
use serde::{Deserialize, Serialize};
use sim::plot::{Chart, Series, YScale};
use sim::report::{format_sig, markdown_table};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use peer::files::{FinalReport, StatusRow};

/// The directory of a peer's files.
pub fn peer_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join("peers").join(name)
}

pub fn read_status(path: &Path) -> Result<Vec<StatusRow>, LocalnetError> {
    Ok(peer::files::read_status(path)?)
}

pub fn read_final(path: &Path) -> Result<FinalReport, LocalnetError> {
    Ok(FinalReport::read(path)?)
}

/// True value per uid: the sum over reports of the held-out loss increase when the uid is
/// removed. A uid no report names gets 0 (no peer lost anything without it). Keys that are not
/// uids below `n` are an error: they would silently drop a measurement.
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

/// Spearman's rho with average ranks for ties (`sim`'s implementation, shared with the
/// competitive-equilibrium experiment). `None` when undefined (a constant side, < 2 points).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    sim::empirical::spearman(x, y)
}

/// What a run measured: the numbers of the report's head and of the `--compare` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mechanism: String,
    pub first_block: u64,
    pub last_block: u64,
    pub peers: usize,
    /// Peers whose final.json was read.
    pub reports: usize,
    pub spearman_incentive: Option<f64>,
    pub spearman_rank: Option<f64>,
    /// Spearman of the mean incentive over the epochs of the run's second half.
    #[serde(default)]
    pub spearman_mean_incentive: Option<f64>,
    /// Noise peers' share of all emission over the epochs sampled: what they earn serving
    /// (incentive) and validating (dividends) together.
    pub noise_emission_share: Option<f64>,
    /// Noise peers' mean share of the incentive over the epochs that paid any: what the chain
    /// pays them for what they serve.
    #[serde(default)]
    pub noise_incentive_share: Option<f64>,
    /// Cabal's share of stake at the first and last sampled block.
    pub cabal_share_start: Option<f64>,
    pub cabal_share_end: Option<f64>,
    /// Epoch-to-epoch transitions where the cabal's share fell, out of all transitions.
    pub cabal_share_falls: (usize, usize),
}

/// Groups metagraph rows by block, in block order.
fn by_block(rows: &[MetagraphRow]) -> BTreeMap<u64, Vec<&MetagraphRow>> {
    let mut m: BTreeMap<u64, Vec<&MetagraphRow>> = BTreeMap::new();
    for r in rows {
        m.entry(r.block).or_default().push(r);
    }
    m
}

/// Share of stake per role at one block.
fn role_shares(rows: &[&MetagraphRow]) -> BTreeMap<Role, f64> {
    let total: u64 = rows.iter().map(|r| r.stake).sum();
    let mut out = BTreeMap::new();
    for role in Role::ALL {
        let s: u64 = rows.iter().filter(|r| r.role == role).map(|r| r.stake).sum();
        if rows.iter().any(|r| r.role == role) {
            out.insert(role, if total == 0 { 0.0 } else { s as f64 / total as f64 });
        }
    }
    out
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format_sig(v, 4))
}

fn report_err(e: sim::SimError) -> LocalnetError {
    LocalnetError::Report(e.to_string())
}

/// Writes the report of the run in `dir` and returns its summary.
pub fn write_report(dir: &Path, scenario: &Scenario) -> Result<Summary, LocalnetError> {
    let rows = read_metagraph_csv(&dir.join("metagraph.csv"))?;
    let blocks = by_block(&rows);
    let (Some((&first_block, _)), Some((&last_block, last))) =
        (blocks.first_key_value(), blocks.last_key_value())
    else {
        return Err(LocalnetError::Report("metagraph.csv has no samples".into()));
    };
    let n = last.len();
    let mut last: Vec<&MetagraphRow> = last.clone();
    last.sort_by_key(|r| r.uid);

    // Peers' own files.
    let mut reports = Vec::new();
    let mut status: Vec<(String, Vec<StatusRow>)> = Vec::new();
    let mut notes = Vec::new();
    for r in &last {
        let pd = peer_dir(dir, &r.name);
        let fin = pd.join(peer::files::FINAL_FILE);
        if fin.is_file() {
            reports.push(read_final(&fin)?);
        } else {
            notes.push(format!("- {} (uid {}): no final.json", r.name, r.uid));
        }
        let st = pd.join(peer::files::STATUS_FILE);
        if st.is_file() {
            status.push((r.name.clone(), read_status(&st)?));
        }
    }
    let values = if reports.is_empty() { None } else { Some(true_values(&reports, n)?) };
    let incentive: Vec<f64> = last.iter().map(|r| r.incentive).collect();
    let ranks: Vec<f64> = last.iter().map(|r| r.rank).collect();
    let (sp_i, sp_r) = match &values {
        Some(v) => (spearman(&incentive, v), spearman(&ranks, v)),
        None => (None, None),
    };
    // The last block's incentive is one epoch's snapshot; the mean over the epochs of the run's
    // second half says what the chain paid once the peers had settled.
    let mean_incentive: Vec<f64> = {
        let epochs: Vec<&Vec<&MetagraphRow>> = blocks
            .iter()
            .filter(|(b, _)| *b % scenario.tempo == 0 && 2 * (*b - first_block) >= last_block - first_block)
            .map(|(_, rs)| rs)
            .collect();
        (0..n)
            .map(|uid| {
                let sum: f64 = epochs
                    .iter()
                    .filter_map(|rs| rs.iter().find(|r| usize::from(r.uid) == uid).map(|r| r.incentive))
                    .sum();
                sum / epochs.len().max(1) as f64
            })
            .collect()
    };
    let sp_mean = values.as_ref().and_then(|v| spearman(&mean_incentive, v));

    // Emission over the run: each epoch's E, read at the epoch's block.
    let mut emitted = vec![0u128; n];
    for (b, rs) in &blocks {
        if b % scenario.tempo == 0 {
            for r in rs {
                if let Some(e) = emitted.get_mut(usize::from(r.uid)) {
                    *e += u128::from(r.emission);
                }
            }
        }
    }
    let total_emitted: u128 = emitted.iter().sum();
    let share_of = |role: Role| -> Option<f64> {
        let mine: u128 = last.iter().filter(|r| r.role == role).map(|r| emitted[usize::from(r.uid)]).sum();
        (total_emitted > 0 && last.iter().any(|r| r.role == role)).then(|| mine as f64 / total_emitted as f64)
    };
    let noise_share = share_of(Role::Noise);
    let noise_incentive = {
        let per_epoch: Vec<f64> = blocks
            .iter()
            .filter(|(b, _)| **b % scenario.tempo == 0)
            .filter_map(|(_, rs)| {
                let total: f64 = rs.iter().map(|r| r.incentive).sum();
                let noise: f64 = rs.iter().filter(|r| r.role == Role::Noise).map(|r| r.incentive).sum();
                (total > 0.0).then(|| noise / total)
            })
            .collect();
        let any_noise = last.iter().any(|r| r.role == Role::Noise);
        (any_noise && !per_epoch.is_empty()).then(|| per_epoch.iter().sum::<f64>() / per_epoch.len() as f64)
    };

    // Stake share per role over time, and the cabal's per epoch.
    let mut shares_csv = String::from("block,time_s");
    let roles: Vec<Role> = Role::ALL.into_iter().filter(|ro| last.iter().any(|r| r.role == *ro)).collect();
    for ro in &roles {
        shares_csv.push_str(&format!(",{}", ro.name()));
    }
    shares_csv.push('\n');
    let mut series: BTreeMap<Role, Vec<(f64, f64)>> = BTreeMap::new();
    let mut cabal_epochs: Vec<(u64, f64)> = Vec::new();
    for (b, rs) in &blocks {
        let sh = role_shares(rs);
        shares_csv.push_str(&format!("{b},{}", rs[0].time_s));
        for ro in &roles {
            let s = sh.get(ro).copied().unwrap_or(0.0);
            shares_csv.push_str(&format!(",{s}"));
            series.entry(*ro).or_default().push((*b as f64, s));
        }
        shares_csv.push('\n');
        if b % scenario.tempo == 0 {
            if let Some(c) = sh.get(&Role::Cabal) {
                cabal_epochs.push((b / scenario.tempo, *c));
            }
        }
    }
    write(dir, "stake_share.csv", &shares_csv)?;
    let lines: Vec<Series> = series.iter().map(|(ro, pts)| Series::new(ro.name(), pts.clone())).collect();
    let chart = Chart {
        title: &format!("Stake share per role ({})", scenario.mechanism),
        x_label: "block",
        y_label: "share of stake",
        y_scale: YScale::Linear,
        y_range: None,
    };
    sim::report::chart(&dir.join("stake_share.png"), &chart, &lines).map_err(report_err)?;
    let mut cabal_csv = String::from("epoch,cabal_share\n");
    cabal_epochs.iter().for_each(|(e, s)| cabal_csv.push_str(&format!("{e},{s}\n")));
    write(dir, "cabal_share.csv", &cabal_csv)?;
    let falls = cabal_epochs.windows(2).filter(|w| w[1].1 < w[0].1).count();
    let transitions = cabal_epochs.len().saturating_sub(1);
    let cabal_first = blocks.values().next().and_then(|rs| role_shares(rs).get(&Role::Cabal).copied());
    let cabal_last = role_shares(&last).get(&Role::Cabal).copied();

    // Incentive per peer over time, and at the end.
    let mut inc: BTreeMap<u16, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &rows {
        inc.entry(r.uid).or_default().push((r.block as f64, r.incentive));
    }
    let inc_series: Vec<Series> =
        last.iter().map(|r| Series::new(format!("{} {}", r.uid, r.name), inc[&r.uid].clone())).collect();
    let chart = Chart {
        title: "Incentive per peer",
        x_label: "block",
        y_label: "incentive I",
        y_scale: YScale::Linear,
        y_range: None,
    };
    sim::report::chart(&dir.join("incentive.png"), &chart, &inc_series).map_err(report_err)?;

    // Loss curves from the peers' status files.
    let loss_note = if status.iter().any(|(_, s)| !s.is_empty()) {
        let ls: Vec<Series> = status
            .iter()
            .map(|(name, s)| {
                Series::new(name.clone(), s.iter().map(|r| (r.time_s, r.heldout_loss)).collect())
            })
            .collect();
        let chart = Chart {
            title: "Held-out loss per peer",
            x_label: "seconds",
            y_label: "held-out loss",
            y_scale: YScale::Linear,
            y_range: None,
        };
        sim::report::chart(&dir.join("loss.png"), &chart, &ls).map_err(report_err)?;
        "![held-out loss](loss.png)".to_string()
    } else {
        "No peer wrote a status.csv: no loss curves.".to_string()
    };

    // The end-of-run table.
    let total_stake: u64 = last.iter().map(|r| r.stake).sum::<u64>().max(1);
    let mut final_csv = String::from(
        "uid,name,role,stake,stake_share,rank,incentive,emission_share,true_value,heldout_loss\n",
    );
    let mut md_rows = Vec::new();
    for r in &last {
        let u = usize::from(r.uid);
        let tv = values.as_ref().map(|v| v[u]);
        let hl = reports.iter().find(|f| f.uid == r.uid).map(|f| f.heldout_loss);
        let es = (total_emitted > 0).then(|| emitted[u] as f64 / total_emitted as f64);
        let ss = r.stake as f64 / total_stake as f64;
        let opt = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
        final_csv.push_str(&format!(
            "{},{},{},{},{ss},{},{},{},{},{}\n",
            r.uid,
            r.name,
            r.role.name(),
            r.stake,
            r.rank,
            r.incentive,
            opt(es),
            opt(tv),
            opt(hl)
        ));
        md_rows.push(vec![
            r.uid.to_string(),
            r.name.clone(),
            r.role.name().into(),
            format_sig(ss, 4),
            format_sig(r.rank, 4),
            format_sig(r.incentive, 4),
            fmt(es),
            fmt(tv),
            fmt(hl),
        ]);
    }
    write(dir, "final.csv", &final_csv)?;

    let summary = Summary {
        mechanism: scenario.mechanism.clone(),
        first_block,
        last_block,
        peers: n,
        reports: reports.len(),
        spearman_incentive: sp_i,
        spearman_rank: sp_r,
        spearman_mean_incentive: sp_mean,
        noise_emission_share: noise_share,
        noise_incentive_share: noise_incentive,
        cabal_share_start: cabal_first,
        cabal_share_end: cabal_last,
        cabal_share_falls: (falls, transitions),
    };
    let goal = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    };
    let mut md = format!(
        "# Localnet run: {mech}\n\n{n} peers, blocks {first_block}..={last_block} (tempo {tempo}), {reps} final reports.\n\
         Files: `metagraph.csv` (every neuron at every block), `stake_share.csv`, `cabal_share.csv`, `final.csv`.\n\n\
         ## Ranking truth\n\nTrue value of uid j = sum over peers of the increase of their held-out loss with j removed \
         from their gate (eq. 2 of the market paper, measured).\n\n\
         | measure | value | goal |\n| --- | --- | --- |\n\
         | Spearman(chain incentive, true value) | {si} | >= 0.9: {gi} |\n\
         | Spearman(chain ranks, true value) | {sr} | >= 0.9: {gr} |\n\
         | Spearman(mean incentive over the run's second half, true value) | {sm} | >= 0.9: {gm} |\n\
         | noise peers' share of emission (serving and validating) | {ns} | < 1%: {gn} |\n\
         | noise peers' share of incentive (what serving earns) | {ni} | < 1%: {gni} |\n\
         | cabal share of stake, start -> end | {cs} -> {ce} | shrinking: {gc} |\n\
         | epochs where the cabal's share fell | {ff} of {tt} | every epoch |\n\n",
        mech = scenario.mechanism,
        tempo = scenario.tempo,
        reps = reports.len(),
        si = fmt(sp_i),
        gi = goal(sp_i.map(|x| x >= 0.9)),
        sr = fmt(sp_r),
        gr = goal(sp_r.map(|x| x >= 0.9)),
        sm = fmt(sp_mean),
        gm = goal(sp_mean.map(|x| x >= 0.9)),
        ns = fmt(noise_share),
        gn = goal(noise_share.map(|x| x < 0.01)),
        ni = fmt(noise_incentive),
        gni = goal(noise_incentive.map(|x| x < 0.01)),
        cs = fmt(cabal_first),
        ce = fmt(cabal_last),
        gc = goal(cabal_first.zip(cabal_last).map(|(a, b)| b < a)),
        ff = falls,
        tt = transitions,
    );
    md.push_str("## At the end\n\n");
    md.push_str(&markdown_table(
        &[
            "uid",
            "name",
            "role",
            "stake share",
            "rank R",
            "incentive I",
            "emission share (run)",
            "true value",
            "held-out loss",
        ],
        &md_rows,
    ));
    if !notes.is_empty() {
        md.push_str(&format!("\nMissing peer files:\n{}\n", notes.join("\n")));
    }
    md.push_str(&format!(
        "\n## Over time\n\n![stake share per role](stake_share.png)\n\n![incentive per peer](incentive.png)\n\n{loss_note}\n"
    ));
    write(dir, "report.md", &md)?;
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    write(dir, "summary.json", &json)?;
    Ok(summary)
}

/// The `--compare` table: one column per mechanism.
pub fn compare_markdown(summaries: &[Summary]) -> String {
    let mut header = vec!["measure"];
    header.extend(summaries.iter().map(|s| s.mechanism.as_str()));
    let row = |name: &str, f: &dyn Fn(&Summary) -> String| {
        let mut r = vec![name.to_string()];
        r.extend(summaries.iter().map(f));
        r
    };
    let rows = vec![
        row("Spearman(incentive, true value)", &|s| fmt(s.spearman_incentive)),
        row("Spearman(ranks, true value)", &|s| fmt(s.spearman_rank)),
        row("Spearman(mean incentive, 2nd half)", &|s| fmt(s.spearman_mean_incentive)),
        row("noise share of emission", &|s| fmt(s.noise_emission_share)),
        row("noise share of incentive", &|s| fmt(s.noise_incentive_share)),
        row("cabal stake share start", &|s| fmt(s.cabal_share_start)),
        row("cabal stake share end", &|s| fmt(s.cabal_share_end)),
        row("epochs the cabal share fell", &|s| {
            format!("{} of {}", s.cabal_share_falls.0, s.cabal_share_falls.1)
        }),
        row("final reports", &|s| format!("{} of {}", s.reports, s.peers)),
    ];
    format!("# Localnet: mechanisms side by side\n\nSame scenario, one run per mechanism (each in its own directory).\n\n{}", markdown_table(&header, &rows))
}

/// Writes `OUT/compare.md` (the table of [`compare_markdown`]) and, from each run's
/// `OUT/<mechanism>/cabal_share.csv`, `OUT/cabal_share_compare.png`: the cabal's share of stake
/// per epoch under every mechanism on one chart.
pub fn write_compare(out: &Path, summaries: &[Summary]) -> Result<(), LocalnetError> {
    let mut md = compare_markdown(summaries);
    let mut lines = Vec::new();
    for s in summaries {
        let path = out.join(&s.mechanism).join("cabal_share.csv");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let points: Vec<(f64, f64)> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(','))
            .filter_map(|(e, v)| Some((e.parse().ok()?, v.parse().ok()?)))
            .collect();
        if !points.is_empty() {
            lines.push(Series::new(s.mechanism.clone(), points));
        }
    }
    if !lines.is_empty() {
        let chart = Chart {
            title: "Cabal share of stake per epoch",
            x_label: "epoch",
            y_label: "cabal share of stake",
            y_scale: YScale::Linear,
            y_range: None,
        };
        sim::report::chart(&out.join("cabal_share_compare.png"), &chart, &lines).map_err(report_err)?;
        md.push_str("\n![cabal share per mechanism](cabal_share_compare.png)\n");
    }
    md.push_str(&format!(
        "\nEach run's own report: {}.\n",
        summaries
            .iter()
            .map(|s| format!("[{m}]({m}/report.md)", m = s.mechanism))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    write(out, "compare.md", &md)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), LocalnetError> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| LocalnetError::io(&p, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::Sampler;

    #[test]
    fn spearman_uses_average_ranks_for_ties() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // x ranks: 1, 2.5, 2.5, 4; y ranks: 1, 2, 3, 4. Pearson of those: 0.9486832980505138.
        let r = spearman(&[1.0, 5.0, 5.0, 9.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((r - 0.9486832980505138).abs() < 1e-12, "{r}");
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None, "a constant side has no order");
        assert_eq!(spearman(&[1.0], &[1.0]), None);
    }

    #[test]
    fn true_values_sum_ablations_and_refuse_unknown_uids() {
        let f = |uid, pairs: &[(&str, f64)]| FinalReport {
            uid,
            steps: 10,
            heldout_loss: 2.0,
            student_loss: None,
            ablation: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        let v = true_values(&[f(0, &[("1", 0.5), ("2", 0.1)]), f(1, &[("0", 0.2), ("2", 0.3)])], 3).unwrap();
        assert_eq!(v, vec![0.2, 0.5, 0.4]);
        assert!(true_values(&[f(0, &[("7", 0.5)])], 3).is_err());
        assert!(true_values(&[f(0, &[("x", 0.5)])], 3).is_err());
        assert!(true_values(&[f(0, &[("1", f64::NAN)])], 3).is_err());
        let parsed: FinalReport =
            serde_json::from_str(r#"{"uid": 3, "heldout_loss": 2.1, "ablation": {"0": 0.05, "5": 0.001}}"#)
                .unwrap();
        assert_eq!(parsed.ablation["5"], 0.001);
    }

    /// A fixture run: 4 peers (2 honest, 1 noise, 1 cabal) over 3 epochs of tempo 2.
    #[test]
    fn the_report_reads_a_run_directory() {
        let dir = std::env::temp_dir().join(format!("agora-localnet-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let peers = [("a", Role::Honest), ("b", Role::Honest), ("n", Role::Noise), ("c", Role::Cabal)];
        let mut s = Sampler::create(&dir.join("metagraph.csv")).unwrap();
        for block in 1..=6u64 {
            let rows: Vec<MetagraphRow> = peers
                .iter()
                .enumerate()
                .map(|(u, (name, role))| {
                    // The cabal's stake stays at 40 while the others grow: its share falls.
                    let stake = if *role == Role::Cabal { 40 } else { 20 + block * (3 - u.min(2) as u64) };
                    let incentive = [0.5, 0.3, 0.0, 0.2][u];
                    MetagraphRow {
                        time_s: block as f64,
                        block,
                        uid: u as u16,
                        name: name.to_string(),
                        role: *role,
                        stake,
                        rank: incentive,
                        trust: 0.0,
                        consensus: 0.0,
                        incentive,
                        dividends: 0.0,
                        emission: [50, 30, 0, 20][u],
                        last_update: Some(block),
                    }
                })
                .collect();
            s.write(&rows).unwrap();
        }
        drop(s);
        let ablation =
            [(0, vec![("1", 0.3), ("2", 0.0), ("3", 0.1)]), (1, vec![("0", 0.5), ("2", -0.01), ("3", 0.05)])];
        for (uid, ab) in &ablation {
            let pd = peer_dir(&dir, peers[*uid].0);
            std::fs::create_dir_all(&pd).unwrap();
            let map: BTreeMap<String, f64> = ab.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            let f = FinalReport {
                uid: *uid as u16,
                steps: 10,
                heldout_loss: 3.0,
                student_loss: Some(3.1),
                ablation: map,
            };
            std::fs::write(pd.join("final.json"), serde_json::to_string(&f).unwrap()).unwrap();
            std::fs::write(
                pd.join("status.csv"),
                "time_s,step,block,loss,heldout_loss,peers_answering,stake,incentive\n1.0,1,1,4.0,4.2,3,20,0.1\n2.0,2,2,3.5,3.9,3,21,0.2\n",
            )
            .unwrap();
        }
        let scenario = Scenario { tempo: 2, ..Scenario::default() };
        let sum = write_report(&dir, &scenario).unwrap();
        // True values: uid0 0.5, uid1 0.3, uid2 -0.01, uid3 0.15; incentive 0.5, 0.3, 0, 0.2: same order.
        assert_eq!(sum.spearman_incentive, Some(1.0));
        assert_eq!(sum.spearman_rank, Some(1.0));
        assert_eq!(sum.spearman_mean_incentive, Some(1.0));
        assert_eq!(sum.noise_emission_share, Some(0.0));
        assert_eq!(sum.noise_incentive_share, Some(0.0));
        assert_eq!((sum.first_block, sum.last_block, sum.peers, sum.reports), (1, 6, 4, 2));
        // Epoch blocks 2, 4, 6: the cabal's share falls at each transition.
        assert_eq!(sum.cabal_share_falls, (2, 2));
        assert!(sum.cabal_share_end.unwrap() < sum.cabal_share_start.unwrap());
        for f in [
            "report.md",
            "stake_share.csv",
            "stake_share.png",
            "cabal_share.csv",
            "final.csv",
            "incentive.png",
            "loss.png",
            "summary.json",
        ] {
            assert!(dir.join(f).is_file(), "{f}");
        }
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.contains("no final.json"), "peers n and c wrote none");
        assert!(compare_markdown(&[sum.clone(), sum.clone()])
            .contains("| Spearman(incentive, true value) | 1 | 1 |"));
        // The run directory doubles as the `yuma` run of a comparison rooted at its parent.
        let root = dir.join("cmp");
        std::fs::create_dir_all(root.join("yuma")).unwrap();
        std::fs::copy(dir.join("cabal_share.csv"), root.join("yuma/cabal_share.csv")).unwrap();
        write_compare(&root, &[sum]).unwrap();
        assert!(root.join("cabal_share_compare.png").is_file());
        assert!(std::fs::read_to_string(root.join("compare.md")).unwrap().contains("[yuma](yuma/report.md)"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
