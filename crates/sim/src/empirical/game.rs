//! The game itself: one random market (stake, initial weights, a Hessian per peer), the
//! peers' payoff and its gradient, the competitive steps to an equilibrium and the rankings
//! read off it, exactly as the parent module's doc writes them.

use super::LossReference;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// One random market: stake, initial weights and one Hessian per peer.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Peers in the market.
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
    /// The price of loss, alpha.
    pub loss: f64,
    /// The price of rank, tau (the inflation rate that pays for it).
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

    /// Peers in the market.
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
    /// Zeroed buffers for a market of `n` peers.
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

/// Where [`play`] stopped.
#[derive(Debug, Clone)]
pub struct Equilibrium {
    /// `W*`, row-major.
    pub w: Vec<f64>,
    /// Gradient steps taken.
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

/// The instance of `(n, seed)`: its own ChaCha stream of `base_seed`, so every cell of the
/// grid replays alone and all ratios see the same markets.
pub fn instance(base_seed: u64, n: usize, seed: u64) -> Instance {
    let mut rng = ChaCha8Rng::seed_from_u64(base_seed);
    rng.set_stream(((n as u64) << 32) ^ seed);
    Instance::random(n, &mut rng)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
