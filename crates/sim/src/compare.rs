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
use crate::report::{cell, chart, prepare_out_dir, progress, write_text, Table};
use figures::plot::{Chart, Series, YScale};
use figures::{format_sig, markdown_table};
use mechanism::Mechanism;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Parameters of `agora sim compare`: the honest graph, the disjoint cabal and how long they run.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// Peers in the connected honest graph.
    pub n_honest: usize,
    /// Peers in the cabal, which weights only its own members.
    pub n_cabal: usize,
    /// The cabal's share of stake at genesis.
    pub cabal_share: f64,
    /// Epochs each mechanism runs.
    pub epochs: usize,
    /// Stake minted per epoch as a share of the current total.
    pub tau: f64,
    /// Share of the honest group each honest peer weights.
    pub density: f64,
    /// Seeds the network (weights and stakes): every mechanism sees the same one.
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
    /// Refuses empty groups or runs, shares outside (0, 1), negative rates and densities outside
    /// (0, 1], naming the option.
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

/// What the first epoch of a mechanism did, averaged per group: the numbers its "why"
/// sentence quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstEpoch {
    /// The cabal's share of the epoch's emission; `None` when the epoch minted nothing.
    pub cabal_emission_share: Option<f64>,
    /// Mean of the variant's `trust` output over honest peers and over cabal peers.
    pub trust: (f64, f64),
    /// Mean of the variant's `consensus` output over honest peers and over cabal peers.
    pub consensus: (f64, f64),
}

/// The cabal's share under one mechanism: `shares[e]` after `e` epochs (`shares[0]` is genesis).
#[derive(Debug, Clone, PartialEq)]
pub struct MechanismTrace {
    /// The mechanism variant's name, as `--mechanism` takes it.
    pub mechanism: &'static str,
    /// The cabal's share of stake after each epoch.
    pub shares: Vec<f64>,
    /// Epochs that minted anything.
    pub minted_epochs: usize,
    /// Its first epoch's emission, trust and consensus per group: why the cabal's share moved.
    pub first_epoch: FirstEpoch,
    /// The cabal's final share when the honest graph is complete (density 1, same stakes);
    /// `None` when the run already used density 1.
    pub complete_honest_end: Option<f64>,
}

/// How the network's weights back each group, independent of any mechanism.
#[derive(Debug, Clone, PartialEq)]
pub struct Support {
    /// Mean over honest peers j of the stake share of the *other* peers that weight j.
    pub honest_mean: f64,
    /// The largest such share over honest peers.
    pub honest_max: f64,
    /// The same mean over cabal peers.
    pub cabal_mean: f64,
}

/// What `agora sim compare` produced.
#[derive(Debug, Clone)]
pub struct CompareReport {
    /// One trace per mechanism variant, in the order they ran.
    pub traces: Vec<MechanismTrace>,
    /// How the weights back each group, whatever the mechanism.
    pub support: Support,
    /// The markdown summary, as `agora` prints it and writes it to the output directory.
    pub summary_markdown: String,
    /// Every file written (CSV, chart, summary).
    pub files: Vec<PathBuf>,
}

/// Direct support of each peer: the share of stake of the other peers that weight it.
pub fn support(network: &Network) -> Support {
    let total = network.total_stake();
    let mut backing = vec![0.0; network.stake.len()];
    for (i, j, _) in network.weights.iter() {
        if i != j {
            backing[j] += network.stake[i] / total;
        }
    }
    let honest = network.group("honest").expect("compare network").peers.clone();
    let cabal = network.group("cabal").expect("compare network").peers.clone();
    let mean = |r: std::ops::Range<usize>| backing[r.clone()].iter().sum::<f64>() / r.len() as f64;
    Support {
        honest_mean: mean(honest.clone()),
        honest_max: backing[honest].iter().copied().fold(0.0, f64::max),
        cabal_mean: mean(cabal),
    }
}

fn group_means(v: &[f64], network: &Network) -> (f64, f64) {
    let mean = |name: &str| {
        let r = network.group(name).expect("compare network").peers.clone();
        v[r.clone()].iter().sum::<f64>() / r.len() as f64
    };
    (mean("honest"), mean("cabal"))
}

