//! Experiment 4: the empirical model of the intermodel intelligence measure (§3.2-3.3 and
//! Figures 4-5 of the intermodel paper; appendix 13 of the market paper).
//!
//! `n` peers each own one row `W_i` of the weight matrix and move it by competitive gradient
//! steps on their own payoff (eq. 13-14). The payoff trades a loss (inputs masked by the
//! connectivity sigmoid of eq. 7-8, priced through one Hessian per peer, eq. 16) against the
//! peer's own rank (eq. 5). At the equilibrium the competitive ranking `R*` (eq. 4) is compared
//! with the idealised ranking `R` (eq. 2) by Spearman's rho, over a grid of `alpha / tau` and
//! `n`, and once more under an adaptive inflation rate `tau` (Figure 5). [`run`] writes the
//! CSVs and charts and returns the statistics with a markdown summary.
//!
//! # The model, exactly
//!
//! All matrices are `n x n`, row-major; `i` is the peer choosing, `j` the peer weighted.
//!
//! * Stake `S`: `s_i ~ U(0, 1)`, rescaled to mean 1 (`sum_i s_i = n`). With equal stakes eq. 5
//!   then reduces exactly to eq. 4, so both rankings are on the same scale.
//! * Initial weights `W0`: `w_ij ~ U(0, 1)`, each row rescaled to sum to 1 (§2.3).
//! * Hessians: `H_i = A_i A_i^T / tr(A_i A_i^T)` with `A_i` an `n x n` matrix of independent
//!   standard normals; positive semi-definite with unit trace. Unit trace makes the honest
//!   weights of eq. 3, `w_ij = H_i[j][j]`, a valid row (rows sum to 1, §2.3), so eq. 2 is eq. 4
//!   applied to the honest weights and the two rankings are commensurate. An option scales the
//!   off-diagonal entries down (see [`Instance::with_offdiagonal`]).
//! * Responses `f_j = 1` (unit responses): the model only sees inputs through the mask, and
//!   `Delta F_j = -e_j f_j` then makes eq. 2 read `R_j = (1/n) sum_i H_i[j][j]`.
//! * Mask (eq. 7-8): `m_ij = sigma((s_i w_ij - mu_j) / T)`, `mu_j = (1/n) sum_k s_k w_kj`,
//!   `sigma(x) = 1 / (1 + e^-x)`. The temperature is given relative to the scale of the
//!   argument: `T = temperature / n`, because `mu_j = 1/n` at uniform weights with mean-1 stake.
//! * Loss of peer `i` (eq. 16): `L_i(W) = (m_i - r_i)^T H_i (m_i - r_i)` where the reference
//!   `r_i` is the mask the loss is measured from, see [`LossReference`]. By default `r_i = 1`,
//!   all inputs present, so `L_i` is the damage done by masking: removing only input `j` costs
//!   `H_i[j][j]`, exactly peer `i`'s term of eq. 2.
//! * Rank (eq. 5): `R_i = (1/n) sum_k s_k w_ki`.
//! * Payoff: `P_i = -alpha L_i + tau R_i` (eq. 12 and 22 with `U = alpha L`). The papers write
//!   `+ alpha L` (eq. 15: `dP/dW = (alpha/tau) dL/dW + dR/dW`); we flip the sign so that loss is
//!   a cost, which is what "competition for connectivity" (§2.5) needs. The grid sets
//!   `alpha = 1` and `tau = 1 / (alpha/tau)`: same equilibria as eq. 15's payoff divided by
//!   `tau`, but a step that settles (see [`Prices::ratio`]).
//! * Gradient of peer `i` on its own row (other rows fixed; `mu_j` moves with `w_ij` too):
//!   `dL_i/dw_ij = 2 (H_i (m_i - r_i))_j * m_ij (1 - m_ij) * s_i (1 - 1/n) / T` and
//!   `dR_i/dw_ij = (s_i / n) [i = j]`.
//! * Competitive steps (eq. 13-14): every peer computes its gradient at the same `W^t`, then
//!   `W_i^{t+1} = proj(W_i^t + lambda dP_i/dW_i)` with `proj` the Euclidean projection onto the
//!   probability simplex (non-negative, sums to 1). Stop when every row's projected gradient
//!   `|W_i^{t+1} - W_i^t| / lambda` is below `tolerance`, or after
//!   `min(steps_per_peer * n, max_steps)` steps. The paper's budget is `1000 n`, too short here:
//!   at `n = 10` most games need 30 000 to 45 000 steps to reach `tolerance = 1e-4`, and mean rho
//!   still moves by ~0.05 after 10 000. The defaults (`5000 n`, capped at 40 000) let the
//!   `n = 10` games settle and keep the whole default run to about four minutes on one core.
//! * Rankings at the end: `R* = (1/n) W*^T 1` (eq. 4; "follows from (4)" in §3.3) and the
//!   stake-weighted variant `(1/n) W*^T S` (eq. 5); each is compared with eq. 2 by Spearman's
//!   rho with average ranks for ties. A constant ranking (e.g. all peers at `w_ii = 1`) has no
//!   order, so rho is undefined; it is counted as 0 in the means and reported separately.
//! * Adaptive tau (Figure 5): `alpha = 1`, `tau_0 = 0`, and after every step
//!   `tau <- max(0, tau + gain (target - sparsity))` with `sparsity = sum(diag W) / sum(W)`:
//!   inflation rises while peers are connected and falls once the diagonal overshoots.
//!
//! # What the model does with the defaults, and why
//!
//! * Peer `i` values input `j` by its marginal loss `(H_i (1 - m_i))_j`, which adds to
//!   `H_i[j][j] (1 - m_ij)` the cross terms `H_i[j][k] (1 - m_ik)` of every other masked input.
//!   For random Wishart Hessians the spread of that cross sum outgrows the spread of the
//!   diagonal roughly as `sqrt(n) / 2`, so the competitive ranking tracks eq. 2 less well as
//!   `n` grows; with `hessian_offdiagonal = 0` the same game tracks it far better.
//! * The identity (`w_ii = 1`, all ranks `1/n`) is the equilibrium only when the rank price
//!   beats the loss slope at the identity, about `alpha/tau < temperature / (0.6 n)`; with the
//!   default temperature that is below the paper's grid, which therefore mostly shows the
//!   loss-dominated plateau.
//! * Under the literal reading of eq. 16 (`r_i` = mask at `W0`) the loss is a spring back to
//!   a random start, not a pull towards useful peers, and rho stays near 0.

