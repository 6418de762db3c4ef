//! Watching the chain while a run goes: one metagraph sample per block into
//! `DIR/metagraph.csv`, and the live table with a progress bar on the terminal.

use crate::error::LocalnetError;
use crate::scenario::Role;
use client::MetagraphInfo;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// One neuron at one block: a row of `metagraph.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetagraphRow {
    /// Seconds since the run proper started.
    pub time_s: f64,
    /// The block sampled.
    pub block: u64,
    /// The neuron's uid.
    pub uid: u16,
    /// The peer's name in the scenario.
    pub name: String,
    /// Its role in the scenario.
    pub role: Role,
    /// Base units.
    pub stake: u64,
    /// Rank R: the stake-weighted weight it receives.
    pub rank: f64,
    /// Trust T: the share of stake that weights it above zero.
    pub trust: f64,
    /// Consensus C: its trust through the consensus sigmoid.
    pub consensus: f64,
    /// Incentive I: its share of the serving emission (rank times consensus, normalised).
    pub incentive: f64,
    /// Dividends D: its share of the validating emission, from its bonds.
    pub dividends: f64,
    /// Emission of the last epoch, base units.
    pub emission: u64,
    /// Block of the last `set_weights` (empty before the first).
    pub last_update: Option<u64>,
    /// Validator trust: how much of its weight row survived the mechanism's clipping.
    #[serde(default)]
    pub validator_trust: f64,
    /// Whether it counted as a validator in the last epoch (active within the cutoff and
    /// holding a permit).
    #[serde(default)]
    pub validating: bool,
}

/// The rows of one metagraph; uids the run did not register are labelled `unknown`/honest.
pub fn rows_of(m: &MetagraphInfo, names: &[(String, Role)], time_s: f64) -> Vec<MetagraphRow> {
    (0..m.hotkeys.len())
        .map(|u| {
            let (name, role) = names.get(u).cloned().unwrap_or_else(|| (format!("uid{u}"), Role::Honest));
            let f = |v: &Vec<f64>| v.get(u).copied().unwrap_or(0.0);
            MetagraphRow {
                time_s,
                block: m.block,
                uid: u as u16,
                name,
                role,
                stake: m.S.get(u).copied().unwrap_or(0),
                rank: f(&m.R),
                trust: f(&m.T),
                consensus: f(&m.C),
                incentive: f(&m.I),
                dividends: f(&m.D),
                emission: m.E.get(u).copied().unwrap_or(0),
                last_update: m.last_update.get(u).copied().flatten(),
                validator_trust: f(&m.VT),
                validating: m.active.get(u).copied().unwrap_or(false)
                    && m.validator_permit.get(u).copied().unwrap_or(false),
            }
        })
        .collect()
}

/// Appends samples to `metagraph.csv`, flushed every block so a crash keeps what was seen.
pub struct Sampler {
    path: PathBuf,
    writer: csv::Writer<std::fs::File>,
}

impl Sampler {
    /// Creates the CSV at `path` (truncating an old one).
    pub fn create(path: &Path) -> Result<Sampler, LocalnetError> {
        let writer = csv::Writer::from_path(path).map_err(|e| csv_err(path, e))?;
        Ok(Sampler { path: path.to_path_buf(), writer })
    }

    /// Appends one block's rows and flushes them, so a run read while it goes is complete to there.
    pub fn write(&mut self, rows: &[MetagraphRow]) -> Result<(), LocalnetError> {
        for r in rows {
            self.writer.serialize(r).map_err(|e| csv_err(&self.path, e))?;
        }
        self.writer.flush().map_err(|e| LocalnetError::io(&self.path, e))
    }
}

pub(crate) fn csv_err(path: &Path, e: csv::Error) -> LocalnetError {
    let line = e.position().map_or(0, |p| p.line());
    LocalnetError::Parse { path: path.to_path_buf(), line, reason: e.to_string() }
}

/// Reads `metagraph.csv` back.
pub fn read_metagraph_csv(path: &Path) -> Result<Vec<MetagraphRow>, LocalnetError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| csv_err(path, e))?;
    r.deserialize().map(|row| row.map_err(|e| csv_err(path, e))).collect()
}