/// Runs one mechanism for `epochs` epochs.
fn trace(
    m: Mechanism,
    network: &Network,
    opts: &CompareOptions,
    bar: &indicatif::ProgressBar,
) -> Result<(Vec<f64>, usize, FirstEpoch), SimError> {
    let cabal = network.group("cabal").expect("compare network").clone();
    let mut run = Run::new(m, network.clone());
    let mut shares = Vec::with_capacity(opts.epochs + 1);
    shares.push(run.network.share(&cabal));
    let mut minted = 0;
    let mut first = None;
    for _ in 0..opts.epochs {
        let emission = opts.tau * run.network.total_stake();
        let out = run.step(emission)?;
        let paid: f64 = out.emission.iter().sum();
        if paid > 0.0 {
            minted += 1;
        }
        first.get_or_insert_with(|| FirstEpoch {
            cabal_emission_share: (paid > 0.0)
                .then(|| out.emission[cabal.peers.clone()].iter().sum::<f64>() / paid),
            trust: group_means(&out.trust, network),
            consensus: group_means(&out.consensus, network),
        });
        shares.push(run.network.share(&cabal));
        bar.inc(1);
    }
    Ok((shares, minted, first.expect("epochs >= 1")))
}

/// Runs every variant of [`Mechanism::all`] over the same network, and again over the same
/// stakes with a complete honest graph when `density < 1`.
pub fn simulate(opts: &CompareOptions) -> Result<(Vec<MechanismTrace>, Support), SimError> {
    opts.validate()?;
    let network = opts.network()?;
    // Same stakes, every honest peer weighting every honest peer: isolates what the density
    // of the honest graph does to each mechanism.
    let complete = if opts.density < 1.0 {
        let mut c = CompareOptions { density: 1.0, ..opts.clone() }.network()?;
        c.stake = network.stake.clone();
        Some(c)
    } else {
        None
    };
    let mechanisms = Mechanism::all();
    let runs_per = if complete.is_some() { 2 } else { 1 };
    let bar = progress((runs_per * mechanisms.len() * opts.epochs) as u64, "compare");
    let mut traces = Vec::with_capacity(mechanisms.len());
    for m in mechanisms {
        bar.set_message(m.name());
        let mechanism = m.name();
        let complete_honest_end = match &complete {
            Some(c) => trace(m.clone(), c, opts, &bar)?.0.last().copied(),
            None => None,
        };
        let (shares, minted_epochs, first_epoch) = trace(m, &network, opts, &bar)?;
        traces.push(MechanismTrace { mechanism, shares, minted_epochs, first_epoch, complete_honest_end });
    }
    bar.finish_and_clear();
    Ok((traces, support(&network)))
}

/// `agora sim compare`: CSV (one column per mechanism), one PNG, markdown table.
pub fn run(opts: &CompareOptions, out_dir: &Path) -> Result<CompareReport, SimError> {
    opts.validate()?;
    let out_dir = prepare_out_dir(out_dir)?;
    let (traces, support) = simulate(opts)?;

    let csv = out_dir.join("compare.csv");
    let mut t = Table::new(std::iter::once("epoch").chain(traces.iter().map(|t| t.mechanism)));
    for e in 0..=opts.epochs {
        t.push(std::iter::once(e.to_string()).chain(traces.iter().map(|t| cell(t.shares[e]))).collect());
    }
    t.write(&csv)?;

    let png = out_dir.join("compare.png");
    let series: Vec<Series> = traces
        .iter()
        .enumerate()
        .map(|(k, t)| {
            // Later lines are drawn over earlier ones: say so when one hides another.
            let same = |u: &MechanismTrace| t.shares.iter().zip(&u.shares).all(|(a, b)| (a - b).abs() < 1e-6);
            let label = match traces[k + 1..].iter().rev().find(|u| same(u)) {
                Some(u) => format!("{} (hidden under {})", t.mechanism, u.mechanism),
                None => t.mechanism.to_string(),
            };
            Series::new(label, t.shares.iter().enumerate().map(|(e, &s)| (e as f64, s)).collect())
        })
        .collect();
    chart(
        &png,
        &Chart {
            title: &format!(
                "Cabal share per mechanism: disjoint cabal {}% vs honest graph {}% (density {})",
                format_sig(opts.cabal_share * 100.0, 4),
                format_sig((1.0 - opts.cabal_share) * 100.0, 4),
                opts.density
            ),
            x_label: "epoch",
            y_label: "cabal share of stake",
            y_scale: YScale::Linear,
            y_range: Some((0.0, 1.0)),
        },
        &series,
    )?;

    let md = out_dir.join("compare.md");
    let summary = summarize(opts, &traces, &support);
    write_text(&md, &summary)?;
    Ok(CompareReport { traces, support, summary_markdown: summary, files: vec![csv, png, md] })
}

/// The epochs the markdown table shows: 0, 10, 50 and the last, those that exist.
fn shown_epochs(epochs: usize) -> Vec<usize> {
    let mut e: Vec<usize> = [0, 10, 50].into_iter().filter(|&e| e < epochs).collect();
    e.push(epochs);
    e
}

