//! Experiment 4 with its default grid: `cargo run --release -p sim --example empirical [OUT_DIR]`.
//! Prints the summary markdown; the CSVs and charts go to OUT_DIR (default `agora-sim/empirical`).

use sim::empirical::{run, EmpiricalOptions};
use std::path::PathBuf;

fn main() -> Result<(), sim::SimError> {
    let out =
        std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("agora-sim/empirical"));
    let report = run(&EmpiricalOptions::default(), &out)?;
    println!("{}", report.summary_markdown);
    Ok(())
}
