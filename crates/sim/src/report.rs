//! Writing results: the output directory, CSV tables, PNG charts and progress bars shared by
//! every experiment. Number formatting and markdown tables are the `figures` crate's.

use crate::error::SimError;
use figures::plot::{line_chart, Chart, Series};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Where `agora sim` writes when `--out` is not given.
pub const DEFAULT_OUT_DIR: &str = "./agora-sim";

/// Creates `dir` (and its parents) if missing and proves it is writable by creating and
/// removing a probe file, so an experiment fails before it runs rather than after.
pub fn prepare_out_dir(dir: &Path) -> Result<PathBuf, SimError> {
    let fail = |reason| SimError::OutputDir { path: dir.to_path_buf(), reason };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".agora-write-probe");
    std::fs::write(&probe, b"").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(dir.to_path_buf())
}

/// A CSV table built in memory and written in one go. Numbers are written with Rust's
/// shortest round-trip representation, so a reader gets back the exact f64.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column names.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table { header: header.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// Adds a row; it must have one cell per column.
    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len(), "row width must match the header");
        self.rows.push(row);
    }

    /// Writes the header and every row to `path` as CSV.
    pub fn write(&self, path: &Path) -> Result<(), SimError> {
        let fail = |e| csv_error(path, e);
        let mut w = csv::Writer::from_path(path).map_err(fail)?;
        w.write_record(&self.header).map_err(fail)?;
        for row in &self.rows {
            w.write_record(row).map_err(fail)?;
        }
        w.flush().map_err(|reason| SimError::Write { path: path.to_path_buf(), reason })
    }
}

/// A CSV writer's failure on `path` as a [`SimError::Write`].
pub fn csv_error(path: &Path, e: csv::Error) -> SimError {
    let reason = match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => std::io::Error::other(format!("{other:?}")),
    };
    SimError::Write { path: path.to_path_buf(), reason }
}

/// A number for a CSV cell (shortest round-trip form).
pub fn cell(x: f64) -> String {
    format!("{x}")
}

/// Draws a chart, turning the plotting library's error into a [`SimError`].
pub fn chart(path: &Path, chart: &Chart<'_>, series: &[Series]) -> Result<(), SimError> {
    line_chart(path, chart, series).map_err(SimError::Figure)
}

/// Writes `text` to `path`.
pub fn write_text(path: &Path, text: &str) -> Result<(), SimError> {
    std::fs::write(path, text).map_err(|reason| SimError::Write { path: path.to_path_buf(), reason })
}

/// A progress bar on stderr for `len` steps of work, hidden when stderr is not a terminal
/// (tests, pipes, CI logs) so it never pollutes captured output.
pub fn progress(len: u64, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{prefix:>14} [{bar:40}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_dir_errors_name_the_path() {
        let base = std::env::temp_dir().join(format!("agora-report-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let file = base.join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let err = prepare_out_dir(&file.join("sub")).unwrap_err();
        assert!(err.to_string().contains("a-file"), "{err}");
        assert!(prepare_out_dir(&base.join("new/nested")).is_ok());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
