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

use crate::plot::{line_chart, Chart, Series, YScale};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;
use std::fmt::Write as _;
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
    pub adaptive: AdaptiveOptions,
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
    fn validate(&self) -> Result<()> {
        if self.ratios.is_empty() || self.sizes.is_empty() || self.seeds == 0 {
            bail!("need at least one ratio, one size and one seed");
        }
        for &r in &self.ratios {
            if !(r.is_finite() && r > 0.0) {
                bail!("alpha/tau must be positive and finite, got {r}");
            }
        }
        if let Some(&n) = self.sizes.iter().find(|&&n| n < 2) {
            bail!("a market needs at least 2 peers, got n = {n}");
        }
        for (name, v) in [
            ("learning rate", self.learning_rate),
            ("temperature", self.temperature),
            ("adaptive alpha", self.adaptive.alpha),
            ("adaptive gain", self.adaptive.gain),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} must be positive and finite, got {v}");
            }
        }
        let c = self.hessian_offdiagonal;
        if !(0.0..=1.0).contains(&c) {
            bail!("the Hessians' off-diagonal scale must lie in [0, 1] to keep them PSD, got {c}");
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            bail!("tolerance must be non-negative, got {}", self.tolerance);
        }
        let t = self.adaptive.sparsity_target;
        if !(t > 0.0 && t < 1.0) {
            bail!("sparsity target sum(diag W)/sum(W) must lie in (0, 1), got {t}");
        }
        if self.max_steps == 0 || self.steps_per_peer == 0 || self.adaptive.record_every == 0 {
            bail!("step budgets and the recording interval must be at least 1");
        }
        Ok(())
    }

    /// Step budget for `n` peers: the paper's `1000 n`, capped.
    pub fn step_budget(&self, n: usize) -> usize {
        self.steps_per_peer.saturating_mul(n).min(self.max_steps)
    }
}

/// One random market: stake, initial weights and one Hessian per peer.
#[derive(Debug, Clone)]
pub struct Instance {
    pub n: usize,
    /// `S`, mean 1.
    pub stake: Vec<f64>,
    /// `W0`, row-major `n x n`, rows on the simplex.
    pub w0: Vec<f64>,
    /// `H_i`, each row-major `n x n`, PSD with unit trace.
    pub hessians: Vec<Vec<f64>>,
}

impl Instance {
    /// Draws an instance; the draw order (stake, `W0`, then `A_0 .. A_{n-1}`) is fixed so a
    /// seed always gives the same market.
    pub fn random(n: usize, rng: &mut impl Rng) -> Instance {
        let mut stake: Vec<f64> = (0..n).map(|_| rng.gen::<f64>()).collect();
        let total: f64 = stake.iter().sum();
        stake.iter_mut().for_each(|s| *s *= n as f64 / total);
        let mut w0: Vec<f64> = (0..n * n).map(|_| rng.gen::<f64>()).collect();
        for row in w0.chunks_mut(n) {
            let sum: f64 = row.iter().sum();
            row.iter_mut().for_each(|w| *w /= sum);
        }
        let hessians = (0..n)
            .map(|_| {
                let a: Vec<f64> = (0..n * n).map(|_| rng.sample(StandardNormal)).collect();
                // H = A A^T, then scaled to unit trace.
                let mut h = vec![0.0; n * n];
                for r in 0..n {
                    for c in r..n {
                        let dot: f64 = (0..n).map(|k| a[r * n + k] * a[c * n + k]).sum();
                        h[r * n + c] = dot;
                        h[c * n + r] = dot;
                    }
                }
                let trace: f64 = (0..n).map(|k| h[k * n + k]).sum();
                h.iter_mut().for_each(|x| *x /= trace);
                h
            })
            .collect();
        Instance { n, stake, w0, hessians }
    }

    /// Scales every Hessian's off-diagonal entries by `c` in `[0, 1]`:
    /// `H_i <- c H_i + (1 - c) diag(H_i)`, a convex combination of PSD matrices with the same
    /// trace. `c = 0` leaves only the terms eq. 2 sees; `c = 1` is the plain draw.
    pub fn with_offdiagonal(mut self, c: f64) -> Instance {
        let n = self.n;
        for h in &mut self.hessians {
            for r in 0..n {
                for col in 0..n {
                    if r != col {
                        h[r * n + col] *= c;
                    }
                }
            }
        }
        self
    }

    /// Eq. 2 with `f_j = 1`: `R_j = (1/n) sum_i H_i[j][j]`.
    pub fn ideal_ranking(&self) -> Vec<f64> {
        let n = self.n;
        (0..n).map(|j| self.hessians.iter().map(|h| h[j * n + j]).sum::<f64>() / n as f64).collect()
    }
}

/// Prices in `P_i = -loss * L_i + rank * R_i`.
#[derive(Debug, Clone, Copy)]
pub struct Prices {
    pub loss: f64,
    pub rank: f64,
}

