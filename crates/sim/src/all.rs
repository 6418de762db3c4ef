//! `agora sim all`: every experiment with its default options, and one `summary.md` joining
//! their summaries.

use crate::report::{prepare_out_dir, write_text};
use crate::{cabal, compare, descent};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// How `all` sizes the experiments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllOptions {
    /// Small sizes (a smoke test in seconds) instead of each experiment's defaults.
    pub quick: bool,
}

#[derive(Debug, Clone)]
pub struct AllReport {
    /// Each experiment's name and its markdown summary, in the order they ran.
    pub sections: Vec<(&'static str, String)>,
    pub summary_markdown: String,
    /// Every file written, `summary.md` last.
    pub files: Vec<PathBuf>,
}

/// Runs every experiment into `out_dir` and writes `out_dir/summary.md`.
pub fn run(opts: &AllOptions, out_dir: &Path) -> Result<AllReport> {
    let out_dir = prepare_out_dir(out_dir)?;
    let mut descent_opts = descent::TrustDescentOptions::default();
    let mut compare_opts = compare::CompareOptions::default();
    if opts.quick {
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

    let mut summary = String::from(
        "# Agora simulations\n\nEvery experiment of `agora sim`, run on the real `mechanism` crate. \
         Each section names the CSV and PNG files beside this one.\n\n",
    );
    if opts.quick {
        summary.push_str("Quick run: trust-descent and compare at reduced sizes.\n\n");
    }
    for (_, s) in &sections {
        // Each section starts with a level-2 heading; keep one blank line between them.
        summary.push_str(s.trim_end());
        summary.push_str("\n\n");
    }
    let path = out_dir.join("summary.md");
    write_text(&path, &summary)?;
    files.push(path);
    Ok(AllReport { sections, summary_markdown: summary, files })
}