mod game;
mod prose;

use crate::error::SimError;
use crate::report::{csv_error, prepare_out_dir};
use figures::spearman;
pub use game::{
    competitive_ranking, instance, play, project_simplex, sparsity, stake_ranking, Equilibrium, Game,
    Instance, Prices, StepWork,
};
use indicatif::{ProgressBar, ProgressStyle};
use prose::{adaptive_charts, spearman_charts, summary};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// What the loss of eq. 16 is measured from: the `F_W0` of `(F_W - F_W0)^T H (F_W - F_W0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReference {
    /// `F_W0 = 1`: every input fully present. The papers call `W0` the weights "at the minimum"
    /// where the network has converged; we take that to be the fully connected network, so the
    /// loss grows as peer `i` masks peer `j` in proportion to `j`'s importance to `i` (eq. 2-3).
    Connected,
    /// `F_W0` = the mask at the initial weights `W0` (the literal reading of §3.2). The loss
    /// and its gradient are zero at the start, and the loss then only resists moving away from
    /// a random starting point, not towards useful peers.
    Initial,
}

impl LossReference {
    /// The reading's name in the CSVs and the summary.
    pub fn name(self) -> &'static str {
        match self {
            LossReference::Connected => "connected",
            LossReference::Initial => "initial",
        }
    }
}