impl Prices {
    /// The grid's prices for a given `alpha / tau`: `alpha = 1`, `tau = 1 / (alpha/tau)`.
    ///
    /// Eq. 15 divides the payoff by `tau`. Scaling a peer's payoff by a positive constant leaves
    /// the Nash equilibria unchanged but scales its gradient step, and with `lambda = 0.005`
    /// the divided form does not settle: at `n = 50` and `alpha/tau = 10` rows keep jumping by
    /// ~0.03 per step, at 50 by ~0.5 (a step too long for the sigmoid's curvature). Keeping
    /// `alpha = 1`, as the adaptive run does, gives the same equilibria with a stable step.
    pub fn ratio(alpha_over_tau: f64) -> Prices {
        Prices { loss: 1.0, rank: 1.0 / alpha_over_tau }
    }
}

/// The weight game on one instance under one loss reading.
#[derive(Debug, Clone)]
pub struct Game<'a> {
    inst: &'a Instance,
    /// `r_i` of every peer, row-major `n x n`.
    reference: Vec<f64>,
    /// Absolute temperature `T`.
    temperature: f64,
}

fn sigmoid(x: f64) -> f64 {
    // libm rather than std so the CSVs do not depend on the platform's exp.
    if x >= 0.0 {
        1.0 / (1.0 + libm::exp(-x))
    } else {
        let e = libm::exp(x);
        e / (1.0 + e)
    }
}

/// `a . b` with eight partial sums, so the compiler can vectorise it and keep several adds in
/// flight; the summation order is fixed, so results stay reproducible.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0; LANES];
    let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// `mu_j = (1/n) sum_k s_k w_kj` into `mu`.
fn column_means(stake: &[f64], w: &[f64], mu: &mut [f64]) {
    let n = stake.len();
    mu.fill(0.0);
    for (row, &s) in w.chunks(n).zip(stake) {
        for (m, &x) in mu.iter_mut().zip(row) {
            *m += s * x;
        }
    }
    mu.iter_mut().for_each(|m| *m /= n as f64);
}

