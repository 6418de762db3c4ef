//! Writing results: the output directory, CSV tables, PNG charts, markdown and number
//! formatting shared by every experiment.

use crate::error::SimError;
use crate::plot::{line_chart, Chart, Series};
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

/// Formats `x` with `digits` significant digits exactly as C's and Python's `%.{digits}g`
/// do: fixed notation for exponents in `-4..digits`, scientific otherwise, trailing zeros
/// removed. `format_sig(0.4891094401482484, 15)` is `"0.489109440148248"`.
pub fn format_sig(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let digits = digits.max(1);
    // `{:e}` rounds correctly to `digits` significant digits; its exponent (after rounding,
    // so 9.99..e-1 that rounds to 1.0e0 counts as 0) decides the notation, as in C.
    let sci = format!("{:.*e}", digits - 1, x);
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    if exp < -4 || exp >= digits as i32 {
        let mantissa = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (digits as i32 - 1 - exp) as usize;
        strip_zeros(&format!("{:.*}", decimals, x)).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A CSV table built in memory and written in one go. Numbers are written with Rust's
/// shortest round-trip representation, so a reader gets back the exact f64.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table { header: header.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len(), "row width must match the header");
        self.rows.push(row);
    }

    pub fn write(&self, path: &Path) -> Result<(), SimError> {
        let fail = |e: csv::Error| SimError::Write {
            path: path.to_path_buf(),
            reason: match e.into_kind() {
                csv::ErrorKind::Io(io) => io,
                other => std::io::Error::other(format!("{other:?}")),
            },
        };
        let mut w = csv::Writer::from_path(path).map_err(fail)?;
        w.write_record(&self.header).map_err(fail)?;
        for row in &self.rows {
            w.write_record(row).map_err(fail)?;
        }
        w.flush().map_err(|reason| SimError::Write { path: path.to_path_buf(), reason })
    }
}

/// A number for a CSV cell (shortest round-trip form).
pub fn cell(x: f64) -> String {
    format!("{x}")
}

/// Draws a chart, turning the plotting library's error into a [`SimError`].
pub fn chart(path: &Path, chart: &Chart<'_>, series: &[Series]) -> Result<(), SimError> {
    line_chart(path, chart, series)
        .map_err(|e| SimError::Plot { path: path.to_path_buf(), message: format!("{e:#}") })
}

/// Writes `text` to `path`.
pub fn write_text(path: &Path, text: &str) -> Result<(), SimError> {
    std::fs::write(path, text).map_err(|reason| SimError::Write { path: path.to_path_buf(), reason })
}

/// A markdown table from a header and rows of cells.
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", header.join(" | "), " --- |".repeat(header.len()));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
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
    fn format_sig_matches_python_percent_g() {
        // Reference strings from Python's "%.15g" % x.
        assert_eq!(format_sig(0.4891094401482484, 15), "0.489109440148248");
        assert_eq!(format_sig(0.13516840696778115, 15), "0.135168406967781");
        assert_eq!(format_sig(0.00012063371993464691, 15), "0.000120633719934647");
        assert_eq!(format_sig(0.5, 15), "0.5");
        assert_eq!(format_sig(1e-5, 15), "1e-05");
        assert_eq!(format_sig(1.5e-7, 3), "1.5e-07");
        assert_eq!(format_sig(123456.0, 3), "1.23e+05");
        assert_eq!(format_sig(0.99999, 3), "1");
        assert_eq!(format_sig(-2.5, 15), "-2.5");
        assert_eq!(format_sig(0.0, 15), "0");
    }

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

    #[test]
    fn markdown_table_has_a_separator_row() {
        let t = markdown_table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n| --- | --- |\n| 1 | 2 |\n");
    }
}