/// The adaptive-inflation run of Figure 5.
#[derive(Debug, Clone)]
pub struct AdaptiveOptions {
    /// Run it at all.
    pub enabled: bool,
    /// Price of loss, `alpha` (the paper shows `alpha = 1`).
    pub alpha: f64,
    /// Target for `sparsity = sum(diag W) / sum(W)`. The paper's "sparsity target of 1" is
    /// read as a diagonal-to-off-diagonal ratio of 1 ("the ratio between the main diagonal and
    /// the remaining weights"), i.e. half of all weight on the diagonal: 0.5 here. A target of
    /// 1 in `sum(diag)/sum(W)` would be the identity, the disconnected state §4 warns about.
    pub sparsity_target: f64,
    /// Integral gain: `tau <- max(0, tau + gain * (target - sparsity))` every step. Integral
    /// control settles on the `tau` that holds the target without knowing the market; 0.01
    /// reaches it within the default steps at n = 10 (one mild overshoot) and n = 50.
    pub gain: f64,
    /// Steps to run (no early stop: the point is to watch `tau` settle).
    pub steps: usize,
    /// Write one row to `adaptive_tau.csv` every this many steps.
    pub record_every: usize,
}

impl Default for AdaptiveOptions {
    fn default() -> Self {
        AdaptiveOptions {
            enabled: true,
            alpha: 1.0,
            sparsity_target: 0.5,
            gain: 0.01,
            steps: 20_000,
            record_every: 20,
        }
    }
}

/// Settings of experiment 4. Same options, same files, byte for byte.
#[derive(Debug, Clone)]
pub struct EmpiricalOptions {
    /// Values of `alpha / tau` (Figure 4: 1, 10, 25, 50).
    pub ratios: Vec<f64>,
    /// Numbers of peers `n`.
    pub sizes: Vec<usize>,
    /// Random instances per `(ratio, n)`; the same instances are reused across ratios.
    pub seeds: u64,
    /// `lambda` of eq. 13 (§3.3 uses 0.005).
    pub learning_rate: f64,
    /// Step budget per peer: `steps_per_peer * n` (the paper's is `1000 n`).
    pub steps_per_peer: usize,
    /// Hard cap on steps, applied after `steps_per_peer * n`.
    pub max_steps: usize,
    /// Stop once every peer's projected gradient, `|proj(W_i + lambda g_i) - W_i| / lambda`
    /// (Euclidean norm), is below this: "the gradient terms are bounded by epsilon" (§3.3).
    /// The projection matters: at a constrained equilibrium the raw gradient is not zero.
    pub tolerance: f64,
    /// Scale of the Hessians' off-diagonal entries (see [`Instance::with_offdiagonal`]); 1 is
    /// the plain random draw, 0 keeps only the diagonal that eq. 2 measures.
    pub hessian_offdiagonal: f64,
    /// Sigmoid temperature in units of `1/n` (the column mean `mu_j` at uniform weights).
    pub temperature: f64,
    /// The reading of eq. 16 used for the grid and the adaptive run.
    pub reference: LossReference,
    /// Also play the grid under the other reading of eq. 16, on this many of the seeds (the
    /// first ones; 0 turns the comparison off). It is a side check, so it gets fewer seeds.
    pub compare_seeds: u64,
    /// The adaptive-tau run of Figure 5.
    pub adaptive: AdaptiveOptions,
    /// Seeds every instance's generator (the size and the seed pick its stream): another base
    /// seed draws other markets.
    pub base_seed: u64,
}

impl Default for EmpiricalOptions {
    fn default() -> Self {
        EmpiricalOptions {
            ratios: vec![1.0, 10.0, 25.0, 50.0],
            sizes: vec![10, 50],
            seeds: 10,
            learning_rate: 0.005,
            steps_per_peer: 5000,
            max_steps: 40_000,
            tolerance: 1e-4,
            hessian_offdiagonal: 1.0,
            temperature: 1.0,
            reference: LossReference::Connected,
            compare_seeds: 5,
            adaptive: AdaptiveOptions::default(),
            base_seed: 4,
        }
    }
}

