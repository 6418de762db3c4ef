//! The report of a run: `DIR/report.md`, CSV tables and PNG plots, from the files the run left
//! (`DIR/metagraph.csv`, `DIR/judge.csv`, `DIR/run.json`, each peer's
//! `DIR/peers/NAME/status.csv` and `final.json`), so it can be rebuilt from a directory alone.
//!
//! Three steps, each its own module: [`load`] reads the directory into a [`RunData`],
//! [`analyse`] computes every figure from it (pure, tested on fixtures), [`render`] writes the
//! files. What the figures compare with is stated in [`analyse`]: the independent judge's
//! value when the run has one, the peers' own estimate otherwise.

mod analyse;
mod load;
mod render;

pub use analyse::{
    analyse, by_block, emission_parts, judge_values, role_shares, spearman, true_values, Analysis, PeerLine,
    Summary,
};
pub use load::{load, peer_dir, ChaosReport, RunData, RunInfo, CHAOS_FILE, RUN_INFO_FILE};
pub use render::{compare_markdown, render, write_compare};

use crate::error::LocalnetError;
use crate::scenario::Scenario;
use std::path::Path;

pub use peer::files::{FinalReport, StatusRow};

/// Writes the report of the run in `dir` and returns its summary.
pub fn write_report(dir: &Path, scenario: &Scenario) -> Result<Summary, LocalnetError> {
    let data = load(dir)?;
    let server_share = match &data.info {
        Some(info) => info.server_share,
        None => mechanism::Mechanism::from_name(&scenario.mechanism).map_or(1.0, |m| m.server_share()),
    };
    let analysis = analyse(&data, &scenario.mechanism, scenario.tempo, server_share)?;
    render(dir, &data, &analysis)?;
    Ok(analysis.summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::JudgeRow;
    use crate::monitor::{MetagraphRow, Sampler};
    use crate::scenario::Role;
    use std::collections::BTreeMap;

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
            copies: Vec::new(),
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
                        validator_trust: 0.0,
                        validating: true,
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
                copies: Vec::new(),
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
        assert!(md.contains("No final.json"), "peers n and c wrote none");
        assert_eq!(sum.truth, "peers", "no judge.csv: the peers' own estimate is the truth");
        assert!(
            compare_markdown(&[sum.clone(), sum.clone()]).contains("| Spearman(incentive, value) | 1 | 1 |")
        );
        // The run directory doubles as the `yuma` run of a comparison rooted at its parent.
        let root = dir.join("cmp");
        std::fs::create_dir_all(root.join("yuma")).unwrap();
        std::fs::copy(dir.join("cabal_share.csv"), root.join("yuma/cabal_share.csv")).unwrap();
        write_compare(&root, &[sum]).unwrap();
        assert!(root.join("cabal_share_compare.png").is_file());
        assert!(std::fs::read_to_string(root.join("compare.md")).unwrap().contains("[yuma](yuma/report.md)"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn row(
        block: u64,
        uid: u16,
        role: Role,
        stake: u64,
        incentive: f64,
        dividends: f64,
        emission: u64,
    ) -> MetagraphRow {
        MetagraphRow {
            time_s: block as f64,
            block,
            uid,
            name: format!("p{uid}"),
            role,
            stake,
            rank: incentive,
            trust: 0.0,
            consensus: 0.0,
            incentive,
            dividends,
            emission,
            last_update: Some(block),
            validator_trust: 0.0,
            validating: true,
        }
    }

    /// Emission is split into what serving (incentive) and validating (dividends) earned as
    /// the mechanism split it, the offline peer's share after it left plus the cutoff is
    /// counted from the epochs after that block only, and the judge is the yardstick.
    #[test]
    fn emission_is_split_and_the_judge_is_the_yardstick() {
        // tempo 2; epochs at blocks 2, 4, 6, 8; server share 1/2.
        // uid 0 honest: I 0.6, D 0.5 throughout; uid 1 noise: I 0, D 0.5 -> 0.5 then 0;
        // uid 2 offline: I 0.4, D 0 until block 4, then I 0 and D 0.5 at block 6, 0 at 8.
        let mut rows = Vec::new();
        for b in 1..=8u64 {
            let (i0, d0, i2, d2, d1) = match b {
                ..=4 => (0.6, 0.5, 0.4, 0.0, 0.5),
                5 | 6 => (1.0, 0.0, 0.0, 0.5, 0.5),
                _ => (1.0, 1.0, 0.0, 0.0, 0.0),
            };
            let minted = 100.0;
            let e = |i: f64, d: f64| (minted * (0.5 * i + 0.5 * d)) as u64;
            let epoch = b % 2 == 0;
            rows.push(row(b, 0, Role::Honest, 10, i0, d0, if epoch { e(i0, d0) } else { 0 }));
            rows.push(row(b, 1, Role::Noise, 10, 0.0, d1, if epoch { e(0.0, d1) } else { 0 }));
            rows.push(row(b, 2, Role::Offline, 10, i2, d2, if epoch { e(i2, d2) } else { 0 }));
        }
        let judge = vec![
            (4, vec![JudgeRow { block: 4, uid: 0, quality: Some(3.0), value: 0.5 }]),
            (
                8,
                vec![
                    JudgeRow { block: 8, uid: 0, quality: Some(3.0), value: 0.9 },
                    JudgeRow { block: 8, uid: 1, quality: Some(9.0), value: -0.01 },
                ],
            ),
        ];
        let data = RunData {
            rows,
            judgements: judge,
            info: Some(RunInfo {
                driver: "in-process".into(),
                mechanism: "yuma".into(),
                tempo: 2,
                start_block: 1,
                end_block: 8,
                leaves_at: Some(3),
                activity_cutoff: Some(2),
                server_share: 0.5,
                copied: Vec::new(),
            }),
            ..RunData::default()
        };
        let a = analyse(&data, "yuma", 2, 0.5).unwrap();
        let s = &a.summary;
        assert_eq!(s.truth, "judge");
        assert_eq!(s.judgements, 2);
        // Serving: uid 0 earns 0.5*100*0.6 at blocks 2 and 4, 0.5*100 at 6, 0.5*100 at 8 = 160;
        // uid 2 earns 20 at blocks 2 and 4 = 40. Validating: uid 0 25+25+0+50 = 100, uid 1
        // 25+25+25 = 75, uid 2 25 at block 6.
        let by_uid = |u: usize| &a.peers[u];
        assert!((by_uid(0).serving_share.unwrap() - 160.0 / 200.0).abs() < 1e-9);
        assert_eq!(s.noise_serving_share, Some(0.0));
        assert!((by_uid(1).validating_share.unwrap() - 75.0 / 200.0).abs() < 1e-9);
        // After block 3 + 2 = 5: epochs 6 and 8 mint 200; the offline peer got 25 of them.
        assert!((s.offline_share_after_cutoff.unwrap() - 25.0 / 200.0).abs() < 1e-9);
        // The judge's last values: 0.9, -0.01, 0 (not asked); incentive at the end 1, 0, 0.
        assert_eq!(by_uid(0).value, Some(0.9));
        assert_eq!(by_uid(2).value, Some(0.0));
        assert!(s.spearman_incentive.unwrap() > 0.8);
        assert_eq!(a.running.len(), 2);
        assert_eq!(a.running[1].0, 8);
    }
}