/// The metagraph as a text table: the live view of a run.
pub fn table(rows: &[MetagraphRow]) -> String {
    table_with_values(rows, None)
}

/// [`table`] with the judge's last value of each peer as a last column.
pub fn table_with_values(rows: &[MetagraphRow], values: Option<&[f64]>) -> String {
    let total: u64 = rows.iter().map(|r| r.stake).sum::<u64>().max(1);
    let mut out = format!(
        "{:>3} {:<18} {:<9} {:>12} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>10}{}\n",
        "uid",
        "name",
        "role",
        "stake",
        "S%",
        "R",
        "T",
        "C",
        "I",
        "D",
        "E",
        if values.is_some() { "      value" } else { "" }
    );
    for r in rows {
        let value = values
            .and_then(|v| v.get(usize::from(r.uid)))
            .map_or(String::new(), |v| format!(" {:>10.4}", if *v == 0.0 { 0.0 } else { *v }));
        out.push_str(&format!(
            "{:>3} {:<18} {:<9} {:>12.3} {:>6.2}% {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>10.4}{value}\n",
            r.uid,
            truncate(&r.name, 18),
            r.role.name(),
            r.stake as f64 / ledger::UNITS_PER_TOKEN as f64,
            100.0 * r.stake as f64 / total as f64,
            r.rank,
            r.trust,
            r.consensus,
            r.incentive,
            r.dividends,
            r.emission as f64 / ledger::UNITS_PER_TOKEN as f64,
        ));
    }
    out
}

