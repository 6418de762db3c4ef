//! What experiment 4 writes for a reader: the charts and the markdown summary with its
//! findings, from the statistics the driver computed.

use super::{AdaptiveOutcome, AdaptiveRow, CellStats, EmpiricalOptions, LossReference};
use crate::error::SimError;
use figures::plot::{line_chart, Chart, Series, YScale};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub(super) fn spearman_charts(
    opts: &EmpiricalOptions,
    readings: &[LossReference],
    cells: &[CellStats],
    out_dir: &Path,
) -> Result<Vec<PathBuf>, SimError> {
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

pub(super) fn adaptive_charts(
    opts: &EmpiricalOptions,
    rows: &[AdaptiveRow],
    out_dir: &Path,
) -> Result<Vec<PathBuf>, SimError> {
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

pub(super) fn summary(
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
pub(super) fn findings(
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
