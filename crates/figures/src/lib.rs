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
    /// Every series of the chart was empty or non-finite, so there is no axis range to fit.
    #[error("chart {title:?} has no finite points to draw")]
    NoPoints {
        /// The chart's title.
        title: String,
    },
    /// The plotting backend failed (an unwritable path, an unencodable image).
    #[error("cannot draw {}: {message}", path.display())]
    Draw {
        /// The PNG file being drawn.
        path: PathBuf,
        /// The backend's error, as text (plotters' error type is generic over the backend).
        message: String,
    },
}
