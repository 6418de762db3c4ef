//! Writing an [`Analysis`] out: `report.md`, CSV tables and PNG plots.

use super::analyse::{Analysis, Summary};
use super::load::RunData;
use crate::error::LocalnetError;
use crate::scenario::Role;
use figures::{format_sig, line_chart, markdown_table, Chart, Series, YScale};
use std::collections::BTreeMap;
use std::path::Path;

/// `format_sig`, with -0 written as 0 (a rounding sign says nothing to a reader).
fn sig(v: f64, digits: usize) -> String {
    format_sig(if v == 0.0 { 0.0 } else { v }, digits)
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| sig(v, 4))
}

/// `flagged by k of n peers` (whether detection found it: said in words), or `-`.
fn flagged(x: Option<(u64, u64)>) -> String {
    match x {
        Some((0, n)) => format!("no: flagged by none of {n} peers"),
        Some((k, n)) => format!("yes: flagged by {k} of {n} peers"),
        None => "-".into(),
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{}%", sig(100.0 * v, 3)))
}

fn report_err(e: figures::FigureError) -> LocalnetError {
    LocalnetError::Report(e.to_string())
}

pub(super) fn write(dir: &Path, name: &str, text: &str) -> Result<(), LocalnetError> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| LocalnetError::io(&p, e))
}

fn goal(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    }
}

/// The figures of the report's head: `(measure, value, goal)`.
fn headline(s: &Summary) -> Vec<Vec<String>> {
    let truth = match s.truth.as_str() {
        "judge" => "the judge's value",
        "peers" => "the peers' own estimate (no judgement found)",
        _ => "no truth measured",
    };
    let row = |m: String, v: String, g: String| vec![m, v, g];
    vec![
        row(
            format!("Spearman(chain incentive, {truth})"),
            fmt(s.spearman_incentive),
            format!(">= 0.9: {}", goal(s.spearman_incentive.map(|x| x >= 0.9))),
        ),
        row(format!("Spearman(chain ranks, {truth})"), fmt(s.spearman_rank), "".into()),
        row(
            format!("Spearman(mean incentive over the run's second half, {truth})"),
            fmt(s.spearman_mean_incentive),
            "".into(),
        ),
        row(
            format!("Spearman(share of all emission over the run, {truth})"),
            fmt(s.spearman_emission),
            "reported as it comes out".into(),
        ),
        row(
            "Spearman(chain incentive, the peers' own estimate)".into(),
            fmt(s.spearman_incentive_own),
            "the old yardstick, for comparison".into(),
        ),
        row(
            "noise peers' share of serving emission (incentive part)".into(),
            pct(s.noise_serving_share),
            format!("< 1%: {}", goal(s.noise_serving_share.map(|x| x < 0.01))),
        ),
        row(
            "noise peers' share of incentive (mean per epoch)".into(),
            pct(s.noise_incentive_share),
            "".into(),
        ),
        row(
            "noise peers' share of all emission (serving and validating)".into(),
            pct(s.noise_emission_share),
            "".into(),
        ),
        row(
            "copycats' share of incentive (mean per epoch; they relay another peer's answers)".into(),
            pct(s.copycat_incentive_share),
            format!("< 1%: {}", goal(s.copycat_incentive_share.map(|x| x < 0.01))),
        ),
        row(
            "share of incentive of the peers copied (mean per epoch)".into(),
            pct(s.copied_incentive_share),
            "kept".into(),
        ),
        row(
            "copycats flagged as copies by copy detection (peers' final reports naming one)".into(),
            flagged(s.copycat_flagged_by),
            "all".into(),
        ),
        row(
            "duplicates' share of incentive (mean per epoch; a duplicate joins with its original's checkpoint, so it publishes the version its original published first: copy detection flags it and weights it 0, as it adds nothing its original does not)".into(),
            pct(s.duplicate_incentive_share),
            "< 1%".into(),
        ),
        row(
            "duplicates flagged as copies by copy detection (peers' final reports naming one)".into(),
            flagged(s.duplicate_flagged_by),
            "all".into(),
        ),
        row(
            "offline peer's share of all emission after it left plus the activity cutoff".into(),
            pct(s.offline_share_after_cutoff),
            format!("0: {}", goal(s.offline_share_after_cutoff.map(|x| x == 0.0))),
        ),
        row(
            "cabal share of stake, start -> end".into(),
            format!("{} -> {}", fmt(s.cabal_share_start), fmt(s.cabal_share_end)),
            format!("shrinking: {}", goal(s.cabal_share_start.zip(s.cabal_share_end).map(|(a, b)| b < a))),
        ),
        row(
            "epochs where the cabal's share fell".into(),
            format!("{} of {}", s.cabal_share_falls.0, s.cabal_share_falls.1),
            "every epoch".into(),
        ),
    ]
}