impl EmpiricalOptions {
    fn validate(&self) -> Result<(), SimError> {
        for (name, empty) in [("ratios", self.ratios.is_empty()), ("sizes", self.sizes.is_empty())] {
            if empty {
                return Err(SimError::bad(name, "(none)", "at least one"));
            }
        }
        if self.seeds == 0 {
            return Err(SimError::bad("seeds", 0, "at least 1"));
        }
        for &r in &self.ratios {
            if !(r.is_finite() && r > 0.0) {
                return Err(SimError::bad("ratios", r, "alpha/tau ratios that are positive and finite"));
            }
        }
        if let Some(&n) = self.sizes.iter().find(|&&n| n < 2) {
            return Err(SimError::bad("sizes", n, "at least 2 peers per market"));
        }
        for (name, v) in [
            ("learning-rate", self.learning_rate),
            ("temperature", self.temperature),
            ("adaptive-alpha", self.adaptive.alpha),
            ("adaptive-gain", self.adaptive.gain),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(SimError::bad(name, v, "a positive, finite number"));
            }
        }
        let c = self.hessian_offdiagonal;
        if !(0.0..=1.0).contains(&c) {
            return Err(SimError::bad(
                "hessian-offdiagonal",
                c,
                "a scale in [0, 1], which keeps the Hessians PSD",
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(SimError::bad("tolerance", self.tolerance, "a finite number >= 0"));
        }
        let t = self.adaptive.sparsity_target;
        if !(t > 0.0 && t < 1.0) {
            return Err(SimError::bad("sparsity-target", t, "sum(diag W)/sum(W) strictly between 0 and 1"));
        }
        for (name, v) in [
            ("max-steps", self.max_steps),
            ("steps-per-peer", self.steps_per_peer),
            ("record-every", self.adaptive.record_every),
        ] {
            if v == 0 {
                return Err(SimError::bad(name, 0, "at least 1"));
            }
        }
        Ok(())
    }

    /// Step budget for `n` peers: the paper's `1000 n`, capped.
    pub fn step_budget(&self, n: usize) -> usize {
        self.steps_per_peer.saturating_mul(n).min(self.max_steps)
    }
}

/// One game played to its equilibrium (or the step budget).
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// The reading of eq. 16 ([`LossReference::name`]).
    pub reference: &'static str,
    /// The grid's ratio of the price of loss to the inflation rate.
    pub alpha_over_tau: f64,
    /// Peers in the market.
    pub n: usize,
    /// The instance's seed.
    pub seed: u64,
    /// Gradient steps taken.
    pub steps: usize,
    /// Whether the projected gradient fell below the tolerance within the budget.
    pub converged: bool,
    /// Largest projected-gradient norm of a row in the last step.
    pub last_gradient_norm: f64,
    /// Spearman of eq. 4 vs eq. 2; empty when undefined.
    pub spearman: Option<f64>,
    /// Spearman of eq. 5 vs eq. 2; empty when undefined.
    pub spearman_stake: Option<f64>,
    /// Mean `w_ii`, which equals `sum(diag W)/sum(W)` since rows sum to 1.
    pub self_weight: f64,
    /// Fraction of exactly-zero weights.
    pub zero_fraction: f64,
    /// Fraction of rows at `w_ii = 1` (within 1e-9): peers fully disconnected.
    pub identity_rows: f64,
    /// Spearman of the starting `W0`'s eq. 4 ranking vs eq. 2 (the no-game baseline).
    pub spearman_initial: Option<f64>,
}

fn run_row(
    inst: &Instance,
    reading: LossReference,
    ratio: f64,
    seed: u64,
    opts: &EmpiricalOptions,
) -> RunRow {
    let n = inst.n;
    let game = Game::new(inst, reading, opts.temperature);
    let eq = play(&game, Prices::ratio(ratio), opts.learning_rate, opts.step_budget(n), opts.tolerance);
    let w = eq.w;
    let ideal = inst.ideal_ranking();
    RunRow {
        reference: reading.name(),
        alpha_over_tau: ratio,
        n,
        seed,
        steps: eq.steps,
        converged: eq.converged,
        last_gradient_norm: eq.gradient_norm,
        spearman: spearman(&competitive_ranking(&w, n), &ideal),
        spearman_stake: spearman(&stake_ranking(&w, &inst.stake), &ideal),
        self_weight: sparsity(&w, n),
        zero_fraction: w.iter().filter(|&&x| x == 0.0).count() as f64 / (n * n) as f64,
        identity_rows: (0..n).filter(|&i| w[i * n + i] > 1.0 - 1e-9).count() as f64 / n as f64,
        spearman_initial: spearman(&competitive_ranking(&inst.w0, n), &ideal),
    }
}

