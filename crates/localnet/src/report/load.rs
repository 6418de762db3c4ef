//! Reading a run directory back: every file a run leaves, into one [`RunData`].

use crate::error::LocalnetError;
use crate::judge::{read_judge_csv, JudgeRow, JUDGE_FILE};
use crate::monitor::{read_metagraph_csv, MetagraphRow};
use peer::files::{FinalReport, StatusRow};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `DIR/run.json`: what a report needs to know about the run that the samples do not say.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// `processes` (`agora localnet`) or `in-process` (the lockstep market).
    pub driver: String,
    /// The mechanism variant the chain ran.
    pub mechanism: String,
    /// Blocks per epoch.
    pub tempo: u64,
    /// The block the run proper started at (after registration).
    pub start_block: u64,
    /// The block the run proper ended at.
    pub end_block: u64,
    /// Block at which the offline role leaves, if the scenario has one.
    pub leaves_at: Option<u64>,
    /// The chain's activity cutoff in blocks (a neuron that set no weights for longer earns no
    /// dividends), if the chain has one.
    pub activity_cutoff: Option<u64>,
    /// Share of an epoch's emission paid by incentive when dividends are paid too.
    pub server_share: f64,
    /// Names of the peers a copycat copies (issue 16).
    #[serde(default)]
    pub copied: Vec<String>,
}

/// The run's [`RunInfo`] in its directory.
pub const RUN_INFO_FILE: &str = "run.json";
/// The run's [`ChaosReport`] in its directory (only with faults injected).
pub const CHAOS_FILE: &str = "chaos.json";

/// `DIR/chaos.json`: the faults a run injected between its peers, and what each peer's proxy
/// did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChaosReport {
    /// Probability per chunk that it is lost and retransmitted late.
    pub loss: f64,
    /// Uniform random extra delay per chunk, up to this.
    pub jitter_ms: u64,
    /// Fixed delay per chunk.
    pub delay_ms: u64,
    /// Probability per chunk that the connection is cut.
    pub disconnect: f64,
    /// Probability per connection that the axon's replies are garbled.
    pub garbage: f64,
    /// Per peer: name, connections, chunks relayed, chunks lost (retransmitted late),
    /// connections cut, connections garbled.
    pub peers: Vec<(String, u64, u64, u64, u64, u64)>,
}

impl RunInfo {
    /// Writes `DIR/run.json`.
    pub fn write(&self, dir: &Path) -> Result<(), LocalnetError> {
        let path = dir.join(RUN_INFO_FILE);
        let json = serde_json::to_string_pretty(self).map_err(|e| LocalnetError::Report(e.to_string()))?;
        std::fs::write(&path, json).map_err(|e| LocalnetError::io(&path, e))
    }

    /// Reads `DIR/run.json`; `None` for a run directory without one (an older run).
    pub fn read(dir: &Path) -> Result<Option<RunInfo>, LocalnetError> {
        let path = dir.join(RUN_INFO_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| LocalnetError::io(&path, e))?;
        serde_json::from_str(&text).map(Some).map_err(|e| LocalnetError::Parse {
            path,
            line: e.line() as u64,
            reason: e.to_string(),
        })
    }
}

/// The directory of a peer's files.
pub fn peer_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join("peers").join(name)
}

/// Everything a run left, as read from its directory.
#[derive(Clone, Debug, Default)]
pub struct RunData {
    /// `metagraph.csv`: every neuron at every sampled block.
    pub rows: Vec<MetagraphRow>,
    /// The peers' `final.json` (their own estimate of what each neighbour was worth to them).
    pub finals: Vec<FinalReport>,
    /// The peers' `status.csv`, by name.
    pub status: Vec<(String, Vec<StatusRow>)>,
    /// `judge.csv`: the judge's measurements, in block order.
    pub judgements: Vec<(u64, Vec<JudgeRow>)>,
    /// `run.json`, if the run wrote one.
    pub info: Option<RunInfo>,
    /// `chaos.json`, if the run injected faults.
    pub chaos: Option<ChaosReport>,
    /// Peers whose `final.json` is missing (`name (uid u)`).
    pub missing: Vec<String>,
}

/// Reads `dir`. Only `metagraph.csv` is required.
pub fn load(dir: &Path) -> Result<RunData, LocalnetError> {
    let rows = read_metagraph_csv(&dir.join("metagraph.csv"))?;
    let Some(last_block) = rows.iter().map(|r| r.block).max() else {
        return Err(LocalnetError::Report("metagraph.csv has no samples".into()));
    };
    let mut last: Vec<&MetagraphRow> = rows.iter().filter(|r| r.block == last_block).collect();
    last.sort_by_key(|r| r.uid);
    let mut data = RunData::default();
    for r in &last {
        let pd = peer_dir(dir, &r.name);
        let fin = pd.join(peer::files::FINAL_FILE);
        if fin.is_file() {
            data.finals.push(FinalReport::read(&fin)?);
        } else {
            data.missing.push(format!("{} (uid {})", r.name, r.uid));
        }
        let st = pd.join(peer::files::STATUS_FILE);
        if st.is_file() {
            data.status.push((r.name.clone(), peer::files::read_status(&st)?));
        }
    }
    let judge = dir.join(JUDGE_FILE);
    if judge.is_file() {
        data.judgements = read_judge_csv(&judge)?;
    }
    data.info = RunInfo::read(dir)?;
    let chaos = dir.join(CHAOS_FILE);
    if chaos.is_file() {
        let text = std::fs::read_to_string(&chaos).map_err(|e| LocalnetError::io(&chaos, e))?;
        data.chaos = Some(serde_json::from_str(&text).map_err(|e| LocalnetError::Parse {
            path: chaos,
            line: e.line() as u64,
            reason: e.to_string(),
        })?);
    }
    data.rows = rows;
    Ok(data)
}