/// Writes every file of the report of `data` into `dir`.
pub fn render(dir: &Path, data: &RunData, a: &Analysis) -> Result<(), LocalnetError> {
    let s = &a.summary;
    // Stake share per role over time, and the cabal's per epoch.
    let roles: Vec<Role> = Role::ALL.into_iter().filter(|ro| a.peers.iter().any(|p| p.role == *ro)).collect();
    let mut csv = String::from("block,time_s");
    roles.iter().for_each(|ro| csv.push_str(&format!(",{}", ro.name())));
    csv.push('\n');
    let mut series: BTreeMap<Role, Vec<(f64, f64)>> = BTreeMap::new();
    for (b, t, sh) in &a.stake_shares {
        csv.push_str(&format!("{b},{t}"));
        for ro in &roles {
            let v = sh.get(ro).copied().unwrap_or(0.0);
            csv.push_str(&format!(",{v}"));
            series.entry(*ro).or_default().push((*b as f64, v));
        }
        csv.push('\n');
    }
    write(dir, "stake_share.csv", &csv)?;
    let lines: Vec<Series> = series.iter().map(|(ro, pts)| Series::new(ro.name(), pts.clone())).collect();
    let chart = Chart {
        title: &format!("Stake share per role ({})", s.mechanism),
        x_label: "block",
        y_label: "share of stake",
        y_scale: YScale::Linear,
        y_range: None,
    };
    line_chart(&dir.join("stake_share.png"), &chart, &lines).map_err(report_err)?;
    let mut cabal = String::from("epoch,cabal_share\n");
    a.cabal_epochs.iter().for_each(|(e, v)| cabal.push_str(&format!("{e},{v}\n")));
    write(dir, "cabal_share.csv", &cabal)?;

    // Incentive per peer over time.
    let mut inc: BTreeMap<u16, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &data.rows {
        inc.entry(r.uid).or_default().push((r.block as f64, r.incentive));
    }
    let inc_series: Vec<Series> = a
        .peers
        .iter()
        .filter_map(|p| Some(Series::new(format!("{} {}", p.uid, p.name), inc.get(&p.uid)?.clone())))
        .collect();
    let chart = Chart {
        title: "Incentive per peer",
        x_label: "block",
        y_label: "incentive I",
        y_scale: YScale::Linear,
        y_range: None,
    };
    line_chart(&dir.join("incentive.png"), &chart, &inc_series).map_err(report_err)?;

    // Loss curves from the peers' status files.
    let loss_note = if data.status.iter().any(|(_, st)| !st.is_empty()) {
        let ls: Vec<Series> = data
            .status
            .iter()
            .map(|(name, st)| {
                Series::new(name.clone(), st.iter().map(|r| (r.time_s, r.heldout_loss)).collect())
            })
            .collect();
        let chart = Chart {
            title: "Held-out loss per peer",
            x_label: "seconds",
            y_label: "held-out loss",
            y_scale: YScale::Linear,
            y_range: None,
        };
        line_chart(&dir.join("loss.png"), &chart, &ls).map_err(report_err)?;
        "![held-out loss](loss.png)".to_string()
    } else {
        "No peer wrote a status.csv: no loss curves.".to_string()
    };

    // The end-of-run table.
    let opt = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    let mut final_csv = String::from(
        "uid,name,role,stake_share,rank,incentive,dividends,validator_trust,validating,emission_share,\
         serving_share,validating_share,judge_value,judge_quality,own_estimate,heldout_loss\n",
    );
    let mut md_rows = Vec::new();
    for p in &a.peers {
        final_csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            p.uid,
            p.name,
            p.role.name(),
            p.stake_share,
            p.rank,
            p.incentive,
            p.dividends,
            p.validator_trust,
            p.validating,
            opt(p.emission_share),
            opt(p.serving_share),
            opt(p.validating_share),
            opt(p.value),
            opt(p.quality),
            opt(p.own_estimate),
            opt(p.heldout_loss)
        ));
        md_rows.push(vec![
            p.uid.to_string(),
            p.name.clone(),
            p.role.name().into(),
            sig(p.stake_share, 3),
            sig(p.incentive, 3),
            sig(p.dividends, 3),
            format!("{}{}", sig(p.validator_trust, 3), if p.validating { "" } else { " (not validating)" }),
            pct(p.serving_share),
            pct(p.validating_share),
            pct(p.emission_share),
            fmt(p.value),
            fmt(p.quality),
            fmt(p.own_estimate),
        ]);
    }
    write(dir, "final.csv", &final_csv)?;

    let mut md = format!(
        "# Localnet run: {mech}\n\n{n} peers, blocks {first}..={last}, {reps} final reports, {j} judgements.\n\
         Files: `metagraph.csv` (every neuron at every block), `judge.csv` and `judge_matrix.csv` (the judge's \
         measurements), `stake_share.csv`, `cabal_share.csv`, `final.csv`.\n\n\
         ## Does the chain pay for value?\n\n\
         The yardstick is the **judge's value**: each peer's marginal value to the others, measured by the \
         orchestrator on each topic's test split, which no peer trains, pretrains or scores on. For every \
         consumer i (a peer whose model the judge runs) it is the increase of i's test loss when the peer's \
         answers are shuffled between the sequences of i's batch, so they no longer answer what was asked \
         (eq. 2 of the market paper as permutation importance, on unseen data), summed over consumers. \
         The peers' own estimate (the same measurement on their held-out split, by the estimator the chain \
         aggregates) is a second column.\n\n",
        mech = s.mechanism,
        n = s.peers,
        first = s.first_block,
        last = s.last_block,
        reps = s.reports,
        j = s.judgements,
    );
    md.push_str(&markdown_table(&["measure", "value", "goal"], &headline(s)));
    md.push_str("\n## At the end\n\nEmission shares are over the whole run: serving = paid by incentive, validating = paid by dividends. Validator trust: the share of the peer's last weight row that survived the mechanism's clipping (how much of what it said the stake majority confirmed), next to the dividends it earns for validating. Quality: the judge's cross-entropy (nats/byte) of the peer's answers on its own topic's test data, read through the network standard with no learned reader (lower is better).\n\n");
    md.push_str(&markdown_table(
        &[
            "uid",
            "name",
            "role",
            "stake share",
            "incentive I",
            "dividends D",
            "validator trust",
            "serving emission",
            "validating emission",
            "all emission",
            "judge value",
            "judge quality",
            "own estimate",
        ],
        &md_rows,
    ));
    if !data.missing.is_empty() {
        md.push_str(&format!(
            "\nNo final.json (peers that left or were killed): {}.\n",
            data.missing.join(", ")
        ));
    }
    if let Some(c) = &data.chaos {
        md.push_str(&format!(
            "\n## Faults injected\n\nEvery axon was published behind a proxy (`wire::chaos`) that lost {}% of the \
             chunks it relayed (each delivered late, after TCP's 200 ms retransmission timeout), added 0..{} ms of \
             jitter and {} ms of delay per chunk, cut {}% and garbled {}% of the connections. The node and the judge \
             were not behind the proxies.\n\n",
            sig(100.0 * c.loss, 3),
            c.jitter_ms,
            c.delay_ms,
            sig(100.0 * c.disconnect, 3),
            sig(100.0 * c.garbage, 3)
        ));
        let rows: Vec<Vec<String>> = c
            .peers
            .iter()
            .map(|(n, conns, chunks, lost, cut, garbled)| {
                vec![
                    n.clone(),
                    conns.to_string(),
                    chunks.to_string(),
                    lost.to_string(),
                    cut.to_string(),
                    garbled.to_string(),
                ]
            })
            .collect();
        md.push_str(&markdown_table(
            &[
                "peer (its proxy)",
                "connections",
                "chunks relayed",
                "chunks lost",
                "connections cut",
                "garbled",
            ],
            &rows,
        ));
    }
    if !a.running.is_empty() {
        md.push_str("\n## The judge over the run\n\nSpearman(chain incentive at the judgement's block, the judge's value then).\n\n");
        let rows: Vec<Vec<String>> = a.running.iter().map(|(b, r)| vec![b.to_string(), fmt(*r)]).collect();
        md.push_str(&markdown_table(&["block", "Spearman"], &rows));
    }
    md.push_str(&format!(
        "\n## Over time\n\n![stake share per role](stake_share.png)\n\n![incentive per peer](incentive.png)\n\n{loss_note}\n"
    ));
    write(dir, "report.md", &md)?;
    let json = serde_json::to_string_pretty(s).map_err(|e| LocalnetError::Report(e.to_string()))?;
    write(dir, "summary.json", &json)
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
        row("truth", &|s| s.truth.clone()),
        row("Spearman(incentive, value)", &|s| fmt(s.spearman_incentive)),
        row("Spearman(ranks, value)", &|s| fmt(s.spearman_rank)),
        row("Spearman(mean incentive 2nd half, value)", &|s| fmt(s.spearman_mean_incentive)),
        row("Spearman(emission over the run, value)", &|s| fmt(s.spearman_emission)),
        row("Spearman(incentive, own estimate)", &|s| fmt(s.spearman_incentive_own)),
        row("noise share of serving emission", &|s| pct(s.noise_serving_share)),
        row("noise share of all emission", &|s| pct(s.noise_emission_share)),
        row("offline share after cutoff", &|s| pct(s.offline_share_after_cutoff)),
        row("cabal stake share start", &|s| fmt(s.cabal_share_start)),
        row("cabal stake share end", &|s| fmt(s.cabal_share_end)),
        row("epochs the cabal share fell", &|s| {
            format!("{} of {}", s.cabal_share_falls.0, s.cabal_share_falls.1)
        }),
        row("final reports", &|s| format!("{} of {}", s.reports, s.peers)),
    ];
    format!(
        "# Localnet: mechanisms side by side\n\nSame scenario, one run per mechanism (each in its own directory). \
         value = the judge's value where `truth` is `judge`.\n\n{}",
        markdown_table(&header, &rows)
    )
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
        line_chart(&out.join("cabal_share_compare.png"), &chart, &lines).map_err(report_err)?;
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