fn options_instance(opts: &EmpiricalOptions, n: usize, seed: u64) -> Instance {
    instance(opts.base_seed, n, seed).with_offdiagonal(opts.hessian_offdiagonal)
}

/// Statistics of one `(reading, alpha/tau, n)` cell over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct CellStats {
    /// The reading of eq. 16 ([`LossReference::name`]).
    pub reference: &'static str,
    /// The grid's ratio of the price of loss to the inflation rate.
    pub alpha_over_tau: f64,
    /// Peers in the market.
    pub n: usize,
    /// Seeds played in this cell.
    pub seeds: usize,
    /// Spearman (eq. 4 vs eq. 2), undefined counted as 0.
    pub spearman_mean: f64,
    /// Standard deviation of that Spearman over the seeds.
    pub spearman_std: f64,
    /// Its smallest value over the seeds.
    pub spearman_min: f64,
    /// Its largest value over the seeds.
    pub spearman_max: f64,
    /// Seeds whose competitive ranking was constant (rho undefined).
    pub spearman_undefined: usize,
    /// Spearman of the stake-weighted ranking (eq. 5 vs eq. 2), undefined counted as 0.
    pub spearman_stake_mean: f64,
    /// Spearman of `W0`'s ranking: what the game added over the random start.
    pub spearman_initial_mean: f64,
    /// Mean `w_ii` = `sum(diag W)/sum(W)` at the end.
    pub self_weight_mean: f64,
    /// Mean fraction of exactly-zero weights at the end.
    pub zero_fraction_mean: f64,
    /// Mean fraction of fully disconnected rows (`w_ii = 1`) at the end.
    pub identity_rows_mean: f64,
    /// Mean gradient steps to the end.
    pub steps_mean: f64,
    /// Most gradient steps taken by a seed.
    pub steps_max: usize,
    /// Seeds that converged within the budget.
    pub converged: usize,
    /// Largest final projected-gradient norm over the seeds: how far from settled the
    /// unconverged runs were.
    pub gradient_norm_max: f64,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

fn cell_stats(rows: &[&RunRow]) -> CellStats {
    let rho: Vec<f64> = rows.iter().map(|r| r.spearman.unwrap_or(0.0)).collect();
    let (spearman_mean, spearman_std) = mean_std(&rho);
    let avg = |f: &dyn Fn(&RunRow) -> f64| rows.iter().map(|r| f(r)).sum::<f64>() / rows.len() as f64;
    CellStats {
        reference: rows[0].reference,
        alpha_over_tau: rows[0].alpha_over_tau,
        n: rows[0].n,
        seeds: rows.len(),
        spearman_mean,
        spearman_std,
        spearman_min: rho.iter().copied().fold(f64::INFINITY, f64::min),
        spearman_max: rho.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        spearman_undefined: rows.iter().filter(|r| r.spearman.is_none()).count(),
        spearman_stake_mean: avg(&|r| r.spearman_stake.unwrap_or(0.0)),
        spearman_initial_mean: avg(&|r| r.spearman_initial.unwrap_or(0.0)),
        self_weight_mean: avg(&|r| r.self_weight),
        zero_fraction_mean: avg(&|r| r.zero_fraction),
        identity_rows_mean: avg(&|r| r.identity_rows),
        steps_mean: avg(&|r| r.steps as f64),
        steps_max: rows.iter().map(|r| r.steps).max().unwrap_or(0),
        converged: rows.iter().filter(|r| r.converged).count(),
        gradient_norm_max: rows.iter().map(|r| r.last_gradient_norm).fold(0.0, f64::max),
    }
}