fn summarize(opts: &CompareOptions, traces: &[MechanismTrace], support: &Support) -> String {
    let mut s = String::new();
    s.push_str("## One cabal attack through every mechanism\n\n");
    s.push_str(&format!(
        "A connected honest graph of {} peers (each weights a random {} of the honest peers with \
         random values; random stakes) holds {} of the stake; a disjoint cabal of {} peers that \
         weights only its own members, all of them equally, holds {}. Every variant runs with its \
         default parameters, minting {} x total stake per epoch and carrying its state (bonds, \
         stake scaling) across epochs (seed {}). Epoch e is the cabal's share of stake after e \
         epochs. Direct backing at genesis (the stake of the other peers that weight a peer): \
         honest peers {} on average (at most {}), cabal peers {}.\n\n",
        opts.n_honest,
        opts.density,
        format_sig(1.0 - opts.cabal_share, 6),
        opts.n_cabal,
        format_sig(opts.cabal_share, 6),
        opts.tau,
        opts.seed,
        format_sig(support.honest_mean, 3),
        format_sig(support.honest_max, 3),
        format_sig(support.cabal_mean, 3),
    ));
    let epochs = shown_epochs(opts.epochs);
    let complete = traces.iter().any(|t| t.complete_honest_end.is_some());
    let mut header: Vec<String> = vec!["mechanism".into()];
    header.extend(epochs.iter().map(|e| format!("epoch {e}")));
    if complete {
        header.push(format!("epoch {}, complete honest graph", opts.epochs));
    }
    header.push("why".into());
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = traces
        .iter()
        .map(|t| {
            let mut row = vec![format!("`{}`", t.mechanism)];
            row.extend(epochs.iter().map(|&e| format_sig(t.shares[e], 4)));
            if complete {
                row.push(t.complete_honest_end.map(|x| format_sig(x, 4)).unwrap_or_default());
            }
            row.push(why(t, opts, support));
            row
        })
        .collect();
    s.push_str(&markdown_table(&header_refs, &rows));
    if complete {
        s.push_str(
            "\nThe \"complete honest graph\" column reruns each mechanism with the same stakes but \
             every honest peer weighting every honest peer (density 1).\n",
        );
    }
    s.push_str("\nFiles: `compare.csv` (one column per mechanism), `compare.png`.\n");
    s
}