impl<'a> Game<'a> {
    /// `temperature` is relative: the sigmoid uses `T = temperature / n`.
    pub fn new(inst: &'a Instance, reading: LossReference, temperature: f64) -> Game<'a> {
        let n = inst.n;
        let mut game = Game { inst, reference: vec![1.0; n * n], temperature: temperature / n as f64 };
        if reading == LossReference::Initial {
            let mut mu = vec![0.0; n];
            column_means(&inst.stake, &inst.w0, &mut mu);
            let mut reference = vec![0.0; n * n];
            for i in 0..n {
                game.mask_row(&inst.w0, &mu, i, &mut reference[i * n..(i + 1) * n]);
            }
            game.reference = reference;
        }
        game
    }

    pub fn n(&self) -> usize {
        self.inst.n
    }

    /// Eq. 7-8 for peer `i`: `m_ij = sigma((s_i w_ij - mu_j) / T)`.
    fn mask_row(&self, w: &[f64], mu: &[f64], i: usize, out: &mut [f64]) {
        let n = self.inst.n;
        let s = self.inst.stake[i];
        for j in 0..n {
            out[j] = sigmoid((s * w[i * n + j] - mu[j]) / self.temperature);
        }
    }

    /// Eq. 16 for peer `i`: `(m_i - r_i)^T H_i (m_i - r_i)`.
    pub fn loss(&self, w: &[f64], i: usize) -> f64 {
        let n = self.inst.n;
        let mut mu = vec![0.0; n];
        column_means(&self.inst.stake, w, &mut mu);
        let mut d = vec![0.0; n];
        self.mask_row(w, &mu, i, &mut d);
        d.iter_mut().zip(&self.reference[i * n..(i + 1) * n]).for_each(|(m, r)| *m -= r);
        let h = &self.inst.hessians[i];
        (0..n).map(|r| d[r] * (0..n).map(|c| h[r * n + c] * d[c]).sum::<f64>()).sum()
    }

    /// Eq. 5 for peer `i`: `R_i = (1/n) sum_k s_k w_ki`.
    pub fn rank(&self, w: &[f64], i: usize) -> f64 {
        let n = self.inst.n;
        (0..n).map(|k| self.inst.stake[k] * w[k * n + i]).sum::<f64>() / n as f64
    }

    /// `P_i = -prices.loss * L_i + prices.rank * R_i`.
    pub fn payoff(&self, w: &[f64], i: usize, prices: Prices) -> f64 {
        -prices.loss * self.loss(w, i) + prices.rank * self.rank(w, i)
    }

    /// `dP_i/dW_i` into `grad` (length `n`), given `mu` of `w`; `scratch` has length `n`.
    ///
    /// `dL_i/dw_ij = 2 (H_i (m_i - r_i))_j * m_ij (1 - m_ij) * s_i (1 - 1/n) / T`: the
    /// `(1 - 1/n)` is peer `i`'s own share of `mu_j`, which moves with `w_ij`.
    pub fn payoff_gradient(
        &self,
        w: &[f64],
        mu: &[f64],
        i: usize,
        prices: Prices,
        grad: &mut [f64],
        scratch: &mut [f64],
    ) {
        let n = self.inst.n;
        let s = self.inst.stake[i];
        // grad holds the mask m_i, scratch the deviation d = m_i - r_i.
        self.mask_row(w, mu, i, grad);
        let reference = &self.reference[i * n..(i + 1) * n];
        for ((d, &m), &r) in scratch.iter_mut().zip(grad.iter()).zip(reference) {
            *d = m - r;
        }
        let h = &self.inst.hessians[i];
        let slope = s * (1.0 - 1.0 / n as f64) / self.temperature;
        for (j, g) in grad.iter_mut().enumerate() {
            // (H_i d)_j; H_i is symmetric so row j will do.
            let hd = dot(&h[j * n..(j + 1) * n], scratch);
            let m = *g;
            *g = -prices.loss * 2.0 * hd * m * (1.0 - m) * slope;
        }
        grad[i] += prices.rank * s / n as f64;
    }

    /// One competitive step (eq. 13-14): all rows move from the same `W^t`, each projected back
    /// onto the simplex. Returns the largest Euclidean norm of a row's change.
    pub fn step(&self, w: &mut [f64], prices: Prices, learning_rate: f64, work: &mut StepWork) -> f64 {
        let n = self.inst.n;
        column_means(&self.inst.stake, w, &mut work.mu);
        // Gradients first, all at W^t, so no peer sees another's move of this step.
        for i in 0..n {
            let (g, s) = (&mut work.grads[i * n..(i + 1) * n], &mut work.scratch);
            self.payoff_gradient(w, &work.mu, i, prices, g, s);
        }
        let mut largest: f64 = 0.0;
        for i in 0..n {
            let row = &mut w[i * n..(i + 1) * n];
            for ((v, &x), &g) in work.scratch.iter_mut().zip(row.iter()).zip(&work.grads[i * n..(i + 1) * n])
            {
                *v = x + learning_rate * g;
            }
            project_simplex(&mut work.scratch);
            let moved: f64 =
                row.iter().zip(&work.scratch).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            largest = largest.max(moved);
            row.copy_from_slice(&work.scratch);
        }
        largest
    }
}

/// Buffers reused across steps.
#[derive(Debug, Clone)]
pub struct StepWork {
    mu: Vec<f64>,
    grads: Vec<f64>,
    scratch: Vec<f64>,
}

impl StepWork {
    pub fn new(n: usize) -> StepWork {
        StepWork { mu: vec![0.0; n], grads: vec![0.0; n * n], scratch: vec![0.0; n] }
    }
}

/// Euclidean projection of `v` onto the probability simplex `{x >= 0, sum x = 1}`, in place:
/// `x = max(v - theta, 0)` with `theta` the threshold at which that sums to 1. `theta` is found
/// by Michelot's (1986) fixed point: average over the entries still above the threshold, drop
/// those at or below it, repeat until none drop. The kept set only shrinks, so this ends in at
/// most `n` passes (a handful in practice), and it needs no sort, which dominated the step.
pub fn project_simplex(v: &mut [f64]) {
    let mut theta = (v.iter().sum::<f64>() - 1.0) / v.len() as f64;
    let mut kept = v.len();
    loop {
        let (mut sum, mut count) = (0.0, 0usize);
        for &x in v.iter() {
            if x > theta {
                sum += x;
                count += 1;
            }
        }
        // The largest entry always stays above theta, so count >= 1.
        theta = (sum - 1.0) / count as f64;
        if count == kept {
            break;
        }
        kept = count;
    }
    v.iter_mut().for_each(|x| *x = (*x - theta).max(0.0));
}

/// 1-based ranks, ties sharing the average of the ranks they span.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) are ranks start+1..=end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        order[start..end].iter().for_each(|&k| ranks[k] = rank);
        start = end;
    }
    ranks
}

/// Spearman's rho: Pearson correlation of average ranks. `None` when the lengths differ, there
/// are fewer than 2 points, a value is not finite, or either side is constant (no order).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 || x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    let (rx, ry) = (average_ranks(x), average_ranks(y));
    let mean = (x.len() + 1) as f64 / 2.0;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mean) * (b - mean);
        sxx += (a - mean) * (a - mean);
        syy += (b - mean) * (b - mean);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

/// `R* = (1/n) W^T 1` (eq. 4).
pub fn competitive_ranking(w: &[f64], n: usize) -> Vec<f64> {
    let ones = vec![1.0; n];
    stake_ranking(w, &ones)
}

