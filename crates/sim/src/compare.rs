//! `agora sim compare`: one cabal attack through every mechanism variant, side by side.
//!
//! A connected honest graph (random weights of density `density` among its members, random
//! stakes) holds `1 - cabal_share` of the stake; a disjoint cabal that weights only its own
//! members (fully connected, equal weights: the paper's worst case) holds `cabal_share`.
//! Each variant runs with its default parameters for `epochs` epochs, minting `tau` x total
//! stake per epoch, carrying its state (bonds, stake scaling) from epoch to epoch, and the
//! cabal's share of stake is recorded after each one. Every variant sees the same network.

use crate::error::{at_least, non_negative, open_unit, SimError};
use crate::network::{GroupSpec, Network, Run, StakeSplit, Wiring};
use crate::plot::{Chart, Series, YScale};
use crate::report::{cell, chart, format_sig, markdown_table, prepare_out_dir, progress, write_text, Table};
use mechanism::Mechanism;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    pub n_honest: usize,
    pub n_cabal: usize,
    /// The cabal's share of stake at genesis.
    pub cabal_share: f64,
    pub epochs: usize,
    /// Stake minted per epoch as a share of the current total.
    pub tau: f64,
    /// Share of the honest group each honest peer weights.
    pub density: f64,
    pub seed: u64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            n_honest: 20,
            n_cabal: 10,
            cabal_share: 0.49,
            epochs: 100,
            tau: 0.1,
            density: 0.9,
            seed: 0,
        }
    }
}

impl CompareOptions {
    pub fn validate(&self) -> Result<(), SimError> {
        at_least("n-honest", self.n_honest, 1)?;
        at_least("n-cabal", self.n_cabal, 1)?;
        open_unit("cabal-share", self.cabal_share)?;
        at_least("epochs", self.epochs, 1)?;
        non_negative("tau", self.tau)?;
        if !(self.density > 0.0 && self.density <= 1.0) {
            return Err(SimError::bad("density", self.density, "a share in (0, 1]"));
        }
        Ok(())
    }

    /// The shared network: honest peers first, the cabal after them.
    pub fn network(&self) -> Result<Network, SimError> {
        let specs = [
            GroupSpec::new(
                "honest",
                self.n_honest,
                1.0 - self.cabal_share,
                Wiring::Random { density: self.density },
                StakeSplit::Random,
            ),
            GroupSpec::new("cabal", self.n_cabal, self.cabal_share, Wiring::Full, StakeSplit::Random),
        ];
        Network::build(&specs, &mut ChaCha8Rng::seed_from_u64(self.seed))
    }
}