/// The line a run without a terminal prints when an epoch starts: where the run is, the top
/// earner and, once the judge has spoken, the running Spearman against it.
fn epoch_line(
    elapsed: std::time::Duration,
    done: u64,
    blocks: Option<u64>,
    epoch: u64,
    rows: &[MetagraphRow],
    judge: Option<&(Vec<f64>, u64)>,
) -> String {
    let secs = elapsed.as_secs();
    let mut line = format!(
        "[{:02}:{:02}:{:02}] epoch {epoch}, block {done}/{}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        blocks.map_or("?".into(), |b| b.to_string())
    );
    if let Some(top) =
        rows.iter().filter(|r| r.incentive > 0.0).max_by(|a, b| a.incentive.total_cmp(&b.incentive))
    {
        line += &format!(", top incentive {} ({}) {:.3}", top.name, top.role.name(), top.incentive);
    }
    if let Some((values, block)) = judge {
        let incentive: Vec<f64> = rows.iter().map(|r| r.incentive).collect();
        if let Some(rho) = crate::report::spearman(&incentive, values) {
            line += &format!(", Spearman(incentive, judge at block {block}) {rho:.3}");
        }
    }
    line
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The live view: the metagraph table above a progress bar over the run's blocks. Hidden when
/// stderr is not a terminal (tests, pipes), so logs stay clean.
/// The file in the run's directory the node serves as `agora_localnet` (the dashboard's
/// localnet panel). Files, not a push over RPC: the node's RPC stays read-only for anyone who
/// reaches its port (a push method would let any of them write the panel, or need keys), and
/// the run already writes its figures to its directory.
pub const DASHBOARD_FILE: &str = "dashboard.json";

/// Writes the dashboard's localnet panel to `path`: each peer's name, role and the judge's
/// value, and the running Spearman of incentive against it. Written to a temporary file and
/// renamed over the last, so the node never reads half a file.
pub fn write_dashboard(
    path: &Path,
    rows: &[MetagraphRow],
    judge: Option<&(Vec<f64>, u64)>,
    losses: &std::collections::HashMap<String, Vec<(u64, f64)>>,
    (done, blocks, epoch): (u64, u64, u64),
) -> Result<(), LocalnetError> {
    let spearman_incentive = judge.and_then(|(values, _)| {
        let incentive: Vec<f64> = rows.iter().map(|r| r.incentive).collect();
        crate::report::spearman(&incentive, values)
    });
    let status = client::types::LocalnetStatus {
        done,
        blocks,
        epoch,
        judge_block: judge.map(|(_, b)| *b),
        spearman_incentive,
        peers: rows
            .iter()
            .map(|r| client::types::LocalnetPeer {
                uid: r.uid,
                name: r.name.clone(),
                role: r.role.name().to_string(),
                judge: judge.and_then(|(values, _)| values.get(usize::from(r.uid)).copied()),
                loss: losses.get(&r.name).cloned().unwrap_or_default(),
            })
            .collect(),
    };
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_vec(&status).map_err(|e| LocalnetError::io(path, std::io::Error::other(e)))?;
    std::fs::write(&tmp, json).map_err(|e| LocalnetError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| LocalnetError::io(path, e))
}

/// Points of a loss curve on the dashboard.
pub const LOSS_POINTS: usize = 100;

/// A peer's held-out loss over blocks from its `status.csv` (`[block, loss]`, at most
/// [`LOSS_POINTS`], evenly picked, the last kept); `None` if the file is missing or does not
/// read (e.g. a row half written: the caller keeps the last curve).
pub fn loss_curve(status_csv: &Path) -> Option<Vec<(u64, f64)>> {
    let rows = peer::files::read_status(status_csv).ok()?;
    let n = rows.len();
    let step = n.div_ceil(LOSS_POINTS).max(1);
    Some(
        rows.iter()
            .enumerate()
            .filter(|(i, _)| i % step == 0 || i + 1 == n)
            .map(|(_, r)| (r.block, r.heldout_loss))
            .collect(),
    )
}

/// What a run shows while it goes on stderr: a progress bar over the metagraph table on a terminal, one line
/// per epoch otherwise.
pub struct LiveView {
    bar: ProgressBar,
    /// The judge's last values by uid and the block they were measured at.
    judge: std::sync::Mutex<Option<(Vec<f64>, u64)>>,
    /// Without a terminal (a pipe, a log file, CI) and not quiet: one line per epoch instead
    /// of the redrawn table, so a run that is not watched still says how far it got.
    epoch_lines: bool,
    /// The last epoch a line was printed for (`u64::MAX`: none yet).
    last_epoch: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

impl LiveView {
    /// A view of a run of `blocks` blocks; `force_hidden` (quiet) shows nothing.
    pub fn new(blocks: u64, force_hidden: bool) -> LiveView {
        let terminal = std::io::stderr().is_terminal();
        let bar = if force_hidden || !terminal {
            ProgressBar::with_draw_target(Some(blocks), ProgressDrawTarget::hidden())
        } else {
            let bar = ProgressBar::new(blocks);
            let style = ProgressStyle::with_template(
                "{msg}\n[{elapsed_precise}] [{bar:40}] block {pos}/{len} ({prefix}) eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        };
        LiveView {
            bar,
            judge: std::sync::Mutex::new(None),
            epoch_lines: !force_hidden && !terminal,
            last_epoch: std::sync::atomic::AtomicU64::new(u64::MAX),
            started: std::time::Instant::now(),
        }
    }

    /// The judge's last values by uid and the block they were measured at.
    pub fn judge(&self) -> Option<(Vec<f64>, u64)> {
        self.judge.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The table then shows these values and the running Spearman of incentive against them.
    pub fn set_judge(&self, values: Vec<f64>, block: u64) {
        *self.judge.lock().unwrap_or_else(|e| e.into_inner()) = Some((values, block));
    }

    /// Shows the metagraph after `done` blocks, in `epoch` (a line per new epoch without a terminal).
    pub fn update(&self, done: u64, epoch: u64, rows: &[MetagraphRow]) {
        self.bar.set_position(done);
        self.bar.set_prefix(format!("epoch {epoch}"));
        let judge = self.judge.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if self.epoch_lines && self.last_epoch.swap(epoch, std::sync::atomic::Ordering::Relaxed) != epoch {
            eprintln!(
                "{}",
                epoch_line(self.started.elapsed(), done, self.bar.length(), epoch, rows, judge.as_ref())
            );
        }
        let text = match judge {
            Some((values, block)) => {
                let incentive: Vec<f64> = rows.iter().map(|r| r.incentive).collect();
                let rho = crate::report::spearman(&incentive, &values);
                format!(
                    "{}Spearman(incentive now, judge's value at block {block}) = {}",
                    table_with_values(rows, Some(&values)),
                    rho.map_or("n/a".into(), |r| format!("{r:.3}"))
                )
            }
            None => table(rows).trim_end().to_string(),
        };
        self.bar.set_message(text);
    }

    /// A line above the live view.
    pub fn note(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Leaves the last table and bar on the terminal, the cursor below them.
    pub fn finish(&self) {
        self.bar.finish();
        if !self.bar.is_hidden() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loss_curves_are_down_sampled_from_the_status_file_keeping_the_last() {
        let dir = std::env::temp_dir().join(format!("agora-loss-curve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(loss_curve(&dir.join(peer::files::STATUS_FILE)), None, "no file yet");
        let mut w = peer::files::StatusWriter::create(&dir).unwrap();
        for step in 0..250u64 {
            let row = peer::files::StatusRow {
                time_s: step as f64,
                step,
                block: step / 2,
                loss: 5.0,
                heldout_loss: 5.0 - step as f64 / 100.0,
                peers_answering: 1,
                stake: 1,
                incentive: 0.0,
            };
            w.append(&row).unwrap();
        }
        let curve = loss_curve(&dir.join(peer::files::STATUS_FILE)).unwrap();
        assert!(curve.len() <= LOSS_POINTS + 1, "{}", curve.len());
        assert_eq!(curve[0], (0, 5.0));
        assert_eq!(*curve.last().unwrap(), (124, 5.0 - 2.49));
        assert!(curve.windows(2).all(|w| w[0].0 <= w[1].0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    use super::*;

    #[test]
    fn samples_round_trip_through_the_csv() {
        let dir = std::env::temp_dir().join(format!("agora-localnet-sampler-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metagraph.csv");
        let row = |uid, lu| MetagraphRow {
            time_s: 1.5,
            block: 7,
            uid,
            name: format!("p{uid}"),
            role: Role::Cabal,
            stake: 10,
            rank: 0.25,
            trust: 0.5,
            consensus: 0.1,
            incentive: 0.3,
            dividends: 0.2,
            emission: 99,
            last_update: lu,
            validator_trust: 0.5,
            validating: true,
        };
        let rows = vec![row(0, None), row(1, Some(5))];
        let mut s = Sampler::create(&path).unwrap();
        s.write(&rows).unwrap();
        drop(s);
        assert_eq!(read_metagraph_csv(&path).unwrap(), rows);
        assert!(table(&rows).contains("cabal"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_epoch_line_says_where_the_run_is_who_earns_most_and_how_it_ranks() {
        let row = |uid: u16, name: &str, role, incentive| MetagraphRow {
            time_s: 0.0,
            block: 30,
            uid,
            name: name.into(),
            role,
            stake: 1,
            rank: 0.0,
            trust: 0.0,
            consensus: 0.0,
            incentive,
            dividends: 0.0,
            emission: 0,
            last_update: None,
            validator_trust: 0.0,
            validating: false,
        };
        let rows = vec![row(0, "expert", Role::Honest, 0.7), row(1, "noise", Role::Noise, 0.3)];
        let took = std::time::Duration::from_secs(3_725);
        let before = epoch_line(took, 30, Some(500), 3, &rows, None);
        assert_eq!(before, "[01:02:05] epoch 3, block 30/500, top incentive expert (honest) 0.700");
        let judged = epoch_line(took, 30, Some(500), 3, &rows, Some(&(vec![0.1, 0.9], 20)));
        assert!(judged.ends_with("Spearman(incentive, judge at block 20) -1.000"), "{judged}");
        let nobody = epoch_line(took, 0, None, 0, &[row(0, "a", Role::Honest, 0.0)], None);
        assert_eq!(nobody, "[01:02:05] epoch 0, block 0/?");
    }
}
