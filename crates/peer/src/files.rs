//! The files a peer process leaves in its `--out` directory, read by `localnet`'s report:
//! one definition for the writer (the peer) and the reader (the orchestrator).
//!
//! - `status.csv`: one row per training step, header
//!   `time_s,step,block,loss,heldout_loss,peers_answering,stake,incentive`, flushed per row so a
//!   killed peer leaves every row it wrote.
//! - `final.json`: `{"uid": 3, "heldout_loss": 2.1, "ablation": {"0": 0.05, "5": 0.001}}`, the
//!   increase of this peer's held-out loss when each uid is removed from its gate, written on
//!   SIGTERM through a temporary file and a rename, so a reader never sees half a file.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The status log a peer appends to in its output directory, one [`StatusRow`] per line.
pub const STATUS_FILE: &str = "status.csv";
/// The report a peer writes in its output directory when it finishes ([`FinalReport`]).
pub const FINAL_FILE: &str = "final.json";

/// Why a peer file could not be written or read.
#[derive(Debug, Error)]
pub enum FileError {
    /// Creating, writing or reading the file failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file that could not be used.
        path: PathBuf,
        /// The operating system's error.
        reason: std::io::Error,
    },
    /// The file's contents are not what a peer writes.
    #[error("{path}: line {line}: {reason}")]
    Parse {
        /// The file that does not parse (or could not be encoded).
        path: PathBuf,
        /// The line (1-based; 0 when unknown or when writing).
        line: u64,
        /// What was wrong.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |reason| FileError::Io { path: path.to_path_buf(), reason }
}

fn csv_err(path: &Path, e: csv::Error) -> FileError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(reason) => FileError::Io { path: path.to_path_buf(), reason },
        other => FileError::Parse { path: path.to_path_buf(), line, reason: format!("{other:?}") },
    }
}

/// A row of `status.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusRow {
    /// Seconds since the peer started.
    pub time_s: f64,
    /// Training steps done.
    pub step: u64,
    /// Chain head seen at this step.
    pub block: u64,
    /// Training loss of the step.
    pub loss: f64,
    /// Loss on the peer's held-out split.
    pub heldout_loss: f64,
    /// Neighbours that answered the last forward call.
    pub peers_answering: u32,
    /// This peer's stake S at `block`, in base units.
    pub stake: u64,
    /// Its incentive I at `block`: its share of the emission to peers, from the weights of the others.
    pub incentive: f64,
}

/// Appends rows to `status.csv` (creating it with its header).
pub struct StatusWriter {
    path: PathBuf,
    writer: csv::Writer<std::fs::File>,
}

impl StatusWriter {
    /// Creates `DIR/status.csv` (and `DIR`), truncating an old one, and writes the header.
    pub fn create(dir: &Path) -> Result<StatusWriter, FileError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(STATUS_FILE);
        let writer = csv::Writer::from_path(&path).map_err(|e| csv_err(&path, e))?;
        Ok(StatusWriter { path, writer })
    }

    /// Appends a row and flushes it, so a reader of a running peer sees it.
    pub fn append(&mut self, row: &StatusRow) -> Result<(), FileError> {
        self.writer.serialize(row).map_err(|e| csv_err(&self.path, e))?;
        self.writer.flush().map_err(io(&self.path))
    }
}

/// Reads every row of a `status.csv`.
pub fn read_status(path: &Path) -> Result<Vec<StatusRow>, FileError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| csv_err(path, e))?;
    r.deserialize().map(|row| row.map_err(|e| csv_err(path, e))).collect()
}

/// `final.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    /// The peer's uid on the metagraph.
    pub uid: u16,
    /// Training steps the peer made.
    #[serde(default)]
    pub steps: u64,
    /// Its loss on its held-out split at the end.
    pub heldout_loss: f64,
    /// The held-out loss with only the distillation student standing in for the network
    /// (the peer's offline model); absent in reports of peers that do not have one.
    #[serde(default)]
    pub student_loss: Option<f64>,
    /// uid (a string: JSON object keys) -> increase of this peer's held-out loss without it.
    #[serde(default)]
    pub ablation: BTreeMap<String, f64>,
    /// The copies its copy detection found over the run (issue 16; empty with detection off).
    #[serde(default)]
    pub copies: Vec<FoundCopy>,
}

/// A neighbour found copying another, and in how many scoring rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundCopy {
    /// The uid whose answers repeated another's.
    pub copier: u16,
    /// The uid it copied.
    pub original: u16,
    /// Scoring rounds in which the copy was seen.
    pub rounds: u64,
}

impl FinalReport {
    /// Writes `DIR/final.json` atomically (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> Result<PathBuf, FileError> {
        let path = dir.join(FINAL_FILE);
        let tmp = dir.join(".final.json.tmp");
        let json = serde_json::to_vec_pretty(self).map_err(|e| FileError::Parse {
            path: path.clone(),
            line: 0,
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, json).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(path)
    }

    /// Reads a `final.json` written by [`FinalReport::write`].
    pub fn read(path: &Path) -> Result<FinalReport, FileError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        serde_json::from_str(&text).map_err(|e| FileError::Parse {
            path: path.to_path_buf(),
            line: e.line() as u64,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_final_round_trip_in_the_documented_format() {
        let dir = std::env::temp_dir().join(format!("agora-peer-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = StatusWriter::create(&dir).unwrap();
        let row = StatusRow {
            time_s: 1.5,
            step: 2,
            block: 3,
            loss: 4.0,
            heldout_loss: 4.5,
            peers_answering: 6,
            stake: 7,
            incentive: 0.25,
        };
        w.append(&row).unwrap();
        let text = std::fs::read_to_string(dir.join(STATUS_FILE)).unwrap();
        assert!(text.starts_with("time_s,step,block,loss,heldout_loss,peers_answering,stake,incentive\n"));
        assert_eq!(read_status(&dir.join(STATUS_FILE)).unwrap(), vec![row]);

        let f: FinalReport =
            serde_json::from_str(r#"{"uid": 3, "heldout_loss": 2.1, "ablation": {"0": 0.05, "5": 0.001}}"#)
                .unwrap();
        let path = f.write(&dir).unwrap();
        assert_eq!(FinalReport::read(&path).unwrap(), f);
        std::fs::write(&path, "{\"uid\": 1,").unwrap();
        assert!(matches!(FinalReport::read(&path), Err(FileError::Parse { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
