//! Figures shared by the papers' experiments (`sim`) and the localnet's report: PNG line charts
//! drawn with a font shipped in the repository, `%g` numbers and markdown tables, and Spearman's
//! rho. Its own crate so that the network orchestrator does not pull in the experiments to draw
//! a chart.

pub mod plot;
pub mod rank;
pub mod text;

pub use plot::{line_chart, Chart, Series, YScale};
pub use rank::{average_ranks, spearman};
pub use text::{format_sig, markdown_table};

use std::path::PathBuf;

/// Why a figure could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("chart {title:?} has no finite points to draw")]
    NoPoints { title: String },
    #[error("cannot draw {}: {message}", path.display())]
    Draw { path: PathBuf, message: String },
}