/// `(1/n) W^T S` (eq. 5).
pub fn stake_ranking(w: &[f64], stake: &[f64]) -> Vec<f64> {
    let n = stake.len();
    let mut r = vec![0.0; n];
    column_means(stake, w, &mut r);
    r
}

/// `sum(diag W) / sum(W)` (§3.3).
pub fn sparsity(w: &[f64], n: usize) -> f64 {
    let diag: f64 = (0..n).map(|i| w[i * n + i]).sum();
    diag / w.iter().sum::<f64>()
}

/// One game played to its equilibrium (or the step budget).
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub reference: &'static str,
    pub alpha_over_tau: f64,
    pub n: usize,
    pub seed: u64,
    pub steps: usize,
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

/// Where [`play`] stopped.
#[derive(Debug, Clone)]
pub struct Equilibrium {
    /// `W*`, row-major.
    pub w: Vec<f64>,
    pub steps: usize,
    /// The projected gradient fell below the tolerance (else the budget ran out).
    pub converged: bool,
    /// Largest projected-gradient norm of a row in the last step.
    pub gradient_norm: f64,
}

/// Plays `game` from `W0` with `prices` until every projected gradient is below `tolerance` or
/// `budget` steps have run.
pub fn play(
    game: &Game<'_>,
    prices: Prices,
    learning_rate: f64,
    budget: usize,
    tolerance: f64,
) -> Equilibrium {
    let mut w = game.inst.w0.clone();
    let mut work = StepWork::new(game.n());
    let mut gradient_norm = f64::INFINITY;
    for t in 1..=budget {
        gradient_norm = game.step(&mut w, prices, learning_rate, &mut work) / learning_rate;
        if gradient_norm < tolerance {
            return Equilibrium { w, steps: t, converged: true, gradient_norm };
        }
    }
    Equilibrium { w, steps: budget, converged: false, gradient_norm }
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

/// The instance of `(n, seed)`: its own ChaCha stream of `base_seed`, so every cell of the
/// grid replays alone and all ratios see the same markets.
pub fn instance(base_seed: u64, n: usize, seed: u64) -> Instance {
    let mut rng = ChaCha8Rng::seed_from_u64(base_seed);
    rng.set_stream(((n as u64) << 32) ^ seed);
    Instance::random(n, &mut rng)
}

fn options_instance(opts: &EmpiricalOptions, n: usize, seed: u64) -> Instance {
    instance(opts.base_seed, n, seed).with_offdiagonal(opts.hessian_offdiagonal)
}

/// Statistics of one `(reading, alpha/tau, n)` cell over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct CellStats {
    pub reference: &'static str,
    pub alpha_over_tau: f64,
    pub n: usize,
    pub seeds: usize,
    /// Spearman (eq. 4 vs eq. 2), undefined counted as 0.
    pub spearman_mean: f64,
    pub spearman_std: f64,
    pub spearman_min: f64,
    pub spearman_max: f64,
    /// Seeds whose competitive ranking was constant (rho undefined).
    pub spearman_undefined: usize,
    /// Spearman of the stake-weighted ranking (eq. 5 vs eq. 2), undefined counted as 0.
    pub spearman_stake_mean: f64,
    /// Spearman of `W0`'s ranking: what the game added over the random start.
    pub spearman_initial_mean: f64,
    /// Mean `w_ii` = `sum(diag W)/sum(W)` at the end.
    pub self_weight_mean: f64,
    pub zero_fraction_mean: f64,
    pub identity_rows_mean: f64,
    pub steps_mean: f64,
    pub steps_max: usize,
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
    pub n: usize,
    pub step: usize,
    pub tau: f64,
    /// `sum(diag W) / sum(W)`.
    pub sparsity: f64,
    pub spearman: Option<f64>,
    pub spearman_stake: Option<f64>,
}