/// One recorded step of the adaptive-tau run.
#[derive(Debug, Clone, Serialize)]
pub struct AdaptiveRow {
    /// Peers in the market.
    pub n: usize,
    /// Gradient steps so far.
    pub step: usize,
    /// The inflation rate tau the controller has set.
    pub tau: f64,
    /// `sum(diag W) / sum(W)`.
    pub sparsity: f64,
    /// Spearman of eq. 4 vs eq. 2 at this step; empty when undefined.
    pub spearman: Option<f64>,
    /// Spearman of eq. 5 vs eq. 2 at this step; empty when undefined.
    pub spearman_stake: Option<f64>,
}

/// Where the adaptive run ended, averaged over its last tenth of steps.
#[derive(Debug, Clone)]
pub struct AdaptiveOutcome {
    /// Peers in the market.
    pub n: usize,
    /// tau at the last step.
    pub tau_final: f64,
    /// Mean tau over the last tenth of the steps: where the controller settled.
    pub tau_tail_mean: f64,
    /// Mean sparsity over the last tenth: how near the target it held.
    pub sparsity_tail_mean: f64,
    /// Mean Spearman (eq. 4 vs eq. 2) over the last tenth.
    pub spearman_tail_mean: f64,
    /// Largest `tau` reached on the way.
    pub tau_peak: f64,
}

/// Figure 5: `alpha` fixed, `tau` from 0 under the integral controller of [`AdaptiveOptions`],
/// on the instance of seed 0.
fn adaptive_run(opts: &EmpiricalOptions, n: usize) -> (Vec<AdaptiveRow>, AdaptiveOutcome) {
    let a = &opts.adaptive;
    let inst = options_instance(opts, n, 0);
    let game = Game::new(&inst, opts.reference, opts.temperature);
    let ideal = inst.ideal_ranking();
    let mut w = inst.w0.clone();
    let mut work = StepWork::new(n);
    let mut tau: f64 = 0.0;
    let mut rows = Vec::new();
    let (mut tail_tau, mut tail_sparsity, mut tail_rho, mut tail_count) = (0.0, 0.0, 0.0, 0usize);
    let tail_start = a.steps - a.steps / 10;
    let mut tau_peak: f64 = 0.0;
    for step in 0..=a.steps {
        let current = sparsity(&w, n);
        if step % a.record_every == 0 || step == a.steps {
            rows.push(AdaptiveRow {
                n,
                step,
                tau,
                sparsity: current,
                spearman: spearman(&competitive_ranking(&w, n), &ideal),
                spearman_stake: spearman(&stake_ranking(&w, &inst.stake), &ideal),
            });
        }
        if step >= tail_start {
            tail_tau += tau;
            tail_sparsity += current;
            tail_rho += spearman(&competitive_ranking(&w, n), &ideal).unwrap_or(0.0);
            tail_count += 1;
        }
        if step == a.steps {
            break;
        }
        game.step(&mut w, Prices { loss: a.alpha, rank: tau }, opts.learning_rate, &mut work);
        // Integral control: raise inflation while the market is too connected (too little
        // self-weight), lower it once the diagonal overshoots, never below zero.
        tau = (tau + a.gain * (a.sparsity_target - sparsity(&w, n))).max(0.0);
        tau_peak = tau_peak.max(tau);
    }
    let k = tail_count.max(1) as f64;
    let outcome = AdaptiveOutcome {
        n,
        tau_final: tau,
        tau_tail_mean: tail_tau / k,
        sparsity_tail_mean: tail_sparsity / k,
        spearman_tail_mean: tail_rho / k,
        tau_peak,
    };
    (rows, outcome)
}

