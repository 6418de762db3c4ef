//! `agora sim all`: every experiment with its default options, and one `summary.md` joining
//! their summaries.

use crate::report::{prepare_out_dir, write_text};
use crate::SimError;
use crate::{cabal, compare, descent, empirical};
use std::path::{Path, PathBuf};

/// How `all` sizes the experiments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllOptions {
    /// Small sizes (a smoke test in seconds) instead of each experiment's defaults.
    pub quick: bool,
}

/// What `agora sim all` produced: every experiment's summary, and one summary over them all.
#[derive(Debug, Clone)]
pub struct AllReport {
    /// Each experiment's name and its markdown summary, in the order they ran.
    pub sections: Vec<(&'static str, String)>,
    /// The whole run's markdown (each section under its heading), as written to `summary.md`.
    pub summary_markdown: String,
    /// Every file written, `summary.md` last.
    pub files: Vec<PathBuf>,
}

/// Runs every experiment into `out_dir` and writes `out_dir/summary.md`.
pub fn run(opts: &AllOptions, out_dir: &Path) -> Result<AllReport, SimError> {
    let out_dir = prepare_out_dir(out_dir)?;
    let mut descent_opts = descent::TrustDescentOptions::default();
    let mut compare_opts = compare::CompareOptions::default();
    let mut empirical_opts = empirical::EmpiricalOptions::default();
    if opts.quick {
        empirical_opts = empirical::EmpiricalOptions {
            sizes: vec![10],
            seeds: 2,
            max_steps: 5_000,
            compare_seeds: 0,
            adaptive: empirical::AdaptiveOptions { steps: 2_000, ..empirical_opts.adaptive.clone() },
            ..empirical_opts
        };
        descent_opts = descent::TrustDescentOptions { n_cabal: 20, blocks: 100, ..descent_opts };
        compare_opts = compare::CompareOptions { n_honest: 8, n_cabal: 4, epochs: 30, ..compare_opts };
    }
    let mut sections = Vec::new();
    let mut files = Vec::new();

    let r = cabal::run_000(&cabal::Cabal000Options::default(), &out_dir)?;
    sections.push(("cabal-000", r.summary_markdown));
    files.extend(r.files);
    let r = cabal::run_002(&cabal::Cabal002Options::default(), &out_dir)?;
    sections.push(("cabal-002", r.summary_markdown));
    files.extend(r.files);
    let r = descent::run(&descent_opts, &out_dir)?;
    sections.push(("trust-descent", r.summary_markdown));
    files.extend(r.files);
    let r = compare::run(&compare_opts, &out_dir)?;
    sections.push(("compare", r.summary_markdown));
    files.extend(r.files);

    let r = empirical::run(&empirical_opts, &out_dir)?;
    sections.push(("empirical", r.summary_markdown));
    files.extend(r.files);

    let mut summary = String::from(
        "# Agora simulations\n\nEvery experiment of `agora sim`, run on the real `mechanism` crate. \
         Each section names the CSV and PNG files beside this one.\n\n",
    );
    if opts.quick {
        summary.push_str("Quick run: trust-descent, compare and empirical at reduced sizes.\n\n");
    }
    for (_, s) in &sections {
        summary.push_str(nest_headings(s).trim_end());
        summary.push_str("\n\n");
    }
    let path = out_dir.join("summary.md");
    write_text(&path, &summary)?;
    files.push(path);
    Ok(AllReport { sections, summary_markdown: summary, files })
}

/// Shifts the markdown headings of one experiment's summary so its top level is `##`, under
/// the joined file's single `#` title (experiments write their summaries standalone, some
/// with a `#` title). Lines inside code fences are left alone.
fn nest_headings(section: &str) -> String {
    let level = |line: &str| {
        let hashes = line.len() - line.trim_start_matches('#').len();
        (hashes > 0 && line[hashes..].starts_with(' ')).then_some(hashes)
    };
    let mut fenced = false;
    let mut top = usize::MAX;
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if let Some(l) = level(line).filter(|_| !fenced) {
            top = top.min(l);
        }
    }
    let shift = if top == usize::MAX { 0 } else { 2usize.saturating_sub(top) };
    let mut out = String::with_capacity(section.len() + 16);
    fenced = false;
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && level(line).is_some() {
            out.push_str(&"#".repeat(shift));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::nest_headings;

    #[test]
    fn headings_nest_under_the_summary_title() {
        assert_eq!(nest_headings("# A\ntext #1\n## B\n"), "## A\ntext #1\n### B\n");
        assert_eq!(nest_headings("## A\n### B\n"), "## A\n### B\n");
        assert_eq!(nest_headings("# A\n```\n# not a heading\n```\n"), "## A\n```\n# not a heading\n```\n");
        assert_eq!(nest_headings("no headings\n"), "no headings\n");
    }
}