/// One sentence per mechanism: what the trace did, and the rule in the mechanism that made
/// it do so, quoting the numbers of the run.
fn why(t: &MechanismTrace, opts: &CompareOptions, support: &Support) -> String {
    let start = t.shares[0];
    let end = *t.shares.last().expect("genesis share");
    let f = &t.first_epoch;
    let sig = |x: f64| format_sig(x, 3);
    let trend = if t.minted_epochs == 0 {
        "Nothing is ever minted, so the shares stay at genesis".to_string()
    } else if end < start * 0.5 {
        format!("The cabal decays ({} to {})", sig(start), sig(end))
    } else if end < start - 1e-6 {
        format!("The cabal shrinks slowly ({} to {})", sig(start), sig(end))
    } else if end > start + 1e-6 {
        format!("The cabal GROWS ({} to {})", sig(start), sig(end))
    } else {
        format!("The cabal keeps its share ({})", sig(start))
    };
    let first = match f.cabal_emission_share {
        Some(e) => format!(" (first epoch: the cabal got {} of the emission)", sig(e)),
        None => String::new(),
    };
    let complete = match t.complete_honest_end {
        Some(x) if (x - end).abs() > 1e-6 && (t.minted_epochs == 0 || end > start - 1e-6) => {
            format!(" With a complete honest graph the cabal ends at {} instead.", sig(x))
        }
        _ => String::new(),
    };
    let reason = match t.mechanism {
        "basic" => "ranks are stake-weighted column sums with no notion of who trusts whom, so each \
             group mints in proportion to its stake and colluding costs nothing."
            .to_string(),
        "connectivity" => format!(
            "ranks add rho x the stake that reaches each peer, so a connected group earns \
             p + rho p^2 and the larger component's edge is quadratic; reach counts walks of \
             several steps, so a density-{} honest graph is as connected as a complete one, and \
             stake clipping (eq. 8) scales down every cabal member, since it reaches less than \
             half of the stake.",
            opts.density
        ),
        "trust" => format!(
            "incentive is R x sigmoid(temperature (share of stake reaching the peer - 1/2)); walks \
             of several steps reach the whole honest graph, so honest peers are trusted above 1/2 \
             (mean T {}) and cabal peers below (mean T {}), and the gap widens as the cabal \
             shrinks.",
            sig(f.trust.0),
            sig(f.trust.1)
        ),
        "nakamoto" if end > start + 1e-6 => format!(
            "consensus sigmoid(rho (t_j - kappa)) counts only the stake that weights peer j \
             directly, self-weight included; in a density-{} honest graph an honest peer is \
             weighted by {} of the stake on average, less than the {} that weights every member \
             of the complete cabal, so the cabal's consensus (mean {}) beats the honest peers' \
             ({}) and it out-earns the honest majority, and its bonds keep its dividends.",
            opts.density,
            sig(f.trust.0),
            sig(f.trust.1),
            sig(f.consensus.1),
            sig(f.consensus.0)
        ),
        "nakamoto" => format!(
            "consensus sigmoid(rho (t_j - kappa)) of the stake that weights peer j directly is \
             higher for honest peers (t {} on average, consensus {}) than for cabal peers (t {}, \
             consensus {}), so the honest graph earns more per unit of stake and bonds pay its \
             validators.",
            sig(f.trust.0),
            sig(f.consensus.0),
            sig(f.trust.1),
            sig(f.consensus.1)
        ),
        "yuma" if t.minted_epochs == 0 => format!(
            "each weight is clipped to the level that at least kappa = 1/2 of the stake gives its \
             column, and self-weights do not count; no column has half of the stake behind it (the \
             best-backed honest peer has {}, a cabal peer {} on average), so every weight is \
             clipped to zero and there is no incentive to pay. With {} of the stake honest, an \
             honest server is backed by half of the stake only if nearly every other honest peer \
             weights it and its own stake (which never counts for itself) is small.",
            sig(support.honest_max),
            sig(support.cabal_mean),
            sig(1.0 - opts.cabal_share)
        ),
        "yuma" => format!(
            "each weight is clipped to the level that at least kappa = 1/2 of the stake gives its \
             column; cabal columns have at most {} of the stake behind them, so every cabal weight \
             is clipped to zero: cabal servers earn no incentive and cabal validators no \
             dividends.",
            sig(opts.cabal_share)
        ),
        _ => "see the mechanism's documentation.".to_string(),
    };
    format!("{trend}{first}: {reason}{complete}")
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

    fn small(density: f64) -> CompareOptions {
        CompareOptions { epochs: 40, density, ..Default::default() }
    }

    fn end(traces: &[MechanismTrace], name: &str) -> f64 {
        *traces.iter().find(|t| t.mechanism == name).expect("every mechanism runs").shares.last().unwrap()
    }

    #[test]
    fn every_mechanism_runs_and_only_basic_spares_the_cabal_of_a_complete_honest_graph() {
        let (traces, _) = simulate(&small(1.0)).unwrap();
        let names: Vec<&str> = traces.iter().map(|t| t.mechanism).collect();
        assert_eq!(names, mechanism::MECHANISM_NAMES);
        assert!(traces.iter().all(|t| t.shares.len() == 41 && (t.shares[0] - 0.49).abs() < 1e-12));
        assert!(traces.iter().all(|t| t.complete_honest_end.is_none()));
        assert!((end(&traces, "basic") - 0.49).abs() < 1e-12, "basic pays in proportion to stake");
        for m in ["connectivity", "trust", "nakamoto"] {
            assert!(end(&traces, m) < 0.1, "{m}: cabal ends at {}", end(&traces, m));
        }
        // Yuma masks self-weights, so only honest peers holding less than 1% of the stake
        // themselves reach kappa = 1/2 of backing; enough of the 20 do with this seed.
        assert!(end(&traces, "yuma") < 0.1, "yuma: cabal ends at {}", end(&traces, "yuma"));
    }

    #[test]
    fn multi_step_reach_does_not_need_a_complete_honest_graph() {
        let (traces, support) = simulate(&small(0.75)).unwrap();
        assert!(support.honest_mean < 0.5 && support.cabal_mean < 0.49);
        for m in ["connectivity", "trust"] {
            assert!(end(&traces, m) < 0.1, "{m}: cabal ends at {}", end(&traces, m));
        }
        assert!(traces.iter().all(|t| t.complete_honest_end.is_some()));
    }

    #[test]
    fn bad_options_are_rejected() {
        let bad = |o: CompareOptions| o.validate().unwrap_err().to_string();
        assert!(bad(CompareOptions { cabal_share: 0.0, ..Default::default() }).starts_with("cabal-share is "));
        assert!(bad(CompareOptions { epochs: 0, ..Default::default() }).starts_with("epochs is "));
        assert!(bad(CompareOptions { tau: -0.5, ..Default::default() }).starts_with("tau is "));
    }
}