/// The cabal's share under one mechanism: `shares[e]` after `e` epochs (`shares[0]` is genesis).
#[derive(Debug, Clone, PartialEq)]
pub struct MechanismTrace {
    pub mechanism: &'static str,
    pub shares: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct CompareReport {
    pub traces: Vec<MechanismTrace>,
    pub summary_markdown: String,
    pub files: Vec<PathBuf>,
}

/// Runs every variant of [`Mechanism::all`] over the same network.
pub fn simulate(opts: &CompareOptions) -> Result<Vec<MechanismTrace>, SimError> {
    opts.validate()?;
    let network = opts.network()?;
    let cabal = network.group("cabal").expect("built above").clone();
    let mechanisms = Mechanism::all();
    let bar = progress((mechanisms.len() * opts.epochs) as u64, "compare");
    let mut traces = Vec::with_capacity(mechanisms.len());
    for m in mechanisms {
        bar.set_message(m.name());
        let name = m.name();
        let mut run = Run::new(m, network.clone());
        let mut shares = Vec::with_capacity(opts.epochs + 1);
        shares.push(run.network.share(&cabal));
        for _ in 0..opts.epochs {
            let emission = opts.tau * run.network.total_stake();
            run.step(emission)?;
            shares.push(run.network.share(&cabal));
            bar.inc(1);
        }
        traces.push(MechanismTrace { mechanism: name, shares });
    }
    bar.finish_and_clear();
    Ok(traces)
}

/// `agora sim compare`: CSV (one column per mechanism), one PNG, markdown table.
pub fn run(opts: &CompareOptions, out_dir: &Path) -> Result<CompareReport, SimError> {
    opts.validate()?;
    let out_dir = prepare_out_dir(out_dir)?;
    let traces = simulate(opts)?;

    let csv = out_dir.join("compare.csv");
    let mut t = Table::new(std::iter::once("epoch").chain(traces.iter().map(|t| t.mechanism)));
    for e in 0..=opts.epochs {
        t.push(std::iter::once(e.to_string()).chain(traces.iter().map(|t| cell(t.shares[e]))).collect());
    }
    t.write(&csv)?;

    let png = out_dir.join("compare.png");
    let series: Vec<Series> = traces
        .iter()
        .map(|t| Series::new(t.mechanism, t.shares.iter().enumerate().map(|(e, &s)| (e as f64, s)).collect()))
        .collect();
    chart(
        &png,
        &Chart {
            title: &format!(
                "Disjoint cabal with {}% of stake vs connected honest graph, per mechanism",
                format_sig(opts.cabal_share * 100.0, 4)
            ),
            x_label: "epoch",
            y_label: "cabal share of stake",
            y_scale: YScale::Linear,
            y_range: Some((0.0, 1.0)),
        },
        &series,
    )?;

    let md = out_dir.join("compare.md");
    let summary = summarize(opts, &traces);
    write_text(&md, &summary)?;
    Ok(CompareReport { traces, summary_markdown: summary, files: vec![csv, png, md] })
}

/// The epochs the markdown table shows: 0, 10, 50 and the last, those that exist.
fn shown_epochs(epochs: usize) -> Vec<usize> {
    let mut e: Vec<usize> = [0, 10, 50].into_iter().filter(|&e| e < epochs).collect();
    e.push(epochs);
    e
}

fn summarize(opts: &CompareOptions, traces: &[MechanismTrace]) -> String {
    let mut s = String::new();
    s.push_str("## One cabal attack through every mechanism\n\n");
    s.push_str(&format!(
        "A connected honest graph of {} peers (random weights of density {} among themselves, \
         random stakes) holds {} of the stake; a disjoint cabal of {} peers that weights only its \
         own members holds {}. Every variant runs with its default parameters, minting {} x total \
         stake per epoch and carrying its state (bonds, stake scaling) across epochs (seed {}). \
         Epoch e is the share after e epochs.\n\n",
        opts.n_honest,
        opts.density,
        format_sig(1.0 - opts.cabal_share, 6),
        opts.n_cabal,
        format_sig(opts.cabal_share, 6),
        opts.tau,
        opts.seed,
    ));
    let epochs = shown_epochs(opts.epochs);
    let mut header: Vec<String> = vec!["mechanism".into()];
    header.extend(epochs.iter().map(|e| format!("epoch {e}")));
    header.push("why".into());
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = traces
        .iter()
        .map(|t| {
            let mut row = vec![format!("`{}`", t.mechanism)];
            row.extend(epochs.iter().map(|&e| format_sig(t.shares[e], 4)));
            row.push(why(t));
            row
        })
        .collect();
    s.push_str(&markdown_table(&header_refs, &rows));
    s.push_str("\nFiles: `compare.csv` (one column per mechanism), `compare.png`.\n");
    s
}

/// One sentence per mechanism: what the trace did, and the rule in the mechanism that made
/// it do so.
fn why(t: &MechanismTrace) -> String {
    let start = t.shares[0];
    let end = *t.shares.last().expect("genesis share");
    let trend = if end < start * 0.5 {
        "The cabal decays"
    } else if end < start - 1e-6 {
        "The cabal shrinks slowly"
    } else if end > start + 1e-6 {
        "The cabal grows"
    } else {
        "The cabal holds its share"
    };
    let reason = match t.mechanism {
        "basic" => {
            "ranks are stake-weighted column sums with no notion of who trusts whom, so each group \
             mints exactly in proportion to its stake and collusion costs nothing."
        }
        "connectivity" => {
            "ranks add rho x the stake that reaches each peer, so a group earns p + rho p^2 and the \
             larger component's edge is quadratic; stake clipping (eq. 8) also scales down peers \
             that reach less than half of the stake, which every cabal member is."
        }
        "trust" => {
            "incentive is R x sigmoid(temperature x (share of stake reaching the peer - 1/2)), so \
             peers reached only by the 49% minority are trusted less than those of the majority, \
             and the gap widens as the minority shrinks."
        }
        "nakamoto" => {
            "consensus is sigmoid(rho (t_j - kappa)) of the stake that weights a peer, so peers \
             weighted only by the minority get little incentive, and bonds route dividends to the \
             validators that weighted the winners."
        }
        "yuma" => {
            "each weight is clipped to the stake-weighted median (kappa = 1/2) of its column, and \
             the cabal's weights have less than half of the stake behind them, so they are \
             clipped to zero: cabal servers get no incentive and cabal validators no dividends."
        }
        _ => "see the mechanism's documentation.",
    };
    format!("{trend} ({} to {}): {reason}", format_sig(start, 3), format_sig(end, 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_epochs_cover_the_end() {
        assert_eq!(shown_epochs(100), vec![0, 10, 50, 100]);
        assert_eq!(shown_epochs(20), vec![0, 10, 20]);
        assert_eq!(shown_epochs(1), vec![0, 1]);
    }

    #[test]
    fn bad_options_are_rejected() {
        let bad = |o: CompareOptions| o.validate().unwrap_err().to_string();
        assert!(bad(CompareOptions { cabal_share: 0.0, ..Default::default() }).contains("--cabal-share"));
        assert!(bad(CompareOptions { epochs: 0, ..Default::default() }).contains("--epochs"));
        assert!(bad(CompareOptions { tau: -0.5, ..Default::default() }).contains("--tau"));
    }
}