/// What [`run`] found.
#[derive(Debug, Clone)]
pub struct EmpiricalReport {
    /// Per-`(reading, alpha/tau, n)` statistics; the main reading first.
    pub cells: Vec<CellStats>,
    /// Every game played.
    pub runs: Vec<RunRow>,
    /// One outcome per size, when the adaptive run is enabled.
    pub adaptive: Vec<AdaptiveOutcome>,
    /// Every file written (CSVs, charts, summary).
    pub files: Vec<PathBuf>,
    /// The markdown summary, as `agora` prints it and writes it to the output directory.
    pub summary_markdown: String,
}

fn progress(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} games, {elapsed} ({eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), SimError> {
    let fail = |e| csv_error(path, e);
    let mut writer = csv::Writer::from_path(path).map_err(fail)?;
    for row in rows {
        writer.serialize(row).map_err(fail)?;
    }
    writer.flush().map_err(|reason| SimError::Write { path: path.to_path_buf(), reason })
}

/// Runs experiment 4 and writes `empirical.csv`, `empirical_summary.csv`, `adaptive_tau.csv`
/// (when enabled) and the PNG charts into `out_dir` (created if missing).
pub fn run(opts: &EmpiricalOptions, out_dir: &Path) -> Result<EmpiricalReport, SimError> {
    opts.validate()?;
    let out_dir = &prepare_out_dir(out_dir)?;
    let mut readings = vec![opts.reference];
    let compare_seeds = opts.compare_seeds.min(opts.seeds);
    if compare_seeds > 0 {
        readings.push(match opts.reference {
            LossReference::Connected => LossReference::Initial,
            LossReference::Initial => LossReference::Connected,
        });
    }
    let per_size = opts.seeds + if readings.len() > 1 { compare_seeds } else { 0 };
    let games = (opts.ratios.len() * opts.sizes.len()) as u64 * per_size;
    let adaptive_games = if opts.adaptive.enabled { opts.sizes.len() as u64 } else { 0 };
    let bar = progress(games + adaptive_games);
    bar.set_message("experiment 4");

    let mut runs = Vec::new();
    for &n in &opts.sizes {
        for seed in 0..opts.seeds {
            let inst = options_instance(opts, n, seed);
            for (k, &reading) in readings.iter().enumerate() {
                if k > 0 && seed >= compare_seeds {
                    continue;
                }
                for &ratio in &opts.ratios {
                    runs.push(run_row(&inst, reading, ratio, seed, opts));
                    bar.inc(1);
                }
            }
        }
    }
    let mut cells = Vec::new();
    for &reading in &readings {
        for &ratio in &opts.ratios {
            for &n in &opts.sizes {
                let rows: Vec<&RunRow> = runs
                    .iter()
                    .filter(|r| r.reference == reading.name() && r.alpha_over_tau == ratio && r.n == n)
                    .collect();
                cells.push(cell_stats(&rows));
            }
        }
    }

    let mut adaptive_rows = Vec::new();
    let mut adaptive = Vec::new();
    if opts.adaptive.enabled {
        for &n in &opts.sizes {
            let (rows, outcome) = adaptive_run(opts, n);
            adaptive_rows.extend(rows);
            adaptive.push(outcome);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    let mut files = Vec::new();
    let path = out_dir.join("empirical.csv");
    write_csv(&path, &runs)?;
    files.push(path);
    let path = out_dir.join("empirical_summary.csv");
    write_csv(&path, &cells)?;
    files.push(path);
    files.extend(spearman_charts(opts, &readings, &cells, out_dir)?);
    if opts.adaptive.enabled {
        let path = out_dir.join("adaptive_tau.csv");
        write_csv(&path, &adaptive_rows)?;
        files.push(path);
        files.extend(adaptive_charts(opts, &adaptive_rows, out_dir)?);
    }
    let summary_markdown = summary(opts, &readings, &cells, &adaptive);
    Ok(EmpiricalReport { cells, runs, adaptive, files, summary_markdown })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the model produces on a small fixed case (n = 6, seeds 0..7, budget 6000 steps),
    /// checked against a release run: at alpha/tau = 0.01 every peer ends at `w_ii = 1` and
    /// rho is undefined; at alpha/tau = 50 the connected reading's mean rho is 0.68 and the
    /// literal reading's 0.08. Between alpha/tau = 1 and 50 the order of the means is not
    /// stable across small n (at n = 8 it is reversed), so it is not asserted.
    #[test]
    fn small_ratio_disconnects_and_large_ratio_ranks() {
        let opts = EmpiricalOptions { max_steps: 6_000, ..EmpiricalOptions::default() };
        let mean_rho = |reading: LossReference, ratio: f64| {
            let rows: Vec<RunRow> = (0..7)
                .map(|seed| run_row(&instance(opts.base_seed, 6, seed), reading, ratio, seed, &opts))
                .collect();
            (rows.iter().map(|r| r.spearman.unwrap_or(0.0)).sum::<f64>() / 7.0, rows)
        };
        let (_, identity) = mean_rho(LossReference::Connected, 0.01);
        for r in &identity {
            assert_eq!(r.identity_rows, 1.0, "seed {} not at the identity", r.seed);
            assert_eq!(r.spearman, None);
            assert!(r.converged);
        }
        let (connected, _) = mean_rho(LossReference::Connected, 50.0);
        let (literal, _) = mean_rho(LossReference::Initial, 50.0);
        assert!(connected > 0.5, "connected mean rho {connected}");
        assert!(connected > literal + 0.3, "connected {connected} vs literal {literal}");
    }

    fn tiny_options() -> EmpiricalOptions {
        EmpiricalOptions {
            ratios: vec![1.0, 50.0],
            sizes: vec![5],
            seeds: 2,
            max_steps: 2_000,
            adaptive: AdaptiveOptions { steps: 500, record_every: 50, ..AdaptiveOptions::default() },
            ..EmpiricalOptions::default()
        }
    }

    #[test]
    fn tiny_run_writes_its_files_deterministically() {
        let dir = std::env::temp_dir().join(format!("agora-empirical-{}", std::process::id()));
        let opts = tiny_options();
        let report = run(&opts, &dir.join("a")).unwrap();
        for name in [
            "empirical.csv",
            "empirical_summary.csv",
            "adaptive_tau.csv",
            "empirical_spearman.png",
            "empirical_spearman_initial.png",
            "adaptive_sparsity.png",
            "adaptive_tau.png",
            "adaptive_spearman.png",
        ] {
            assert!(dir.join("a").join(name).is_file(), "{name} missing");
        }
        // 2 readings x 2 ratios x 1 size x 2 seeds.
        assert_eq!(report.runs.len(), 8);
        assert_eq!(report.cells.len(), 4);
        assert!(report.summary_markdown.contains("| 50 | 5 |"));
        let again = run(&opts, &dir.join("b")).unwrap();
        assert_eq!(again.summary_markdown, report.summary_markdown);
        for name in ["empirical.csv", "empirical_summary.csv", "adaptive_tau.csv"] {
            let a = std::fs::read(dir.join("a").join(name)).unwrap();
            let b = std::fs::read(dir.join("b").join(name)).unwrap();
            assert_eq!(a, b, "{name} differs between identical runs");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_bad_options() {
        let dir = std::env::temp_dir().join("agora-empirical-never-written");
        let bad = [
            (EmpiricalOptions { ratios: vec![0.0], ..tiny_options() }, "ratios is 0"),
            (EmpiricalOptions { sizes: vec![], ..tiny_options() }, "sizes is (none)"),
            (EmpiricalOptions { sizes: vec![1], ..tiny_options() }, "sizes is 1"),
            (EmpiricalOptions { seeds: 0, ..tiny_options() }, "seeds is 0"),
            (EmpiricalOptions { temperature: f64::NAN, ..tiny_options() }, "temperature is NaN"),
            (EmpiricalOptions { max_steps: 0, ..tiny_options() }, "max-steps is 0"),
        ];
        for (opts, named) in bad {
            let message = run(&opts, &dir).unwrap_err().to_string();
            assert!(message.starts_with(named), "{message}");
        }
        assert!(!dir.exists());
    }
}