/// Where the adaptive run ended, averaged over its last tenth of steps.
#[derive(Debug, Clone)]
pub struct AdaptiveOutcome {
    pub n: usize,
    pub tau_final: f64,
    pub tau_tail_mean: f64,
    pub sparsity_tail_mean: f64,
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
    pub files: Vec<PathBuf>,
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

fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut writer = csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    for row in rows {
        writer.serialize(row).with_context(|| format!("writing {}", path.display()))?;
    }
    writer.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs experiment 4 and writes `empirical.csv`, `empirical_summary.csv`, `adaptive_tau.csv`
/// (when enabled) and the PNG charts into `out_dir` (created if missing).
pub fn run(opts: &EmpiricalOptions, out_dir: &Path) -> Result<EmpiricalReport> {
    opts.validate()?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
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

fn spearman_charts(
    opts: &EmpiricalOptions,
    readings: &[LossReference],
    cells: &[CellStats],
    out_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for &reading in readings {
        let mut series = Vec::new();
        for &n in &opts.sizes {
            let pick = |f: &dyn Fn(&CellStats) -> f64| -> Vec<(f64, f64)> {
                cells
                    .iter()
                    .filter(|c| c.reference == reading.name() && c.n == n)
                    .map(|c| (c.alpha_over_tau, f(c)))
                    .collect()
            };
            series.push(Series::new(format!("n = {n}, mean"), pick(&|c| c.spearman_mean)));
            series.push(Series::new(format!("n = {n}, min"), pick(&|c| c.spearman_min)));
            series.push(Series::new(format!("n = {n}, max"), pick(&|c| c.spearman_max)));
        }
        let seeds = cells.iter().find(|c| c.reference == reading.name()).map_or(0, |c| c.seeds);
        let title =
            format!("Spearman(R*, R) vs alpha/tau, {seeds} seeds, loss from the {} mask", reading.name());
        let chart = Chart {
            title: &title,
            x_label: "alpha / tau",
            y_label: "Spearman rho (eq. 4 vs eq. 2)",
            y_scale: YScale::Linear,
            y_range: Some((-1.0, 1.0)),
        };
        let name = if reading == opts.reference {
            "empirical_spearman.png".to_string()
        } else {
            format!("empirical_spearman_{}.png", reading.name())
        };
        let path = out_dir.join(name);
        line_chart(&path, &chart, &series)?;
        files.push(path);
    }
    Ok(files)
}

fn adaptive_charts(opts: &EmpiricalOptions, rows: &[AdaptiveRow], out_dir: &Path) -> Result<Vec<PathBuf>> {
    let per_n = |f: &dyn Fn(&AdaptiveRow) -> Option<f64>| -> Vec<Series> {
        opts.sizes
            .iter()
            .map(|&n| {
                let points =
                    rows.iter().filter(|r| r.n == n).filter_map(|r| f(r).map(|y| (r.step as f64, y)));
                Series::new(format!("n = {n}"), points.collect())
            })
            .collect()
    };
    let mut sparsity_series = per_n(&|r| Some(r.sparsity));
    let last_step = opts.adaptive.steps as f64;
    let target = opts.adaptive.sparsity_target;
    sparsity_series.push(Series::new("target", vec![(0.0, target), (last_step, target)]));
    let alpha = opts.adaptive.alpha;
    let charts = [
        ("adaptive_sparsity.png", format!("Adaptive tau: sum(diag W)/sum(W), alpha = {alpha}"), "sparsity"),
        ("adaptive_tau.png", format!("Adaptive tau: inflation rate tau, alpha = {alpha}"), "tau"),
        ("adaptive_spearman.png", "Adaptive tau: Spearman(R*, R) over steps".to_string(), "Spearman rho"),
    ];
    let series = [sparsity_series, per_n(&|r| Some(r.tau)), per_n(&|r| r.spearman)];
    let mut files = Vec::new();
    for ((name, title, y_label), series) in charts.into_iter().zip(series) {
        // tau has no natural bound; the other two are fractions and correlations.
        let y_range = match name {
            "adaptive_sparsity.png" => Some((0.0, 1.0)),
            "adaptive_spearman.png" => Some((-1.0, 1.0)),
            _ => None,
        };
        let chart = Chart { title: &title, x_label: "step", y_label, y_scale: YScale::Linear, y_range };
        let path = out_dir.join(name);
        line_chart(&path, &chart, &series)?;
        files.push(path);
    }
    Ok(files)
}

fn summary(
    opts: &EmpiricalOptions,
    readings: &[LossReference],
    cells: &[CellStats],
    adaptive: &[AdaptiveOutcome],
) -> String {
    let mut md = String::new();
    // Writing into a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(md, "# Experiment 4: competitive ranking vs idealised ranking\n");
    let _ = writeln!(md, "## Model\n");
    let _ = writeln!(
        md,
        "- Stake `s_i ~ U(0,1)` rescaled to mean 1 (so eq. 5 with equal stakes is eq. 4); `W0` rows \
         `U(0,1)` normalised to sum 1.\n\
         - Hessians `H_i = A_i A_i^T / tr(A_i A_i^T)`, `A_i` n x n standard normal (PSD, unit trace, so \
         the honest weights of eq. 3 form a valid row); off-diagonal entries then scaled by {c}.\n\
         - Unit responses `f_j = 1`. Mask (eq. 7-8): `m_ij = sigma((s_i w_ij - mu_j) / T)`, \
         `mu_j = (1/n) sum_k s_k w_kj`, `sigma(x) = 1/(1 + e^-x)`, `T = {t} / n`.\n\
         - Loss (eq. 16): `L_i = (m_i - r_i)^T H_i (m_i - r_i)`; `connected`: `r_i = 1` (all inputs \
         present, so dropping input j alone costs `H_i[j][j]`, peer i's term of eq. 2); `initial`: \
         `r_i` = mask at `W0` (the literal reading).\n\
         - Rank (eq. 5): `R_i = (1/n) sum_k s_k w_ki`. Payoff `P_i = -alpha L_i + tau R_i` (eq. 12/22 \
         with the sign fixed so loss is a cost); the grid sets `alpha = 1, tau = 1/(alpha/tau)`, which \
         has the equilibria of eq. 15's `-(alpha/tau) L_i + R_i` but a step short enough to settle.\n\
         - `dL_i/dw_ij = 2 (H_i (m_i - r_i))_j m_ij (1 - m_ij) s_i (1 - 1/n) / T`, \
         `dR_i/dw_ij = (s_i/n)[i = j]`.\n\
         - Steps (eq. 13-14): `W_i <- proj_simplex(W_i + lambda dP_i/dW_i)` for all `i` from the same \
         `W`, `lambda = {lr}`, Euclidean projection onto the simplex; stop when every projected \
         gradient `|W_i' - W_i| / lambda` is below `{tol:e}` or after `min({spp} n, {cap})` steps.\n\
         - Compared: `R* = (1/n) W*^T 1` (eq. 4) and `(1/n) W*^T S` (eq. 5) against \
         `R_j = (1/n) sum_i H_i[j][j]` (eq. 2), Spearman with average ranks; a constant `R*` \
         (rho undefined, e.g. every peer at `w_ii = 1`) counts as 0. `rho W0` is the random start's.\n\
         - {seeds} seeds per cell (the same markets for every alpha/tau), base seed {base}; the \
         comparison reading runs on the first {compare} of them.\n",
        c = opts.hessian_offdiagonal,
        t = opts.temperature,
        lr = opts.learning_rate,
        tol = opts.tolerance,
        spp = opts.steps_per_peer,
        cap = opts.max_steps,
        seeds = opts.seeds,
        compare = opts.compare_seeds.min(opts.seeds),
        base = opts.base_seed,
    );
    for &reading in readings {
        let _ = writeln!(md, "## Grid, loss measured from the `{}` mask\n", reading.name());
        let _ = writeln!(
            md,
            "| alpha/tau | n | rho eq.4 mean | std | min | max | undefined | rho eq.5 | rho W0 | \
             mean w_ii | identity rows | zero weights | steps mean/max | converged | max final grad |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for c in cells.iter().filter(|c| c.reference == reading.name()) {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | \
                 {:.0}/{} | {}/{} | {:.1e} |",
                c.alpha_over_tau,
                c.n,
                c.spearman_mean,
                c.spearman_std,
                c.spearman_min,
                c.spearman_max,
                c.spearman_undefined,
                c.spearman_stake_mean,
                c.spearman_initial_mean,
                c.self_weight_mean,
                c.identity_rows_mean,
                c.zero_fraction_mean,
                c.steps_mean,
                c.steps_max,
                c.converged,
                c.seeds,
                c.gradient_norm_max
            );
        }
        let _ = writeln!(md);
    }
    if !adaptive.is_empty() {
        let a = &opts.adaptive;
        let _ = writeln!(
            md,
            "## Adaptive tau (Figure 5)\n\n\
             `P_i = -alpha L_i + tau R_i` with alpha = {}, tau starting at 0 and \
             `tau <- max(0, tau + {} (target - sparsity))` after every step, sparsity = \
             `sum(diag W)/sum(W)`, target {} (a diagonal-to-off-diagonal ratio of 1), {} steps, \
             seed 0 of each size, loss from the `{}` mask. Tail = last tenth of the steps.\n",
            a.alpha,
            a.gain,
            a.sparsity_target,
            a.steps,
            opts.reference.name()
        );
        let _ =
            writeln!(md, "| n | tau peak | tau final | tau tail mean | sparsity tail mean | rho tail mean |");
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for o in adaptive {
            let _ = writeln!(
                md,
                "| {} | {:.4} | {:.4} | {:.4} | {:.3} | {:.3} |",
                o.n, o.tau_peak, o.tau_final, o.tau_tail_mean, o.sparsity_tail_mean, o.spearman_tail_mean
            );
        }
        let _ = writeln!(md);
    }
    findings(&mut md, opts, readings, cells, adaptive);
    md
}

/// Plain statements read off the numbers above, so the summary says what this run found and
/// not what the paper expects.
fn findings(
    md: &mut String,
    opts: &EmpiricalOptions,
    readings: &[LossReference],
    cells: &[CellStats],
    adaptive: &[AdaptiveOutcome],
) {
    let _ = writeln!(md, "## Findings of this run\n");
    let main = readings[0].name();
    let mut ratios = opts.ratios.clone();
    ratios.sort_by(f64::total_cmp);
    ratios.dedup();
    let cell = |reading: &str, ratio: f64, n: usize| {
        cells.iter().find(|c| c.reference == reading && c.alpha_over_tau == ratio && c.n == n)
    };
    for &n in &opts.sizes {
        let means: Vec<f64> =
            ratios.iter().filter_map(|&r| cell(main, r, n)).map(|c| c.spearman_mean).collect();
        let (Some(lo), Some(hi)) = (cell(main, ratios[0], n), cell(main, ratios[ratios.len() - 1], n)) else {
            continue;
        };
        let monotone = means.windows(2).all(|w| w[1] >= w[0]);
        let trend = if hi.spearman_mean > lo.spearman_mean + lo.spearman_std.max(hi.spearman_std) {
            "rises clearly"
        } else if hi.spearman_mean > lo.spearman_mean {
            "rises by less than one standard deviation"
        } else {
            "does not rise"
        };
        let _ = writeln!(
            md,
            "- n = {n}: mean rho {trend} from {:.3} at alpha/tau = {} to {:.3} at {} ({}monotone over \
             the grid). At alpha/tau = {}: mean w_ii = {:.3}, {:.0}% of rows at the identity, rho \
             undefined in {}/{} seeds.",
            lo.spearman_mean,
            lo.alpha_over_tau,
            hi.spearman_mean,
            hi.alpha_over_tau,
            if monotone { "" } else { "not " },
            lo.alpha_over_tau,
            lo.self_weight_mean,
            100.0 * lo.identity_rows_mean,
            lo.spearman_undefined,
            lo.seeds
        );
    }
    for &reading in &readings[1..] {
        for &n in &opts.sizes {
            let avg = |name: &str| {
                let v: Vec<f64> =
                    ratios.iter().filter_map(|&r| cell(name, r, n)).map(|c| c.spearman_mean).collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            };
            let _ = writeln!(
                md,
                "- n = {n}, loss from the `{}` mask: mean rho over the grid {:.3}, against {:.3} for `{}`.",
                reading.name(),
                avg(reading.name()),
                avg(main),
                main
            );
        }
    }
    for o in adaptive {
        let _ = writeln!(
            md,
            "- Adaptive tau, n = {}: tau peaks at {:.3} and settles at {:.3}; sparsity ends at {:.3} \
             (target {}), with rho {:.3} over the last tenth of the run.",
            o.n,
            o.tau_peak,
            o.tau_tail_mean,
            o.sparsity_tail_mean,
            opts.adaptive.sparsity_target,
            o.spearman_tail_mean
        );
    }
    let _ = writeln!(md);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_known_cases() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(spearman(&x, &[2.0, 4.0, 8.0, 16.0, 32.0]), Some(1.0));
        assert_eq!(spearman(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]), Some(-1.0));
        // Textbook case with d = [-1, 1, 0, 0, 0]: 1 - 6 * 2 / (5 * 24) = 0.9.
        let rho = spearman(&x, &[2.0, 1.0, 3.0, 4.0, 5.0]).unwrap();
        assert!((rho - 0.9).abs() < 1e-12);
        // Ties: ranks [1.5, 1.5, 3, 4] against [1, 2, 3, 4]; Pearson of those is 0.9486833.
        let rho = spearman(&[1.0, 1.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((rho - 0.9486832980505138).abs() < 1e-12, "{rho}");
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0, 3.0]), vec![4.0, 1.0, 4.0, 2.0, 4.0]);
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[1.0]), None);
        assert_eq!(spearman(&[1.0, f64::NAN], &[1.0, 2.0]), None);
    }

    #[test]
    fn simplex_projection_properties() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for trial in 0..200 {
            let n = 1 + trial % 9;
            let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect();
            let mut p = v.clone();
            project_simplex(&mut p);
            assert!(p.iter().all(|&x| x >= 0.0));
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            // Optimality: v - p is theta on the support and at most theta off it.
            let theta = (0..n).find(|&k| p[k] > 0.0).map(|k| v[k] - p[k]).unwrap();
            for k in 0..n {
                if p[k] > 0.0 {
                    assert!((v[k] - p[k] - theta).abs() < 1e-12);
                } else {
                    assert!(v[k] <= theta + 1e-12);
                }
            }
            // Same threshold as the textbook sort-based algorithm (Held et al. 1974).
            let mut u = v.clone();
            u.sort_by(|a, b| b.total_cmp(a));
            let mut cumulative = 0.0;
            let mut sorted_theta = 0.0;
            for (k, &x) in u.iter().enumerate() {
                cumulative += x;
                if x - (cumulative - 1.0) / (k + 1) as f64 > 0.0 {
                    sorted_theta = (cumulative - 1.0) / (k + 1) as f64;
                }
            }
            assert!((theta - sorted_theta).abs() < 1e-12, "{theta} vs {sorted_theta}");
            // Idempotent, and closer to v than a random simplex point.
            let mut q = p.clone();
            project_simplex(&mut q);
            assert!(p.iter().zip(&q).all(|(a, b)| (a - b).abs() < 1e-12));
            let mut other: Vec<f64> = (0..n).map(|_| rng.gen::<f64>()).collect();
            let s: f64 = other.iter().sum();
            other.iter_mut().for_each(|x| *x /= s);
            let dist = |a: &[f64]| a.iter().zip(&v).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
            assert!(dist(&p) <= dist(&other) + 1e-12);
        }
        let mut p = vec![0.2, 0.3, 0.5];
        project_simplex(&mut p);
        assert_eq!(p, vec![0.2, 0.3, 0.5]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let inst = instance(11, 6, 3);
        for reading in [LossReference::Connected, LossReference::Initial] {
            let game = Game::new(&inst, reading, 1.0);
            let n = inst.n;
            // Move away from W0 so the literal reading's gradient is not trivially zero.
            let mut w = inst.w0.clone();
            let mut work = StepWork::new(n);
            for _ in 0..5 {
                game.step(&mut w, Prices::ratio(3.0), 0.01, &mut work);
            }
            let prices = Prices::ratio(3.0);
            let mut mu = vec![0.0; n];
            column_means(&inst.stake, &w, &mut mu);
            let (mut grad, mut scratch) = (vec![0.0; n], vec![0.0; n]);
            for i in 0..n {
                game.payoff_gradient(&w, &mu, i, prices, &mut grad, &mut scratch);
                for j in 0..n {
                    let h = 1e-6;
                    let (mut up, mut down) = (w.clone(), w.clone());
                    up[i * n + j] += h;
                    down[i * n + j] -= h;
                    let numeric = (game.payoff(&up, i, prices) - game.payoff(&down, i, prices)) / (2.0 * h);
                    let scale = grad[j].abs().max(1e-3);
                    assert!(
                        (numeric - grad[j]).abs() < 1e-5 * scale,
                        "{} i={i} j={j}: analytic {} numeric {numeric}",
                        reading.name(),
                        grad[j]
                    );
                }
            }
        }
    }

    #[test]
    fn instances_are_deterministic_and_well_formed() {
        let a = instance(1, 5, 2);
        let b = instance(1, 5, 2);
        assert_eq!(a.w0, b.w0);
        assert_eq!(a.hessians, b.hessians);
        assert_ne!(instance(1, 5, 3).w0, a.w0);
        assert!((a.stake.iter().sum::<f64>() - 5.0).abs() < 1e-12);
        for row in a.w0.chunks(5) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        for h in &a.hessians {
            let trace: f64 = (0..5).map(|k| h[k * 5 + k]).sum();
            assert!((trace - 1.0).abs() < 1e-12);
            // PSD: x^T H x >= 0 for a few random x.
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            for _ in 0..20 {
                let x: Vec<f64> = (0..5).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let q: f64 = (0..5).map(|r| x[r] * (0..5).map(|c| h[r * 5 + c] * x[c]).sum::<f64>()).sum();
                assert!(q >= -1e-12);
            }
        }
        // The connected loss is zero only with every input fully present, which no simplex row
        // reaches; the literal loss is exactly zero at W0.
        let literal = Game::new(&a, LossReference::Initial, 1.0);
        assert!(literal.loss(&a.w0, 0).abs() < 1e-15);
        assert!(Game::new(&a, LossReference::Connected, 1.0).loss(&a.w0, 0) > 0.0);
    }

    #[test]
    fn literal_reading_has_no_loss_pull_at_the_start() {
        // Why the literal reading is not the default: at W0 its loss gradient is exactly zero,
        // so only the rank term acts on the first step.
        let inst = instance(2, 7, 0);
        let game = Game::new(&inst, LossReference::Initial, 1.0);
        let mut mu = vec![0.0; 7];
        column_means(&inst.stake, &inst.w0, &mut mu);
        let (mut grad, mut scratch) = (vec![0.0; 7], vec![0.0; 7]);
        for i in 0..7 {
            game.payoff_gradient(&inst.w0, &mu, i, Prices { loss: 1.0, rank: 0.0 }, &mut grad, &mut scratch);
            assert!(grad.iter().all(|g| g.abs() < 1e-15), "{grad:?}");
        }
    }

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
            EmpiricalOptions { ratios: vec![0.0], ..tiny_options() },
            EmpiricalOptions { sizes: vec![1], ..tiny_options() },
            EmpiricalOptions { seeds: 0, ..tiny_options() },
            EmpiricalOptions { temperature: f64::NAN, ..tiny_options() },
        ];
        for opts in bad {
            assert!(run(&opts, &dir).is_err());
        }
        assert!(!dir.exists());
    }
}
